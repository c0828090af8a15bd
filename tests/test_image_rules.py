"""Apps see what training saw: a phone photo with an EXIF rotation, a transparent PNG and a
16-bit PNG become the same input tensor through training's loader, `edgekd predict` and the
report's app snippet (which carries `edgekd.data.rgb.to_rgb`), and the artifact says which rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from edgekd.data.images import load_rgb
from edgekd.data.loading import DataConfig, eval_transform
from edgekd.data.rgb import IMAGE_RULES
from edgekd.formats import read_preprocessing
from edgekd.formats.onnx import SNIPPET as ONNX_SNIPPET
from edgekd.predict import preprocess
from edgekd.stages.export import ExportConfig, export
from tests.bad_inputs import bad_input
from tests.helpers import PREPROCESSING, SIZE

ROTATE_90 = 6  # EXIF orientation: the camera was turned; viewers rotate the stored pixels 90 degrees


def images(folder) -> dict[str, str]:
    rng = np.random.default_rng(0)
    paths = {name: str(folder / name) for name in ("rotated.jpg", "transparent.png", "sixteen.png")}
    # wide stored pixels, top half dark: upright, the photo is tall with one dark side
    pixels = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    pixels[:12] //= 4
    exif = Image.Exif()
    exif[0x0112] = ROTATE_90
    Image.fromarray(pixels).save(paths["rotated.jpg"], exif=exif, quality=95)
    rgba = rng.integers(0, 256, (30, 20, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(rng.random((30, 20)) < 0.5, 0, 255)
    Image.fromarray(rgba, mode="RGBA").save(paths["transparent.png"])
    Image.fromarray(rng.integers(0, 65536, (20, 30), dtype=np.uint16)).save(paths["sixteen.png"])
    return paths


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    root = tmp_path_factory.mktemp("rules")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    pre = PREPROCESSING | {"image_rules": IMAGE_RULES}
    (onnx_file,) = export(ExportConfig(formats=["onnx"]), {"fp32": model}, pre, root / "artifacts")
    return root, onnx_file.path


@bad_input(
    "layout",
    "a photo with an EXIF orientation tag (phones store them sideways)",
    "rotated upright, in training, predict and the snippets alike",
)
def test_training_predict_and_the_snippet_see_the_same_tensor(artifact):
    root, path = artifact
    cfg = DataConfig(input_size=SIZE, mean=PREPROCESSING["mean"], std=PREPROCESSING["std"])
    pre = read_preprocessing(path)
    assert pre.image_rules == IMAGE_RULES  # the artifact says how files became RGB
    snippet: dict = {"__name__": "snippet"}
    exec(ONNX_SNIPPET.write(pre, path), snippet)  # the report's code, as an app runs it
    for name, file in images(root).items():
        training = eval_transform(cfg)(load_rgb(file)).numpy()[None]
        np.testing.assert_allclose(preprocess(file, pre), training, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(snippet["preprocess"](file), training, atol=1e-6, err_msg=name)


def test_the_exif_rotation_is_applied(tmp_path):
    upright = np.asarray(load_rgb(images(tmp_path)["rotated.jpg"]), dtype=np.float32)
    assert upright.shape == (40, 24, 3)  # stored 40 wide, 24 high; shown turned a quarter
    assert upright[:, 12:].mean() < upright[:, :12].mean() / 2  # the stored top is now the right side
