"""The per-worker training loop run by Ray Train: a DeepSpeed engine over a GLiNER span model."""
from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from gliner import GLiNER
from gliner.optim import parameter_groups
from gliner.train_step import batch_loss
from gliner.training_data import ExampleError, build_training_batch, choose_label_sets, parse_example, shared_label_set

from .deepspeed_engine import initialize_engine
from .fit import DEEPSPEED_DIR, DEEPSPEED_TAG, STATE_FILE, step_event

SKIP_REASONS = (
    "not_a_record", "empty_tokenized_text", "bad_tokenized_text", "bad_span", "span_out_of_range", "span_too_wide",
    "bad_negatives", "bad_ner_labels",
)


def train_loop_per_worker(config_dict: dict) -> None:
    import deepspeed
    import ray.train
    import ray.train.torch

    from .train import TrainConfig

    config = TrainConfig.model_validate(config_dict)
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(config.scale.torch_threads or max(1, (os.cpu_count() or 1) // world_size))
    torch.manual_seed(config.seed + rank)
    device = ray.train.torch.get_device()

    checkpoint = ray.train.get_checkpoint()
    state = {"step": 0, "examples": 0}
    with (checkpoint.as_directory() if checkpoint else contextlib.nullcontext()) as checkpoint_dir:
        gliner = _initial_model(config, Path(checkpoint_dir) if checkpoint_dir else None)
        gliner.train()
        gliner.model.to(device)
        engine = _deepspeed_engine(deepspeed, config, gliner, world_size)
        if checkpoint_dir:
            engine.load_checkpoint(str(Path(checkpoint_dir) / DEEPSPEED_DIR), tag=DEEPSPEED_TAG)
            state = json.loads((Path(checkpoint_dir) / STATE_FILE).read_text())

    state["resumed_from_step"] = state["step"] if checkpoint else None
    rng = random.Random(config.seed * 1000 + rank + state["step"])
    skipped: Counter = Counter()
    shard = ray.train.get_dataset_shard("train")
    window = {"loss": 0.0, "micro_batches": 0, "examples": 0, "started": time.perf_counter()}
    loss_options = config.loss.model_dump()
    while state["step"] < config.max_steps:
        for rows in shard.iter_batches(batch_size=config.scale.micro_batch_size, batch_format="pyarrow", drop_last=False):
            examples = _parse_rows(rows.to_pylist(), config, skipped)
            if not examples:
                continue
            batch = _training_batch(gliner, examples, config, rng)
            loss = batch_loss(engine.module, {k: v.to(device) for k, v in batch.items()}, reference=False, **loss_options)
            engine.backward(loss)
            engine.step()
            window["loss"] += loss.item()
            window["micro_batches"] += 1
            window["examples"] += len(examples)
            state["examples"] += len(examples)
            event = step_event(engine, state, config, resumed=checkpoint is not None)
            if event == "checkpoint":
                metrics = _window_metrics(window, state, engine, skipped, world_size)
                _save_and_report(deepspeed, engine, gliner, state, metrics, rank)
            elif event == "log":
                ray.train.report(_window_metrics(window, state, engine, skipped, world_size))
            if state["step"] >= config.max_steps:
                break


def _initial_model(config, checkpoint_dir: Path | None) -> GLiNER:
    if checkpoint_dir is not None:
        return GLiNER.from_pretrained(checkpoint_dir)
    if config.model.init_from:
        return GLiNER.from_pretrained(config.model.init_from, max_length=config.model.max_len, max_width=config.model.max_width)
    return GLiNER.from_backbone(
        config.model.backbone,
        labels_encoder=config.model.labels_encoder,
        hidden_size=config.model.hidden_size,
        max_width=config.model.max_width,
        max_len=config.model.max_len,
        span_mode=config.model.span_mode,
        dropout=config.model.dropout,
        max_types=config.data.max_types,
        max_neg_type_ratio=config.data.max_neg_type_ratio,
    )


def _deepspeed_engine(deepspeed, config, gliner: GLiNER, world_size: int):
    optim = config.optim
    groups = parameter_groups(gliner.model, optim.lr_encoder, optim.lr_others, optim.weight_decay_encoder, optim.weight_decay_others)
    # The fused kernel (CPU and GPU) does the same update as the per-tensor loop, several times faster on CPU.
    optimizer = torch.optim.AdamW(groups, fused=True)
    return initialize_engine(deepspeed, gliner.model, optimizer, config, world_size)


def _parse_rows(rows: list[dict], config, skipped: Counter) -> list:
    examples = []
    for row in rows:
        try:
            examples.append(parse_example(row, config.model.max_width, config.model.max_len))
        except ExampleError as error:
            skipped[error.reason] += 1
    return examples


def _training_batch(gliner: GLiNER, examples: list, config, rng: random.Random) -> dict:
    if gliner.config.is_bi_encoder:
        label_sets = [shared_label_set(examples, config.data.max_types, rng)]
    else:
        label_sets = choose_label_sets(examples, config.data.max_types, config.data.max_neg_type_ratio, rng)
    return build_training_batch(gliner.config, gliner.tokenizer, examples, label_sets, gliner.labels_tokenizer)


def _window_metrics(window: dict, state: dict, engine, skipped: Counter, world_size: int) -> dict:
    """Loss and speed since the last report, with counts summed over all workers."""
    import torch.distributed as dist

    counts = torch.tensor([window["loss"], window["micro_batches"], window["examples"], state["examples"]] + [skipped[r] for r in SKIP_REASONS], dtype=torch.float64)
    if world_size > 1:
        dist.all_reduce(counts)
    loss_sum, micro_batches, window_examples, examples_seen = counts[:4].tolist()
    now = time.perf_counter()
    seconds = now - window["started"]
    # Throughput since the first report: start-up (model load, kernel compilation, first batches) excluded.
    steady = window.setdefault("steady", {"started": now, "examples_seen": examples_seen})
    metrics = {
        "step": state["step"],
        "loss": loss_sum / max(1.0, micro_batches),
        "examples_per_s": window_examples / max(seconds, 1e-9),
        "steady_examples_per_s": (examples_seen - steady["examples_seen"]) / max(now - steady["started"], 1e-9) if now > steady["started"] else None,
        "examples_seen": int(examples_seen),
        "lr": max(engine.get_lr()),
        "skipped": {reason: int(count) for reason, count in zip(SKIP_REASONS, counts[4:].tolist()) if count},
        "resumed_from_step": state["resumed_from_step"],
    }
    window.update(loss=0.0, micro_batches=0, examples=0, started=now)
    return metrics


def _save_and_report(deepspeed, engine, gliner: GLiNER, state: dict, metrics: dict, rank: int) -> None:
    """Every rank writes its DeepSpeed shard; rank 0 adds the upstream-format model and the trainer state."""
    import ray.train

    with tempfile.TemporaryDirectory() as directory:
        engine.save_checkpoint(str(Path(directory) / DEEPSPEED_DIR), tag=DEEPSPEED_TAG)
        parameters = list(engine.module.parameters())
        with deepspeed.zero.GatheredParameters(parameters, enabled=engine.zero_optimization_stage() == 3):
            if rank == 0:
                was_training = gliner.training
                gliner.save_pretrained(directory)
                gliner.train(was_training)
                (Path(directory) / STATE_FILE).write_text(json.dumps({"step": state["step"], "examples": state["examples"]}))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
