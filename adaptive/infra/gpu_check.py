"""``make gpu-check``: every GPU measurement of the book in one command and one JSON file.

On a machine with one CUDA GPU, in about ten minutes, it

1. runs every chapter in quick mode with ``device cuda`` (papermill, into ``OUT/notebooks``,
   with checkpoints of its own, so no CPU run is resumed);
2. runs each benchmark at full shape in bfloat16: ``adaptive.benchmark`` (width 2048, batch
   512, L = 8), ``adaptive.clevr.benchmark`` (CLEVR's 1024x14x14 features, width 512, batch
   64, L = 12) and ``adaptive.spatial.benchmark`` (ResNet-110, batch 128);
3. runs one-GPU ``torchrun`` smoke runs of the CLEVR and spatial trainers (a tiny mini-CLEVR
   and the generated objects, a few updates each, bf16);

and writes ``OUT/gpu-check.json``: the GPU, torch's version, and for every step its command,
exit status, seconds and, for the benchmarks, their tables. A step that fails is recorded
and the others still run; the exit status says whether all passed. Without a visible CUDA
GPU it stops at once, before anything runs. ``--dry-run`` prints the steps instead.

    python -m adaptive.infra.gpu_check [--out build/gpu-check] [--dry-run]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from subprocess import DEVNULL, STDOUT, TimeoutExpired, run

import torch

CHAPTERS = ("01_halting_mechanisms", "02_dact_bound", "03_parity", "04_performance", "05_clevr", "06_spatial")
WITH_CHECKPOINTS = ("03_parity", "05_clevr", "06_spatial")   # notebooks with a checkpoint_dir parameter
STEP_TIMEOUT_S = 600


def steps(out: Path) -> list[dict]:
    """The steps of the check: a name, a command, and the JSON file it writes (if any)."""
    python = sys.executable
    torchrun = [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    plan = []
    for name in CHAPTERS:
        command = [python, "-m", "papermill", f"notebooks/{name}.ipynb", str(out / "notebooks" / f"{name}.ipynb"),
                   "-k", "python3", "-p", "quick", "True", "-p", "device", "cuda",
                   "-p", "results_path", str(out / "results" / f"{name}.json")]
        if name in WITH_CHECKPOINTS:
            command += ["-p", "checkpoint_dir", str(out / "checkpoints" / name)]
        plan.append({"name": f"chapter {name} (quick, cuda)", "command": command,
                     "json": str(out / "results" / f"{name}.json")})
    plan += [
        {"name": "adaptive.benchmark (width 2048, batch 512, L 8, bf16)",
         "command": [python, "-m", "adaptive.benchmark", "--device", "cuda", "--bf16",
                     "--json", str(out / "benchmark.json")], "json": str(out / "benchmark.json")},
        {"name": "adaptive.clevr.benchmark (CLEVR shape, bf16)",
         "command": [python, "-m", "adaptive.clevr.benchmark", "--device", "cuda", "--bf16",
                     "--json", str(out / "clevr_benchmark.json")], "json": str(out / "clevr_benchmark.json")},
        {"name": "adaptive.spatial.benchmark (ResNet-110, batch 128, bf16)",
         "command": [python, "-m", "adaptive.spatial.benchmark", "--depth", "110", "--batch", "128",
                     "--device", "cuda", "--bf16", "--json", str(out / "spatial_benchmark.json")],
         "json": str(out / "spatial_benchmark.json")},
        {"name": "mini-CLEVR for the torchrun smoke run",
         "command": [python, "-m", "adaptive.clevr.minigen", "--out", str(out / "mini-clevr"), "--train", "40",
                     "--val", "20", "--seed", "0", "--features", "attributes"]},
        {"name": "torchrun adaptive.clevr.train (1 GPU, DACT, bf16)",
         "command": torchrun + ["-m", "adaptive.clevr.train", "--data-root", str(out / "mini-clevr"),
                                "--method", "dact", "--tau", "0.001", "--max-steps", "4", "--width", "32",
                                "--embed-dim", "16", "--stem-stride", "2", "--epochs", "1", "--batch-size", "16",
                                "--max-train-batches", "4", "--device", "cuda", "--bf16", "--quiet",
                                "--checkpoint-dir", str(out / "checkpoints" / "clevr-torchrun")]},
        {"name": "torchrun adaptive.spatial.train (1 GPU, PSACT, bf16)",
         "command": torchrun + ["-m", "adaptive.spatial.train", "--method", "psact", "--tau", "0.01",
                                "--dataset", "objects", "--train-size", "128", "--test-size", "64",
                                "--batch-size", "32", "--updates", "4", "--eval-every", "2", "--device", "cuda",
                                "--bf16", "--quiet",
                                "--checkpoint-dir", str(out / "checkpoints" / "spatial-torchrun")]},
    ]
    return plan


def run_step(step: dict, log: Path) -> dict:
    """Run one step with its output in ``log``; its record for the JSON file."""
    started = time.perf_counter()
    with log.open("w") as output:
        try:
            status = run(step["command"], stdout=output, stderr=STDOUT, stdin=DEVNULL,
                         timeout=STEP_TIMEOUT_S).returncode
        except TimeoutExpired:
            status = "timeout"
    record = {"name": step["name"], "command": " ".join(step["command"]), "returncode": status,
              "seconds": round(time.perf_counter() - started, 1), "log": str(log)}
    if status == 0 and step.get("json") and Path(step["json"]).is_file():
        record["result"] = json.loads(Path(step["json"]).read_text())
    return record


def _commit() -> str:
    """The checkout's commit, or "" outside a git checkout."""
    try:
        return run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaptive.infra.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="build/gpu-check", help="folder of the JSON file, logs and runs")
    parser.add_argument("--dry-run", action="store_true", help="print the steps; run nothing")
    args = parser.parse_args(argv)
    out = Path(args.out)
    plan = steps(out)
    if args.dry_run:
        for step in plan:
            print(f"{step['name']}:\n    {' '.join(step['command'])}")
        return 0
    if not torch.cuda.is_available():
        print("make gpu-check needs a CUDA GPU, and torch sees none (torch.cuda.is_available() is False; "
              f"torch {torch.__version__}, CUDA build {torch.version.cuda}). Run it on a GPU machine with a "
              "CUDA build of torch; `python -m adaptive.infra.gpu_check --dry-run` lists what it would run.",
              file=sys.stderr)
        return 2
    if out.exists():
        shutil.rmtree(out)                     # a fresh check: nothing of an earlier one is reused
    (out / "logs").mkdir(parents=True)
    report = {"gpu": torch.cuda.get_device_name(0), "gpus_visible": torch.cuda.device_count(),
              "torch": torch.__version__, "cuda": torch.version.cuda, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "commit": _commit(), "steps": []}
    for index, step in enumerate(plan):
        print(f"[{index + 1}/{len(plan)}] {step['name']} ...", flush=True)
        record = run_step(step, out / "logs" / f"{index + 1:02d}.log")
        print(f"    exit {record['returncode']} in {record['seconds']} s", flush=True)
        report["steps"].append(record)
        (out / "gpu-check.json").write_text(json.dumps(report, indent=1))   # after every step: nothing is lost
    failed = [record["name"] for record in report["steps"] if record["returncode"] != 0]
    print(f"wrote {out / 'gpu-check.json'}; " + (f"failed: {failed}" if failed else "every step passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
