"""Golden values for the methods that train models of their own: deep mutual learning's peers and
self-distillation's heads. Expected values and gradients are worked out with numpy/math from the
papers' formulas; the loss's own models are replaced by fixed ones where a value is checked."""

import dataclasses
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.losses import StudentSpec, create_loss, self_distill
from edgekd.models import create_model, model_card
from tests.test_losses_methods import FS, S, T, Y, ce, kd_term, softmax, tensor

P = [[0.3, -1.0, 2.0, 0.5], [1.0, 1.0, 0.0, -2.0], [-0.5, 0.2, 0.4, 1.5]]  # a second peer's logits
Q = [[2.0, 0.0, 0.0, 0.0], [0.0, 0.5, -0.5, 1.0], [0.1, 0.1, 1.2, -0.3]]  # a third's
SPEC = StudentSpec("mobilenet_v3_small", num_classes=4, small_input=True, input_size=16)


class FixedLogits(nn.Module):
    """A "model" whose logits are a trainable parameter, whatever its input."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(tensor(logits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits


def one_hot(y, classes=4):
    return np.eye(classes)[y]


def dml_with(params, peers, student=S):
    """A dml loss attached to a fixed-logit student, its peers replaced by fixed-logit ones; the
    student has run on a batch (its input reaches the peers through the pre-hook)."""
    model = FixedLogits(student)
    loss = create_loss("dml", params, SPEC)
    loss.attach(model, nn.Identity())
    loss.peers = nn.ModuleList(FixedLogits(p) for p in peers)
    logits = model(torch.zeros(len(student), 3, 2, 2))
    return loss, model, logits


# --- deep mutual learning ------------------------------------------------------------------------


def test_dml_two_peers_golden_value_and_gradients():
    loss, model, logits = dml_with({"temperature": 2.0, "mutual_weight": 0.5}, [P])
    value = loss(logits, None, torch.tensor(Y))
    expected = (ce(S, Y) + 0.5 * kd_term(S, P, 2.0)) + (ce(P, Y) + 0.5 * kd_term(P, S, 2.0))
    assert float(value) == pytest.approx(expected, abs=1e-5)
    value.backward()
    # d/dz [CE] = (softmax(z) - onehot) / B; d/dz [T^2 KL(p || softmax(z/T))] = T (softmax(z/T) - p) / B.
    # Each peer's target is detached: S's gradient has no term from the peer's KL towards S.
    b = len(Y)
    grad_s = (softmax(S) - one_hot(Y)) / b + 0.5 * 2.0 * (softmax(S, 2.0) - softmax(P, 2.0)) / b
    grad_p = (softmax(P) - one_hot(Y)) / b + 0.5 * 2.0 * (softmax(P, 2.0) - softmax(S, 2.0)) / b
    assert np.allclose(model.logits.grad.numpy(), grad_s, atol=1e-6)
    assert np.allclose(loss.peers[0].logits.grad.numpy(), grad_p, atol=1e-6)


def test_dml_three_peers_with_teacher_golden():
    loss, _, logits = dml_with({"kd_weight": 0.5}, [P, Q])  # T = 1, mutual weight 1
    value = float(loss(logits, tensor(T), torch.tensor(Y)))
    peers = [S, P, Q]
    expected = 0.0
    for k, z in enumerate(peers):
        mutual = np.mean([kd_term(z, o, 1.0) for j, o in enumerate(peers) if j != k])
        expected += ce(z, Y) + mutual + 0.5 * kd_term(z, T, 1.0)
    assert value == pytest.approx(expected, abs=1e-5)


def test_dml_needs_no_teacher_unless_its_term_is_on():
    assert not create_loss("dml").uses_teacher
    assert create_loss("dml", {"kd_weight": 0.1}).uses_teacher


@pytest.mark.parametrize("small_input, stride", [(True, (1, 1)), (False, (2, 2))])
def test_dml_peers_are_built_like_the_student_and_trained_in_its_mode(small_input, stride):
    spec = StudentSpec("mobilenet_v3_small", 3, small_input, 16)
    student = create_model("mobilenet_v3_small", 3, small_input)
    loss = create_loss("dml", {"peers": ["mobilenet_v3_small", "shufflenet_v2_x0_5"]}, spec)
    loss.attach(student, nn.Identity())
    assert [type(p).__name__ for p in loss.peers] == ["MobileNetV3", "ShuffleNetV2"]
    assert loss.peers[0].features[0][0].stride == stride and loss.peers[1].conv1[0].stride == stride
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 0])
    stats = loss.peers[0].features[0][1].running_mean.clone()
    loss.eval()  # the loss module's own mode does not matter: the peers follow the student's
    value = loss(student.train()(x), None, y)
    assert all(p.training for p in loss.peers)
    assert not torch.equal(loss.peers[0].features[0][1].running_mean, stats)  # batch-norm ran in train mode
    value.backward()
    assert all(p.grad is not None for p in loss.peers.parameters() if p.requires_grad)
    with torch.no_grad():
        loss(student.eval()(x), None, y)
    assert not any(p.training for p in loss.peers)
    loss.detach()
    assert not any(m._forward_pre_hooks for m in student.modules())
    assert student.state_dict().keys() == create_model("mobilenet_v3_small", 3, small_input).state_dict().keys()


def test_dml_errors_name_the_fix():
    with pytest.raises(EdgekdError, match="loss 'dml' option 'peers': unknown model 'mobilenet_v4'.*did you mean"):
        create_loss("dml", {"peers": ["mobilenet_v4"]})
    with pytest.raises(EdgekdError, match="spec=StudentSpec"):
        create_loss("dml").attach(nn.Linear(2, 2), nn.Identity())
    loss = create_loss("dml", {}, SPEC)
    with pytest.raises(EdgekdError, match="run the student on the batch"):
        loss(tensor(S), None, torch.tensor(Y))


# --- self-distillation (Be Your Own Teacher) -----------------------------------------------------

F3 = np.concatenate([np.array(FS), np.array(FS)[:, :1] * -0.5], axis=1)  # 2 samples x 3 channels x 2 x 2
WA = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0], [0.0, 2.0, 1.0], [-1.0, 0.0, 0.5]])  # head a: 4 classes x 3
WB = np.array([[0.0, 1.0, 0.0], [1.0, -1.0, 0.5], [0.2, 0.0, 0.0], [0.0, 0.0, -2.0]])
BIAS = np.array([0.1, -0.2, 0.0, 0.3])


def self_distill_with(params):
    """A self_distill loss on a model whose layer a is the input (3 x 2 x 2) and b its 2x2 average;
    the linear heads' weights set to WA and WB, features F3 captured."""
    model = nn.Sequential(OrderedDict(a=nn.Identity(), b=nn.AvgPool2d(2)))
    loss = create_loss("self_distill", {"layers": ["a", "b"]} | params, StudentSpec("tiny", 4, True, 2))
    loss.attach(model, nn.Identity())
    with torch.no_grad():
        for head, w in zip(loss.heads, (WA, WB)):
            head[-1].weight.copy_(tensor(w)), head[-1].bias.copy_(tensor(BIAS))
    model(tensor(F3))
    return loss


