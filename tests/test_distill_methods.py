"""The distill stage with the methods that train models of their own (DML peers, self-distillation
heads) and with born-again generations: real training of mobilenet_v3_small on a few 8x8 images."""

from __future__ import annotations

import numpy as np
import pytest

from edgekd.data.loading import Data, DataConfig, load_data
from edgekd.io import sha256
from edgekd.losses import StudentSpec, create_loss
from edgekd.models import create_model
from edgekd.stages.distill import DistillConfig, distill, load_student
from edgekd.training.loop import TrainConfig, load_checkpoint, predict
from tests.helpers import STUDENT, CountingTeacher, write_image_folder


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Data:
    root = write_image_folder(tmp_path_factory.mktemp("methods") / "images", classes=3, per_class=4, size=8)
    # no augmentation: the teacher's logits would be cached
    return load_data(DataConfig(path=root, input_size=8, augment=[], batch_size=4, workers=0, val_fraction=0.25))


def config(loss: str, params: dict | None = None, generations: int = 1) -> DistillConfig:
    train = TrainConfig(epochs=1, lr=0.01, optimizer="adamw")
    return DistillConfig(loss=loss, params=params or {}, train=train, generations=generations)


def clean_student_keys() -> set[str]:
    return set(create_model(STUDENT.name, 3, True).state_dict())


@pytest.mark.parametrize("loss, params", [("dml", {}), ("self_distill", {"head": "bottleneck"})])
def test_pure_method_trains_its_own_models_without_the_teacher(tmp_path, data, loss, params):
    teacher, cache = CountingTeacher(), tmp_path / "teacher-logits.npy"
    path = distill(config(loss, params), STUDENT, data, teacher, tmp_path, cache)
    assert teacher.calls == 0 and not cache.exists()  # neither run nor cached: no teacher term
    student, ckpt = load_student(path)
    assert set(ckpt.state_dict) == clean_student_keys()  # the student carries no peer or head
    # the loss's own models are checkpointed with the student (exactly them: a strict load) ...
    state = load_checkpoint(tmp_path / "distill.ckpt")
    own = create_loss(loss, params, StudentSpec(STUDENT.name, 3, True, 8))
    own.attach(create_model(STUDENT.name, 3, True), teacher)
    own.load_state_dict(state["extra"])
    # ... and every one of their parameters was optimized with the student's
    assert len(state["optimizer"]["state"]) == len(list(student.parameters())) + len(list(own.parameters()))


def test_dml_with_teacher_term_uses_the_cached_teacher(tmp_path, data):
    teacher, cache = CountingTeacher(), tmp_path / "teacher-logits.npy"
    params = {"peers": ["shufflenet_v2_x0_5"], "kd_weight": 1.0}
    distill(config("dml", params), STUDENT, data, teacher, tmp_path, cache)
    assert cache.exists() and teacher.calls == len(data.loader("train"))  # one pass fills the cache
    assert "peers.0.stage2.0.branch1.0.weight" in load_checkpoint(tmp_path / "distill.ckpt")["extra"]


def test_born_again_generations_teach_each_other_and_resume(tmp_path, data):
    teacher, cache = CountingTeacher(), tmp_path / "teacher-logits.npy"
    final = distill(config("kd", generations=2), STUDENT, data, teacher, tmp_path, cache)
    first = tmp_path / "student_gen1.pt"
    assert final == tmp_path / "student_fp32.pt" and first.is_file()
    assert (tmp_path / "distill-gen1.ckpt").is_file() and (tmp_path / "distill.ckpt").is_file()
    # generation 2 was taught by generation 1 (its logits cached under its checksum), not the teacher
    gen1, _ = load_student(first)
    gen1_logits = np.load(tmp_path / f"teacher-logits-{sha256(first)[:12]}.npy")
    assert np.allclose(gen1_logits, predict(gen1, data.loader("train"))[0].numpy(), atol=1e-5)
    assert np.allclose(np.load(cache), predict(teacher, data.loader("train"))[0].numpy(), atol=1e-5)
    assert set(load_student(final)[1].state_dict) == clean_student_keys()

    # an interrupted run: generation 1 finished, generation 2 not; the rerun trains only generation 2
    first_sum, calls = sha256(first), teacher.calls
    final.unlink(), (tmp_path / "distill.ckpt").unlink()
    distill(config("kd", generations=2), STUDENT, data, teacher, tmp_path, cache)
    assert sha256(first) == first_sum and teacher.calls == calls and final.is_file()


def test_one_generation_is_the_plain_distillation(tmp_path, data):
    distill(config("kd"), STUDENT, data, CountingTeacher(), tmp_path, tmp_path / "logits.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["distill.ckpt", "logits.npy", "student_fp32.pt"]
