"""Reports from real runs (export, verification and benchmark of a small model, each really run):
the Pareto front, the measured column, report.html in a real browser, the ship-it snippets
run as written, and two runs compared side by side."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekd.data.loading import DataConfig, load_data
from edgekd.reporting.environment import environment
from edgekd.reporting.schema import ArtifactFacts, DataFacts, Environment, Row, StudentFacts, TeacherFacts
from edgekd.reporting.tables import pareto, recommend, table_rows
from edgekd.stages.bench import BenchConfig, bench
from edgekd.stages.export import ExportConfig, export
from edgekd.stages.report import make_report, make_table, write_report
from edgekd.stages.verify import VerifyConfig, verify
from edgekd.targets.kinds import host_placement
from edgekd.training.loop import predict
from tests.helpers import PREPROCESSING, SIZE, assert_one_line_error, cli, edgekd, trained_like, write_image_folder


def real_report(out: Path, model, data, artifacts, bench_cfg: BenchConfig) -> dict:
    """What `pipeline.build` does after training on this host's table: verify, benchmark and
    write the report; returns report.json's content."""
    host = host_placement()
    checks = verify(VerifyConfig(), artifacts, {"fp32": predict(model, data.loader("val"))[0]}, data, host)
    facts = [ArtifactFacts(**a.to_dict(), verification=v) for a, v in zip(artifacts, checks)]
    rows = table_rows(facts, bench(bench_cfg, artifacts, host), on_host=True)
    each = host.target
    table = {"target": each.name, "measured_on": None, "description": each.description, "arch": each.arch}
    table |= {"threads": each.threads, "int8": each.int8.model_dump()}
    report = make_report(
        {
            "target": each.name,
            "edgekd_version": "test",
            "config": {},
            "environment": Environment(**environment()),
            "data": DataFacts(
                path=str(data.config.path),
                classes=data.classes,
                train_samples=len(data.train),
                val_samples=len(data.val),
                input_size=SIZE,
            ),  # fmt: skip
            "teacher": TeacherFacts(source="none (test)", val_accuracy=0.0),
            "student": StudentFacts(arch="mobilenet_v3_small", val_accuracy_fp32=0.0, val_accuracy_int8=None),
            "artifacts": facts,
            "tables": [make_table(table, rows, [], out)],
        },
        out,
    )
    return write_report(report, out).to_json()


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    data = load_data(DataConfig(path=write_image_folder(root / "images", per_class=8), input_size=SIZE, workers=0))
    model = trained_like("mobilenet_v3_small")
    artifacts = export(ExportConfig(), {"fp32": model}, PREPROCESSING, root / "a" / "artifacts")
    return root, model, data, artifacts


@pytest.fixture(scope="module")
def runs(mini):
    """Two runs of the same artifacts: B with more benchmark runs."""
    root, model, data, artifacts = mini
    shutil.copytree(root / "a" / "artifacts", root / "b" / "artifacts")
    reports = [real_report(root / "a", model, data, artifacts, BenchConfig(warmup=2, runs=20))]
    reports.append(real_report(root / "b", model, data, artifacts, BenchConfig(warmup=2, runs=40)))
    return root / "a", root / "b", reports


def test_pareto_front_keeps_only_undominated_artifacts():
    rows = [
        {"artifact": "slow-best", "status": "ok", "p50_ms": 9.0, "accuracy": 0.95},
        {"artifact": "fast-worst", "status": "ok", "p50_ms": 1.0, "accuracy": 0.80},
        {"artifact": "dominated", "status": "ok", "p50_ms": 5.0, "accuracy": 0.79},
        {"artifact": "middle", "status": "ok", "p50_ms": 4.0, "accuracy": 0.90},
        {"artifact": "tie-slower", "status": "ok", "p50_ms": 4.5, "accuracy": 0.90},
        {"artifact": "skipped", "status": "not run", "accuracy": 0.99},
    ]
    assert pareto([Row(**row) for row in rows]) == ["fast-worst", "middle", "slow-best"]


def onnx_pair(int8_accuracy: float, int8_ms: float, fp32_accuracy: float, fp32_ms: float) -> list[dict]:
    return [
        {"artifact": "onnx-int8", "precision": "int8", "runtime": "onnxruntime", "status": "ok"}
        | {"p50_ms": int8_ms, "accuracy": int8_accuracy},
        {"artifact": "onnx-fp32", "precision": "fp32", "runtime": "onnxruntime", "status": "ok"}
        | {"p50_ms": fp32_ms, "accuracy": fp32_accuracy},
    ]


