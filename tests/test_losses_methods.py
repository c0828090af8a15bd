"""Golden values for the distillation losses: tiny fixed inputs, expected values worked out here
with math/numpy (never with the implementation's helpers), plus the attach/hook plumbing."""

import math
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.losses import LOSSES, create_loss

# --- hand references (numpy, float64) ----------------------------------------------------------


def softmax(z, temperature=1.0):
    z = np.asarray(z, dtype=float) / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def ce(logits, y):
    p = softmax(logits)
    return float(np.mean([-math.log(p[i, c]) for i, c in enumerate(y)]))


def kl_rows(p, q):
    """KL(p_i || q_i) for each row i."""
    return np.array([sum(a * math.log(a / b) for a, b in zip(pr, qr) if a > 0) for pr, qr in zip(p, q)])


def kd_term(s, t, temperature):
    return temperature**2 * float(kl_rows(softmax(t, temperature), softmax(s, temperature)).mean())


def huber(x):  # smooth L1 with beta = 1
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def tensor(x):
    return torch.tensor(x, dtype=torch.float32)


def stacked(*teachers):
    """Several teachers' logits as multi_teacher takes them: [batch, n_teachers, classes]."""
    return np.stack(teachers, axis=1).tolist()


S = [[1.0, 2.0, 0.5, -1.0], [0.0, -0.5, 1.5, 0.3], [2.0, 0.1, -0.7, 0.9]]
T = [[0.5, 2.5, 0.0, -0.5], [0.2, 0.1, 2.0, -1.0], [1.0, 1.0, -1.0, 0.0]]
Y = [1, 2, 0]
FS = [  # 2 samples x 2 channels x 2 x 2
    [[[1.0, -2.0], [0.5, 0.0]], [[0.3, 1.0], [-1.0, 2.0]]],
    [[[0.0, 1.0], [1.0, -1.5]], [[2.0, 0.5], [0.2, -0.4]]],
]
FT = [
    [[[0.5, -1.0], [1.0, 0.2]], [[0.0, 1.5], [-0.5, 1.0]]],
    [[[1.0, 0.0], [0.5, -1.0]], [[1.0, 1.0], [0.0, 0.3]]],
]


def run(name, params, s=S, t=T, y=Y, epoch=0):
    loss = create_loss(name, params)
    loss.epoch = epoch
    return float(loss(tensor(s), tensor(t), torch.tensor(y)))


# --- logit losses ------------------------------------------------------------------------------


def test_kd_golden_literal():
    # T = 1: teacher probs [3/4, 1/4], student [1/2, 1/2]
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    got = run(
        "kd", {"temperature": 1.0, "ce_weight": 0.5, "kd_weight": 0.5}, s=[[0.0, 0.0]], t=[[math.log(3), 0.0]], y=[0]
    )
    assert got == pytest.approx(0.5 * math.log(2) + 0.5 * kl, abs=1e-6)


def test_kd_golden_batch():
    expected = 0.3 * ce(S, Y) + 0.7 * kd_term(S, T, 2.0)
    assert run("kd", {"temperature": 2.0, "ce_weight": 0.3, "kd_weight": 0.7}) == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("epoch, temperature", [(0, 4.0), (1, 3.0), (3, 1.0), (5, 1.0)])
def test_kd_temperature_schedule(epoch, temperature):
    params = {"temperature": 4.0, "temperature_end": 1.0, "schedule_epochs": 3, "ce_weight": 0.0, "kd_weight": 1.0}
    assert run("kd", params, epoch=epoch) == pytest.approx(kd_term(S, T, temperature), abs=1e-5)


def test_kd_without_schedule_keeps_temperature():
    assert run("kd", {}, epoch=7) == pytest.approx(0.1 * ce(S, Y) + 0.9 * kd_term(S, T, 4.0), abs=1e-5)


