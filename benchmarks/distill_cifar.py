"""Distillation and quantization on CIFAR-10 with the shared ResNet-18 teacher, at a fixed budget.

Three measurements, each side by side in one run (same data subset, epochs and recipe):
  accuracy  for each student: alone (CE only) vs KD vs DKD vs DIST vs LS-KD (reference.md,
            section 1; DKD and DIST also at their papers' CIFAR settings), once per --seeds
            (data.seed: the subset, views, shuffle and initial weights); the table gives each
            method's mean +- sd and its gain over alone per seed;
  epoch     seconds per training epoch: student alone vs KD with the teacher online vs KD
            reading cached teacher logits (data.augment_views), after the cache is built;
  int8      the chosen method's student quantized: fp32 vs PTQ (NNCF without training; onnxruntime's
            quantize_static) vs edgekd's QAT with that method's loss on, in PyTorch (fake quant),
            onnxruntime and OpenVINO, with top-1 agreement between them, and the floor of that
            agreement: the fake-quantized model against itself under input noise far below
            one 8-bit step.

Training sees only train/: the validation images (collapse guard, the method chosen) are held
out of it with the seed; every accuracy in the tables is on test/. The chosen method is the
one with the best mean validation accuracy; `--readme README.md` writes this budget's tables
into the README's marked section (one block per budget, the others kept).

    tar xzf ../shared/data/cifar10-jpg.tar.gz -C /tmp/cifar10
    python benchmarks/distill_cifar.py --data /tmp/cifar10 --train-samples 10000 --epochs 3 \
        --students mobilenet_v2 --skip epoch --readme README.md

The reference recipe is 30 epochs over all 50k images on a GPU (`--train-samples 0 --epochs 30`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np

from edgekd.data.loading import DataConfig, load_data
from edgekd.errors import EdgekdError
from edgekd.io import save_text
from edgekd.quantizers.nncf import insert_fake_quant, qdq_export_mode
from edgekd.runtime import open_session
from edgekd.stages.distill import DistillConfig, StudentConfig, distill, load_student, teacher_logits_cache
from edgekd.stages.export import ExportConfig, Int8Inputs, export
from edgekd.stages.quantize import QuantizeConfig, calibration_images, load_quantized, quantize
from edgekd.stages.verify import validation_arrays
from edgekd.targets import load_target
from edgekd.training.loop import TrainConfig, accuracy, predict
from edgekd.training.teachers import TeacherConfig, load_teacher

SHARED = Path(__file__).resolve().parents[2] / "shared"
CIFAR = {"input_size": 32, "mean": (0.4914, 0.4822, 0.4465), "std": (0.2470, 0.2435, 0.2616)}
METHODS = {  # reference.md section 1
    "alone": ("kd", {"ce_weight": 1.0, "kd_weight": 0.0}),
    "kd": ("kd", {"temperature": 4.0, "ce_weight": 0.1, "kd_weight": 0.9}),
    # DKD and DIST at edgekd's defaults, chosen on validation images over the papers' CIFAR
    # settings (the -paper rows): DKD's nckd_weight 2, DIST's T = 1 with beta = gamma = 1
    "dkd": ("dkd", {}),
    "dist": ("dist", {}),
    # logit-standardized KD at the paper's T = 2; kd_weight 3 chosen on validation at 10,000 images
    # over kd's 0.9 (the ls-kd-w0.9 row), the paper's 9 and T = 1 (README)
    "ls-kd": ("kd", {"temperature": 2.0, "ce_weight": 0.1, "kd_weight": 3.0, "standardize": True}),
    "ls-kd-w0.9": ("kd", {"temperature": 2.0, "ce_weight": 0.1, "kd_weight": 0.9, "standardize": True}),
    "dkd-paper": ("dkd", {"tckd_weight": 1.0, "nckd_weight": 8.0, "temperature": 4.0}),  # CIFAR-100, 240 epochs
    "dist-paper": ("dist", {"temperature": 4.0, "inter_weight": 2.0, "intra_weight": 2.0}),  # CIFAR, 240 epochs
}


def add_variant(text: str) -> None:
    """`name=method:key=value,key=value`: METHODS[name] is `method`'s settings with those changed
    (values read as TOML: 2, 0.5, true)."""
    import tomllib

    name, _, rest = text.partition("=")
    base, _, settings = rest.partition(":")
    if base not in METHODS:
        raise ValueError(f"--variant {text}: no method {base!r} to start from; of {', '.join(METHODS)}")
    try:
        changed = tomllib.loads("\n".join(settings.split(","))) if settings else {}
    except tomllib.TOMLDecodeError as bad:
        raise ValueError(f"--variant {text}: settings are key=value,key=value with TOML values ({bad})") from None
    loss, params = METHODS[base]
    METHODS[name] = (loss, params | changed)


def method(name: str, args) -> tuple[str, dict]:
    loss, params = METHODS[name]
    if loss == "dkd" and args.dkd_warmup is not None:
        params = params | {"warmup_epochs": args.dkd_warmup}
    return loss, params


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def run_accuracy(args, data_for, test_data, teacher, out: Path, earlier: dict) -> dict:
    """Every student and method once per seed (data.seed: the subset, the views, the shuffle and the
    student's initial weights), each seed in its own folder with its own teacher-logits cache.
    The run sees only train/ (its validation images, for the collapse guard, come from there);
    each student is then scored once on test/. A run the collapse guard stops is recorded as
    collapsed (its message), not as an accuracy. A student already trained in `out` is reused:
    its seconds are those `earlier` recorded, else None (not timed), never the reuse's."""
    results = {}
    for seed in args.seeds:
        data, where = data_for(seed), out / f"seed{seed}"
        teacher_accuracy = accuracy(*predict(teacher, data.loader("val")))
        for student in args.students:
            for name in args.methods:
                loss, params = method(name, args)
                cfg = DistillConfig(loss=loss, params=params, train=train_config(args, args.epochs))
                folder = where / f"{student}-{name}"
                folder.mkdir(parents=True, exist_ok=True)
                student_cfg = StudentConfig(name=student)
                start, key = time.perf_counter(), f"{student}/{name}/seed{seed}"
                reused = (folder / "student_fp32.pt").is_file()
                try:
                    path = distill(cfg, student_cfg, data, teacher, folder, where / "logits.npy", teacher_accuracy)
                except EdgekdError as stopped:  # the collapse guard
                    results[key] = {"collapsed": str(stopped), "seconds": round(time.perf_counter() - start, 1)}
                    print(f"seed {seed} {student:20s} {name:6s} {stopped}", flush=True)
                    continue
                model, ckpt = load_student(path)
                seconds = earlier.get(key, {}).get("seconds") if reused else round(time.perf_counter() - start, 1)
                test = accuracy(*predict(model, test_data.loader("val")))
                results[key] = {"val_accuracy": ckpt.val_accuracy, "test_accuracy": test, "seconds": seconds}
                scores = f"val {ckpt.val_accuracy:.2%}  test {test:.2%}"
                took = "reused" if reused else f"{seconds:.0f} s"
                print(f"seed {seed} {student:20s} {name:6s} {scores}  ({took})", flush=True)
    return results


def run_epoch_cost(args, data, online_data, teacher, out: Path) -> dict:
    """One epoch each, after the cache for `data` exists (built and timed first, unless the
    accuracy runs already built it)."""
    student = StudentConfig(name=args.students[0])
    cache = out / "logits.npy"
    reused = cache.is_file()
    _, build_s = timed(teacher_logits_cache, teacher, data, cache)
    rows = {}
    for name, (loss, params), d, c in [
        ("alone", METHODS["alone"], data, None),
        ("kd, teacher online", METHODS["kd"], online_data, None),
        ("kd, cached teacher", METHODS["kd"], data, cache),
    ]:
        folder = out / f"epoch-{name.replace(' ', '').replace(',', '-')}"
        folder.mkdir(parents=True, exist_ok=True)
        cfg = DistillConfig(loss=loss, params=params, train=train_config(args, 1))
        _, rows[name] = timed(distill, cfg, student, d, teacher, folder, c)
    base = rows["alone"]
    views = f"cache of {data.views} views {'reused' if reused else f'built in {build_s:.0f} s'}"
    print(f"\nepoch seconds, {student.name}, {len(data.train)} images ({views})")
    for name, seconds in rows.items():
        print(f"  {name:20s} {seconds:7.1f} s   {seconds / base:.2f}x alone")
    return {"cache_build_s": build_s, "epoch_s": rows, "ratio_to_alone": {k: v / base for k, v in rows.items()}}


def run_int8(args, data, test_data, teacher, student_path: Path, name: str, out: Path) -> dict:
    """The `name` method's student quantized with that method's loss on; trained on `data`
    (train/), every accuracy on `test_data`'s test/ images."""
    flavour = load_target(args.target).int8
    images, labels = validation_arrays(test_data)
    fp32, _ = load_student(student_path)
    calibration = calibration_images(data, args.calibration)
    results = {"fp32 (PyTorch)": accuracy(*predict(fp32, test_data.loader("val")))}
    ptq = insert_fake_quant(load_student(student_path)[0], flavour, calibration)  # NNCF PTQ: no training
    results["PTQ NNCF (PyTorch fake quant)"] = accuracy(*predict(ptq, test_data.loader("val")))
    results["PTQ onnxruntime quantize_static (best type)"] = ort_ptq_accuracy(fp32, images, calibration, out, labels)
    loss, params = method(name, args)
    cfg = QuantizeConfig(
        calibration_samples=args.calibration, train=train_config(args, args.qat_epochs, lr=args.qat_lr)
    )
    qat_path = quantize(cfg, student_path, data, teacher, flavour, (loss, params), out / "qat", out / "logits.npy")
    qat, ckpt = load_quantized(qat_path)
    int8 = Int8Inputs(ckpt.calibration_array(), ckpt.int8)
    qat_name = f"QAT+{name}"
    agreement = {f"{qat_name}: PyTorch fake quant vs itself, input + N(0, 1e-4)": noise_floor(qat, images)}
    for name, model, folder in [
        (qat_name, qat, out / "artifacts"),
        # the same export of a confident model (NNCF PTQ of the teacher): how far agreement is the
        # export's, and how far the student's small margins
        ("teacher PTQ", qdq_export_mode(insert_fake_quant(teacher, flavour, calibration)).eval(), out / "teacher-int8"),
    ]:
        torch_logits = predict(model, test_data.loader("val"))[0].numpy()
        results[f"{name} (PyTorch fake quant)"] = float((torch_logits.argmax(1) == labels).mean())
        artifacts = export(ExportConfig(), {"nncf": model}, ckpt.preprocessing, folder, int8)
        top1 = {"PyTorch fake quant": torch_logits.argmax(1)}
        for artifact in artifacts:
            session = open_session(artifact.runtime, artifact.path, 2)
            top1[artifact.runtime] = batched(session.run, images).argmax(1)
            results[f"{name} ({artifact.runtime})"] = float((top1[artifact.runtime] == labels).mean())
        for a, b in itertools.combinations(top1, 2):
            agreement[f"{name}: {a} vs {b}"] = float((top1[a] == top1[b]).mean())
    print(
        f"\nint8 ({args.target} flavour: {flavour.activations}/{flavour.weights}, reduce_range {flavour.reduce_range})"
    )
    for name, acc in results.items():
        print(f"  {name:45s} {acc:.2%}")
    for name, value in agreement.items():
        print(f"  top-1 agreement {name:45s} {value:.2%}")
    return {"accuracy": results, "agreement": agreement}


def batched(run, images: np.ndarray) -> np.ndarray:
    return np.concatenate([run(images[i : i + 256]) for i in range(0, len(images), 256)])


def noise_floor(model, images: np.ndarray) -> float:
    """Top-1 agreement of a fake-quantized model with itself when its input moves by noise far
    below one 8-bit step: some images sit on a rounding edge, and any runtime's own rounding
    differences flip them too. How close to 100% an export's agreement can be expected to come."""
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    noisy = images + np.random.default_rng(0).normal(0, 1e-4, images.shape).astype(np.float32)
    return float((batched(run, images).argmax(1) == batched(run, noisy).argmax(1)).mean())


def ort_ptq_accuracy(fp32, images, calibration, out: Path, labels) -> float:
    """The best accuracy of onnxruntime's quantize_static over its type options."""
    import onnx

    from edgekd.formats.qdq import onnxruntime_ptq

    (artifact,) = export(ExportConfig(formats=["onnx"]), {"fp32": fp32}, {"input_size": [32, 32]}, out / "ptq")
    batches = [c[i : i + 1].numpy() for c in calibration for i in range(len(c))]
    best = 0.0
    for activations, reduce_range in [("s8", False), ("u8", False), ("u8", True)]:
        dest = out / "ptq" / f"{activations}-{reduce_range}.onnx"
        onnx.save(onnxruntime_ptq(onnx.load(artifact.path), batches, activations, True, reduce_range), dest)
        logits = batched(open_session("onnxruntime", str(dest), 2).run, images)
        best = max(best, float((logits.argmax(1) == labels).mean()))
    return best


def train_config(args, epochs: int, lr: float | None = None) -> TrainConfig:
    schedule = "cosine" if lr else "onecycle"
    return TrainConfig(epochs=epochs, lr=lr or args.lr, optimizer="sgd", schedule=schedule, weight_decay=5e-4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the unpacked cifar10-jpg folder (train/, test/)")
    parser.add_argument("--teacher", type=Path, default=SHARED / "teachers/resnet18_cifar10/resnet18_cifar10.pt")
    parser.add_argument("--students", nargs="+", default=["mobilenet_v2", "shufflenet_v2_x1_0"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), help=f"of {', '.join(METHODS)} and --variant's")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=METHOD:KEY=VALUE,...",
        help="a method with other settings, for tuning on validation: dkd-n1=dkd:nckd_weight=1",
    )
    parser.add_argument("--train-samples", type=int, default=10000, help="a seeded subset; 0 = all 50k")
    parser.add_argument(
        "--val-samples", type=int, default=2000, help="validation images held out of train/ (seeded), never test/"
    )
    parser.add_argument("--test-samples", type=int, default=0, help="a seeded subset of test/; 0 = all 10k")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="data.seed of each repeat")
    parser.add_argument("--views", type=int, default=None, help="data.augment_views (default: --epochs)")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument(
        "--dkd-warmup",
        type=float,
        default=None,
        help="DKD warm-up epochs (default: edgekd's, 1/12 of the run, at least 5 or the run)",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--qat-lr", type=float, default=0.001)
    parser.add_argument("--calibration", type=int, default=512)
    parser.add_argument("--target", default="x86")
    parser.add_argument("--int8-method", help="the student to quantize (default: the best on validation)")
    parser.add_argument("--readme", type=Path, help="write this budget's tables into this README's marked section")
    parser.add_argument("--skip", nargs="*", default=[], choices=["accuracy", "epoch", "int8"])
    parser.add_argument("--out", type=Path, default=Path("runs/bench-cifar"))
    args = parser.parse_args()
    for variant in args.variant:
        try:
            add_variant(variant)
        except ValueError as bad:
            parser.error(str(bad))
    unknown = set(args.methods + [args.int8_method or "kd"]) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}: of {', '.join(METHODS)}, or add one with --variant")
    # train/ alone is split: the validation images (collapse guard, keep-best, tuning) are held
    # out of it with the seed, so that test/ is seen only by the final score
    common = CIFAR | {
        "path": args.data / "train",
        "val_fraction": args.val_samples / 50000,
        "augment": ["crop", "flip"],
        "batch_size": args.batch_size,
        "workers": args.workers,
        "max_train_samples": args.train_samples or None,
    }

    def data_for(seed: int):
        return load_data(DataConfig(**common, seed=seed, augment_views=args.views or args.epochs))

    data = data_for(args.seeds[0])
    test_cfg = CIFAR | {"path": args.data, "batch_size": 256, "workers": args.workers}
    test_data = load_data(DataConfig(**test_cfg, max_val_samples=args.test_samples or None))
    print(
        f"data: {len(data.train)} train / {len(data.val)} val images (held out of train/), "
        f"{data.views} fixed augmentations each; {len(test_data.val)} test/ images"
    )
    teacher = load_teacher(TeacherConfig(path=args.teacher, arch="resnet18", small_input=True), 10, 32, data.classes)
    print(f"teacher {args.teacher.name}: test accuracy {accuracy(*predict(teacher, test_data.loader('val'))):.2%}")
    args.out.mkdir(parents=True, exist_ok=True)
    # a rerun into the same --out adds to (and replaces entries of) the results already there;
    # finished students are reused, so delete a student's folder to train it again
    results = args.out / "results.json"
    report: dict = json.loads(results.read_text()) if results.is_file() else {}
    report["args"] = vars(args)  # as given (paths written as text): summary() reads seeds and students back
    if "accuracy" not in args.skip:
        # each row's loss and settings as run (a --variant is not in METHODS when the tables are rewritten)
        report["methods"] = report.get("methods", {}) | {name: list(method(name, args)) for name in args.methods}
        earlier = report.get("accuracy", {})
        report["accuracy"] = earlier | run_accuracy(args, data_for, test_data, teacher, args.out, earlier)
    if "epoch" not in args.skip:
        online = load_data(DataConfig(**common))
        report["epoch"] = run_epoch_cost(args, data, online, teacher, args.out)
    if "int8" not in args.skip:
        name = args.int8_method or best_method(report.get("accuracy", {}), args.students[0]) or "kd"
        loss, params = method(name, args)
        student = args.out / f"seed{args.seeds[0]}" / f"{args.students[0]}-{name}" / "student_fp32.pt"
        if not student.is_file():
            distill(
                DistillConfig(loss=loss, params=params, train=train_config(args, args.epochs)),
                StudentConfig(name=args.students[0]),
                data,
                teacher,
                student.parent,
                student.parent.parent / "logits.npy",
            )
        start = time.perf_counter()
        report["int8"] = run_int8(args, data, test_data, teacher, student, name, args.out)
        report["int8"] |= {"seconds": round(time.perf_counter() - start, 1), "method": name}
    save_text(json.dumps(report, indent=1, default=str), results)
    print_summary(report)
    if args.readme:
        label = f"{len(data.train)} training images, {args.epochs} epochs"
        write_readme_block(args.readme, label, summary(report, len(data.val), len(test_data.val)))


