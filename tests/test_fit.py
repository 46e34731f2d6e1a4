"""What the train and distill jobs share: their config fields, and the fit loop's step bookkeeping, background
batch building and collectives."""
import threading
import time
from types import SimpleNamespace

import pytest
import torch

from ray_jobs.distill import DistillConfig
from ray_jobs.training.fit_loop import MicroBatch, Window, prefetched, step_event
from ray_jobs.training.fit_workers import sum_over_workers
from ray_jobs.train import TrainConfig

TRAIN = {"output": "out", "max_steps": 5, "model": {"backbone": "b"}, "data": {"train": "t"}}
DISTILL = {"output": "out", "max_steps": 5, "model": {"base": "m"}, "data": {"documents": "d", "annotations": "a"}}


def events(config, micro_steps_per_step: int, resumed: bool = False) -> list:
    """The event after every micro-batch of a run to max_steps, with the optimizer stepping every
    `micro_steps_per_step` micro-batches, as DeepSpeed's global_steps does under gradient accumulation."""
    engine, state, seen = SimpleNamespace(global_steps=0), {"step": 0}, []
    micro_batch = 0
    while state["step"] < config.max_steps:
        micro_batch += 1
        engine.global_steps = micro_batch // micro_steps_per_step
        seen.append(step_event(engine, state, config, resumed))
    return seen


def test_events_follow_checkpoint_and_log_intervals_and_the_last_step_checkpoints():
    config = TrainConfig.model_validate(dict(TRAIN, max_steps=7, checkpoint_every=3, log_every=2))
    assert events(config, 1) == ["step", "log", "checkpoint", "log", "step", "checkpoint", "checkpoint"]


def test_accumulating_micro_batches_are_no_event():
    config = TrainConfig.model_validate(dict(TRAIN, max_steps=2, checkpoint_every=2, log_every=5))
    assert events(config, 3) == [None, None, "step", None, None, "checkpoint"]


def test_injected_failure_fires_only_in_a_run_that_did_not_resume():
    config = DistillConfig.model_validate(dict(DISTILL, max_steps=4, fail_at_step=2))
    with pytest.raises(RuntimeError, match="injected failure at step 2"):
        events(config, 1)
    assert events(config, 1, resumed=True)[-1] == "checkpoint"


@pytest.mark.parametrize("config_class, values", [(TrainConfig, TRAIN), (DistillConfig, DISTILL)])
def test_bf16_runs_anywhere_fp16_and_zero3_are_refused_with_the_reason(config_class, values):
    assert config_class.model_validate(dict(values, scale={"precision": "bf16"})).scale.precision == "bf16"  # CPU autocast too
    with pytest.raises(ValueError, match="fp16 is not supported"):
        config_class.model_validate(dict(values, scale={"precision": "fp16", "use_gpu": True}))
    with pytest.raises(ValueError, match="ZeRO stage 3 is not supported.*out_project"):
        config_class.model_validate(dict(values, scale={"zero_stage": 3}))


def test_prefetch_keeps_order_raises_errors_and_stops_its_thread_when_left_early():
    assert list(prefetched(iter(range(50)))) == list(range(50))

    def failing():
        yield 1
        raise ValueError("bad row")

    with pytest.raises(ValueError, match="bad row"):
        list(prefetched(failing()))
    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]

    before = threading.active_count()
    for item in prefetched(endless(), depth=2):
        if item == 3:
            break
    time.sleep(0.3)
    assert threading.active_count() == before and len(produced) <= 3 + 1 + 2 + 1  # consumed, in hand, buffered, blocked


class Recorder:
    """Stands in for torch.distributed.all_reduce (the one external boundary): records each tensor's device."""

    def __init__(self):
        self.devices = []

    def __call__(self, tensor):
        self.devices.append(tensor.device)


def test_collectives_get_tensors_on_the_workers_device_as_nccl_requires(monkeypatch):
    """The report's counts are reduced in one collective on the worker's device. On a CPU the worker's device is
    the CPU itself, so the loop's tensors are checked on `meta`, a device that is not the host's: a tensor built on
    the host (what NCCL refuses) would show up as cpu."""
    recorder = Recorder()
    monkeypatch.setattr("torch.distributed.all_reduce", recorder)
    window = Window(("examples",), ("examples",), torch.device("meta"))
    window.add(torch.ones((), device="meta"), MicroBatch({}, {"examples": 4}))
    with pytest.raises(NotImplementedError):  # meta tensors hold no values to read back
        window.report({"step": 1, "totals": {}, "loss_history": []}, SimpleNamespace(get_lr=lambda: [0.1]), None, world_size=2)
    assert recorder.devices == [torch.device("meta")]
    assert sum_over_workers(torch.ones(2), world_size=1).tolist() == [1.0, 1.0]  # one worker: no collective at all
    assert len(recorder.devices) == 1


def test_window_sums_loss_on_device_and_reports_means_rates_and_totals():
    window = Window(("examples", "skipped"), ("examples",), torch.device("cpu"))
    state = {"step": 2, "totals": {}, "loss_history": []}
    engine = SimpleNamespace(get_lr=lambda: [0.5, 0.25])
    task = SimpleNamespace(metrics=lambda window, totals: {"skipped": int(totals["skipped"])})
    window.add(torch.tensor(3.0), MicroBatch({}, {"examples": 4, "skipped": 1}))
    window.add(torch.tensor(0.0), MicroBatch({}, {"examples": 0, "skipped": 4}, weight=0.0))  # a placeholder
    window.add(torch.tensor(1.0), MicroBatch({}, {"examples": 4}))
    first = window.report(state, engine, task, world_size=1)
    assert (first["loss"], first["examples_seen"], first["skipped"], first["lr"]) == (2.0, 8, 5, 0.5)
    assert "steady_examples_per_s" not in first and first["examples_per_s"] > 0
    window.add(torch.tensor(5.0), MicroBatch({}, {"examples": 2}))
    state["step"] = 3
    second = window.report(state, engine, task, world_size=1)
    assert (second["loss"], second["examples_seen"], second["steady_examples_per_s"] > 0) == (5.0, 10, True)
    assert state["loss_history"] == [[2, 2.0], [3, 5.0]] and state["all_totals"]["examples"] == 10


def test_each_job_keeps_its_own_defaults():
    train, distill = TrainConfig.model_validate(TRAIN), DistillConfig.model_validate(DISTILL)
    assert (train.name, train.log_every, train.scale.micro_batch_size) == ("gliner-train", 25, 8)
    assert (distill.name, distill.log_every, distill.scale.micro_batch_size, distill.scale.pad_to_multiple_of) == ("distill", 10, 1, 1)
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        TrainConfig.model_validate(dict(TRAIN, scale={"pad_to_multiple_of": 8}))