@pytest.mark.parametrize(
    "rows, expected",
    [
        (onnx_pair(0.90, 1.0, 0.80, 0.9), "onnx-int8"),  # int8 slower, but fp32 is 10 points less accurate
        (onnx_pair(0.90, 1.0, 0.895, 1.0), "onnx-fp32"),  # a tie, fp32 within the tolerance
    ],
)
def test_recommendation_and_notes_agree(rows, expected):
    choice, notes = recommend([Row(**row) for row in rows])
    assert choice == expected
    assert len(notes) == 1 and notes[0].startswith("int8 is not faster than fp32 in onnxruntime")
    assert ("ship fp32" in notes[0]) == (choice == "onnx-fp32"), notes
    assert choice == "onnx-fp32" or "fp32 is 10.0 accuracy points below the best" in notes[0], notes


def test_report_marks_measured_rows_and_the_front(runs):
    out, _, (report, _) = runs
    host = report["tables"][0]
    assert host["pareto"] and set(host["pareto"]) <= {r["artifact"] for r in host["rows"]}
    assert all(r["measured"] is True for r in host["rows"])
    text = (out / "report.md").read_text()
    assert "| Measured |" in text and "| measured |" in text
    assert f"Pareto front (fastest first): {', '.join(host['pareto'])}" in text


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
    flags += ["--disable-component-update", "--disable-sync", f"--user-data-dir={profile}"]
    return subprocess.run([browser, *flags, *args], capture_output=True, text=True, timeout=120)


def test_report_html_renders_the_table_and_plot_offline(runs, tmp_path):
    browser = chromium()
    if browser is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing in CI: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium); CI installs it")
    out, _, (report, _) = runs
    html = out / "report.html"
    source = html.read_text()
    # self-contained: nothing fetched from anywhere
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", source)
    alone = tmp_path / "alone" / "report.html"  # moved away from its plots: still complete
    alone.parent.mkdir()
    shutil.copy(html, alone)

    dom = headless(browser, tmp_path / "profile1", "--dump-dom", alone.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    tables = re.findall(r'<table class="results">(.*?)</table>', dom.stdout, re.S)
    assert len(tables) == len(report["tables"])
    host_rows = re.findall(r"<tr[ >].*?</tr>", tables[0], re.S)[1:]
    assert len(host_rows) == len(report["tables"][0]["rows"])
    assert all(f">{r['artifact']}<" in tables[0] for r in report["tables"][0]["rows"])
    assert re.search(r'<img class="plot" [^>]*src="data:image/png;base64,', dom.stdout)

    shot = tmp_path / "shot.png"
    done = headless(browser, tmp_path / "profile2", "--window-size=1280,2000", f"--screenshot={shot}", alone.as_uri())
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    # the plot's front is drawn in matplotlib's tab:red: only a decoded, painted plot has it
    red = (np.abs(pixels - [214, 39, 40]).sum(axis=2) < 40).sum()
    assert red > 50, f"no plot painted ({red} red pixels)"


def test_snippets_run_as_written_and_agree_with_predict(runs):
    out, _, (report, _) = runs
    snippet = report["snippet"]
    assert snippet["artifact"] == report["tables"][0]["recommended"]
    md = (out / "report.md").read_text()
    pixels = np.random.default_rng(5).integers(0, 256, (30, 45, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(out / "image.jpg")
    expected = edgekd("predict", snippet_artifact(report), str(out / "image.jpg"), "--top-k", "1", "--json")
    top = json.loads(expected.stdout)[0]["top"][0]
    for runtime in ("onnxruntime", "openvino"):
        code = snippet[runtime]
        assert f"```python\n{code.rstrip()}\n```" in md and code.rstrip() in report_html_text(out)
        done = subprocess.run([sys.executable, "-c", code], cwd=out, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        name, probability = eval(done.stdout)  # the snippet prints a (class, probability) tuple
        assert name == top["class"] and probability == pytest.approx(top["probability"], abs=1e-4)


def snippet_artifact(report: dict) -> str:
    return next(a["path"] for a in report["artifacts"] if a["name"] == report["snippet"]["artifact"])


def report_html_text(out: Path) -> str:
    import html

    return html.unescape((out / "report.html").read_text())


def test_report_compares_two_runs(runs):
    a, b, (report_a, report_b) = runs
    done = edgekd("report", str(a), str(b))
    assert done.returncode == 0, done.stderr
    lines = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): line for line in done.stdout.splitlines()}
    for row_a, row_b in zip(report_a["tables"][0]["rows"], report_b["tables"][0]["rows"]):
        line = lines[("host", row_a["artifact"])]
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert cells[2:5] == [
            f"{row_a['p50_ms']:.3f}",
            f"{row_b['p50_ms']:.3f}",
            f"{row_b['p50_ms'] / row_a['p50_ms']:.2f}x",
        ]
        assert cells[5] == f"{row_a['accuracy']:.2%}"


def test_report_rejects_what_is_not_a_report(tmp_path, runs):
    a, _, _ = runs
    assert_one_line_error(cli("report", str(a), str(tmp_path)), "is not an edgekd report")
    assert_one_line_error(cli("report", str(a), str(a), str(a)), "one run, or two to compare")
