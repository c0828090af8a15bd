"""The recipes users copy: every `pipelines/*.toml` loads and passes the config checks, and the
CIFAR-10 benchmark writes its tables into the README's marked section one budget at a time,
choosing its method on validation accuracy alone."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from edgekd.config import checked_config, load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("recipe", sorted((ROOT / "pipelines").glob("*.toml")), ids=lambda p: p.name)
def test_every_recipe_loads_and_checks(recipe: Path):
    checked_config(load_config(recipe), str(recipe))


@pytest.fixture(scope="module")
def distill_cifar():
    """The benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("distill_cifar", ROOT / "benchmarks" / "distill_cifar.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_method_is_chosen_on_validation_never_test(distill_cifar):
    accuracy = {
        "s/alone/seed0": {"val_accuracy": 0.9, "test_accuracy": 0.9},
        "s/kd/seed0": {"val_accuracy": 0.5, "test_accuracy": 0.8},
        "s/dkd/seed0": {"val_accuracy": 0.6, "test_accuracy": 0.1},
        "s/dist/seed0": {"collapsed": "stopped"},
    }
    assert distill_cifar.best_method(accuracy, "s") == "dkd"


def test_readme_block_replaces_its_budget_keeps_the_others_smallest_first(distill_cifar, tmp_path: Path):
    readme = tmp_path / "README.md"
    begin, end = distill_cifar.BEGIN, distill_cifar.END
    readme.write_text(f"intro\n{begin}\n{end}\nafter\n")
    distill_cifar.write_readme_block(readme, "10000 images", "large")
    distill_cifar.write_readme_block(readme, "5000 images", "old small")
    distill_cifar.write_readme_block(readme, "5000 images", "new small")
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith(f"{end}\nafter\n")
    assert "old small" not in text
    assert text.index("#### 5000 images\n\nnew small") < text.index("#### 10000 images\n\nlarge")


def test_readme_without_markers_is_refused(distill_cifar, tmp_path: Path):
    readme = tmp_path / "README.md"
    readme.write_text("no section\n")
    with pytest.raises(SystemExit, match="no <!-- distill_cifar.py tables: begin -->"):
        distill_cifar.write_readme_block(readme, "5000 images", "table")
    assert readme.read_text() == "no section\n"
