"""Training repeats: the same data seed gives the same weights, whatever torch's generator held
before (weight initialisation, shuffles, augmentation and dropout all draw from the data seed)."""

from __future__ import annotations

import torch

from edgekd.data.loading import DataConfig, load_data
from edgekd.stages.distill import DistillConfig, StudentConfig, distill, load_student
from edgekd.training.loop import TrainConfig
from edgekd.training.teachers import TeacherConfig, train_teacher

ONE_EPOCH = TrainConfig(epochs=1, lr=0.003, optimizer="adamw")


def _data(root, seed: int = 0):
    # random crops and flips drawn anew each epoch, and a shuffled order: the unseeded paths
    cfg = DataConfig(path=root, input_size=16, augment=["crop", "flip"], batch_size=8, workers=0, seed=seed)
    return load_data(cfg)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_training_twice_gives_the_same_weights(image_folder, tmp_path):
    data, runs = _data(image_folder), []
    for run, noise in enumerate([1, 2]):
        torch.manual_seed(noise)  # what ran before must not matter
        teacher, _ = train_teacher(TeacherConfig(train=ONE_EPOCH), data, tmp_path / f"teacher{run}.ckpt")
        folder = tmp_path / f"distill{run}"
        folder.mkdir()
        cfg = DistillConfig(params={"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9}, train=ONE_EPOCH)
        student, _ = load_student(distill(cfg, StudentConfig(name="mobilenet_v2"), data, teacher, folder))
        runs.append((teacher, student))
    assert _same(runs[0][0], runs[1][0])
    assert _same(runs[0][1], runs[1][1])


def test_another_data_seed_gives_other_weights(image_folder, tmp_path):
    teachers = [
        train_teacher(TeacherConfig(train=ONE_EPOCH), _data(image_folder, seed), tmp_path / f"t{seed}.ckpt")[0]
        for seed in (0, 1)
    ]
    assert not _same(*teachers)