def test_dkd_golden():
    t_, tckd, nckd = 2.0, [], []
    for s, t, y in zip(S, T, Y):
        ps, pt = softmax(s, t_), softmax(t, t_)
        tckd.append(kl_rows([[pt[y], 1 - pt[y]]], [[ps[y], 1 - ps[y]]])[0])
        rest = [c for c in range(4) if c != y]
        nckd.append(kl_rows([softmax([t[c] for c in rest], t_)], [softmax([s[c] for c in rest], t_)])[0])
    warmup = 0.5  # one epoch done of a 2-epoch warm-up
    expected = ce(S, Y) + warmup * t_**2 * (1.0 * np.mean(tckd) + 2.0 * np.mean(nckd))  # the default weights
    got = run("dkd", {"temperature": t_, "warmup_epochs": 2}, epoch=1)
    assert got == pytest.approx(expected, abs=1e-4)
    assert run("dkd", {"temperature": t_, "warmup_epochs": 2}, epoch=0) == pytest.approx(ce(S, Y), abs=1e-5)


def test_multi_teacher_golden():
    t2 = [[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [2.0, 0.0, 0.0, 1.0]]
    mix = 0.25 * softmax(T, 2.0) + 0.75 * softmax(t2, 2.0)  # weights [1, 3] normalized
    expected = 0.3 * ce(S, Y) + 0.7 * 4.0 * float(kl_rows(mix, softmax(S, 2.0)).mean())
    got = run(
        "multi_teacher", {"weights": [1, 3], "temperature": 2.0, "ce_weight": 0.3, "kd_weight": 0.7}, t=stacked(T, t2)
    )
    assert got == pytest.approx(expected, abs=1e-5)


def test_multi_teacher_single_tensor_is_kd():
    expected = 0.3 * ce(S, Y) + 0.7 * kd_term(S, T, 2.0)
    assert run("multi_teacher", {"temperature": 2.0, "ce_weight": 0.3, "kd_weight": 0.7}) == pytest.approx(
        expected, abs=1e-5
    )


def test_multi_teacher_weight_count_mismatch():
    with pytest.raises(EdgekdError, match="3 weights given for 2 teachers"):
        run("multi_teacher", {"weights": [1, 1, 1]}, t=stacked(T, T))


def test_dynamic_teacher_confidence_golden():
    w = np.array([1 - softmax(T)[i, y] for i, y in enumerate(Y)])
    w = w / w.mean()
    kl = 4.0 * kl_rows(softmax(T, 2.0), softmax(S, 2.0))
    expected = 0.2 * ce(S, Y) + 0.8 * float(np.mean(w * kl))
    got = run("dynamic", {"temperature": 2.0, "ce_weight": 0.2, "kd_weight": 0.8})
    assert got == pytest.approx(expected, abs=1e-5)


def test_dynamic_ce_ratio_golden():
    ce_s = np.array([-math.log(softmax(S)[i, y]) for i, y in enumerate(Y)])
    ce_t = np.array([-math.log(softmax(T)[i, y]) for i, y in enumerate(Y)])
    w = 1 - np.exp(-ce_s / ce_t)
    w = w / w.mean()
    expected = 0.2 * ce(S, Y) + 0.8 * float(np.mean(w * 4.0 * kl_rows(softmax(T, 2.0), softmax(S, 2.0))))
    got = run("dynamic", {"mode": "ce_ratio", "temperature": 2.0, "ce_weight": 0.2, "kd_weight": 0.8})
    assert got == pytest.approx(expected, abs=1e-5)


def test_dynamic_all_zero_weights_fall_back_to_plain_kd():
    # the teacher is certain and right on every sample: 1 - p = 0 everywhere -> weights all 1
    s, t, y = [[0.5, 0.0], [0.0, 1.0]], [[100.0, 0.0], [0.0, 100.0]], [0, 1]
    expected = 0.5 * ce(s, y) + 0.5 * kd_term(s, t, 2.0)
    assert run("dynamic", {"temperature": 2.0, "ce_weight": 0.5, "kd_weight": 0.5}, s=s, t=t, y=y) == pytest.approx(
        expected, abs=1e-5
    )


def test_rkd_on_logits_golden():
    s, t = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]], [[0.0, 0.0], [2.0, 0.0], [1.0, 1.0]]

    def distances(e):
        d = np.array([[math.dist(a, b) for b in e] for a in e])
        return d / d[d > 0].mean()

    def angles(e):
        e, out = np.asarray(e), []
        for i in range(3):
            for j in range(3):
                for k in range(3):
                    if j == i or k == i:
                        out.append(0.0)  # a zero vector normalizes to 0
                        continue
                    u, v = e[j] - e[i], e[k] - e[i]
                    out.append(float(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))
        return np.array(out)

    dist = np.mean([huber(x) for x in (distances(s) - distances(t)).ravel()])
    angle = np.mean([huber(x) for x in angles(s) - angles(t)])
    got = run("rkd", {"ce_weight": 0.0}, s=s, t=t, y=[0, 1, 0])
    assert got == pytest.approx(25 * dist + 50 * angle, abs=1e-5)


