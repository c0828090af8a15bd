"""Image files: one streaming check of a data folder before training, and the rule that turns
every image into 8-bit RGB (README, "Image files").

The check decodes each file once, in threads (PIL releases the GIL while decoding), so a
truncated JPEG stops the run before the first epoch instead of in epoch 90. Its result is
cached by the folder's file names, sizes and modification times, so a rerun skips it.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from edgekd.errors import EdgekdError
from edgekd.progress import log, progress

SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
WITH_ALPHA = {"RGBA", "RGBa", "LA", "La", "PA"}
SKIP_HINT = "or set skip_bad_images = true in [data] to leave bad files out"


class UnsupportedImage(ValueError):
    """A readable image that the RGB rule rejects."""


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB by the documented rule: 16-bit values scale by 255/65535 (PIL's own convert
    clips them to 255); transparency is composited onto white; the rest is PIL's convert."""
    image.load()
    if image.mode in SIXTEEN_BIT:
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "F":
        raise UnsupportedImage("floating-point pixels (mode F) have no standard 8-bit scale; save it as 8- or 16-bit")
    if image.mode in WITH_ALPHA or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def load_rgb(path: str) -> Image.Image:
    """The ImageFolder loader: any image file as 8-bit RGB."""
    with open(path, "rb") as fh:
        return to_rgb(Image.open(fh))


def image_problem(path: str) -> str | None:
    """Why `path` cannot be used as a training image, or None when it can."""
    try:
        with Image.open(path) as image:
            image.verify()  # structure and checksums (PNG CRCs) without decoding
        with Image.open(path) as image:
            image.draft("RGB", (1, 1))  # JPEG decodes at 1/8 scale: still reads every byte
            to_rgb(image)
    except Image.UnidentifiedImageError:
        return "not an image (unknown format or damaged header); delete it or move it out of the class folder"
    except Image.DecompressionBombError as e:
        return f"{e}; shrink the image"
    except UnsupportedImage as e:
        return str(e)
    except (OSError, SyntaxError, ValueError) as e:  # what PIL raises for truncated or damaged data
        return f"truncated or corrupt image ({e}); delete or re-create it"
    return None


def class_folders(root: str) -> list[str]:
    """Class names as torchvision's ImageFolder finds them (every subfolder, sorted)."""
    return sorted(entry.name for entry in os.scandir(root) if entry.is_dir())


def class_files(root: str, name: str) -> list[str]:
    """The files ImageFolder would read for a class, as the same path strings; hidden ones
    (`.DS_Store`, `._x.jpg`) are left out."""
    files = []
    for folder, _, names in sorted(os.walk(os.path.join(root, name), followlinks=True)):
        files += [os.path.join(folder, n) for n in sorted(names) if not n.startswith(".")]
    return files


def fingerprint(files: list[str]) -> str:
    """Identifies a folder's files by names, sizes and modification times (no reading)."""
    digest = hashlib.sha256()
    for f in files:
        st = os.stat(f)
        digest.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _find_bad(files: list[str], threads: int, key: str) -> dict[str, str]:
    from edgekd.data import cache_dir

    cache = cache_dir() / "image-checks" / f"{key}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    bad = {}
    with progress() as bar, ThreadPoolExecutor(threads) as pool:
        task = bar.add_task("checking images", total=len(files), status="")
        for path, problem in zip(files, pool.map(image_problem, files)):
            if problem:
                bad[path] = problem
            bar.update(task, advance=1)
    from edgekd.io import save_json

    try:
        save_json(bad, cache)
    except EdgekdError:
        pass  # an unwritable cache only costs the next run this check
    return bad


def usable_images(root: Path, skip_bad: bool, threads: int = 4) -> tuple[set[str], str]:
    """Checks every file in the class folders under `root`; returns the paths to train on and
    the folder's fingerprint (part of the stage keys: new or changed images rerun training).

    Raises EdgekdError naming the first bad file (unless `skip_bad`) or an empty class folder:
    ImageFolder would drop that class and shift every later class index against the teacher's.
    """
    directory = os.path.expanduser(str(root))
    classes = class_folders(directory)
    if not classes:
        raise EdgekdError(f"no images found in {root}: put one folder of images per class inside it")
    files = {name: class_files(directory, name) for name in classes}
    every = [f for names in files.values() for f in names]
    key = fingerprint(every)
    bad = _find_bad(every, threads, key)
    if bad and not skip_bad:
        first, problem = next(iter(bad.items()))
        more = f" (1 of {len(bad)} bad files)" if len(bad) > 1 else ""
        raise EdgekdError(f"{first}: {problem}{more}, {SKIP_HINT}")
    if bad:
        log(f"data: skipped {len(bad)} bad image file(s) under {root} (data.skip_bad_images)")
    for name, names in files.items():
        if not any(f not in bad for f in names):
            what = "no usable images" if names else "no images found"
            raise EdgekdError(
                f"{what} in class folder {os.path.join(directory, name)}: add images of class '{name}' "
                "or remove the folder (every class folder is a class)"
            )
    return {f for f in every if f not in bad}, key
