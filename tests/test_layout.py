"""The package's shape: no import cycles (at module level or inside functions), the six
stages alone in `stages/`, `runtime/` standing alone (it is copied to ARM boards), and every
third-party import declared in pyproject.toml (tests' and benchmarks' in their extras)."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

import edgekd

ROOT = Path(edgekd.__file__).parent


def imports() -> dict[str, set[str]]:
    """Module -> the edgekd modules it imports anywhere in its body."""
    modules = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name and not name.startswith(m + ".")}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for dep in sorted(graph[module]):
            if state.get(dep) == "open":
                found.append(path[path.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_no_import_cycles():
    assert cycles(imports()) == []


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_stages_holds_the_six_stages_alone():
    stages = {p.stem for p in (ROOT / "stages").glob("*.py")} - {"__init__"}
    assert stages == {"distill", "quantize", "export", "verify", "bench", "report"}


def test_runtime_imports_nothing_else_from_edgekd():
    outside = {dep for module, deps in imports().items() if module.startswith("edgekd.runtime") for dep in deps}
    assert {dep for dep in outside if not dep.startswith("edgekd.runtime")} == set()


def third_party_imports(folder: Path, module_level_only: bool = False) -> set[str]:
    local = {"edgekd", "tests", "benchmarks"} | {p.stem for p in folder.glob("*.py")}  # a sibling script is local
    found = set()
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body if module_level_only else ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
    return {m for m in found - local if m not in sys.stdlib_module_names}


def declared(*extras: str) -> set[str]:
    """Distribution names in pyproject's dependencies and the named extras, normalised."""
    project = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [s for e in extras for s in project["optional-dependencies"][e]]
    return {re.split(r"[<>=!~\[; ]", s, maxsplit=1)[0].lower().replace("_", "-") for s in specs}


def distributions(modules: set[str]) -> dict[str, set[str]]:
    owners = importlib.metadata.packages_distributions()
    return {m: {d.lower().replace("_", "-") for d in owners.get(m, [m])} for m in modules}


@pytest.mark.parametrize(
    "folder, extras, module_level_only",
    [
        ("edgekd", (), True),
        ("benchmarks", ("bench", "executorch", "tflite", "ncnn"), False),
        ("tests", ("test",), False),
    ],
)
def test_every_import_is_declared(folder, extras, module_level_only):
    # benchmarks/ measure a format's rows only where its extra is installed
    # edgekd's optional imports (onnxruntime-gpu, tensorrt, timm) sit inside functions, behind a
    # one-line error naming the extra; what it imports at module level every user needs
    allowed = declared(*extras)
    imports = distributions(third_party_imports(ROOT.parent / folder, module_level_only))
    undeclared = {m: d for m, d in imports.items() if not d & allowed}
    assert undeclared == {}, f"imported by {folder}/ but not declared in pyproject.toml"