CE_PART = {  # weight of CE in the loss when the student equals the teacher (KD terms vanish)
    "kd": ({"ce_weight": 0.3, "kd_weight": 0.7}, 0.3),
    "dkd": ({"ce_weight": 0.5}, 0.5),
    "multi_teacher": ({"ce_weight": 0.4, "kd_weight": 0.6, "weights": [1, 2]}, 0.4),
    "dynamic": ({"ce_weight": 0.2, "kd_weight": 0.8}, 0.2),
    "rkd": ({"ce_weight": 2.0}, 2.0),
    "dist": ({"ce_weight": 0.5}, 0.5),
}


@pytest.mark.parametrize("name", sorted(CE_PART))
def test_logit_loss_is_ce_part_when_student_equals_teacher(name):
    params, ce_weight = CE_PART[name]
    teacher = stacked(S, S) if name == "multi_teacher" else S
    assert run(name, params, t=teacher) == pytest.approx(ce_weight * ce(S, Y), abs=1e-5)


# --- feature losses: golden values through Identity/AvgPool "models" ----------------------------


def on_logits(loss):
    """The loss on the first two logit rows (features were captured by the models' forward)."""
    return float(loss(tensor(S[:2]), tensor(T[:2]), torch.tensor(Y[:2])))


def identity_model():
    return nn.Sequential(OrderedDict(a=nn.Identity(), b=nn.Identity()))


def pooled_model():  # layer b outputs 2 x 1 x 1: exercises the resize paths
    return nn.Sequential(OrderedDict(a=nn.Identity(), b=nn.AvgPool2d(2)))


W = np.array([[1.0, 0.5], [0.0, 2.0]])  # fixed adapter weights (out x in)
BASE = {"ce_weight": 0.0, "in_channels": 2, "input_size": 2}


def fitnet_with(student, teacher, params, w=W, ft=FT):
    """A fitnet loss attached to the two models, adapter set to `w`, features FS and `ft` captured."""
    loss = create_loss("fitnet", BASE | params)
    loss.attach(student, teacher)
    with torch.no_grad():
        loss.adapters[0].weight.copy_(tensor(w)[:, :, None, None])
    student(tensor(FS)), teacher(tensor(ft))
    return loss


def test_fitnet_golden():
    loss = fitnet_with(identity_model(), identity_model(), {"pairs": [["a", "a"]], "hint_weight": 3.0})
    hint = np.einsum("ck,bkhw->bchw", W, np.array(FS))
    expected = 3.0 * np.mean((hint - np.array(FT)) ** 2)
    assert on_logits(loss) == pytest.approx(expected, abs=1e-5)


