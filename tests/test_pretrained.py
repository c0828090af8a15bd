"""Students that start from pretrained weights (a file, or the library's cache) and timm models,
all from local files: nothing is downloaded. A closed proxy stands in for a machine offline."""

from __future__ import annotations

import torch
from safetensors.torch import save_file

from edgekd.config import PipelineConfig, resolve_preprocessing
from edgekd.errors import EdgekdError
from edgekd.models import create_model, model_card
from tests.helpers import cli

OFFLINE = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "1"}


def _pretrained(name: str, classes: int = 1000) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return create_model(name, classes).state_dict()


def _same_except(model: torch.nn.Module, state: dict, fresh: str) -> None:
    own = model.state_dict()
    for key, value in state.items():
        if not key.startswith(fresh):
            assert torch.equal(own[key], value), key
    assert all(own[k].shape != state[k].shape for k in own if k.startswith(fresh) and k.endswith("weight"))


def test_a_weights_file_loads_all_but_the_classifier(tmp_path):
    state = _pretrained("mobilenet_v2")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ddp.pth")
    save_file(state, tmp_path / "w.safetensors")
    for path in (tmp_path / "ddp.pth", tmp_path / "w.safetensors"):
        model = create_model("mobilenet_v2", 10, small_input=True, weights=str(path))
        _same_except(model, state, "classifier.1.")
        assert model.features[0][0].stride == (1, 1)  # small_input keeps the stem's weights, at stride 1


