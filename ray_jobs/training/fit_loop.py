"""The per-worker loop Ray Train runs for the train and distill jobs: one DeepSpeed engine, stepped in lockstep by
every rank, over whatever a `FitTask` trains.

What the loop guarantees on a GPU cluster, whatever the task:
- fp32 master weights, gradients and optimizer state; `precision: bf16` autocasts the forward only, and the task
  computes its loss in fp32; checkpoints hold fp32 tensors.
- Every tensor handed to a collective lives on the worker's device (NCCL serves no CPU tensors).
- Every rank runs the same number of forward/backward/step calls: a micro-batch with nothing valid in it becomes
  the task's placeholder, weighted 0, rather than being skipped (a skipping rank would leave the others waiting in
  a collective until the NCCL timeout).
- The host never waits for the device between log steps: losses are summed on the device, and micro-batches are
  built (tokenised, targets, pinned and copied) one ahead on a background thread.
- Torch threads follow the CPUs Ray assigned to the worker, not the host's core count.
- The data stream resumes: each worker trains on its share of a per-epoch permutation of the dataset's row numbers
  (RowStream), and a checkpoint records how many micro-batches every worker has trained on; a restarted run skips
  exactly those, so it goes on from the row after the last one the checkpoint covered.
- With the task's `validation`, held-out rows (a seeded share of the dataset, never trained on, or a validation
  dataset) are scored at every checkpoint, each rank its share, the counts summed in one collective; the best score
  so far and the validations since it are loop state, so early stopping by patience survives a restart.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from gliner.inputs import to_device

from .deepspeed_engine import initialize_engine
from .fit_validation import record_validation, split_for_validation, validate
from .fit_workers import TrainingRows, sum_over_workers
from ..runtime.output_root import OutputRoot
from ..runtime.progress import Progress

STATE_FILE = "trainer_state.json"
# What a checkpoint keeps of the loop state (and "totals": all workers' counts, which rank 0 carries on)
SAVED_STATE = ("step", "micro_batches", "loss_history", "validation_history", "best", "stale_validations", "stopped_early")
DEEPSPEED_DIR = "deepspeed"
DEEPSPEED_TAG = "state"
PREFETCH_MICRO_BATCHES = 2
EPOCH_SEED_FACTOR = 1_000_003  # an epoch's permutation is seeded with seed * EPOCH_SEED_FACTOR + epoch
GROUP_WINDOW = 32  # micro-batches whose rows are sorted by length together (RowStream with lengths)


@dataclass
class MicroBatch:
    """Tensors for the task's loss (on the host until the loop moves them), the counts it adds, and its weight in
    the loss: 1, or 0 for a placeholder that only keeps this rank stepping with the others."""

    tensors: dict[str, torch.Tensor]
    counts: dict[str, float] = field(default_factory=dict)
    weight: float = 1.0
    epoch: int = 0  # set by the loop: the epoch and dataset row numbers the micro-batch was built from
    row_ids: list[int] = field(default_factory=list)


class FitTask(Protocol):
    """What a job trains. The loop calls these; nothing else differs between the jobs."""

    config: object  # a FitConfig with a `data.shuffle` (a new order of the rows every epoch, or the dataset's own)
    count_keys: tuple[str, ...]  # the counts a MicroBatch may carry, summed over the workers at each report
    rate_keys: tuple[str, ...]  # of those, the ones reported as KEY_per_s and KEY_seen (the first also steady_KEY_per_s)
    # None, or what to validate on: `data` (None: hold out a seeded `fraction` of the training rows), `max_examples`
    # and `patience` (validations without a higher score before the run stops; None: never)
    validation: object | None
    validation_keys: tuple[str, ...]  # the counts `validate` returns, summed over the workers
    validation_score: str  # the metric of validation_metrics that ranks checkpoints (higher is better)

    def build_model(self, checkpoint_dir: Path | None) -> torch.nn.Module: ...  # fp32 weights, on the host
    def optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer: ...
    def start(self, rank: int, step: int) -> None: ...  # seeds what differs per rank and after a resume
    def micro_batch(self, rows: list[dict], bucket: int | None) -> MicroBatch: ...  # never empty: a placeholder with weight 0 at worst; bucket: its length bucket (Batching.budget), to pad to
    def loss(self, module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> torch.Tensor: ...  # fp32 scalar
    def save_model(self, engine, directory: Path) -> None: ...  # rank 0: the model files a checkpoint holds
    def metrics(self, window: dict[str, float], totals: dict[str, float]) -> dict: ...  # extra, from summed counts
    def batching(self, rows: "TrainingRows") -> Batching: ...  # how rows are cut into micro-batches (RowStream)
    def validate(self, engine, rows: list[dict], device: torch.device) -> dict[str, float]: ...  # eval mode, no grad
    def validation_metrics(self, counts: dict[str, float]) -> dict: ...  # from counts summed over the workers
    def finish(self, engine, rank: int) -> None: ...  # after the last step


def run_fit_loop(task: FitTask) -> None:
    import deepspeed
    import ray.train
    import ray.train.torch

    config = task.config
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    threads = worker_threads(config.scale.torch_threads)
    torch.set_num_threads(threads)
    device = ray.train.torch.get_device()
    checkpoint = ray.train.get_checkpoint()
    state = {"step": 0, "micro_batches": 0, "totals": {}, "loss_history": [], "validation_history": [], "best": None,
             "stale_validations": 0, "stopped_early": False}
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    with (checkpoint.as_directory() if checkpoint else contextlib.nullcontext()) as checkpoint_dir:
        checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        model = task.build_model(checkpoint_dir).to(device)
        engine = initialize_engine(deepspeed, model, task.optimizer(model), config, world_size)
        if checkpoint_dir:
            # Only trainable weights may have been saved (distill's frozen base comes from the base model).
            engine.load_checkpoint(str(checkpoint_dir / DEEPSPEED_DIR), tag=DEEPSPEED_TAG, load_module_strict=False)
            saved = json.loads((checkpoint_dir / STATE_FILE).read_text())
            saved.setdefault("micro_batches", saved["step"] * config.scale.grad_accum)  # saved before it was recorded
            state.update(saved)  # a checkpoint saved before validation existed keeps the defaults of its fields
            if rank != 0:
                state["totals"] = {}  # the saved totals are all workers'; rank 0 carries them on
    state["resumed_from_step"] = state["step"] if checkpoint else None
    task.start(rank, state["step"])
    window = Window(task.count_keys, task.rate_keys, device)
    static = {"torch_threads": threads, "resumed_from_step": state["resumed_from_step"]}
    rows = TrainingRows(ray.train.get_dataset_shard("train"))
    trained_ids, held_out = split_for_validation(task.validation, rows, config.seed, world_size)
    static["training_rows"] = len(trained_ids)
    static["validation_rows"] = len(held_out[1]) if held_out else 0
    batching = task.batching(rows)
    stream = RowStream(len(trained_ids), rank, world_size, config.scale.micro_batch_size, config.seed, config.data.shuffle,
                       batching.lengths, batching.budget, trained_ids)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.scale.precision == "bf16")
    progress = Progress(config.name, config.max_steps, "steps", OutputRoot(config.output), already_done=state["step"]) if rank == 0 else None
    shapes = ShapeLog()
    for micro in feed(micro_batches_of(task, rows, stream, state["micro_batches"], device), device):
        if state["step"] >= config.max_steps or state["stopped_early"]:  # also a restored run that had already finished
            break
        if config.row_trace:
            trace_micro_batch(config.row_trace, rank, state, micro)
        shapes.add(micro, log=rank == 0)
        state["micro_batches"] += 1
        with autocast:
            loss = task.loss(engine, micro.tensors) * micro.weight
        engine.backward(loss)
        engine.step()
        window.add(loss.detach(), micro)
        event = step_event(engine, state, config, resumed=checkpoint is not None)
        if event in ("checkpoint", "log"):
            metrics = {**window.report(state, engine, task, world_size), **static, **shapes.metrics()}
            if event == "checkpoint" and held_out:
                scores = validate(task, engine, held_out, rank, world_size, config.scale.micro_batch_size, device, autocast)
                metrics.update(scores, **record_validation(state, scores, task.validation_score, task.validation.patience))
            if event == "checkpoint":
                save_checkpoint(engine, task, state, metrics, rank)
            else:
                ray.train.report(metrics)
            if rank == 0:
                show_step(metrics, task.validation_score, progress)
        if progress is not None:
            progress.update(state["step"])
    if progress is not None:
        progress.finish()
    task.finish(engine, rank)


def show_step(metrics: dict, score_key: str | None, progress: Progress) -> None:
    """Rank 0: the reported step as a log line, and its loss (and validation score) on the progress line."""
    shown = {"loss": metrics["loss"], **({score_key: metrics[score_key]} if score_key in metrics else {})}
    print(f"[fit] step {metrics['step']} lr {metrics['lr']:.2e} " + " ".join(f"{key} {value:.4f}" for key, value in shown.items()), flush=True)
    progress.figures.update({key: round(value, 4) for key, value in shown.items()})


def worker_threads(configured: int | None) -> int:
    """Torch threads: as configured, else the CPUs Ray assigned to this worker (at least 1), never the host's cores
    (a Ray Train worker on a 192-core GPU node that asked for 8 CPUs gets 8)."""
    if configured:
        return configured
    import ray

    assigned = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    return max(1, math.floor(assigned))


@dataclass(frozen=True)
class TokenBudget:
    """Micro-batches by token budget: a row belongs to the smallest length bucket that holds its word count (the
    largest bucket takes longer rows, which the task cuts and counts), and a micro-batch holds the rows of one bucket,
    as many as `tokens` padded words allow. Every micro-batch of a bucket has the same number of rows and words."""

    buckets: tuple[int, ...]  # ascending word counts
    tokens: int

    def rows_per_batch(self, bucket: int) -> int:
        return max(1, self.tokens // bucket)

    def bucket_of(self, lengths: np.ndarray) -> np.ndarray:
        return np.asarray(self.buckets)[np.searchsorted(self.buckets, np.minimum(lengths, self.buckets[-1]))]


@dataclass(frozen=True)
class Batching:
    """How a task's rows are cut into micro-batches (RowStream): `lengths` (one per row) to group rows of similar
    length, and a `budget` to size micro-batches by tokens instead of rows (it needs the lengths)."""

    lengths: np.ndarray | None = None
    budget: TokenBudget | None = None


@dataclass(frozen=True)
class RowStream:
    """The rows one worker trains on, a function of the row count, the run's config and its rank alone, so that every
    attempt of a run sees the same stream (`row_ids` names the rows when some are held out). Epoch e orders all rows by a permutation seeded with the seed and e (a new
    order every epoch), or keeps the dataset's order (`shuffle` off); the worker of rank r takes the rows at
    positions r, r + world_size, ... of it (shards differ by one row at most; every row is trained on once an epoch),
    in micro-batches of `micro_batch_size`, the epoch's last one shorter when the shard does not divide.

    With `lengths` (one per row), micro-batches hold rows of similar length, so little of a batch is padding: the
    shard is cut into windows of GROUP_WINDOW micro-batches, each window's rows are sorted by length and cut into
    micro-batches, and those run in a seeded random order (steps do not go from short to long).

    With a token `budget` as well, the shard's rows go in order to their length bucket, and each bucket yields a
    micro-batch whenever it holds a full one; at the epoch's end every bucket yields what it has left, a short
    micro-batch that the task pads to the bucket's shape. Micro-batches then come in a few shapes only (one per bucket,
    before subword padding), and the number of them differs from epoch to epoch and between ranks (ranks still step
    together: each goes on into its next epoch)."""

    rows: int
    rank: int
    world_size: int
    micro_batch_size: int
    seed: int
    shuffle: bool
    lengths: np.ndarray | None = field(default=None, compare=False)
    budget: TokenBudget | None = field(default=None, compare=False)
    row_ids: np.ndarray | None = field(default=None, compare=False)  # the `rows` row numbers trained on (default: 0 .. rows - 1)

    def epoch_seed(self, epoch: int) -> int:
        return (self.seed * EPOCH_SEED_FACTOR + epoch) % 2**64  # numpy seeds are >= 0

    def epoch_order(self, epoch: int) -> np.ndarray:
        row_ids = np.arange(self.rows) if self.row_ids is None else self.row_ids
        if not self.shuffle:
            return row_ids
        return row_ids[np.random.default_rng(self.epoch_seed(epoch)).permutation(self.rows)]

    def epoch_micro_batches(self, epoch: int) -> list[np.ndarray]:
        """The row numbers of each of the epoch's micro-batches, in training order."""
        return [row_ids for row_ids, _ in self.epoch_plan(epoch)]

    def epoch_plan(self, epoch: int) -> list[tuple[np.ndarray, int | None]]:
        """(row numbers, length bucket or None) of each of the epoch's micro-batches, in training order."""
        shard = self.epoch_order(epoch)[self.rank::self.world_size]
        if self.budget is not None:
            return self.by_budget(shard)
        return [(row_ids, None) for row_ids in self.by_rows(shard, epoch)]

    def by_budget(self, shard: np.ndarray) -> list[tuple[np.ndarray, int]]:
        budget = self.budget
        pending: dict[int, list[int]] = {bucket: [] for bucket in budget.buckets}
        plan = []
        for row, bucket in zip(shard.tolist(), budget.bucket_of(self.lengths[shard]).tolist()):
            pending[bucket].append(row)
            if len(pending[bucket]) == budget.rows_per_batch(bucket):
                plan.append((np.asarray(pending[bucket]), bucket))
                pending[bucket] = []
        plan += [(np.asarray(rows), bucket) for bucket, rows in pending.items() if rows]
        return plan

    def by_rows(self, shard: np.ndarray, epoch: int) -> list[np.ndarray]:
        if self.lengths is None:
            return self.cut(shard)
        rng = np.random.default_rng([self.epoch_seed(epoch), self.rank])
        window_rows = GROUP_WINDOW * self.micro_batch_size  # whole micro-batches: only the shard's last one is short
        micro_batches = []
        for start in range(0, len(shard), window_rows):
            window = shard[start:start + window_rows]
            by_length = self.cut(window[np.argsort(self.lengths[window], kind="stable")])
            micro_batches += [by_length[i] for i in rng.permutation(len(by_length))]
        return micro_batches

    def cut(self, row_ids: np.ndarray) -> list[np.ndarray]:
        return [row_ids[start:start + self.micro_batch_size] for start in range(0, len(row_ids), self.micro_batch_size)]

    def after(self, consumed: int) -> Iterator[tuple[int, np.ndarray, int | None]]:
        """(epoch, row numbers, length bucket) of every micro-batch after the first `consumed`, without end."""
        epoch = 0
        while True:
            plan = self.epoch_plan(epoch)
            for row_ids, bucket in plan[consumed:]:
                yield epoch, row_ids, bucket
            consumed, epoch = max(0, consumed - len(plan)), epoch + 1