def test_fitnet_golden_resized():
    loss = fitnet_with(pooled_model(), identity_model(), {"pairs": [["b", "b"]], "hint_weight": 1.0})
    pooled = np.array(FS).mean(axis=(2, 3))  # 2 x 2
    hint = (pooled @ W.T)[:, :, None, None]  # bilinear from 1 x 1 replicates the value
    expected = np.mean((hint - np.array(FT)) ** 2)
    assert on_logits(loss) == pytest.approx(expected, abs=1e-5)


# bilinear 2 -> 4 (align_corners=False) samples source positions -0.25, 0.25, 0.75, 1.25, clamped
UP = np.array([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])
FT4 = np.arange(2 * 2 * 16, dtype=float).reshape(2, 2, 4, 4) % 5 - 2  # teacher maps at 4 x 4


def test_fitnet_golden_bilinear_upsample():
    loss = fitnet_with(identity_model(), identity_model(), {"pairs": [["a", "a"]], "hint_weight": 1.0}, ft=FT4)
    hint = np.einsum("ck,bkhw->bchw", W, np.array(FS))
    hint = np.einsum("ih,bchw,jw->bcij", UP, hint, UP)
    expected = np.mean((hint - FT4) ** 2)
    assert on_logits(loss) == pytest.approx(expected, abs=1e-5)


def test_fitnet_adds_logit_terms():
    params = {"pairs": [["a", "a"]], "ce_weight": 0.5, "kd_weight": 2.0, "temperature": 2.0}
    # identity adapter and equal features: the hint term is 0, only CE + KD remain
    loss = fitnet_with(identity_model(), identity_model(), params, w=np.eye(2), ft=FS)
    expected = 0.5 * ce(S[:2], Y[:2]) + 2.0 * kd_term(S[:2], T[:2], 2.0)
    assert on_logits(loss) == pytest.approx(expected, abs=1e-5)


def attention(f):
    a = (np.array(f) ** 2).mean(axis=1).reshape(len(f), -1)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def test_at_golden_two_pairs_with_resize():
    loss = create_loss("at", {"pairs": [["a", "a"], ["b", "b"]], "at_weight": 1000.0, "ce_weight": 0.0})
    student, teacher = pooled_model(), identity_model()
    loss.attach(student, teacher)
    student(tensor(FS)), teacher(tensor(FT))
    term_a = 500.0 * np.mean((attention(FS) - attention(FT)) ** 2)
    term_b = 500.0 * np.mean((0.5 - attention(FT)) ** 2)  # a constant 2x2 map normalizes to 1/2 each
    got = on_logits(loss)
    assert got == pytest.approx((term_a + term_b) / 2, abs=1e-4)


def test_at_golden_bilinear_upsample():
    loss = create_loss("at", {"pairs": [["a", "a"]], "at_weight": 2.0, "ce_weight": 0.0})
    student, teacher = identity_model(), identity_model()
    loss.attach(student, teacher)
    student(tensor(FS)), teacher(tensor(FT4))
    a_s = np.einsum("ih,bhw,jw->bij", UP, (np.array(FS) ** 2).mean(axis=1), UP).reshape(2, -1)
    a_s = a_s / np.linalg.norm(a_s, axis=1, keepdims=True)
    expected = 1.0 * np.mean((a_s - attention(FT4)) ** 2)
    assert on_logits(loss) == pytest.approx(expected, abs=1e-5)


def test_sp_golden():
    student, teacher = identity_model(), identity_model()
    loss = create_loss("sp", {"pairs": [["a", "a"]], "sp_weight": 10.0, "ce_weight": 0.0})
    loss.attach(student, teacher)
    student(tensor(FS)), teacher(tensor(FT))

    def similarity(f):
        f = np.array(f).reshape(len(f), -1)
        g = f @ f.T
        return g / np.linalg.norm(g, axis=1, keepdims=True)

    expected = 10.0 * np.sum((similarity(FS) - similarity(FT)) ** 2) / 2**2
    assert on_logits(loss) == pytest.approx(expected, abs=1e-5)


