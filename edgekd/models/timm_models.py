"""timm models as students and teachers (`timm:NAME`, extra `edgekd[timm]`), and teachers from
the Hugging Face hub (`hf-hub:ORG/NAME`, as timm names them), read from the hub's cache.

Which timm models survive edgekd's whole pipeline (BatchNorm folding, NNCF QAT, ONNX and
OpenVINO export, verification) is measured by `benchmarks/timm_models.py` into
`timm_support.json` beside this file; one that fails there stops the run when the config is
read, naming the stage.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch
from torch import nn

from edgekd.errors import EdgekdError
from edgekd.models.card import ModelCard, Preprocessing
from edgekd.registry import did_you_mean

HUB_PREFIX = "hf-hub:"
SUPPORT_TABLE = Path(__file__).with_name("timm_support.json")
INSTALL = "pip install 'edgekd[timm]'"


def _timm():
    try:
        import timm
    except ImportError:
        raise EdgekdError(f"timm models need timm: {INSTALL}") from None
    return timm


def support() -> dict[str, dict]:
    """benchmarks/timm_models.py's results: model -> {"failed_stage": stage or None, "error": ...}."""
    return json.loads(SUPPORT_TABLE.read_text())["models"] if SUPPORT_TABLE.is_file() else {}


def check_supported(name: str) -> None:
    result = support().get(name.split(".")[0])
    if result and result["failed_stage"]:
        raise EdgekdError(
            f"timm:{name} fails edgekd's {result['failed_stage']} stage ({result['error']}); "
            "choose a model the README's timm table marks as working"
        )


@functools.lru_cache(maxsize=None)
def timm_card(name: str) -> ModelCard:
    timm = _timm()
    if not timm.is_model(name):
        choices = timm.list_models()
        raise EdgekdError(f"timm has no model '{name}'{did_you_mean(name, choices)}; see timm.list_models()")
    probe = timm.create_model(name, pretrained=False, num_classes=2)
    cfg = probe.pretrained_cfg
    stem = cfg.get("first_conv") or next(n for n, m in probe.named_modules() if isinstance(m, nn.Conv2d))
    stem = stem if isinstance(stem, str) else stem[0]
    # stage ends at 1/4, 1/8 and 1/16 of the input, as the torchvision models' feature layers
    info = getattr(probe, "feature_info", None) or []
    layers = tuple(f["module"] for f in info if f.get("reduction") in (4, 8, 16))

    def build(num_classes: int, small_input: bool) -> nn.Module:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
        if small_input:
            model.get_submodule(stem).stride = (1, 1)
        return model

    def preprocessing() -> Preprocessing:
        return Preprocessing(int(cfg["input_size"][-1]), tuple(cfg["mean"]), tuple(cfg["std"]))

    def state() -> dict[str, torch.Tensor]:
        try:
            return timm.create_model(name, pretrained=True).state_dict()
        except Exception as e:  # offline: huggingface_hub's LocalEntryNotFoundError; no weights: RuntimeError
            raise EdgekdError(_missing(f"timm's pretrained {name} weights", cfg.get("hf_hub_id"), e)) from None

    has_weights = bool(cfg.get("hf_hub_id") or cfg.get("url"))
    return ModelCard(f"timm:{name}", build, cfg["classifier"], stem, layers,
                     state if has_weights else None, preprocessing)  # fmt: skip


def _missing(what: str, repo: str | None, error: Exception) -> str:
    from huggingface_hub import constants

    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    seed = f"`hf download {repo}` on a machine with internet and copy its cache folder" if repo else "a download"
    return (
        f"{what} are not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and could not be downloaded "
        f"({reason}); pre-seed the cache ({seed}; HF_HUB_CACHE names another one, HF_HUB_OFFLINE=1 skips "
        "the network), or pass a local file"
    )


def is_hub(path: Path | str | None) -> bool:
    return path is not None and str(path).startswith(HUB_PREFIX)


def hub_snapshot(name: Path | str) -> Path:
    """The local folder (config.json and weights) of hub model `hf-hub:ORG/NAME`, from the
    Hugging Face cache, downloaded there once."""
    _timm()
    from huggingface_hub import snapshot_download

    repo = str(name)[len(HUB_PREFIX) :]
    try:
        folder = Path(snapshot_download(repo, allow_patterns=["config.json", "*.safetensors", "pytorch_model.bin"]))
    except Exception as e:
        raise EdgekdError(_missing(f"hub model {repo}'s files", repo, e)) from None
    if not (folder / "config.json").is_file() or not weight_files(folder):
        raise EdgekdError(f"hub model {repo} has no timm config.json and weights; give a timm model from the hub")
    return folder


def weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model.bin"))


def hub_model(folder: Path) -> tuple[nn.Module, list[str] | None]:
    """The model in a hub snapshot, as timm builds it, and its class names when config.json has them."""
    timm = _timm()
    try:
        model = timm.create_model(f"local-dir:{folder}", pretrained=True)
    except Exception as e:
        raise EdgekdError(f"timm cannot build the hub model in {folder}: {str(e).splitlines()[0]}") from None
    names = model.pretrained_cfg.get("label_names")
    return model, [str(n) for n in names] if isinstance(names, (list, tuple)) else None


def support_markdown(facts: dict) -> str:
    """The README's table of which timm models survive the pipeline (benchmarks/timm_models.py)."""
    lines = [
        f"Measured with timm {facts['timm']}, torch {facts['torch']} on {facts['machine']} "
        "by `benchmarks/timm_models.py` (random weights at the pretrained input size; the error is the "
        "relative L2 distance of the worst artifact's logits from its PyTorch model's):",
        "",
        "| timm model | params (M) | input | works | fp32 / int8 logit error | first stage that fails |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in sorted(facts["models"].items(), key=lambda item: (item[1]["failed_stage"] is not None, item[0])):
        failed = f"{r['failed_stage']}: {r['error']}".replace("|", "\\|") if r["failed_stage"] else ""
        errors = r.get("relative_error") or {}
        worst = {p: max((v for k, v in errors.items() if k.endswith(p)), default=None) for p in ("fp32", "int8")}
        shown = " / ".join(_error(p, v) for p, v in worst.items() if v is not None)
        row = [f"`timm:{name}`", r.get("params_m", ""), r["input_size"], "no" if failed else "yes", shown, failed]
        lines.append("| " + " | ".join(str(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def _error(precision: str, value: float) -> str:
    if precision == "int8":
        return f"{value:.1%}"
    return f"{value:.1e}" if value else "< 1e-5"  # results of timm 1.0.31 were stored to 5 decimals
