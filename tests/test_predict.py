"""`edgekd predict`: an artifact alone (its embedded metadata) classifies real image files
exactly as the PyTorch model does on the training pipeline's own preprocessing."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from edgekd.stages.export import ExportConfig, export
from tests.helpers import PREPROCESSING, SIZE, assert_one_line_error, cli, edgekd, trained_like


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    torch.manual_seed(3)
    model = trained_like("mobilenet_v3_small")
    artifacts = export(ExportConfig(), {"fp32": model}, PREPROCESSING, root / "artifacts")
    images = []
    rng = np.random.default_rng(0)
    # larger than the input and not square, so resizing is exercised; a JPEG and a grayscale PNG
    for name, mode in (("photo.jpg", "RGB"), ("scan.png", "L")):
        pixels = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(root / name)
        images.append(root / name)
    return model, artifacts, images


def torch_probabilities(model, image) -> np.ndarray:
    """The training pipeline's eval transform (edgekd.data.loading), independent of edgekd.predict."""
    transform = transforms.Compose(
        [
            transforms.Resize((SIZE, SIZE)),
            transforms.ToTensor(),
            transforms.Normalize(PREPROCESSING["mean"], PREPROCESSING["std"]),
        ]
    )
    with Image.open(image) as im:
        x = transform(im.convert("RGB"))[None]
    with torch.no_grad():
        return torch.softmax(model(x), 1)[0].numpy()


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_predict_matches_pytorch_on_image_files(exported, fmt):
    model, artifacts, images = exported
    artifact = next(a for a in artifacts if a.format == fmt)
    done = edgekd("predict", artifact.path, *map(str, images), "--top-k", "3", "--json")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert [r["image"] for r in results] == [str(i) for i in images]
    for result, image in zip(results, images):
        expected = torch_probabilities(model, image)
        order = np.argsort(-expected)
        assert [t["class"] for t in result["top"]] == [PREPROCESSING["classes"][i] for i in order]
        np.testing.assert_allclose([t["probability"] for t in result["top"]], expected[order], atol=2e-3)


def test_predict_prints_class_names_and_probabilities(exported):
    _, artifacts, images = exported
    done = cli("predict", artifacts[0].path, str(images[0]), "--top-k", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == str(images[0]) and len(lines) == 3
    for line in lines[1:]:
        probability, name = line.split()
        assert name in PREPROCESSING["classes"] and probability.endswith("%")


def test_predict_bad_inputs_are_one_line_errors(exported, tmp_path):
    _, artifacts, images = exported
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not an image")
    assert_one_line_error(cli("predict", artifacts[0].path, str(not_image)), "cannot read image", "notes.jpg")
    bare = tmp_path / "bare.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 2, 1), torch.zeros(1, 3, 4, 4), str(bare), dynamo=False)
    assert_one_line_error(cli("predict", str(bare), str(images[0])), "no preprocessing metadata")
    assert_one_line_error(cli("predict", str(images[0]), str(images[0])), "not a file edgekd exports", "ONNX: .onnx")


def test_predict_runs_without_torch_installed(exported):
    """An app ships the artifact and edgekd.predict; torch must not be needed to classify."""
    _, artifacts, images = exported
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from edgekd.predict import PredictConfig, predict\n"
        f"print(predict(PredictConfig(top_k=1), {artifacts[0].path!r}, [{str(images[0])!r}])[0]['top'][0]['class'])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in PREPROCESSING["classes"]
