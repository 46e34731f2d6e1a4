"""A fit on Ray Train with DeepSpeed, shared by the train and distill jobs: the config fields both have, the
TorchTrainer that runs a per-worker loop, and the step bookkeeping of those loops."""
from __future__ import annotations

from typing import Callable, Literal

from pydantic import Field, model_validator

from .job_config import Section

STATE_FILE = "trainer_state.json"
DEEPSPEED_DIR = "deepspeed"
DEEPSPEED_TAG = "state"


class ScaleSection(Section):
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(0.5, gt=0)  # fractional by default so Ray Data keeps CPU for reading
    torch_threads: int | None = Field(None, ge=1)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    zero_stage: int = Field(2, ge=0, le=3)
    micro_batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)


class FitConfig(Section):
    """Run name, output, scale, steps, checkpoints and failure handling; the jobs add their model, data and optimizer."""

    name: str
    output: str
    scale: ScaleSection = ScaleSection()
    max_steps: int = Field(ge=1)
    checkpoint_every: int = Field(500, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    max_failures: int = Field(0, ge=-1)
    log_every: int = Field(25, ge=1)
    seed: int = 42
    fail_at_step: int | None = None  # for tests: raise once at this step in a run that did not resume

    @model_validator(mode="after")
    def _precision_needs_gpu(self) -> "FitConfig":
        if self.scale.precision != "fp32" and not self.scale.use_gpu:
            raise ValueError("bf16/fp16 training needs use_gpu=true; CPU training runs in fp32")
        return self


def fit(config: FitConfig, train_loop_per_worker: Callable[[dict], None], dataset, storage_path: str):
    """Runs the loop on `scale.num_workers` Ray Train workers (gloo on CPU, nccl on GPU) over the dataset's shards,
    with the validated config as a dict; returns the Ray Train result."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    scale = config.scale
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config.model_dump(),
        scaling_config=ray.train.ScalingConfig(
            num_workers=scale.num_workers,
            use_gpu=scale.use_gpu,
            resources_per_worker={"CPU": scale.cpus_per_worker, **({"GPU": 1} if scale.use_gpu else {})},
        ),
        run_config=ray.train.RunConfig(
            name=config.name,
            storage_path=storage_path,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.keep_checkpoints),
            failure_config=ray.train.FailureConfig(max_failures=config.max_failures),
        ),
        torch_config=TorchConfig(backend="nccl" if scale.use_gpu else "gloo"),
        datasets={"train": dataset},
    )
    return trainer.fit()


def step_event(engine, state: dict, config: FitConfig, resumed: bool) -> str | None:
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
