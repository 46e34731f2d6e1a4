"""Distil the annotating LLM: LoRA-fine-tune a causal LM on teacher annotations with Ray Train and DeepSpeed.

    python -m ray_jobs.distill --config configs/distill/<name>.yaml [key=value ...]
    python -m ray_jobs.distill --config ... --documents PATH --annotations PATH --base-model DIR_OR_ID --output DIR
                               --max-steps N --num-workers N

Pairs are built on the driver from the `annotations` and `documents` contracts (`synth.sft_pairs`): the annotate
job's exact chat prompt, and the teacher's answer as compact JSON. Ray Data tokenises them (loss on the answer only);
each Ray Train worker reads its shard, and steps a DeepSpeed engine over the base model with LoRA adapters (ZeRO stage,
precision, micro-batch and accumulation from the config; gloo on CPU). Checkpoints (adapter, DeepSpeed state of the
adapters) are reported every `checkpoint_every` steps; a failed run restarts from the latest (`max_failures`).
At the end rank 0 writes OUTPUT/adapter (peft) and OUTPUT/merged (adapter merged into the base, safetensors and
tokenizer, loadable by vLLM); the driver writes OUTPUT/_SUMMARY.json. OUTPUT must be a path every worker can write
(one machine, or a shared file system).
"""
from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from .fit import STATE_FILE, FitConfig, ScaleSection, fit
from .job_command import FLAGS, BadInput, Flag, JobFailed, job_main, parse_job_args
from .job_config import Section
from .job_summary import write_summary
LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class ModelSection(Section):
    base: str  # the student: a local directory or hub id
    tokenizer: str | None = None  # default: the base model's
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False


class LoraSection(Section):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: list(LLAMA_PROJECTIONS))
    bias: Literal["none", "all", "lora_only"] = "none"


class DataSection(Section):
    documents: str  # the documents contract: Parquet file or directory
    annotations: str  # the annotations contract: Parquet file or directory (the annotate job's OUTPUT/annotations)
    prompt: str = "configs/annotate/prompt_biomed.yaml"  # the annotate job's prompt: the student sees the same
    max_length: int = Field(4096, ge=8)  # prompt + answer tokens
    overflow: Literal["skip", "truncate"] = "skip"  # longer pairs: skipped, or the answer's tail cut
    skip_empty: bool = False  # skip annotations with no entities (else the student learns to answer "none")
    end_token: str | None = None  # ends the answer; default the tokenizer's eos (Llama 3 chat: "<|eot_id|>")
    shuffle: bool = True


class OptimSection(Section):
    lr: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_ratio: float = Field(0.03, ge=0, le=1)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    max_grad_norm: float = Field(1.0, ge=0)


class DistillScaleSection(ScaleSection):
    """The shared scale fields; `precision` is also the dtype the base model is loaded in."""

    micro_batch_size: int = Field(1, ge=1)
    pad_to_multiple_of: int = Field(1, ge=1)


class DistillConfig(FitConfig):
    name: str = "distill"
    model: ModelSection
    lora: LoraSection = LoraSection()
    data: DataSection
    optim: OptimSection = OptimSection()
    scale: DistillScaleSection = DistillScaleSection()
    log_every: int = Field(10, ge=1)

    @field_validator("output")
    @classmethod
    def _local_output(cls, value: str) -> str:
        if "://" in value:
            raise ValueError("output must be a file-system path (rank 0 writes the adapter and merged model there)")
        return str(Path(value).resolve())


def parse_args(argv: list[str] | None = None) -> tuple[DistillConfig, str | None]:
    flags = [("--documents", Flag("data.documents", FLAGS["--documents"].help)), ("--annotations", Flag("data.annotations", FLAGS["--annotations"].help)),
             ("--base-model", Flag("model.base", "the student: a local directory or a hub id")), "--output", "--max-steps", "--num-workers"]
    return parse_job_args(argv, __doc__, DistillConfig, flags)


def prepare_pairs(config: DistillConfig):
    """Pairs built on the driver, tokenised by Ray Data; returns the dataset of kept pairs and the counts per reason."""
    from synth.prompts import load_prompt
    from synth.sft_pairs import build_sft_pairs, read_pair_sources

    from .distill_loop import tokenized_dataset

    documents, annotations = read_pair_sources(config.data.documents, config.data.annotations)
    pairs, skipped = build_sft_pairs(documents, annotations, load_prompt(config.data.prompt), config.data.skip_empty)
    if not pairs:
        raise BadInput(f"no training pairs from {len(annotations)} annotation rows (skipped: {dict(skipped)})")
    if config.data.shuffle:
        random.Random(config.seed).shuffle(pairs)
    dataset, token_skips, truncated = tokenized_dataset(pairs, config)
    counts = {"annotation_rows": len(annotations), "pairs": len(pairs), "trained": len(pairs) - sum(token_skips.values()),
              "truncated": truncated, "skipped": dict(sorted((skipped + token_skips).items()))}
    if counts["trained"] < config.scale.num_workers:
        raise BadInput(f"{counts['trained']} pairs fit max_length={config.data.max_length}: fewer than the workers ({counts})")
    return dataset, counts


def fit_student(config: DistillConfig, address: str | None = None):
    """Fit on Ray Train; returns (Ray Train result, pair counts)."""
    from .distill_loop import train_loop_per_worker
    from .ray_runtime import init_ray

    init_ray(address)
    dataset, counts = prepare_pairs(config)
    return fit(config, train_loop_per_worker, dataset, config.output), counts


def summary_fields(result, config: DistillConfig, counts: dict) -> dict:
    from .distill_loop import ADAPTER_DIR, MERGED_DIR

    with result.checkpoint.as_directory() as checkpoint_dir:
        state = json.loads((Path(checkpoint_dir) / STATE_FILE).read_text())
    history = state["loss_history"]
    return {
        "pairs": counts,
        "steps": state["step"],
        "pairs_seen": result.metrics.get("pairs_seen"),  # all workers; the state file holds rank 0's count
        "answer_tokens_seen": result.metrics.get("answer_tokens_seen"),
        "first_loss": history[0][1] if history else None,
        "last_loss": history[-1][1] if history else None,
        "loss_history": history,
        "metrics": result.metrics,
        "adapter": str(Path(config.output) / ADAPTER_DIR),
        "merged": str(Path(config.output) / MERGED_DIR),
    }


def run(config: DistillConfig, address: str | None = None) -> dict:
    """Fit (rank 0 saves the adapter and the merged model) and write OUTPUT/_SUMMARY.json; returns the summary."""
    started = time.time()
    result, counts = fit_student(config, address)
    if result.error is not None:
        raise JobFailed(f"distillation failed: {result.error}") from result.error
    return write_summary(config.output, "distill", config, started, summary_fields(result, config, counts),
                         ("torch", "transformers", "deepspeed", "peft"))


def print_summary(summary: dict) -> None:
    print(f"distilled {summary['steps']} steps over {summary['pairs']['trained']} pairs (loss {summary['first_loss']} -> "
          f"{summary['last_loss']}) in {summary['seconds']} s -> {summary['merged']}")


def main(argv: list[str] | None = None) -> int:
    return job_main(argv, parse_args, run, print_summary)


if __name__ == "__main__":
    sys.exit(main())