def test_self_distill_golden_value_and_gradient():
    loss = self_distill_with({"temperature": 2.0, "head_ce_weight": 0.7, "head_kd_weight": 0.3})
    final = tensor(S[:2]).requires_grad_()
    value = loss(final, None, torch.tensor(Y[:2]))
    pooled = F3.mean(axis=(2, 3))  # both layers pool to the channel means
    expected = ce(S[:2], Y[:2])
    for w in (WA, WB):
        h = pooled @ w.T + BIAS
        expected += 0.7 * ce(h, Y[:2]) + 0.3 * kd_term(h, S[:2], 2.0)
    assert float(value) == pytest.approx(expected, abs=1e-5)
    value.backward()
    # the heads learn from the final output, never the reverse: its gradient is its own CE's
    assert np.allclose(final.grad.numpy(), (softmax(S[:2]) - one_hot(Y[:2])) / 2, atol=1e-6)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.heads.parameters())


def test_self_distill_teacher_term_golden():
    loss = self_distill_with({"temperature": 2.0, "head_ce_weight": 0.0, "head_kd_weight": 1.0, "kd_weight": 0.5})
    value = float(loss(tensor(S[:2]), tensor(T[:2]), torch.tensor(Y[:2])))
    pooled = F3.mean(axis=(2, 3))
    expected = ce(S[:2], Y[:2]) + 0.5 * kd_term(S[:2], T[:2], 2.0)
    expected += sum(kd_term(pooled @ w.T + BIAS, S[:2], 2.0) for w in (WA, WB))
    assert value == pytest.approx(expected, abs=1e-5)
    assert loss.uses_teacher and not create_loss("self_distill").uses_teacher