# --- feature losses on tiny conv nets ------------------------------------------------------------


def tiny(width: int, stride: int) -> nn.Module:
    torch.manual_seed(width)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, width, 3, padding=1), bn1=nn.BatchNorm2d(width), relu1=nn.ReLU(),
        conv2=nn.Conv2d(width, width, 3, stride=stride, padding=1), relu2=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(width, 3),
    ))  # fmt: skip


LAYERS = [["relu1", "relu1"], ["relu2", "relu2"]]
FEATURE = {
    "fitnet": {"pairs": LAYERS, "input_size": 8},
    "at": {"pairs": LAYERS},
    "sp": {"pairs": LAYERS},
    "rkd": {"pairs": [["flat", "flat"]]},
}


def step(loss, student, teacher, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(4, 3, 8, 8, generator=g), torch.tensor([0, 1, 2, 0])
    t_logits = teacher(x).detach()  # teacher run with grad on: the loss alone must keep it untouched
    return loss(student(x), t_logits, y)


@pytest.mark.parametrize("name", sorted(FEATURE))
def test_feature_loss_trains_student_and_adapters(name):
    student, teacher = tiny(4, 2), tiny(8, 1).eval()
    loss = create_loss(name, FEATURE[name] | {"kd_weight": 1.0})
    stats = student.bn1.running_mean.clone()
    loss.attach(student, teacher)
    # the dummy forward must leave train mode and batch-norm statistics alone
    assert student.training and torch.equal(student.bn1.running_mean, stats)
    value = step(loss, student, teacher)
    value.backward()
    assert torch.isfinite(value)
    assert student.conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss.parameters())
    assert all(p.grad is None for p in teacher.parameters())
    if name == "fitnet":  # adapters exist (and are trainable) before any optimizer is built
        assert [tuple(a.weight.shape) for a in loss.adapters] == [(8, 4, 1, 1), (8, 4, 1, 1)]
    loss.detach()
    assert not any(m._forward_hooks for m in list(student.modules()) + list(teacher.modules()))


@pytest.mark.parametrize("name", ["at", "sp", "rkd"])
def test_feature_loss_is_ce_part_when_student_is_teacher(name):
    model = tiny(4, 1)
    loss = create_loss(name, FEATURE[name] | {"ce_weight": 0.5})
    loss.attach(model, model)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(3, 3, 8, 8, generator=g), [0, 1, 2]
    logits = model(x)
    expected = 0.5 * ce(logits.detach().numpy(), y)
    assert float(loss(logits, logits.detach(), torch.tensor(y))) == pytest.approx(expected, abs=1e-5)


def test_wrong_layer_names_are_reported_with_valid_ones():
    student, teacher = tiny(4, 2), tiny(8, 1)
    loss = create_loss("fitnet", {"pairs": [["conv_2", "relu1"]]})
    with pytest.raises(EdgekdError, match="student has no layer 'conv_2'") as e:
        loss.attach(student, teacher)
    assert "did you mean 'conv2'" in str(e.value) and "conv1" in str(e.value)
    with pytest.raises(EdgekdError, match="teacher has no layer 'fc9'.*valid names include: .*fc"):
        create_loss("at", {"pairs": [["relu1", "fc9"]]}).attach(student, teacher)
    assert not any(m._forward_hooks for m in student.modules())  # nothing half-attached


def test_feature_loss_without_attach_says_so():
    with pytest.raises(EdgekdError, match="attach"):
        run("sp", {"pairs": [["a", "a"]]})


# --- the registry -------------------------------------------------------------------------------

REQUIRED = {name: {"pairs": [["a", "b"]]} for name in ("fitnet", "at", "sp")}


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_creates_and_rejects_unknown_options(name):
    assert isinstance(create_loss(name, REQUIRED.get(name, {})), nn.Module)
    field = next(iter(LOSSES.get(name).Config.model_fields))
    with pytest.raises(EdgekdError, match=f"did you mean '{field}'"):
        create_loss(name, REQUIRED.get(name, {}) | {field[:-1]: 1})


