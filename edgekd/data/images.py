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
from functools import partial
from pathlib import Path

from PIL import Image

from edgekd.data.files import SKIP_HINT, ClassFiles, scan_split, shown
from edgekd.data.rgb import to_rgb
from edgekd.errors import EdgekdError
from edgekd.io import cache_dir, save_json
from edgekd.progress import log, progress

# PIL's own guard against decompression bombs (a warning above this many pixels, an error above
# twice as many), the default of data.max_image_pixels
PIL_MAX_IMAGE_PIXELS = 89_478_485
# edgekd applies data.max_image_pixels to every file's header before decoding it (image_problem):
# PIL's global guard would only print its raw warning over images that limit lets through
Image.MAX_IMAGE_PIXELS = None


def load_rgb(path: str) -> Image.Image:
    """The ImageFolder loader: any image file as 8-bit RGB."""
    with open(path, "rb") as fh:
        return to_rgb(Image.open(fh))


def image_problem(path: str, max_pixels: int = PIL_MAX_IMAGE_PIXELS) -> str | None:
    """Why `path` cannot be used as a training image, or None when it can."""
    try:
        with Image.open(path) as image:
            width, height = image.size  # from the header: a decompression bomb is refused undecoded
            if width * height > max_pixels:
                return (
                    f"{width}x{height} is {width * height:,} pixels, above data.max_image_pixels ({max_pixels:,}), "
                    "the guard against decompression bombs; shrink it, or raise data.max_image_pixels to train on it"
                )
            image.verify()  # structure and checksums (PNG CRCs) without decoding
        with Image.open(path) as image:
            if image.mode == "F":
                return "floating-point pixels (mode F) have no standard 8-bit scale; save it as 8- or 16-bit"
            image.draft("RGB", (1, 1))  # JPEG decodes at 1/8 scale: still reads every byte
            to_rgb(image)
    except PermissionError:
        return "is not readable (permission denied); fix its permissions (chmod a+r) or delete it"
    except Image.UnidentifiedImageError:
        return "not an image (unknown format or damaged header); delete it or move it out of the class folder"
    except (OSError, SyntaxError, ValueError) as e:  # what PIL raises for truncated or damaged data
        return f"truncated or corrupt image ({e}); delete or re-create it"
    return None


def fingerprint(files: list[str]) -> str:
    """Identifies a folder's files by names, sizes and modification times (no reading)."""
    digest = hashlib.sha256()
    for f in files:
        st = os.stat(f)
        digest.update(os.fsencode(f) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _find_bad(files: list[str], threads: int, key: str, max_pixels: int) -> dict[str, str]:
    cache = cache_dir() / "image-checks" / f"{key}-{max_pixels}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    bad = {}
    with progress() as bar, ThreadPoolExecutor(threads) as pool:
        task = bar.add_task("checking images", total=len(files), status="")
        for path, problem in zip(files, pool.map(partial(image_problem, max_pixels=max_pixels), files)):
            if problem:
                bad[path] = problem
            bar.update(task, advance=1)
    try:
        save_json(bad, cache)
    except EdgekdError:
        pass  # an unwritable cache only costs the next run this check
    return bad


def usable_images(
    root: Path, skip_bad: bool, threads: int = 4, max_pixels: int = PIL_MAX_IMAGE_PIXELS
) -> tuple[ClassFiles, str]:
    """The class folders under `root` with the files to train on (every file decoded once, see
    `edgekd.data.files` for which files count), and the folder's fingerprint (part of the stage
    keys: new or changed images rerun training).

    Raises EdgekdError naming the first bad file (unless `skip_bad`) or an empty class folder:
    dropping the class would shift every later class index against the teacher's.
    """
    directory = os.path.expanduser(str(root))
    found = scan_split(directory, skip_bad)
    if not found.classes:
        raise EdgekdError(f"no images found in {shown(directory)}: put one folder of images per class inside it")
    every = [f for names in found.files.values() for f in names]
    key = fingerprint(every)
    bad = _find_bad(every, threads, key, max_pixels)
    if bad and not skip_bad:
        first, problem = next(iter(bad.items()))
        more = f" (1 of {len(bad)} bad files)" if len(bad) > 1 else ""
        raise EdgekdError(f"{shown(first)}: {problem}{more}, {SKIP_HINT}")
    if bad:
        found.skipped["bad image files (data.skip_bad_images)"] += len(bad)
    if found.skipped:
        log(f"data: left out {found.skipped_text()} under {shown(directory)} (README: Data folders)")
    for name, names in found.files.items():
        if not any(f not in bad for f in names):
            what = "no usable images" if names else "no images found"
            raise EdgekdError(
                f"{what} in class folder {shown(os.path.join(directory, name))}: add images of class '{name}' "
                "or remove the folder (every class folder is a class)"
            )
        found.files[name] = [f for f in names if f not in bad]
    return found, key
