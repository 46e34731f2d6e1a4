"""What the train and distill jobs share: their config fields and the step bookkeeping of their loops."""
from types import SimpleNamespace

import pytest

from ray_jobs.distill import DistillConfig
from ray_jobs.fit import step_event
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
def test_half_precision_needs_a_gpu_in_both_jobs(config_class, values):
    with pytest.raises(ValueError, match="bf16/fp16 training needs use_gpu=true"):
        config_class.model_validate(dict(values, scale={"precision": "bf16"}))
    assert config_class.model_validate(dict(values, scale={"precision": "bf16", "use_gpu": True})).scale.precision == "bf16"


def test_each_job_keeps_its_own_defaults():
    train, distill = TrainConfig.model_validate(TRAIN), DistillConfig.model_validate(DISTILL)
    assert (train.name, train.log_every, train.scale.micro_batch_size) == ("gliner-train", 25, 8)
    assert (distill.name, distill.log_every, distill.scale.micro_batch_size, distill.scale.pad_to_multiple_of) == ("distill", 10, 1, 1)
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        TrainConfig.model_validate(dict(TRAIN, scale={"pad_to_multiple_of": 8}))
