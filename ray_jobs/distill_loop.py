"""Worker-side code of the distill job: the Ray Data tokenising stage, the per-worker LoRA + DeepSpeed training loop
run by Ray Train, and the export of the adapter and the merged model."""
from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import torch

from synth.prompts import load_chat_tokenizer
from synth.sft_pairs import answer_end_id, pad_batch, tokenize_pair

from .deepspeed_engine import initialize_engine
from .fit import DEEPSPEED_DIR, DEEPSPEED_TAG, STATE_FILE, step_event

ADAPTER_DIR = "adapter"
MERGED_DIR = "merged"
TOKENIZED_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())),
    ("truncated", pa.bool_()), ("skip_reason", pa.string()),
])
LIGHT_TASK_CPUS = 0.25
PAIRS_PER_BLOCK = 1000
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


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


def tokenized_dataset(pairs: list[dict], config) -> tuple:
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


# ------------------------------------------------------------------------------------------------ model
def lora_model(config):
    """The base causal LM in the run's precision, wrapped with fresh LoRA adapters (same init on every rank)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(config.model.base, dtype=TORCH_DTYPES[config.scale.precision],
                                                 attn_implementation=config.model.attn_implementation)
    model.config.use_cache = False
    if config.model.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lora = config.lora
    torch.manual_seed(config.seed)
    return get_peft_model(model, LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=list(lora.target_modules),
        bias=lora.bias, task_type="CAUSAL_LM"))


def deepspeed_engine(deepspeed, config, model, world_size: int):
    optim = config.optim
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=optim.lr, weight_decay=optim.weight_decay, fused=True)
    return initialize_engine(deepspeed, model, optimizer, config, world_size)


# ------------------------------------------------------------------------------------------------ the loop
def train_loop_per_worker(config_dict: dict) -> None:
    import deepspeed
    import ray.train
    import ray.train.torch

    from .distill import DistillConfig

    config = DistillConfig.model_validate(config_dict)
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(config.scale.torch_threads or max(1, (os.cpu_count() or 1) // world_size))
    device = ray.train.torch.get_device()
    tokenizer = load_chat_tokenizer(config.model.tokenizer or config.model.base)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else answer_end_id(tokenizer, config.data.end_token)

    engine = deepspeed_engine(deepspeed, config, lora_model(config).to(device), world_size)
    state = {"step": 0, "pairs": 0, "answer_tokens": 0, "loss_history": []}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as checkpoint_dir:
            # Only the adapters were saved; the frozen base weights come from the base model just loaded.
            engine.load_checkpoint(str(Path(checkpoint_dir) / DEEPSPEED_DIR), tag=DEEPSPEED_TAG, load_module_strict=False)
            state = json.loads((Path(checkpoint_dir) / STATE_FILE).read_text())
    state["resumed_from_step"] = state["step"] if checkpoint else None
    torch.manual_seed(config.seed + rank + state["step"])  # LoRA dropout differs per rank and after a resume

    shard = ray.train.get_dataset_shard("train")
    window = {"loss": 0.0, "micro_batches": 0, "pairs": 0, "tokens": 0, "answer_tokens": 0, "started": time.perf_counter()}
    while state["step"] < config.max_steps:
        micro_batches_this_epoch = 0
        for rows in shard.iter_batches(batch_size=config.scale.micro_batch_size, batch_format="pyarrow", drop_last=False):
            micro_batches_this_epoch += 1
            batch = pad_batch(rows.to_pylist(), pad_id, config.scale.pad_to_multiple_of)
            loss = engine(**{key: value.to(device) for key, value in batch.items()}).loss
            engine.backward(loss)
            engine.step()
            _count(window, state, batch, loss)
            event = step_event(engine, state, config, resumed=checkpoint is not None)
            if event == "checkpoint":
                _save_and_report(deepspeed, engine, tokenizer, state, _window_metrics(window, state, engine, world_size, rank), rank)
            elif event == "log":
                ray.train.report(_window_metrics(window, state, engine, world_size, rank))
            if state["step"] >= config.max_steps:
                break
        if micro_batches_this_epoch == 0:
            raise RuntimeError(f"worker {rank} got no training pairs: fewer pairs than workers?")
    if rank == 0:
        export_model(engine, deepspeed, tokenizer, config)


def _count(window: dict, state: dict, batch: dict, loss: torch.Tensor) -> None:
    answer_tokens = int((batch["labels"] != -100).sum())
    window["loss"] += loss.item()
    window["micro_batches"] += 1
    window["pairs"] += len(batch["input_ids"])
    window["tokens"] += int(batch["attention_mask"].sum())
    window["answer_tokens"] += answer_tokens
    state["pairs"] += len(batch["input_ids"])
    state["answer_tokens"] += answer_tokens


def _window_metrics(window: dict, state: dict, engine, world_size: int, rank: int) -> dict:
    """Mean loss and speed since the last report, summed over the workers; also appended to the loss history."""
    import torch.distributed as dist

    keys = ("loss", "micro_batches", "pairs", "tokens", "answer_tokens")
    counts = torch.tensor([window[key] for key in keys] + [state["pairs"], state["answer_tokens"]], dtype=torch.float64)
    if world_size > 1:
        dist.all_reduce(counts)
    summed = dict(zip(keys, counts[:5].tolist()))
    now = time.perf_counter()
    seconds = max(now - window["started"], 1e-9)
    metrics = {
        "step": state["step"],
        "loss": summed["loss"] / max(1.0, summed["micro_batches"]),
        "pairs_per_s": summed["pairs"] / seconds,
        "tokens_per_s": summed["tokens"] / seconds,
        "answer_tokens_per_s": summed["answer_tokens"] / seconds,
        "pairs_seen": int(counts[5]),
        "answer_tokens_seen": int(counts[6]),
        "lr": max(engine.get_lr()),
        "resumed_from_step": state["resumed_from_step"],
    }
    state["loss_history"].append([state["step"], metrics["loss"]])
    window.update(loss=0.0, micro_batches=0, pairs=0, tokens=0, answer_tokens=0, started=now)
    if rank == 0:
        print(f"[distill] step {metrics['step']} loss {metrics['loss']:.4f} lr {metrics['lr']:.2e} "
              f"tokens/s {metrics['tokens_per_s']:.0f}", flush=True)
    return metrics


def _save_and_report(deepspeed, engine, tokenizer, state: dict, metrics: dict, rank: int) -> None:
    """Every rank writes its DeepSpeed shard (adapters and optimizer only); rank 0 adds the peft adapter and the state."""
    import ray.train

    with tempfile.TemporaryDirectory() as directory:
        engine.save_checkpoint(str(Path(directory) / DEEPSPEED_DIR), tag=DEEPSPEED_TAG, exclude_frozen_parameters=True)
        save_adapter(engine, deepspeed, tokenizer, Path(directory) / ADAPTER_DIR, rank)
        if rank == 0:
            (Path(directory) / STATE_FILE).write_text(json.dumps({key: value for key, value in state.items() if key != "resumed_from_step"}))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


# ------------------------------------------------------------------------------------------------ export
def save_adapter(engine, deepspeed, tokenizer, directory: Path, rank: int) -> None:
    """peft's adapter files (adapter_config.json, adapter_model.safetensors) from the engine's model, on rank 0."""
    trainable = [parameter for parameter in engine.module.parameters() if parameter.requires_grad]
    with deepspeed.zero.GatheredParameters(trainable, enabled=engine.zero_optimization_stage() == 3):
        if rank == 0:
            engine.module.save_pretrained(directory)
            tokenizer.save_pretrained(directory)


def export_model(engine, deepspeed, tokenizer, config) -> None:
    """OUTPUT/adapter from the trained engine, and OUTPUT/merged: the base reloaded on CPU with the adapter merged in
    (independent of the ZeRO stage and of the GPU the engine holds), as safetensors with the tokenizer, for vLLM."""
    output = Path(config.output)
    save_adapter(engine, deepspeed, tokenizer, output / ADAPTER_DIR, rank=0)
    merge_adapter(config.model.base, output / ADAPTER_DIR, output / MERGED_DIR, TORCH_DTYPES[config.scale.precision], tokenizer)


def merge_adapter(base: str, adapter_dir: Path, merged_dir: Path, dtype: torch.dtype, tokenizer) -> Path:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.config.use_cache = True
    merged.save_pretrained(merged_dir)
    tokenizer.save_pretrained(merged_dir)
    return merged_dir
