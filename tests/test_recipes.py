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


def test_a_variant_changes_only_the_settings_it_names(distill_cifar, monkeypatch):
    monkeypatch.setattr(distill_cifar, "METHODS", dict(distill_cifar.METHODS))
    distill_cifar.add_variant("ls-kd-w9=ls-kd:kd_weight=9,temperature=2.5")
    loss, params = distill_cifar.METHODS["ls-kd-w9"]
    assert (loss, params) == ("kd", distill_cifar.METHODS["ls-kd"][1] | {"kd_weight": 9, "temperature": 2.5})
    with pytest.raises(ValueError, match="no method 'lskd' to start from"):
        distill_cifar.add_variant("x=lskd:kd_weight=9")
    with pytest.raises(ValueError, match="key=value"):
        distill_cifar.add_variant("x=kd:kd_weight")


def test_each_row_shows_the_settings_it_ran_with_defaults_filled_in(distill_cifar):
    accuracy = {f"s/{name}/seed0": {"val_accuracy": 0.5, "seconds": 1.0} for name in ("alone", "dkd", "old", "gone")}
    table = distill_cifar.settings_table(accuracy, {"old": ["kd", {"temperature": 1.0, "standardize": True}]})
    assert "| alone | `kd` | temperature 4, ce_weight 1, kd_weight 0 |" in table  # a 0 that was given stays
    assert "| dkd | `dkd` | ce_weight 1, tckd_weight 1, nckd_weight 2, temperature 4 |" in table  # edgekd's defaults
    assert "| old | `kd` | temperature 1, ce_weight 0.1, kd_weight 0.9, standardize True |" in table  # as recorded
    assert "| gone | - | not recorded" in table


def test_a_reused_student_is_not_timed_as_a_run(distill_cifar):
    accuracy = {
        "s/alone/seed0": {"val_accuracy": 0.4, "test_accuracy": 0.4, "seconds": 100.0},
        "s/kd/seed0": {"val_accuracy": 0.5, "test_accuracy": 0.5, "seconds": 60.0},
        "s/kd/seed1": {"val_accuracy": 0.5, "test_accuracy": 0.5, "seconds": None},
    }
    table = distill_cifar.summary_table(accuracy)
    assert "| s | kd | 2 | 50.00% +- 0.00 | +10.00 pt (+10.00 to +10.00) | 50.00% | 60 |" in table  # seed1: no alone
    assert table.endswith("3 runs, 2.7 min of training (1 reused, not timed)")
