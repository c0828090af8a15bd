"""Several teachers (`--teacher` repeated, `[teacher] extra`): one `TeacherEnsemble` whose logits
come batch first, [batch, n_teachers, classes], into the multi_teacher loss; any other loss, or
extra teachers without a first one, stop the run when the config is read."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.config import load_config
from edgekd.data.loading import load_data
from edgekd.errors import EdgekdError
from edgekd.models import create_model
from edgekd.pipeline import prepare_teacher
from edgekd.stages.distill import distill
from edgekd.training.loop import predict
from edgekd.training.teachers import TeacherConfig, TeacherEnsemble, load_teachers
from tests.helpers import CLASSES, TINY, assert_one_line_error, checkpoint, cli, onnx_teacher, tiny_net, write_config

MULTI = {
    "loss": "multi_teacher", "params": {"weights": [1.0, 3.0], "temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9},
}  # fmt: skip


def multi_config(tmp_path, distill: dict = MULTI, quantize: dict | None = None) -> str:
    """The tiny config with its [distill] section replaced (its training kept) and `quantize` keys added."""
    settings = {"distill": distill | {"train": TINY["distill"]["train"]}}
    settings |= {f"quantize.{key}": value for key, value in (quantize or {}).items()}
    return str(write_config(tmp_path / "multi.toml", settings))


@pytest.fixture
def teachers(tmp_path) -> list[str]:
    """Two resnet18 state_dicts for 3 classes, with different weights."""
    files = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        files.append(tmp_path / f"teacher{seed}.pt")
        torch.save(create_model("resnet18", 3, small_input=True).state_dict(), files[-1])
    return [str(f) for f in files]


def test_ensemble_stacks_the_teachers_logits_batch_first(tmp_path):
    nets = [tiny_net().eval() for _ in range(2)]
    program = torch.export.export(nets[1], (torch.zeros(2, 3, 16, 16),), dynamic_shapes=({0: torch.export.Dim.AUTO},))
    torch.export.save(program, tmp_path / "second.pt2")
    torch.save(
        {"model": create_model("resnet18", 3, small_input=True).state_dict(), "classes": CLASSES}, tmp_path / "a.pt"
    )
    onnx = onnx_teacher(tmp_path / "third.onnx", size=16, classes=CLASSES)
    cfg = TeacherConfig(path=tmp_path / "a.pt", extra=[tmp_path / "second.pt2", onnx])
    ensemble = load_teachers(cfg, 3, 16, CLASSES)  # a state_dict, a torch.export program and an ONNX model
    images = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        logits = ensemble.eval()(images)
        assert isinstance(ensemble, TeacherEnsemble) and logits.shape == (5, 3, 3)
        assert torch.allclose(logits[:, 1], nets[1](images), atol=1e-5)  # teacher k is column k
        assert torch.equal(logits[:, 0], ensemble.teachers[0](images))


def test_distill_from_two_teacher_files_with_multi_teacher(tmp_path, image_folder, teachers):
    config, out = multi_config(tmp_path), tmp_path / "out"
    args = ["--data", str(image_folder), "--teacher", teachers[0], "--teacher", teachers[1]]
    done = cli("distill", *args, "--config", config, "--out", str(out))
    assert done.returncode == 0, done.stderr  # weights = [1, 3]: the loss saw [batch, 2, classes]
    assert checkpoint(done, "distill").is_file()


def test_two_teachers_as_the_pipeline_prepares_them(tmp_path, image_folder, teachers):
    cfg = load_config(multi_config(tmp_path), teachers=teachers)
    cfg.data.path = image_folder
    assert cfg.teacher.path.name == "teacher1.pt" and [p.name for p in cfg.teacher.extra] == ["teacher2.pt"]
    data = load_data(cfg.data)
    teacher = prepare_teacher(cfg, data, tmp_path / "out", resume=False)
    assert teacher.source == ", ".join(teachers)
    kd = multi_config(tmp_path, {"loss": "kd"})
    one = prepare_teacher(load_config(kd, teachers=teachers[:1]), data, tmp_path, False)
    swapped = prepare_teacher(load_config(multi_config(tmp_path), teachers=teachers[::-1]), data, tmp_path, False)
    assert len({teacher.key, one.key, swapped.key}) == 3  # every file counts, in order (weights follow it)
    logits, labels = predict(teacher.model, data.loader("val"))
    mean_softmax = logits.softmax(2).mean(1)
    assert teacher.val_accuracy == pytest.approx(float((mean_softmax.argmax(1) == labels).float().mean()))

    # the cached logits the distill stage reads by dataset index: one row per image, [images, 2, classes]
    cache = tmp_path / "teacher-logits.npy"
    cfg.distill.train.epochs = 0
    distill(cfg.distill, cfg.student, data, teacher.model, tmp_path / "distill", logits_cache=cache)
    assert np.load(cache).shape == (len(data.train), 2, 3)


@pytest.mark.parametrize(
    "section, quantize, fragments",
    [
        ({"loss": "kd"}, None, ["distill: 2 teachers given but loss 'kd' takes", 'loss = "multi_teacher"']),
        (MULTI, {"loss": "dkd"}, ["quantize: 2 teachers given but loss 'dkd'", '"multi_teacher"']),
        (
            {"loss": "multi_teacher", "params": {"weights": [1.0, 2.0, 3.0]}},
            None,
            ["distill: multi_teacher has 3 weights for 2 teacher(s)", "teacher.path, then teacher.extra"],
        ),
        (MULTI | {"generations": 2}, None, ["remove weights or set generations = 1"]),
    ],
    ids=["kd", "quantize-dkd", "weight-count", "generations"],
)
def test_two_teachers_with_a_loss_that_cannot_take_them(tmp_path, image_folder, teachers, section, quantize, fragments):
    config, out = multi_config(tmp_path, section, quantize), tmp_path / "out"
    args = ["--data", str(image_folder), "--teacher", teachers[0], "--teacher", teachers[1]]
    done = cli("distill", *args, "--config", config, "--out", str(out))
    assert_one_line_error(done, config, *fragments)
    assert not out.exists()


def test_extra_teachers_without_path(tmp_path, teachers):
    config = tmp_path / "extra.toml"
    config.write_text(f'[teacher]\nextra = ["{teachers[1]}"]\n[distill]\nloss = "multi_teacher"\n')
    with pytest.raises(EdgekdError) as raised:
        load_config(config)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(str(config))
    assert "teacher.extra needs teacher.path, the first teacher" in message
    # --teacher replaces the config's teachers, path and extra alike
    assert load_config(config, teachers=[teachers[0]]).teacher.extra == []
