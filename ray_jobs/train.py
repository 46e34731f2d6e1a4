"""Train a GLiNER model with Ray Train and DeepSpeed.

    python -m ray_jobs.train --config configs/train/<name>.yaml [key=value ...]
    python -m ray_jobs.train --config ... --train-data PATH --output DIR --max-steps N --num-workers N

Each worker reads its shard of the examples through Ray Data, builds batches with in-batch negative types, and
steps a DeepSpeed engine (ZeRO stage, precision, micro-batch and accumulation from the config; gloo on CPU).
Checkpoints (upstream-compatible model files plus DeepSpeed optimizer state) are reported to Ray Train every
`checkpoint_every` steps and at the end; a failed run restarts from the latest one (`max_failures`).
The final model is copied to OUTPUT/final_model and a summary written to OUTPUT/_SUMMARY.json.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from .fit import DEEPSPEED_DIR, STATE_FILE, FitConfig, fit
from .job_command import Flag, JobFailed, job_main, parse_job_args
from .job_config import Section
from .job_summary import write_summary


class ModelSection(Section):
    backbone: str | None = None  # text encoder: local directory or hub id
    labels_encoder: str | None = None  # set for a bi-encoder
    init_from: str | None = None  # a GLiNER checkpoint to continue from (post-training)
    hidden_size: int | None = None
    max_width: int = Field(12, ge=1)
    max_len: int = Field(384, ge=1)
    span_mode: Literal["markerV0", "marker"] = "markerV0"
    dropout: float = Field(0.4, ge=0.0, lt=1.0)


class DataSection(Section):
    train: str
    format: Literal["auto", "parquet", "jsonl", "json", "iob"] = "auto"  # auto: .jsonl, .json, .tsv (IOB2), else Parquet
    label_map: dict[str, str] | None = None  # IOB only: gold type -> label (every type the corpus has)
    max_types: int = Field(25, ge=1)
    max_neg_type_ratio: int = Field(1, ge=0)
    shuffle: bool = True


class OptimSection(Section):
    lr_encoder: float = Field(1e-5, gt=0)
    lr_others: float = Field(5e-5, gt=0)
    weight_decay_encoder: float = Field(0.01, ge=0)
    weight_decay_others: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, le=1)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    max_grad_norm: float = Field(10.0, ge=0)


class LossSection(Section):
    alpha: float = -1.0
    gamma: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    prob_margin: float = Field(0.0, ge=0, lt=1)
    reduction: Literal["sum", "mean"] = "sum"
    negatives: float = Field(1.0, ge=0, le=1)
    masking: Literal["none", "global", "label", "span"] = "none"


class TrainConfig(FitConfig):
    name: str = "gliner-train"
    model: ModelSection
    data: DataSection
    optim: OptimSection = OptimSection()
    loss: LossSection = LossSection()

    @model_validator(mode="after")
    def _needs_a_model(self) -> "TrainConfig":
        if not self.model.backbone and not self.model.init_from:
            raise ValueError("model.backbone or model.init_from must be set")
        return self


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, str | None]:
    train_data = Flag("data.train", "training examples: Parquet, JSONL or JSON; local path or fsspec URL")
    return parse_job_args(argv, __doc__, TrainConfig, [("--train-data", train_data), "--output", "--max-steps", "--num-workers"])


def fit_model(config: TrainConfig, address: str | None = None):
    """Fit on Ray Train; returns the Ray Train result."""
    from .example_reader import read_examples
    from .ray_runtime import init_ray
    from .train_loop import train_loop_per_worker

    init_ray(address)
    output = Path(config.output).resolve() if "://" not in config.output else config.output
    dataset = read_examples(config.data.train, config.data.format, config.data.label_map)
    if config.data.shuffle:
        dataset = dataset.random_shuffle(seed=config.seed)
    return fit(config, train_loop_per_worker, dataset, str(output))


def export_final_model(result, output: Path) -> Path:
    """Copy the last checkpoint's model files (not the optimizer state) to OUTPUT/final_model."""
    final = output / "final_model"
    if final.exists():
        shutil.rmtree(final)
    with result.checkpoint.as_directory() as checkpoint_dir:
        shutil.copytree(checkpoint_dir, final, ignore=shutil.ignore_patterns(DEEPSPEED_DIR, STATE_FILE))
    return final


def run(config: TrainConfig, address: str | None = None) -> dict:
    """Fit, copy the final model to OUTPUT/final_model and write OUTPUT/_SUMMARY.json; returns the summary."""
    started = time.time()
    result = fit_model(config, address)
    if result.error is not None:
        raise JobFailed(f"training failed: {result.error}") from result.error
    final = export_final_model(result, Path(config.output).resolve())
    fields = {"final_model": str(final), "metrics": result.metrics}
    return write_summary(config.output, "train", config, started, fields, ("torch", "transformers", "deepspeed"))


def print_summary(summary: dict) -> None:
    print(f"trained {summary['metrics'].get('step')} steps in {summary['seconds']} s -> {summary['final_model']}")


def main(argv: list[str] | None = None) -> int:
    return job_main(argv, parse_args, run, print_summary)


if __name__ == "__main__":
    sys.exit(main())