def micro_batches_of(task: FitTask, rows: TrainingRows, stream: RowStream, consumed: int, device: torch.device) -> Iterator[MicroBatch]:
    """The worker's micro-batches after the first `consumed`, epoch after epoch, their tensors already on the device."""
    for epoch, row_ids, bucket in stream.after(consumed):
        micro = task.micro_batch(rows.take(row_ids), bucket)
        micro.tensors = to_device(micro.tensors, device)
        micro.epoch, micro.row_ids = epoch, row_ids.tolist()
        yield micro


class ShapeLog:
    """The distinct shapes of a worker's micro-batches (each tensor's), in the current epoch and since the start of
    this attempt, and the graphs torch.compile has built: a compiled step builds one for each shape it cannot reuse
    a graph for, so the shapes must stay few (TokenBudget). Each epoch's count is printed when the epoch ends."""

    def __init__(self):
        self.epoch, self.in_epoch, self.seen = None, set(), set()

    def add(self, micro: MicroBatch, log: bool) -> None:
        if micro.epoch != self.epoch:
            if log and self.epoch is not None:
                print(f"[fit] epoch {self.epoch}: micro-batches in {len(self.in_epoch)} shapes", flush=True)
            self.epoch, self.in_epoch = micro.epoch, set()
        shape = tuple((key, tuple(tensor.shape)) for key, tensor in sorted(micro.tensors.items()))
        self.in_epoch.add(shape)
        self.seen.add(shape)

    def metrics(self) -> dict:
        return {"batch_shapes": len(self.seen), "batch_shapes_this_epoch": len(self.in_epoch), "compiled_graphs": compiled_graphs()}


