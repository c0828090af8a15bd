"""Config mistakes that used to surface hours into a run (after the teacher trained) stop it
when the config is read: loss options, model names, export formats and wrong types."""

from __future__ import annotations

import pytest
import torch

from edgekd.config import load_config
from edgekd.errors import EdgekdError
from tests.bad_inputs import bad_input
from tests.helpers import assert_one_line_error, cli, edgekd


@pytest.mark.parametrize(
    "toml, fragments",
    [
        ("[distill]\nparams = { temperature = 0.0 }", ["distill: loss 'kd' option 'temperature'", "greater than 0"]),
        ("[distill]\nparams = { kd_weight = -1.0 }", ["loss 'kd' option 'kd_weight'", "greater than or equal to 0"]),
        (
            "[distill]\nparams = { alpha = 0.9 }",
            ["distill: loss 'kd' option 'alpha' is renamed", "alpha = 0.9: ce_weight = 0.1, kd_weight = 0.9"],
        ),
        ("[distill]\nloss = 'dkd'\nparams = { beta = 4.0 }", ["option 'beta' is renamed: write nckd_weight"]),
        ("[distill]\nparams = { temprature = 2.0 }", ["unknown option 'temprature'", "did you mean 'temperature'"]),
        ("[quantize]\nloss = 'dk'", ["quantize: unknown distillation loss 'dk'", "did you mean 'dkd'"]),
        ("[student]\nname = 'mobilenet_v9'", ["student.name: unknown model 'mobilenet_v9'"]),
        ("[teacher]\narch = 'resnet19'", ["teacher.arch: unknown model 'resnet19'", "did you mean"]),
        ("[export]\nformats = ['onnx', 'coreml']", ["export.formats: unknown ['coreml']"]),
        ("[distill.train]\nepochs = 'ten'", ["'distill.train.epochs'", "valid integer", "'ten'"]),
        ("[data]\nbatch_size = 0", ["'data.batch_size'", "greater than or equal to 1"]),
        ("[data]\nskip_bad_image = true", ["unknown key 'data.skip_bad_image'", "did you mean 'skip_bad_images'"]),
        ("[distill]\ngenerations = 0", ["'distill.generations' input should be greater than or equal to 1"]),
        ("[distill]\nloss = 'dml'\nparams = { peers = ['resnet19'] }", ["option 'peers': unknown model 'resnet19'"]),
        ("[distill]\nloss = 'dml'\nparams = { peer = ['resnet18'] }", ["unknown option 'peer' for loss 'dml'"]),
        (
            "[student]\nname = 'mobilenet_v3_small'\n[distill]\nloss = 'self_distill'\n"
            "params = { layers = ['features.13'] }",
            ["distill: the student has no layer 'features.13'", "valid names include"],
        ),
        ("[distill]\nloss = 'self_distill'\nparams = { head = 'mlp' }", ["option 'head'", "'linear' or 'bottleneck'"]),
        ("[compute]\ndevice = 'gpu'", ["'compute.device'", "'auto', 'cuda' or 'cpu'", "'gpu'"]),
    ],
)
@bad_input(
    "settings",
    "a bad loss option, loss name, model name, format or type in --config",
    "refused when the config is read, before any training",
)
def test_config_mistake_names_the_key(tmp_path, toml, fragments):
    config = tmp_path / "bad.toml"
    config.write_text(toml + "\n")
    with pytest.raises(EdgekdError) as raised:
        load_config(config)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(str(config))
    for fragment in fragments:
        assert fragment in message, message


def test_bad_loss_option_stops_the_build_before_any_work(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[distill]\nparams = { temperature = -1.0 }\n")
    out = tmp_path / "out"
    done = edgekd("build", "--target", "x86", "--config", str(config), "--out", str(out))
    assert_one_line_error(done, str(config), "temperature", "greater than 0")
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a CUDA device")
@bad_input("settings", "`compute.device = 'cuda'` on a machine without a GPU", "refused before any work")
def test_cuda_device_without_a_gpu_stops_the_build_before_any_work(tmp_path):
    config = tmp_path / "cuda.toml"
    config.write_text('[compute]\ndevice = "cuda"\n')
    out = tmp_path / "out"
    done = cli("build", "--target", "x86", "--config", str(config), "--out", str(out))
    assert_one_line_error(done, 'device = "cuda" but no CUDA device is visible', '"auto" or "cpu"')
    assert not out.exists()