def test_a_resnet_small_input_stem_starts_fresh(tmp_path):
    state = _pretrained("resnet18")
    torch.save(state, tmp_path / "r.pt")
    model = create_model("resnet18", 10, small_input=True, weights=str(tmp_path / "r.pt"))
    assert model.conv1.weight.shape[-1] == 3
    assert torch.equal(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_weights_of_another_architecture_are_named(tmp_path):
    torch.save(_pretrained("resnet18"), tmp_path / "r.pt")
    try:
        create_model("mobilenet_v2", 10, weights=str(tmp_path / "r.pt"))
    except EdgekdError as e:
        assert "do not fit mobilenet_v2" in str(e) and "missing keys" in str(e) and "\n" not in str(e)
    else:
        raise AssertionError("resnet18 weights loaded into mobilenet_v2")
    (tmp_path / "bad.pt").write_text("not weights")
    for path, words in ((tmp_path / "bad.pt", "cannot read student weights"), (tmp_path / "no.pt", "does not exist")):
        try:
            create_model("mobilenet_v2", 10, weights=str(path))
        except EdgekdError as e:
            assert words in str(e)
        else:
            raise AssertionError(path)


def test_default_weights_come_from_torchvisions_cache(tmp_path, monkeypatch):
    """torchvision's cache file, seeded as a machine with internet would have written it."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    state = _pretrained("mobilenet_v3_small")
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "mobilenet_v3_small-047dcff4.pth"
    try:
        create_model("mobilenet_v3_small", 4, weights="default")
    except EdgekdError as e:  # offline, nothing cached: one line naming the cache file and how to fill it
        assert str(cached) in str(e) and "get_state_dict()" in str(e) and "\n" not in str(e)
    else:
        raise AssertionError("default weights loaded from an empty cache, offline")
    assert not cached.exists()  # no half-written download left behind
    cached.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, cached)
    _same_except(create_model("mobilenet_v3_small", 4, weights="default"), state, "classifier.3.")


def test_pretrained_weights_bring_their_preprocessing_unless_the_config_sets_it():
    cfg = PipelineConfig(student={"name": "mobilenet_v2", "weights": "default"}, data={"input_size": 64})
    resolve_preprocessing(cfg)
    assert cfg.data.input_size == 64  # set by the config
    assert cfg.data.mean == (0.485, 0.456, 0.406) and cfg.data.std == (0.229, 0.224, 0.225)
    cfg = PipelineConfig(student={"name": "timm:fastvit_t8", "weights": "default"})
    resolve_preprocessing(cfg)
    assert cfg.data.input_size == 256  # the weights' own
    cfg = PipelineConfig(student={"name": "timm:fastvit_t8"})  # random weights bring nothing
    resolve_preprocessing(cfg)
    assert cfg.data.input_size == 32


def test_timm_models_carry_their_metadata():
    card = model_card("timm:mobilenetv3_small_100")
    assert (card.stem, card.classifier) == ("conv_stem", "classifier")
    assert card.feature_layers  # timm's feature_info, at 1/4, 1/8 and 1/16
    model = create_model("timm:mobilenetv3_small_100", 7, small_input=True)
    assert model.conv_stem.stride == (1, 1) and model(torch.zeros(2, 3, 16, 16)).shape == (2, 7)


def test_an_unknown_timm_name_is_one_line():
    result = cli("build", "--target", "x86", "--student", "timm:mobilenetv3_smal_100", "--dry-run")
    assert result.returncode == 2 and "did you mean 'mobilenetv3_small_100'" in result.stderr


def test_a_timm_student_from_a_local_checkpoint_builds_end_to_end(tmp_path):
    """The issue's check: `edgekd build --target x86 --student timm:... --student-weights FILE`
    on the embedded data, every artifact verified."""
    weights = tmp_path / "mobilenetv3.safetensors"
    save_file(_pretrained("timm:mobilenetv3_small_100"), weights)
    # one epoch each: int8 agreement is held to the tiny-config floor of the other build tests
    sets = ["distill.train.epochs=1", "teacher.train.epochs=1", "bench.runs=10", "bench.warmup=2",
            "data.max_train_samples=500", "verify.min_agreement_int8=0.9"]  # fmt: skip
    args = ["build", "--target", "x86", "--student", "timm:mobilenetv3_small_100", "--student-weights", str(weights)]
    result = cli(*args, "--out", str(tmp_path / "out"), *[a for s in sets for a in ("--set", s)])
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["student"]["arch"] == "timm:mobilenetv3_small_100"
    assert report["config"]["student"]["weights"] == str(weights)
    assert {a["name"] for a in report["artifacts"]} == {"onnx-fp32", "openvino-fp32", "onnx-int8", "openvino-int8"}
    assert all(a["verification"]["passed"] for a in report["artifacts"])


def test_a_student_pretrained_on_the_data_beats_a_random_start(tmp_path):
    """Weights pretrained on the embedded digits (made here) against random ones, at the same tiny
    budget: the classifier starts fresh in both, so the difference is the features."""
    from torch import nn

    from edgekd.config import load_config
    from edgekd.data.loading import load_data
    from edgekd.stages.distill import StudentConfig, distill
    from edgekd.training.loop import TrainConfig, cross_entropy, fit

    cfg = load_config()
    data = load_data(cfg.data)
    torch.manual_seed(0)
    pretrained = create_model("mobilenet_v2", len(data.classes), small_input=True)
    pretraining = TrainConfig(epochs=4, lr=0.003, optimizer="adamw")
    fit(pretrained, data.loader("train", shuffle=True), cross_entropy, pretraining, "pretrain")
    torch.save(pretrained.state_dict(), tmp_path / "pretrained.pt")
    budget = cfg.distill.model_copy(update={"params": {"kd_weight": 0.0, "ce_weight": 1.0},
                                            "train": TrainConfig(epochs=1, lr=0.001, optimizer="adamw")})  # fmt: skip
    accuracy = {}
    for start in ("none", str(tmp_path / "pretrained.pt")):
        student = StudentConfig(name="mobilenet_v2", weights=start)
        out = tmp_path / ("random" if start == "none" else "pretrained")
        out.mkdir()
        path = distill(budget, student, data, nn.Identity(), out)  # CE alone: the teacher never runs
        accuracy[start] = torch.load(path, weights_only=False)["val_accuracy"]
    random_start, pretrained_start = accuracy.values()
    assert pretrained_start > random_start + 0.2, accuracy


def test_the_readme_timm_table_is_the_benchmarks_and_a_failing_model_stops_at_config():
    import json

    from edgekd.models.timm_models import SUPPORT_TABLE, support_markdown
    from tests.helpers import ROOT

    facts = json.loads(SUPPORT_TABLE.read_text())
    assert support_markdown(facts) in (ROOT / "README.md").read_text(), "run benchmarks/timm_models.py --write"
    name, result = next((n, r) for n, r in sorted(facts["models"].items()) if r["failed_stage"])
    outcome = cli("build", "--target", "x86", "--student", f"timm:{name}", "--dry-run")
    assert outcome.returncode == 2 and f"fails edgekd's {result['failed_stage']} stage" in outcome.stderr
