"""Image data: ImageFolder directories streamed from disk, plus the embedded default.

A data directory holds `train/` and `val/` (or `test/`) ImageFolders, or is one ImageFolder
that is split with a seed. Every file is checked once before training and loaded as 8-bit RGB
by the rule in `edgekd.data.images`; apps feed RGB.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torchvision import transforms

from edgekd.data.files import ClassFiles, shown, split_mismatch
from edgekd.data.images import PIL_MAX_IMAGE_PIXELS, load_rgb, usable_images
from edgekd.data.rgb import IMAGE_RULES
from edgekd.errors import EdgekdError
from edgekd.io import cache_dir
from edgekd.training import distributed

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VAL_DIRS = ("val", "test")


class DataConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: Path | None = Field(None, description="ImageFolder root; empty = the embedded digits dataset")
    input_size: int = Field(32, ge=8, le=1024)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    augment: list[str] = Field(["crop", "flip"], description="any of: crop, flip")
    augment_views: int | None = Field(
        None,
        ge=1,
        description="fixed augmentations per training image, cycled one per epoch, so the teacher's "
        "logits for them are computed once and cached; empty: a fresh augmentation every epoch, "
        "the teacher run online",
    )
    val_fraction: float = Field(0.2, gt=0, lt=1, description="used when the root has no val/ or test/")
    seed: int = 0
    batch_size: int = Field(128, ge=1)
    workers: int = Field(2, ge=0)
    max_train_samples: int | None = Field(None, ge=1, description="a seeded subset, for small budgets")
    max_val_samples: int | None = Field(None, ge=1)
    skip_bad_images: bool = Field(False, description="leave unreadable files out (logged) instead of stopping")
    max_image_pixels: int = Field(
        PIL_MAX_IMAGE_PIXELS,
        ge=1,
        description="images with more pixels (width x height) are refused, or left out with skip_bad_images, "
        "before they are decoded: PIL's guard against decompression bombs; raise it to train on larger images",
    )


@dataclass
class Data:
    train: Dataset
    val: Dataset
    classes: list[str]
    config: DataConfig
    fingerprint: str = ""  # of the image files (names, sizes, times), for stage keys

    @property
    def views(self) -> int | None:
        """How many fixed versions of each training image there are (None: a new one every epoch)."""
        if not self.config.augment:
            return 1
        return self.config.augment_views

    def loader(
        self, split: str, shuffle: bool = False, batch_size: int | None = None, with_index: bool = False
    ) -> DataLoader:
        """Batches of (images, labels), or (images, labels, dataset indices) with `with_index`.

        With `augment_views`, the training set has views x images items (item v * n + i is image
        i under fixed augmentation v); a shuffled loader then draws one view per epoch."""
        dataset = self.train if split == "train" else self.val
        views = self.views if split == "train" and self.config.augment else None  # None, or V fixed views
        if views:
            dataset = AugmentedViews(dataset, views, self.config)
        if with_index:
            dataset = WithIndex(dataset)
        workers = self.config.workers
        # a shuffled loader trains: under torchrun, each process gets its own shard
        if shuffle and views:
            shard = ViewSampler(len(self.train), views, self.config.seed)
        else:
            shard = distributed.sampler(dataset, self.config.seed) if shuffle else None
        per_process = len(shard) if shard is not None else len(dataset)
        return DataLoader(
            dataset,
            batch_size=batch_size or self.config.batch_size,
            shuffle=shuffle and shard is None,
            sampler=shard,
            num_workers=workers,
            persistent_workers=workers > 0,
            drop_last=shuffle and per_process > (batch_size or self.config.batch_size),
        )

    def preprocessing(self) -> dict:
        """What an app must do to an image before the model sees it (embedded in artifacts)."""
        c = self.config
        return {
            "classes": self.classes,
            "input_size": [c.input_size, c.input_size],
            "layout": "NCHW",
            "channel_order": "RGB",
            "resize": "bilinear",
            "scale": 1 / 255,
            "mean": list(c.mean),
            "std": list(c.std),
            "image_rules": IMAGE_RULES,  # how a file became 8-bit RGB (edgekd.data.rgb.to_rgb)
        }


class WithIndex(Dataset):
    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        image, label = self.dataset[index]
        return image, label, index


class AugmentedViews(Dataset):
    """Each image under `views` fixed augmentations: item v * n + i is image i cropped and flipped
    as seeds (data.seed, v, i) draw, the same on every call, so a teacher's logits for it can be
    cached. The images come un-augmented (resized, normalized); cropping after normalizing is the
    same as before, since reflect padding, crops and flips move pixels without changing them."""

    def __init__(self, dataset: Dataset, views: int, cfg: DataConfig):
        self.dataset, self.views, self.cfg = dataset, views, cfg

    def __len__(self) -> int:
        return self.views * len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        view, i = divmod(index, len(self.dataset))  # type: ignore[arg-type]
        image, label = self.dataset[i]
        rng = np.random.default_rng([self.cfg.seed, view, i])
        if "crop" in self.cfg.augment:
            pad, (h, w) = self.cfg.input_size // 8, image.shape[1:]
            dy, dx = rng.integers(0, 2 * pad + 1, size=2)
            image = torch.nn.functional.pad(image[None], [pad] * 4, mode="reflect")[0, :, dy : dy + h, dx : dx + w]
        if "flip" in self.cfg.augment and rng.random() < 0.5:
            image = image.flip(-1)
        return image, label


class ViewSampler(Sampler[int]):
    """A training order over `AugmentedViews`: in epoch e, every image once under view e mod views,
    shuffled anew; under torchrun, this process's equal share. `fit` calls `set_epoch`."""

    def __init__(self, images: int, views: int, seed: int):
        self.images, self.views, self.seed, self.epoch = images, views, seed, 0
        self.rank, self.world = distributed.rank(), distributed.world_size()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.images // self.world

    def __iter__(self) -> Iterator[int]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.images)
        share = order[self.rank :: self.world][: len(self)]
        return iter((share + (self.epoch % self.views) * self.images).tolist())


