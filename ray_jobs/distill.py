"""Distil the annotating LLM: LoRA-fine-tune a causal LM on teacher annotations with Ray Train and DeepSpeed.

    python -m ray_jobs.distill --config configs/distill/<name>.yaml [key=value ...]
    python -m ray_jobs.distill --config ... --documents PATH --annotations PATH --base-model DIR_OR_ID --output DIR
                               --max-steps N --num-workers N

Pairs are built on the driver from the `annotations` and `documents` contracts (`synth.sft_pairs`): the annotate
job's exact chat prompt, and the teacher's answer as compact JSON. Ray Data tokenises them (loss on the answer only);
each Ray Train worker reads its shard, and steps a DeepSpeed engine over the base model with LoRA adapters in the
shared fit loop (fit_loop.py: the frozen base in the run's precision, fp32 adapters and optimizer, bf16 autocast;
ZeRO stage, micro-batch and accumulation from the config; gloo on CPU, NCCL on GPU). Checkpoints (adapter, DeepSpeed state of the
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
from collections import Counter
from pathlib import Path
from typing import Literal

import pyarrow as pa
import torch
from pydantic import Field, field_validator

from synth.lora_student import TORCH_DTYPES, lora_model, merge_adapter, save_adapter
from synth.prompts import load_chat_tokenizer
from synth.sft_pairs import answer_end_id, pad_batch, tokenize_pair

from .training.fit import FitConfig, ScaleSection, fit
from .training.fit_loop import STATE_FILE, Batching, MicroBatch, run_fit_loop
from .runtime.job_command import FLAGS, BadInput, Flag, JobFailed, job_main, parse_job_args
from .runtime.job_config import Section
from .runtime.job_summary import write_summary
from .runtime.shared_storage import absolute_local_path

ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"
TOKENIZED_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())),
    ("truncated", pa.bool_()), ("skip_reason", pa.string()),
])
LIGHT_TASK_CPUS = 0.25
PAIRS_PER_BLOCK = 1000
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
    """The shared scale fields; `precision` is also the dtype the frozen base model is loaded in."""

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


# ------------------------------------------------------------------------------------------------ tokenising (Ray Data)
def tokenize_batch(batch: pa.Table, tokenizer_source: str, max_length: int, end_token: str | None, overflow: str) -> pa.Table:
    """Pairs (doc_id, messages, target) to token rows; a pair that does not fit keeps its row with `skip_reason` set."""
    tokenizer = load_chat_tokenizer(tokenizer_source)  # once per Ray worker process
    end_id = answer_end_id(tokenizer, end_token)
    rows = []
    for pair in batch.to_pylist():
        tokenized, reason = tokenize_pair(tokenizer, pair["messages"], pair["target"], max_length, end_id, overflow)
        rows.append({"doc_id": pair["doc_id"], "input_ids": tokenized.input_ids if tokenized else [],
                     "labels": tokenized.labels if tokenized else [], "truncated": bool(tokenized and tokenized.truncated),
                     "skip_reason": reason})
    return pa.Table.from_pylist(rows, schema=TOKENIZED_SCHEMA)


def tokenized_dataset(pairs: list[dict], config: DistillConfig) -> tuple:
    """(Ray Dataset of the pairs that fit, token-level skips per reason, number truncated); tokenised by Ray Data."""
    import ray
    from ray.data.expressions import col

    # Blocks of ~1000 pairs: each tokenising task starts a worker that imports transformers, seconds on a small machine.
    blocks = -(-len(pairs) // PAIRS_PER_BLOCK)
    tokenized = ray.data.from_items(pairs, override_num_blocks=blocks).map_batches(
        tokenize_batch, batch_format="pyarrow", batch_size=None, num_cpus=LIGHT_TASK_CPUS,
        fn_kwargs={"tokenizer_source": config.model.tokenizer or config.model.base, "max_length": config.data.max_length,
                   "end_token": config.data.end_token, "overflow": config.data.overflow}).materialize()
    skipped, truncated = Counter(), 0
    for batch in tokenized.select_columns(["skip_reason", "truncated"]).iter_batches(batch_format="pyarrow"):
        skipped.update(reason for reason in batch["skip_reason"].to_pylist() if reason)
        truncated += sum(batch["truncated"].to_pylist())
    kept = tokenized.filter(expr=col("skip_reason").is_null()).drop_columns(["skip_reason", "truncated"])
    return kept, skipped, truncated


# ------------------------------------------------------------------------------------------------ training (workers)
class LoraTask:
    """The fit loop's task for the student: token rows in, the causal LM's loss on the answer tokens out."""

    count_keys = ("pairs", "tokens", "answer_tokens")
    rate_keys = count_keys
    validation, validation_keys, validation_score = None, (), ""  # the student is judged by what it annotates, not here

    def __init__(self, config: DistillConfig):
        self.config = config
        self.tokenizer = load_chat_tokenizer(config.model.tokenizer or config.model.base)
        pad_id = self.tokenizer.pad_token_id
        self.pad_id = pad_id if pad_id is not None else answer_end_id(self.tokenizer, config.data.end_token)

    def build_model(self, checkpoint_dir: Path | None) -> torch.nn.Module:
        # A checkpoint holds the adapters only (fit_loop loads them); the frozen base comes from the base model.
        return lora_model(self.config.model, self.config.lora, self.config.scale.precision, self.config.seed)

    def optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
        return torch.optim.AdamW(trainable, lr=self.config.optim.lr, weight_decay=self.config.optim.weight_decay, fused=True)

    def start(self, rank: int, step: int) -> None:
        torch.manual_seed(self.config.seed + rank + step)  # LoRA dropout differs per rank and after a resume

    def micro_batch(self, rows: list[dict], bucket: None) -> MicroBatch:
        tensors = pad_batch(rows, self.pad_id, self.config.scale.pad_to_multiple_of)
        counts = {"pairs": len(rows), "tokens": float(tensors["attention_mask"].sum()),
                  "answer_tokens": float((tensors["labels"] != -100).sum())}
        return MicroBatch(tensors, counts)

    def loss(self, engine, tensors: dict) -> torch.Tensor:
        return engine(**tensors).loss  # transformers' causal-LM loss upcasts the logits: fp32 under autocast too

    def save_model(self, engine, directory: Path) -> None:
        save_adapter(engine.module, self.tokenizer, directory / ADAPTER_DIR)

    def metrics(self, window: dict, totals: dict) -> dict:
        return {}

    def batching(self, rows) -> Batching:
        return Batching()  # micro-batches of pairs, neither grouped by length nor sized by tokens

    def finish(self, engine, rank: int) -> None:
        """Rank 0 writes OUTPUT/adapter and OUTPUT/merged (the base in the run's precision with the adapter merged in)."""
        if rank != 0:
            return
        output = Path(self.config.output)
        save_adapter(engine.module, self.tokenizer, output / ADAPTER_DIR)
        merge_adapter(self.config.model.base, output / ADAPTER_DIR, output / MERGED_DIR, TORCH_DTYPES[self.config.scale.precision], self.tokenizer)


def train_loop_per_worker(config_dict: dict) -> None:
    run_fit_loop(LoraTask(DistillConfig.model_validate(config_dict)))


# ------------------------------------------------------------------------------------------------ the job
def fit_student(config: DistillConfig, address: str | None = None):
    """Fit on Ray Train; returns (Ray Train result, pair counts)."""
    from .runtime.ray_runtime import init_ray

    init_ray(address, outputs=[config.output], inputs=[config.model.base])
    model = config.model
    config = config.model_copy(update={"model": model.model_copy(update={"base": absolute_local_path(model.base),
                                                                         "tokenizer": absolute_local_path(model.tokenizer)})})
    dataset, counts = prepare_pairs(config)
    return fit(config, train_loop_per_worker, dataset, config.output), counts


def summary_fields(result, config: DistillConfig, counts: dict) -> dict:
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