def test_bad_values_and_names():
    with pytest.raises(EdgekdError, match="option 'temperature_end'"):
        create_loss("kd", {"temperature_end": -1})
    with pytest.raises(EdgekdError, match="did you mean 'fitnet'"):
        create_loss("fitnets")
    with pytest.raises(EdgekdError, match="option 'pairs'"):
        create_loss("at", {"pairs": []})


@pytest.mark.parametrize("name", ["kd", "dkd", "multi_teacher", "dynamic", "dist"])
def test_label_smoothing_reaches_the_ce_term(name):
    # with the student equal to the teacher the KD terms vanish: what is left is the CE part,
    # smoothed: (1 - eps) CE + eps * mean over classes of -log p
    eps, teacher = 0.2, stacked(S, S) if name == "multi_teacher" else S
    ce_weight = create_loss(name).config.ce_weight
    log_p = np.log(softmax(S))
    smoothed = float(np.mean([-(1 - eps) * log_p[i, y] - eps * log_p[i].mean() for i, y in enumerate(Y)]))
    got = run(name, {"label_smoothing": eps}, t=teacher)
    assert got == pytest.approx(ce_weight * smoothed, abs=1e-5)


def pearson(a, b):
    a, b = np.asarray(a) - np.mean(a), np.asarray(b) - np.mean(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def zscore(z):
    z = np.asarray(z, dtype=float)
    return (z - z.mean(1, keepdims=True)) / z.std(1, ddof=1, keepdims=True)


def dist_terms(s, t, temperature):
    ys, yt = softmax(s, temperature), softmax(t, temperature)
    inter = np.mean([1 - pearson(ys[i], yt[i]) for i in range(len(ys))])
    intra = np.mean([1 - pearson(ys[:, c], yt[:, c]) for c in range(ys.shape[1])])
    return temperature**2 * inter, temperature**2 * intra


def test_dist_golden():
    inter, intra = dist_terms(S, T, 2.0)
    params = {"temperature": 2.0, "ce_weight": 0.5, "inter_weight": 1.0, "intra_weight": 2.0}
    assert run("dist", params) == pytest.approx(0.5 * ce(S, Y) + inter + 2.0 * intra, abs=1e-5)


def test_dist_of_a_student_equal_to_its_teacher_is_its_ce_part():
    inter, intra = dist_terms(S, S, 1.0)
    assert inter == pytest.approx(0.0, abs=1e-12) and intra == pytest.approx(0.0, abs=1e-12)
    assert run("dist", {"ce_weight": 0.0}, t=S) == pytest.approx(0.0, abs=1e-5)


def test_logit_standardized_kd_golden():
    expected = 0.1 * ce(S, Y) + 0.9 * kd_term(zscore(S), zscore(T), 2.0)
    assert run("kd", {"temperature": 2.0, "standardize": True}) == pytest.approx(expected, abs=1e-5)
    # a teacher whose logits are 3x larger and shifted gives the same standardized target
    shifted = (3 * np.asarray(T) + 1.5).tolist()
    assert run("kd", {"temperature": 2.0, "standardize": True}, t=shifted) == pytest.approx(expected, abs=1e-5)


def test_logit_standardized_dkd_and_dist_see_standardized_logits():
    shifted = (3 * np.asarray(T) - 2.0).tolist()
    for name in ("dkd", "dist"):
        params = {"temperature": 2.0, "standardize": True}
        assert run(name, params, t=shifted) == pytest.approx(run(name, params), abs=1e-5), name
    inter, intra = dist_terms(zscore(S), zscore(T), 2.0)
    got = run("dist", {"temperature": 2.0, "standardize": True})
    assert got == pytest.approx(ce(S, Y) + inter + intra, abs=1e-5)