def eval_transform(cfg: DataConfig) -> transforms.Compose:
    return transforms.Compose(
        [
            transforms.Resize((cfg.input_size, cfg.input_size)),
            transforms.ToTensor(),
            transforms.Normalize(cfg.mean, cfg.std),
        ]
    )


def train_transform(cfg: DataConfig) -> transforms.Compose:
    unknown = set(cfg.augment) - {"crop", "flip"}
    if unknown:
        raise EdgekdError(f"unknown augmentation {sorted(unknown)} in data.augment; use crop and/or flip")
    if cfg.augment_views:  # fixed augmentations, applied by AugmentedViews
        return eval_transform(cfg)
    steps: list = [transforms.Resize((cfg.input_size, cfg.input_size))]
    if "crop" in cfg.augment:
        steps.append(transforms.RandomCrop(cfg.input_size, padding=cfg.input_size // 8, padding_mode="reflect"))
    if "flip" in cfg.augment:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.ToTensor(), transforms.Normalize(cfg.mean, cfg.std)]
    return transforms.Compose(steps)


class ImageFiles(Dataset):
    """(image, class index) for each file of a scanned split, loaded by the RGB rule."""

    def __init__(self, found: ClassFiles, transform):
        self.classes, self.transform = found.classes, transform
        self.samples = [(f, index) for index, name in enumerate(found.classes) for f in found.files[name]]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        return self.transform(load_rgb(path)), label


def _subset(dataset: Dataset, limit: int | None, seed: int) -> Dataset:
    if limit is None or limit >= len(dataset):
        return dataset
    order = np.random.default_rng(seed).permutation(len(dataset))[:limit]
    return Subset(dataset, sorted(order.tolist()))


def _root(cfg: DataConfig) -> Path:
    root = Path(cfg.path).expanduser() if cfg.path else embedded_digits()
    where = shown(str(root))
    if root.is_file():
        raise EdgekdError(f"--data {where} is a file, not a folder: pass the folder that holds the class folders")
    if not root.is_dir():
        raise EdgekdError(f"data directory {where} does not exist; pass --data DIR with an ImageFolder inside")
    return root


def _splits(root: Path) -> tuple[Path | None, Path | None]:
    """(train/, val/ or test/) when the root holds split folders, else (None, None): one tree to split."""
    train = root / "train" if (root / "train").is_dir() else None
    val = next((root / d for d in VAL_DIRS if (root / d).is_dir()), None)
    if val is not None and train is None:
        have = " and ".join(f"{d}/" for d in VAL_DIRS if (root / d).is_dir())
        raise EdgekdError(
            f"{shown(str(root))} has {have} but no train/: add train/ with one folder per class, "
            "or put the class folders directly in it to be split by data.val_fraction"
        )
    return train, val


def load_data(cfg: DataConfig) -> Data:
    root = _root(cfg)
    train_dir, val_dir = _splits(root)
    threads = max(2, cfg.workers)
    if val_dir is not None:
        found, train_key = usable_images(train_dir, cfg.skip_bad_images, threads, cfg.max_image_pixels)
        val_found, val_key = usable_images(val_dir, cfg.skip_bad_images, threads, cfg.max_image_pixels)
        key = train_key + val_key
        if found.classes != val_found.classes:
            raise EdgekdError(
                f"{shown(str(train_dir))} and {shown(str(val_dir))} have different class folders: "
                f"{split_mismatch(found.classes, val_found.classes, val_dir.name)}; "
                "give both splits the same class folders"
            )
        train, val = ImageFiles(found, train_transform(cfg)), ImageFiles(val_found, eval_transform(cfg))
    else:  # one tree (train/ alone, or class folders at the root), split with the seed
        split = train_dir or root
        found, key = usable_images(split, cfg.skip_bad_images, threads, cfg.max_image_pixels)
        train_all, val_all = ImageFiles(found, train_transform(cfg)), ImageFiles(found, eval_transform(cfg))
        order = np.random.default_rng(cfg.seed).permutation(len(train_all)).tolist()
        n_val = max(1, int(round(len(order) * cfg.val_fraction)))
        if len(order) - n_val < 1:
            raise EdgekdError(f"{shown(str(split))} has too few images ({len(order)}) to split into train and val")
        train, val = Subset(train_all, order[n_val:]), Subset(val_all, order[:n_val])
    classes = list(found.classes)
    if len(classes) < 2:
        raise EdgekdError(f"{shown(str(root))} has {len(classes)} class folder(s); a classifier needs at least 2")
    return Data(
        train=_subset(train, cfg.max_train_samples, cfg.seed),
        val=_subset(val, cfg.max_val_samples, cfg.seed),
        classes=classes,
        config=cfg,
        fingerprint=key,
    )


def embedded_digits() -> Path:
    """scikit-learn's handwritten digits (1,797 real 8x8 scans) as an ImageFolder, written once."""
    root = cache_dir() / "datasets" / "digits-v1"
    if root.is_dir():
        return root
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images * (255 / 16)).round().astype(np.uint8)
    order = np.random.default_rng(0).permutation(len(images))
    n_val = len(images) // 5
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".digits-", dir=root.parent))
    for rank, index in enumerate(order):
        split = "val" if rank < n_val else "train"
        folder = tmp / split / str(digits.target[index])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[index], mode="L").save(folder / f"{index:04d}.png")
    try:
        tmp.rename(root)
    except OSError:  # another process wrote it first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def example_batch(data: Data, n: int = 1) -> torch.Tensor:
    return torch.stack([data.val[i][0] for i in range(min(n, len(data.val)))])
