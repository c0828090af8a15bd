"""Fixed augmentation views (`data.augment_views`): each training image has a few fixed crops
and flips, cycled one per epoch, so the teacher's logits for them are computed once and cached."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgekd.data.loading import Data, DataConfig, load_data
from edgekd.errors import EdgekdError
from edgekd.stages.distill import DistillConfig, distill, teacher_logits_cache
from edgekd.training.loop import TrainConfig, predict
from tests.helpers import STUDENT, CountingTeacher, write_image_folder

VIEWS = 3


def views_data(root, **overrides) -> Data:
    cfg = dict(path=root, input_size=8, augment=["crop", "flip"], augment_views=VIEWS, batch_size=4, workers=0)
    return load_data(DataConfig(**(cfg | {"val_fraction": 0.25} | overrides)))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_image_folder(tmp_path_factory.mktemp("views") / "images", classes=3, per_class=4, size=8)


def images_of(loader) -> torch.Tensor:
    return torch.cat([batch[0] for batch in loader])


def test_views_are_fixed_distinct_and_real_augmentations(root):
    data = views_data(root)
    n = len(data.train)
    items = data.loader("train")
    assert len(items.dataset) == VIEWS * n
    first, again = images_of(items), images_of(data.loader("train"))
    assert torch.equal(first, again)  # the same pixels on every load: cacheable
    plain = images_of(views_data(root, augment_views=None, augment=[]).loader("train"))
    views = first.reshape(VIEWS, n, *first.shape[1:])
    assert not torch.equal(views[0], views[1]) and not torch.equal(views[0], plain)
    # a crop and flip only move pixels: every view holds values the plain image has (reflect pad)
    for v in range(VIEWS):
        for i in range(n):
            assert set(views[v, i].flatten().tolist()) <= set(plain[i].flatten().tolist())


def test_each_epoch_shows_every_image_once_under_its_view(root):
    data = views_data(root, batch_size=1)
    n, loader = len(data.train), data.loader("train", shuffle=True, with_index=True)
    for epoch in range(2 * VIEWS):
        loader.sampler.set_epoch(epoch)
        index = torch.cat([batch[2] for batch in loader]).numpy()
        assert sorted(index) == list(range((epoch % VIEWS) * n, (epoch % VIEWS + 1) * n))
    loader.sampler.set_epoch(0)
    order0 = torch.cat([b[2] for b in loader]).tolist()
    loader.sampler.set_epoch(VIEWS)  # the same view again, in another order
    assert sorted(torch.cat([b[2] for b in loader]).tolist()) == sorted(order0)


def test_kd_with_views_runs_the_teacher_once_per_view_then_reads_the_cache(tmp_path, root):
    data = views_data(root)
    teacher, cache = CountingTeacher(), tmp_path / "logits.npy"
    cfg = DistillConfig(loss="kd", train=TrainConfig(epochs=2 * VIEWS, lr=0.01, optimizer="adamw"))
    distill(cfg, STUDENT, data, teacher, tmp_path, cache)
    # one pass over views x images filled the cache; the 6 epochs then never ran the teacher
    assert teacher.calls == len(data.loader("train"))
    logits = np.load(cache)
    assert logits.shape == (VIEWS * len(data.train), 3)
    assert np.allclose(logits, predict(teacher, data.loader("train"))[0].numpy(), atol=1e-5)
    # the cache belongs to these views: other settings give other rows and are refused
    rows, other = VIEWS * len(data.train), len(data.train)
    with pytest.raises(EdgekdError, match=f"holds {rows} rows, not {other}; delete it"):
        teacher_logits_cache(teacher, views_data(root, augment_views=1), cache)


def test_fresh_augmentation_runs_the_teacher_online(tmp_path, root):
    data = views_data(root, augment_views=None)
    teacher, cache = CountingTeacher(), tmp_path / "logits.npy"
    distill(DistillConfig(loss="kd", train=TrainConfig(epochs=2, lr=0.01)), STUDENT, data, teacher, tmp_path, cache)
    assert not cache.exists() and teacher.calls == 2 * len(data.loader("train", shuffle=True))
