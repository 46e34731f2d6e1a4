"""A fit on Ray Train with DeepSpeed, shared by the train and distill jobs: the config fields both have and the
TorchTrainer that runs the fit loop (fit_loop.py) on each worker."""
from __future__ import annotations

from typing import Callable, Literal

from pydantic import Field, field_validator

from ..runtime.job_command import BadInput
from ..runtime.job_config import Section


class ScaleSection(Section):
    num_workers: int = Field(1, ge=1)
    use_gpu: bool = False
    accelerator_type: str | None = None  # GPU workers only on nodes of this type (Ray's names: H100, A100-80G, L4, ...)
    cpus_per_worker: float = Field(0.5, gt=0)  # fractional by default so Ray Data keeps CPU for reading
    torch_threads: int | None = Field(None, ge=1)  # default: the CPUs Ray assigns each worker (at least 1)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast forward over fp32 weights (CPU autocast too)
    zero_stage: int = Field(2, ge=0, le=2)
    micro_batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    collective_timeout_s: int = Field(1800, ge=10)  # a rank stuck this long in a collective fails the run (retried)

    @field_validator("precision", mode="before")
    @classmethod
    def _no_fp16(cls, value):
        if value == "fp16":
            raise ValueError("fp16 is not supported (it needs loss scaling); use bf16 (GPUs since Ampere, and CPUs) or fp32")
        return value

    @field_validator("zero_stage", mode="before")
    @classmethod
    def _no_zero3(cls, value):
        if value == 3:
            raise ValueError(
                "ZeRO stage 3 is not supported: it partitions the weights themselves, and the span scorer reads "
                "out_project's weights directly (empty under stage 3); use zero_stage 2 (gradients and optimizer state "
                "partitioned), which holds every model this project trains")
        return value


class FitConfig(Section):
    """Run name, output, scale, steps, checkpoints and failure handling; the jobs add their model, data and optimizer."""

    name: str
    output: str
    scale: ScaleSection = ScaleSection()
    max_steps: int = Field(ge=1)
    checkpoint_every: int = Field(500, ge=1)
    keep_checkpoints: int = Field(2, ge=1)  # the latest ones; with validation, the best ones and the latest
    # Restarts from the latest checkpoint after a failure (a lost node, a preempted or crashed worker); -1: no limit.
    max_failures: int = Field(2, ge=-1)
    log_every: int = Field(25, ge=1)
    seed: int = 42  # initial weights, and with the epoch the order of each epoch's rows (fit_loop.RowStream)
    fail_at_step: int | None = None  # for tests: raise once at this step in a run that did not resume
    row_trace: str | None = None  # for tests: a folder where each worker writes the row ids it trains on (fit_loop.trace_micro_batch)


def fit(config: FitConfig, train_loop_per_worker: Callable[[dict], None], dataset, storage_path: str,
        validation_dataset=None, checkpoint_score: str | None = None):
    """Runs the loop on `scale.num_workers` Ray Train workers (gloo on CPU, nccl on GPU) over the dataset, with the
    validated config as a dict; returns the Ray Train result. A `validation_dataset` reaches every worker whole as
    "validation". With a `checkpoint_score` (a metric every checkpoint reports, higher is better), Ray Train keeps
    the `keep_checkpoints` best checkpoints by it, and always the latest (to resume from); else the latest ones.
    `storage_path` must be storage every node sees (Ray Train's workers write their checkpoint shards there, and a
    restarted run reads them back): a local path or a URL.

    The dataset is materialized once, in a fixed order, and every worker gets all of it (not a Ray Data split, whose
    blocks go to whichever worker asks first): the fit loop shards and shuffles its rows by row number, the same way
    in every attempt, so a restarted run can go on from the row after the last one its checkpoint covered."""
    import ray.train
    from ray.data import ExecutionOptions
    from ray.train.torch import TorchConfig, TorchTrainer

    scale = config.scale
    rows = materialized_in_order(dataset)
    if rows.count() < scale.num_workers:
        raise BadInput(f"{rows.count()} training rows: fewer than the {scale.num_workers} workers")
    datasets = {"train": rows}
    if validation_dataset is not None:
        datasets["validation"] = materialized_in_order(validation_dataset)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config.model_dump(),
        scaling_config=ray.train.ScalingConfig(
            num_workers=scale.num_workers,
            use_gpu=scale.use_gpu,
            accelerator_type=scale.accelerator_type if scale.use_gpu else None,
            resources_per_worker={"CPU": scale.cpus_per_worker, **({"GPU": 1} if scale.use_gpu else {})},
        ),
        run_config=ray.train.RunConfig(
            name=config.name,
            storage_path=storage_path,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.keep_checkpoints, checkpoint_score_attribute=checkpoint_score,
                                                         checkpoint_score_order="max"),
            failure_config=ray.train.FailureConfig(max_failures=config.max_failures),
        ),
        torch_config=TorchConfig(backend="nccl" if scale.use_gpu else "gloo", timeout_s=scale.collective_timeout_s),
        datasets=datasets,
        dataset_config=ray.train.DataConfig(datasets_to_split=[], execution_options=ExecutionOptions(preserve_order=True)),
    )
    return trainer.fit()


def materialized_in_order(dataset):
    """The dataset's blocks in the object store, in the order of its inputs (files, then rows within a file): row
    number i is the same example in every attempt, and in a rerun of the job on the same data."""
    dataset.context.execution_options.preserve_order = True  # the context copy the dataset was read with, not the process's
    return dataset.materialize()
