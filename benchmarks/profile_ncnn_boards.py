"""Profiles the ARM instructions of every model in ncnn's published benchmark, run as benchncnn
runs it (its .param files and options, 4 threads), on each emulated core the boards use, and
stores them with the boards' published latencies in benchmarks/calibration/ncnn_boards.json,
from which benchmarks/calibrate_cost_model.py fits the boards' timing models.

python benchmarks/profile_ncnn_boards.py [--ncnn-benchmark ../shared/ncnn-benchmark] [--models a b]

Resumable: profiles already stored are kept. About 15 s per model and core on 2 x86 cores.
"""

from __future__ import annotations

import argparse
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgekd.emulation.profile import WORK, run_profiles

STORE = Path(__file__).parent / "calibration" / "ncnn_boards.json"
THREADS = 4
# board -> (its name in reports, the emulated core that profiles it, its clock in GHz, the heading of its
# section in ncnn's README)
BOARDS = {
    "rpi4": ("Raspberry Pi 4", "cortex-a72", 1.8, "### Raspberry Pi 4 Model B"),
    "rpi5": ("Raspberry Pi 5", "cortex-a76", 2.4, "### Raspberry Pi 5 Broadcom BCM2712, Cortex-A76"),
    # qemu 7.2 has no Cortex-A78; the A76 is its nearest model (same ARMv8.2 features: fp16, dot product)
    "jetson-orin-cpu": ("Jetson AGX Orin CPU", "cortex-a76", 2.2, "### NVIDIA Jetson AGX Orin"),
}
SOURCE = "ncnn benchmark/README.md at commit a4d2ea1d (July 2026), benchncnn avg ms, CPU (gpu_device = -1)"
SKIPPED = {"vision_transformer": "one inference is 0.6 s on a Pi 5: hours under emulation"}


def input_shapes(benchncnn: Path) -> dict[str, list[int]]:
    """model -> [c, h, w] as benchncnn.cpp feeds it."""
    found = re.findall(r'benchmark\("([\w.-]+)", ncnn::Mat\((\d+), (\d+), (\d+)\)', benchncnn.read_text())
    return {name: [int(c), int(h), int(w)] for name, w, h, c in found}


def published(readme: Path, heading: str, threads: int) -> dict[str, list[float]]:
    """[min, max, avg] ms per model from the section under `heading`, the CPU run at `threads` threads."""
    text = readme.read_text()
    section = text[text.index(heading) :]
    end = section.find("\n### ", 1)
    section = section if end < 0 else section[:end]
    line = r"^\s*([\w.-]+)\s+min =\s*([\d.]+)\s+max =\s*([\d.]+)\s+avg =\s*([\d.]+)"
    for run in re.split(r"\n(?=loop_count = )", section):
        if f"num_threads = {threads}\n" in run and "gpu_device = -1" in run:
            return {m: [float(a), float(b), float(c)] for m, a, b, c in re.findall(line, run, re.M)}
    raise SystemExit(f"no {threads}-thread CPU run under {heading!r} in {readme}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ncnn-benchmark", type=Path, default=Path(__file__).parents[2] / "shared" / "ncnn-benchmark")
    parser.add_argument("--models", nargs="*", help="only these models (default: every one benchncnn runs)")
    args = parser.parse_args()
    shapes = input_shapes(args.ncnn_benchmark / "benchncnn.cpp")
    store = json.loads(STORE.read_text()) if STORE.is_file() else {"profiles": {}}
    store["source"], store["threads"], store["skipped"] = SOURCE, THREADS, SKIPPED
    store["boards"] = {
        board: {"name": name, "cpu": cpu, "ghz": ghz, "section": heading.lstrip("# "),
                "ms": published(args.ncnn_benchmark / "README.md", heading, THREADS)}
        for board, (name, cpu, ghz, heading) in BOARDS.items()
    }  # fmt: skip
    params = args.ncnn_benchmark / "models"
    models = [m for m in (args.models or shapes) if m not in SKIPPED and (params / f"{m}.param").is_file()]
    todo = [(cpu, m) for cpu in sorted({cpu for _, cpu, _, _ in BOARDS.values()}) for m in models
            if m not in store["profiles"].get(cpu, {})]  # fmt: skip

    def profile(job: tuple[str, str]):
        cpu, model = job
        spec = {"runtime": "benchncnn", "path": str(args.ncnn_benchmark / "models" / f"{model}.param"),
                "threads": THREADS, "shape": shapes[model]}  # fmt: skip
        found = run_profiles([spec], cpu)[0]
        if isinstance(found, str):
            raise SystemExit(f"ncnn could not run {model} on {cpu}: {found}")
        return cpu, model, found

    STORE.write_text(json.dumps(store, indent=1, sort_keys=True))
    with ThreadPoolExecutor(2) as pool:  # one qemu per host core
        for cpu, model, result in pool.map(profile, todo):
            store["profiles"].setdefault(cpu, {})[model] = result.to_json()
            STORE.write_text(json.dumps(store, indent=1, sort_keys=True))
            work = sum(result.total(name) for name in WORK)
            print(f"{cpu} {model}: {work / 1e6:.1f} M instructions per inference", flush=True)


if __name__ == "__main__":
    main()
