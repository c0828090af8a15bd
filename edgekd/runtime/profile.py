"""`python -m edgekd.runtime.profile JOBS.json`: each job's model loaded and run once to warm up,
then run `repeats` times between two markers that qemu's instruction-profile plugin watches
for (edgekd/emulation/insn_profile.c), so the counts hold inference alone, never loading.
Job k's inference is region 2k; its loading, counted apart, region 2k + 1. A job whose model the
runtime cannot load or run prints "failed k <reason>" and the next job goes on; a runtime that
runs with fewer threads than asked for prints "pool k <threads>".

A job is {"runtime", "path", "threads", "repeats"}: an artifact in edgekd's session for that
runtime, or, with runtime "benchncnn", an ncnn .param run exactly as ncnn's own benchncnn runs
it (weights from an empty reader, input filled with 0.01, its options), which is how the
boards' published ncnn latencies were measured. Outside qemu the markers do nothing.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

MARKER = 0x45440000  # sched_get_priority_max(MARKER | region << 1 | stop): an invalid policy, EINVAL


def mark(region: int, stop: bool) -> None:
    try:
        os.sched_get_priority_max(MARKER | region << 1 | int(stop))
    except OSError:
        pass


def benchncnn(path: str, threads: int, shape: list[int]):
    """A callable that runs one inference the way benchncnn.cpp does."""
    import ncnn

    net = ncnn.Net()
    opt = net.opt
    opt.lightmode = True
    opt.num_threads = threads
    for name in ("use_winograd_convolution", "use_sgemm_convolution", "use_int8_inference", "use_fp16_packed",
                 "use_fp16_storage", "use_fp16_arithmetic", "use_int8_storage", "use_int8_arithmetic",
                 "use_packing_layout"):  # fmt: skip
        setattr(opt, name, True)
    if net.load_param(path) != 0 or net.load_model(ncnn.DataReaderFromEmpty()) != 0:
        raise RuntimeError(f"ncnn could not load {path}")
    image = ncnn.Mat(shape[2], shape[1], shape[0])
    image.fill(0.01)

    def infer():
        extractor = net.create_extractor()
        for name in net.input_names():
            extractor.input(name, image)
        for name in net.output_names():
            extractor.extract(name)

    return infer


def session(runtime: str, path: str, threads: int, job: int):
    from edgekd.runtime import open_session

    opened = open_session(runtime, path, threads, **({"spinning": False} if runtime == "onnxruntime" else {}))
    pool = opened.pool_threads()
    if pool is not None:
        print(f"pool {job} {pool}", flush=True)
    image = np.random.default_rng(0).standard_normal(opened.input_shape()).astype(np.float32)
    return lambda: opened.run(image)


def main() -> None:
    for k, job in enumerate(json.loads(open(sys.argv[1]).read())):
        mark(2 * k + 1, stop=False)
        try:
            if job["runtime"] == "benchncnn":
                infer = benchncnn(job["path"], job["threads"], job["shape"])
            else:
                infer = session(job["runtime"], job["path"], job["threads"], k)
        except Exception as e:  # a runtime that cannot load this model on this core: said per job
            infer, why = None, e
        mark(2 * k + 1, stop=True)
        try:
            if infer is not None:
                infer()  # warm-up: first-run allocations and weight packing
        except Exception as e:
            infer, why = None, e
        if infer is None:
            print(f"failed {k} {' '.join(str(why).split())[-300:] or type(why).__name__}", flush=True)
            continue
        mark(2 * k, stop=False)
        for _ in range(job.get("repeats", 1)):
            infer()
        mark(2 * k, stop=True)
        print(f"done {job['path']}", flush=True)


if __name__ == "__main__":
    main()