def best_method(accuracy: dict, student: str) -> str | None:
    """The distillation method (not alone) with the best mean accuracy on the validation images
    held out of train/: chosen without looking at test/."""
    by_method: dict[str, list[float]] = {}
    for key, result in accuracy.items():
        who, name, _ = key.split("/")
        if who == student and name != "alone":
            by_method.setdefault(name, []).append(result.get("val_accuracy", 0.0))  # collapsed: 0
    return max(by_method, key=lambda name: np.mean(by_method[name])) if by_method else None


def summary(report: dict, val_images: int, test_images: int) -> str:
    """The README's block for one budget: the accuracy table, the method chosen on validation,
    the int8 of that method beside its fp32 student, and the CPU."""
    from edgekd.reporting.environment import cpu_name

    lines = []
    if "accuracy" in report:
        lines = [summary_table(report["accuracy"]), settings_table(report["accuracy"], report.get("methods", {}))]
    student = report["args"]["students"][0]
    chosen = best_method(report.get("accuracy", {}), student)
    if chosen:
        lines.append(
            f"\nChosen on {val_images} validation images held out of train/ (best mean): **{chosen}**; "
            f"the table's accuracies are on {test_images} test/ images."
        )
    if "int8" in report:
        lines.append("\n" + int8_table(report["int8"], report["args"]))
    lines.append(f"\nCPU: {cpu_name()}, {os.cpu_count()} cores.")
    return "\n".join(lines)