def compiled_graphs() -> int:
    """Graphs torch.compile has built in this process (0 when nothing was compiled)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def trace_micro_batch(folder: str, rank: int, state: dict, micro: MicroBatch) -> None:
    """`row_trace` (tests): a JSON line for each micro-batch a worker trains on, in a file of its own per attempt."""
    record = {"rank": rank, "resumed_from_step": state["resumed_from_step"], "step": state["step"] + 1, "epoch": micro.epoch,
              "rows": micro.row_ids}
    Path(folder).mkdir(parents=True, exist_ok=True)
    with open(Path(folder) / f"rank{rank}-pid{os.getpid()}.jsonl", "a", encoding="utf-8") as trace:
        trace.write(json.dumps(record) + "\n")


def feed(micro_batches: Iterator[MicroBatch], device: torch.device) -> Iterator[MicroBatch]:
    """On an accelerator, micro-batches are built on a host thread while the device runs the step before. On a CPU
    the step's own threads already hold every core: a builder thread beside them only stalls them (the demo's
    MiniLM run on 2 cores: 1.58 steps/s with it, 2.01 without), so batches are built in turn."""
    return micro_batches if device.type == "cpu" else prefetched(micro_batches)


def prefetched(items: Iterable, depth: int = PREFETCH_MICRO_BATCHES) -> Iterator:
    """`items` produced on a background thread, up to `depth` ahead, in order; its errors are raised here. Closing
    the generator early (a `break`) stops the thread."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                if not _put(buffer, (item, None), stop):
                    return
            _put(buffer, (done, None), stop)
        except BaseException as error:  # handed to the consumer, which raises it
            _put(buffer, (done, error), stop)

    thread = threading.Thread(target=produce, name="fit-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)  # a daemon: one blocked in the data iterator is left to end with the worker


def _put(buffer: queue.Queue, entry, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            buffer.put(entry, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class Window:
    """Loss and counts since the last report: the loss summed on the device (no host sync per micro-batch), the
    counts on the host; both summed over the workers in one collective at report time."""

    def __init__(self, count_keys: tuple[str, ...], rate_keys: tuple[str, ...], device: torch.device):
        self.keys = ("micro_batches", "placeholders") + tuple(count_keys)
        self.rate_keys = rate_keys
        self.steady: tuple[float, float] | None = None  # (time, first rate key's total) at the first report
        self.device = device
        self.loss = torch.zeros((), dtype=torch.float32, device=device)
        self.counts = dict.fromkeys(self.keys, 0.0)
        self.started = time.perf_counter()

    def add(self, weighted_loss: torch.Tensor, micro: MicroBatch) -> None:
        self.loss += weighted_loss.float()
        self.counts["micro_batches"] += micro.weight
        self.counts["placeholders"] += 1.0 - micro.weight
        for key, value in micro.counts.items():
            self.counts[key] += value

    def report(self, state: dict, engine, task: FitTask, world_size: int) -> dict:
        """Mean loss and rates since the last report and totals since the start, over all workers; the step's loss
        is also appended to state["loss_history"]."""
        totals = state["totals"]
        for key in self.keys:
            totals[key] = totals.get(key, 0.0) + self.counts[key]
        host_values = [self.counts[key] for key in self.keys] + [totals[key] for key in self.keys]
        values = torch.cat([self.loss.reshape(1).double(), torch.tensor(host_values, dtype=torch.float64).to(self.device)])
        summed = sum_over_workers(values, world_size).tolist()
        loss, window, all_totals = summed[0], dict(zip(self.keys, summed[1:])), dict(zip(self.keys, summed[1 + len(self.keys):]))
        now = time.perf_counter()
        seconds = max(now - self.started, 1e-9)
        metrics = {"step": state["step"], "loss": loss / max(1.0, window["micro_batches"]), "lr": max(engine.get_lr()),
                   "placeholder_micro_batches": int(all_totals["placeholders"])}
        for key in self.rate_keys:
            metrics[f"{key}_per_s"] = window[key] / seconds
            metrics[f"{key}_seen"] = int(all_totals[key])
        # Since the first report: start-up (model load, kernel compilation, first batches) left out.
        first = self.rate_keys[0]
        if self.steady is None:
            self.steady = (now, all_totals[first])
        elif now > self.steady[0]:
            metrics[f"steady_{first}_per_s"] = (all_totals[first] - self.steady[1]) / (now - self.steady[0])
        metrics.update(task.metrics(window, all_totals))
        state["all_totals"] = all_totals
        state["loss_history"].append([state["step"], metrics["loss"]])
        self.loss.zero_()
        self.counts = dict.fromkeys(self.keys, 0.0)
        self.started = now
        return metrics


def step_event(engine, state: dict, config, resumed: bool) -> str | None:
    """Called after each engine.step(). None while gradients accumulate; at a new optimizer step, records it in
    state["step"] and returns what the step calls for: "checkpoint" (every `checkpoint_every` steps, and the last),
    "log" (every `log_every`) or "step"."""
    if engine.global_steps == state["step"]:
        return None
    state["step"] = engine.global_steps
    if config.fail_at_step is not None and state["step"] == config.fail_at_step and not resumed:
        raise RuntimeError(f"injected failure at step {state['step']} (fail_at_step)")
    if state["step"] % config.checkpoint_every == 0 or state["step"] >= config.max_steps:
        return "checkpoint"
    if state["step"] % config.log_every == 0:
        return "log"
    return "step"


def save_checkpoint(engine, task: FitTask, state: dict, metrics: dict, rank: int) -> None:
    """Every rank writes its DeepSpeed shard (trainable weights and optimizer state); rank 0 adds the task's model
    files and the loop state; the directory is reported to Ray Train, which keeps it on the run's storage."""
    import ray.train

    with tempfile.TemporaryDirectory() as directory:
        engine.save_checkpoint(str(Path(directory) / DEEPSPEED_DIR), tag=DEEPSPEED_TAG, exclude_frozen_parameters=True)
        if rank == 0:
            task.save_model(engine, Path(directory))
            saved = {key: state[key] for key in SAVED_STATE}
            saved["totals"] = state["all_totals"]
            (Path(directory) / STATE_FILE).write_text(json.dumps(saved))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
