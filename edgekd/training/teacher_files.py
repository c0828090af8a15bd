"""What a teacher file really holds, and the class names it carries, so a wrong file fails with
the fix (rename it, re-save it) rather than a loader's traceback or silently wrong labels."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from edgekd.errors import EdgekdError

# the loader each suffix selects, and what a file of that kind is called
KINDS = {"state_dict": ".pt/.pth", "pt2": ".pt2", "onnx": ".onnx"}


def file_kind(path: Path) -> str:
    """'state_dict' (a torch.save file), 'pt2', 'onnx', 'text' or 'unknown', from the content."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.endswith("serialized_exported_program.json") or "/models/" in n for n in names):
            return "pt2"
        return "state_dict" if any(n.endswith("data.pkl") for n in names) else "unknown"
    head = path.read_bytes()[:4096]
    if head[:1] == b"\x80":  # a pickle: torch.save's legacy format
        return "state_dict"
    if _is_onnx(path):
        return "onnx"
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "unknown"


def _is_onnx(path: Path) -> bool:
    import onnx

    try:
        return len(onnx.load(str(path), load_external_data=False).graph.node) > 0
    except Exception:  # protobuf parses many byte strings; anything unusual is not a model
        return False


def expected_kind(path: Path) -> str:
    return {".onnx": "onnx", ".pt2": "pt2"}.get(path.suffix, "state_dict")


def check_kind(path: Path) -> None:
    """Raises EdgekdError when the file is empty or its content does not match its suffix."""
    if path.stat().st_size == 0:  # an interrupted copy or download; its content would read as "text"
        raise EdgekdError(f"teacher file {path} is empty (0 bytes): re-save or re-download it")
    kind, expected = file_kind(path), expected_kind(path)
    if kind == expected:
        return
    if kind in KINDS:
        raise EdgekdError(
            f"teacher file {path} is {_name(kind)}, not {_name(expected)}; "
            f"rename it to {path.stem}{KINDS[kind].split('/')[0]}"
        )
    raise EdgekdError(
        f"teacher file {path} is not a model ({kind} content); pass a .pt/.pth state_dict, .pt2 or .onnx file"
    )


def _name(kind: str) -> str:
    return {"state_dict": "a torch.save file", "pt2": "a torch.export program", "onnx": "an ONNX model"}[kind]


def state_dict_mismatch(state: dict, expected: dict, examples: int = 2) -> str:
    """How a state_dict differs from the one a model expects, as counts and a few keys each:
    a whole architecture's key list would be a line of kilobytes."""
    differences = {
        "missing keys": [k for k in expected if k not in state],
        "unexpected keys": [k for k in state if k not in expected],
        "keys of another shape": [
            k for k in expected if k in state and getattr(state[k], "shape", None) != expected[k].shape
        ],
    }
    parts = [
        f"{len(keys)} {what} (e.g. {', '.join(repr(k) for k in keys[:examples])})"
        for what, keys in differences.items()
        if keys
    ]
    return ", ".join(parts)


def onnx_classes(session) -> list[str] | None:
    """Class names an ONNX teacher carries in its metadata ('classes', a JSON list, as edgekd writes)."""
    raw = session.get_modelmeta().custom_metadata_map.get("classes")
    try:
        classes = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        return None
    return [str(c) for c in classes] if isinstance(classes, list) else None


def checkpoint_classes(state: object) -> list[str] | None:
    """Class names a checkpoint dict carries: 'classes' or 'preprocessing'['classes']."""
    if not isinstance(state, dict):
        return None
    classes = state.get("classes")
    if classes is None and isinstance(state.get("preprocessing"), dict):
        classes = state["preprocessing"].get("classes")
    return [str(c) for c in classes] if isinstance(classes, (list, tuple)) else None


def check_classes(path: Path, teacher_classes: list[str] | None, data_classes: list[str]) -> None:
    """Same names in the same order, or one line naming the first difference and both lists."""
    if teacher_classes is None or list(teacher_classes) == list(data_classes):
        return
    index = next(
        (i for i, (t, d) in enumerate(zip(teacher_classes, data_classes)) if t != d),
        min(len(teacher_classes), len(data_classes)),
    )
    teacher_name = teacher_classes[index] if index < len(teacher_classes) else "(none)"
    data_name = data_classes[index] if index < len(data_classes) else "(none)"
    raise EdgekdError(
        f"teacher {path} calls class {index} '{teacher_name}' but the data's class folder {index} is '{data_name}' "
        f"(teacher: {_short(teacher_classes)}; data: {_short(data_classes)}); rename the class folders "
        "to the teacher's class names, or use a teacher trained on these classes"
    )


def _short(names: list[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")