def row_order(name: str) -> int:
    """Tables list methods in METHODS' order, then the --variant rows."""
    order = list(METHODS)
    return order.index(name) if name in order else len(order)


def settings_table(accuracy: dict, methods: dict) -> str:
    """Markdown: the loss and its full settings (edgekd's defaults filled in) behind each row, as
    `methods` recorded them when they ran (else as METHODS has them now)."""
    from edgekd.losses import LOSSES

    names = sorted({key.split("/")[1] for key in accuracy}, key=row_order)
    rows = ["\n| method | loss | settings |", "|---|---|---|"]
    for name in names:
        if name not in methods and name not in METHODS:
            rows.append(f"| {name} | - | not recorded: rewrite with its --variant |")
            continue
        loss, params = methods.get(name) or METHODS[name]
        settings = LOSSES[loss].Config(**params).model_dump()
        given = [(k, v) for k, v in settings.items() if v or k in params]  # defaults that are off stay out
        shown = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in given)
        rows.append(f"| {name} | `{loss}` | {shown} |")
    return "\n".join(rows)


def int8_table(int8: dict, args: dict) -> str:
    """The student's rows (not the teacher's, which only check the export) beside its fp32."""
    accuracy = int8["accuracy"]
    fp32 = accuracy["fp32 (PyTorch)"]
    seed = args["seeds"][0]
    who = f"the {int8['method']} student" if "method" in int8 else "the student"
    rows = [f"| int8 of {who} (seed {seed}) | test accuracy | minus fp32 |", "|---|---|---|"]
    for name, value in accuracy.items():
        if not name.startswith("teacher"):
            delta = "-" if name.startswith("fp32") else f"{(value - fp32) * 100:+.2f} pt"
            rows.append(f"| {name} | {value:.2%} | {delta} |")
    seconds = f"; {int8['seconds'] / 60:.1f} min for all of it (QAT, PTQ, exports, runs)" if "seconds" in int8 else ""
    qat = f"QAT: {args['qat_epochs']} epoch(s) at lr {args['qat_lr']} with that method's loss on"
    return "\n".join(rows) + f"\n\n{qat}{seconds}."


