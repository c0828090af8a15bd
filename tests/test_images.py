"""Image files: the 8-bit RGB rule, and a bad file or an empty class folder stopping a build
with one line that names it (exit 2, nothing written)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from edgekd.data.images import load_rgb
from edgekd.data.loading import DataConfig, load_data
from edgekd.errors import EdgekdError
from tests.bad_inputs import bad_input
from tests.helpers import assert_nothing_written, assert_one_line_error, cli, edgekd, write_image_folder


def pixels(path) -> np.ndarray:
    image = load_rgb(str(path))
    assert image.mode == "RGB"
    return np.asarray(image)


@bad_input("layout", "16-bit images", "scaled to 8 bits, not clipped")
def test_16_bit_scales_to_8_bit_instead_of_clipping(tmp_path):
    values = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert pixels(tmp_path / "deep.png")[0].tolist() == [[0, 0, 0], [1, 1, 1], [128, 128, 128], [255, 255, 255]]


@bad_input("layout", "images with an alpha channel", "composited onto white")
def test_alpha_is_composited_onto_white(tmp_path):
    rgba = np.array([[[200, 10, 10, 255], [200, 10, 10, 0], [0, 0, 0, 128]]], dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.png")
    assert pixels(tmp_path / "alpha.png")[0].tolist() == [[200, 10, 10], [255, 255, 255], [127, 127, 127]]


def test_grayscale_and_palette_become_rgb(tmp_path):
    Image.fromarray(np.full((2, 2), 77, dtype=np.uint8), mode="L").save(tmp_path / "gray.png")
    Image.new("RGB", (2, 2), (30, 60, 90)).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "palette.gif")
    assert (pixels(tmp_path / "gray.png") == 77).all()
    assert pixels(tmp_path / "palette.gif")[0, 0].tolist() == [30, 60, 90]


def test_mixed_modes_load_as_rgb_tensors(tmp_path):
    root = write_image_folder(tmp_path / "data", classes=2, per_class=4)
    Image.fromarray(np.full((16, 16), 40000, dtype=np.uint16)).save(root / "class_0" / "deep.png")
    Image.new("RGBA", (16, 16), (1, 2, 3, 100)).save(root / "class_1" / "alpha.png")
    (root / "class_1" / ".DS_Store").write_bytes(b"\0\1")  # hidden files are ignored
    data = load_data(DataConfig(path=root, input_size=8, val_fraction=0.5, workers=0))
    assert len(data.train) + len(data.val) == 10
    assert {tuple(data.train[i][0].shape) for i in range(len(data.train))} == {(3, 8, 8)}


def truncated_jpeg(path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def corrupt_png(path):
    Image.new("RGB", (16, 16), (9, 9, 9)).save(path)
    raw = bytearray(path.read_bytes())
    raw[-20:-16] = b"oops"  # inside the image data: its CRC no longer matches
    path.write_bytes(bytes(raw))


BAD_FILES = {
    "truncated.jpg": (truncated_jpeg, "truncated or corrupt image"),
    "corrupt.png": (corrupt_png, "truncated or corrupt image"),
    "notes.txt": (lambda p: p.write_text("labels are in the folder names\n"), "not an image"),
    "float.tif": (lambda p: Image.new("F", (4, 4), 0.5).save(p), "floating-point pixels"),
}


@pytest.mark.parametrize("name", BAD_FILES)
@bad_input("layout", "a truncated or corrupt image", "refused, naming the file and `data.skip_bad_images = true`")
@bad_input("layout", "a file that is not an image (`notes.txt`) in a class folder", "refused, naming the file")
@bad_input("layout", "an image with floating-point pixels (mode F TIFF)", 'refused: "floating-point pixels"')
def test_bad_file_stops_the_build_naming_it(tmp_path, name):
    root = write_image_folder(tmp_path / "data")
    bad = root / "class_1" / name
    write, reason = BAD_FILES[name]
    write(bad)
    out = tmp_path / "out"
    run = edgekd if name == "truncated.jpg" else cli  # one real process; the rest in this one
    done = run("build", "--target", "x86", "--data", str(root), "--out", str(out))
    assert_one_line_error(done, str(bad), reason, "skip_bad_images = true")
    assert_nothing_written(out)


@bad_input("layout", "bad images with `data.skip_bad_images = true`", "left out, counted")
def test_skip_bad_images_leaves_them_out(tmp_path):
    root = write_image_folder(tmp_path / "data", classes=2, per_class=5)
    truncated_jpeg(root / "class_0" / "truncated.jpg")
    (root / "class_1" / "notes.txt").write_text("x")
    with pytest.raises(EdgekdError, match="1 of 2 bad files"):
        load_data(DataConfig(path=root, workers=0))
    data = load_data(DataConfig(path=root, workers=0, skip_bad_images=True))
    assert len(data.train) + len(data.val) == 10


@bad_input("layout", "an empty class folder", 'refused: "no images found in class folder ...", remove it')
def test_empty_class_folder_is_named(tmp_path):
    root = write_image_folder(tmp_path / "data" / "train")
    write_image_folder(tmp_path / "data" / "val")
    (root / "class_9").mkdir()
    out = tmp_path / "out"
    done = cli("build", "--target", "x86", "--data", str(tmp_path / "data"), "--out", str(out))
    assert_one_line_error(done, f"no images found in class folder {root / 'class_9'}", "remove the folder")
    assert_nothing_written(out)


@bad_input(
    "layout",
    "a class folder holding only bad files, with skip_bad_images",
    'refused: "no usable images in class folder"',
)
def test_class_folder_with_only_bad_files_is_named(tmp_path):
    root = write_image_folder(tmp_path / "data")
    (root / "class_3").mkdir()
    truncated_jpeg(root / "class_3" / "only.jpg")
    with pytest.raises(EdgekdError, match="no usable images in class folder .*class_3"):
        load_data(DataConfig(path=root, workers=0, skip_bad_images=True))


def test_fingerprint_changes_with_the_files_so_stages_rerun(tmp_path):
    root = write_image_folder(tmp_path / "data", classes=2, per_class=4)
    config = DataConfig(path=root, workers=0)
    first = load_data(config).fingerprint
    assert load_data(config).fingerprint == first
    Image.new("RGB", (16, 16)).save(root / "class_0" / "new.png")
    assert load_data(config).fingerprint != first


def decompression_bomb(path) -> None:
    """10000x10000 pixels, above PIL's guard (89,478,485): a 1-bit PNG of a few kilobytes."""
    Image.new("1", (10_000, 10_000)).save(path)


@bad_input(
    "layout",
    "an image above PIL's decompression-bomb limit (10000x10000)",
    'refused before decoding: "above data.max_image_pixels", raise it to train on it',
)
def test_a_decompression_bomb_is_refused_naming_the_setting_that_allows_it(tmp_path):
    root = write_image_folder(tmp_path / "data", classes=2, per_class=4)
    decompression_bomb(root / "class_0" / "huge.png")
    out = tmp_path / "out"
    done = cli("build", "--target", "x86", "--data", str(root), "--out", str(out))
    assert_one_line_error(
        done, f"{root / 'class_0' / 'huge.png'}: 10000x10000 is 100,000,000 pixels, above data.max_image_pixels "
        "(89,478,485)", "raise data.max_image_pixels to train on it", "skip_bad_images = true",
    )  # fmt: skip
    assert "DecompressionBomb" not in done.stderr
    assert_nothing_written(out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's raw warning would fail the test
        data = load_data(DataConfig(path=root, workers=0, val_fraction=0.5, max_image_pixels=10**8))
    assert len(data.train) + len(data.val) == 9