@pytest.mark.parametrize("head, in_features", [("linear", [16, 24, 48]), ("bottleneck", [128, 128, 128])])
def test_self_distill_sizes_heads_on_the_default_layers(head, in_features):
    student = create_model("mobilenet_v3_small", 3, True)
    stats = student.features[0][1].running_mean.clone()
    loss = create_loss("self_distill", {"head": head}, StudentSpec("mobilenet_v3_small", 3, True, 16))
    loss.attach(student, nn.Identity())
    assert student.training and torch.equal(student.features[0][1].running_mean, stats)  # the probe left them
    assert [h[-1].in_features for h in loss.heads] == in_features
    assert all(h[-1].out_features == 3 for h in loss.heads)
    value = loss(student(torch.randn(4, 3, 16, 16)), None, torch.tensor([0, 1, 2, 0]))
    value.backward()
    assert all(p.grad is not None for p in loss.heads.parameters())
    loss.detach()
    assert not any(m._forward_hooks for m in student.modules())


def test_self_distill_layer_errors_name_valid_layers(monkeypatch):
    spec = StudentSpec("mobilenet_v3_small", 3, True, 8)
    # a model whose card names no feature layers (a timm model without feature_info at 1/4..1/16)
    bare = dataclasses.replace(model_card("mobilenet_v3_small"), feature_layers=())
    with monkeypatch.context() as patch:
        patch.setattr(self_distill, "model_card", lambda name: bare)
        with pytest.raises(EdgekdError, match="no default layers for student 'mobilenet_v3_small'; set params.layers"):
            create_loss("self_distill", {}, spec).attach(nn.Sequential(nn.Conv2d(3, 4, 3)), nn.Identity())
    with pytest.raises(EdgekdError, match="unknown model 'tiny'"):
        create_loss("self_distill").check_student("tiny")
    student = create_model("mobilenet_v3_small", 3, True)
    loss = create_loss("self_distill", {"layers": ["features.30"]}, spec)
    with pytest.raises(EdgekdError, match="student has no layer 'features.30'.*valid names include: .*features.3"):
        loss.attach(student, nn.Identity())
    flat = create_loss("self_distill", {"layers": ["features.3", "classifier"]}, spec)
    with pytest.raises(EdgekdError, match=r"layers \['classifier'\] give no 4-D feature maps"):
        flat.attach(student, nn.Identity())
    assert not any(m._forward_hooks for m in student.modules())  # nothing half-attached
    with pytest.raises(EdgekdError, match="student has no layer 'features.13'"):
        create_loss("self_distill", {"layers": ["features.13"]}).check_student("mobilenet_v3_small")
    create_loss("self_distill").check_student("mobilenet_v2")  # the defaults fit
    with pytest.raises(EdgekdError, match="attach"):
        create_loss("self_distill")(tensor(S), None, torch.tensor(Y))


@pytest.mark.parametrize("name", ["dml", "self_distill"])
def test_qat_fine_tunes_without_the_trained_peers_or_heads(name):
    """QAT would start peers/heads from scratch: it fine-tunes with CE + w * KD, scaled to KD's form."""
    assert not create_loss(name).for_finetuning().uses_teacher  # pure: CE alone, no teacher forward
    finetune = create_loss(name, {"kd_weight": 3.0, "temperature": 2.0}).for_finetuning()
    expected = (ce(S, Y) + 3.0 * kd_term(S, T, 2.0)) / 4.0
    assert float(finetune(tensor(S), tensor(T), torch.tensor(Y))) == pytest.approx(expected, abs=1e-5)