BEGIN, END = "<!-- distill_cifar.py tables: begin -->", "<!-- distill_cifar.py tables: end -->"


def write_readme_block(readme: Path, label: str, body: str) -> None:
    """Replaces this budget's block (its `#### label` heading up to the next one) between the
    README's markers, or adds it; the other budgets' blocks stay, ordered by their labels'
    leading number (training images)."""
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme} has no {BEGIN} ... {END} section to write the table into")
    head, rest = text.split(BEGIN, 1)
    inside, tail = rest.split(END, 1)
    blocks = {}
    for block in inside.split("\n#### ")[1:]:
        title, _, content = block.partition("\n")
        blocks[title.strip()] = content.strip()
    blocks[label] = body.strip()
    ordered = sorted(blocks.items(), key=lambda block: int(block[0].split()[0]))  # smallest budget first
    inner = "".join(f"\n#### {title}\n\n{content}\n" for title, content in ordered)
    save_text(f"{head}{BEGIN}\n{inner}\n{END}{tail}", readme)


def print_summary(report: dict) -> None:
    if "accuracy" in report:
        print(summary_table(report["accuracy"]))


def summary_table(accuracy: dict) -> str:
    """Markdown: per student, each method's mean test/ accuracy over the seeds +- its sample
    standard deviation, and its gain over alone (mean of the per-seed differences, with their
    range); the mean validation accuracy (held out of train/; a collapsed run counts 0), which
    chooses the method; the mean seconds per run; and the wall time of all runs."""
    runs: dict[tuple[str, str], dict[str, float]] = {}
    collapsed: dict[tuple[str, str], int] = {}
    wall: dict[tuple[str, str], list[float]] = {}
    val: dict[tuple[str, str], list[float]] = {}
    for key, result in accuracy.items():
        student, name, seed = key.split("/")
        runs.setdefault((student, name), {})
        if result["seconds"] is not None:  # None: reused, not timed
            wall.setdefault((student, name), []).append(result["seconds"])
        val.setdefault((student, name), []).append(result.get("val_accuracy", 0.0) * 100)
        if "collapsed" in result:
            collapsed[student, name] = collapsed.get((student, name), 0) + 1
        else:
            runs[student, name][seed] = result.get("test_accuracy", result["val_accuracy"]) * 100
    seconds = sum(result["seconds"] or 0 for result in accuracy.values())
    lines = [
        "| student | method | seeds | test accuracy (mean +- sd) | gain over alone (mean, range) | val mean | s/run |",
        "|---|---|---|---|---|---|---|",
    ]
    for (student, name), by_seed in sorted(runs.items(), key=lambda item: (item[0][0], row_order(item[0][1]))):
        stopped = collapsed.get((student, name), 0)
        if not by_seed:
            lines.append(f"| {student} | {name} | {stopped} | collapsed in every seed (stopped) | - | - | - |")
            continue
        values = np.array(list(by_seed.values()))
        sd = values.std(ddof=1) if len(values) > 1 else float("nan")
        alone = runs.get((student, "alone"), {})
        gains = np.array([v - alone[seed] for seed, v in by_seed.items() if seed in alone])
        gain = "-" if name == "alone" or not len(gains) else (
            f"{gains.mean():+.2f} pt ({gains.min():+.2f} to {gains.max():+.2f})"
        )  # fmt: skip
        seeds = f"{len(values)}" + (f" (+{stopped} collapsed, stopped)" if stopped else "")
        timed_runs = wall.get((student, name))
        each = f"{np.mean(val[student, name]):.2f}% | " + (f"{np.mean(timed_runs):.0f}" if timed_runs else "-")
        lines.append(f"| {student} | {name} | {seeds} | {values.mean():.2f}% +- {sd:.2f} | {gain} | {each} |")
    untimed = sum(result["seconds"] is None for result in accuracy.values())
    timing = f"{seconds / 60:.1f} min of training" + (f" ({untimed} reused, not timed)" if untimed else "")
    return "\n".join(["", *lines, f"\n{len(accuracy)} runs, {timing}"])


if __name__ == "__main__":
    main()
