"""Streaming over work units with Ray Data: stages declare what they run and with which resources; one adapter maps
them onto Ray.

    read groups ──read (CPU tasks)──► a row per unit ──model (actor pool of min..max actors, CPU or GPU)──►
                ──commit (CPU tasks)──► a summary row per unit

A read task takes a read group: one unit, or the units of one compressed file, read in a single pass (gzip cannot
start mid-file). From there a unit travels as one row, and one block, from stage to stage (its documents, errors
and results as nested columns, `pack`), so every stage sees whole units and a writer can commit a unit atomically.
Ray Data's streaming executor runs the stages side by side (reading and writing overlap the model) and bounds what
queues between them: an actor holds the unit it works on and at most `IN_FLIGHT_PER_ACTOR` more, whatever the size
of the input files. A pool grows from `min_actors` to `max_actors` while units wait, so an autoscaling cluster whose
GPU nodes start at zero gets its nodes requested and used as the job runs.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa
from pydantic import Field

from synth.work_units import UnitSizes, WorkUnit

from .job_config import Section

IN_FLIGHT_PER_ACTOR = 2  # the unit being processed and the next, already fetched
# Task stages are idempotent (a unit is read, or committed, again from scratch), so a task lost with its node (a
# reclaimed spot instance) is retried. The explicit setting also keeps Ray Data from fusing a task stage into the
# actor stage after it, which it does when their remote arguments are equal (num_cpus=1 on both, say): parsing
# would then run inside the model's actor, and the accelerator would wait on it.
TASK_RETRIES = 3


class UnitSettings(Section):
    """How input files are cut into work units (a unit ends at whichever limit it reaches first)."""

    documents: int = Field(10_000, ge=1)
    bytes: int = Field(256 << 20, ge=1)

    def sizes(self) -> UnitSizes:
        return UnitSizes(self.documents, self.bytes)


@dataclass(frozen=True)
class ReadStage:
    """function(units of a read group, **kwargs) -> one table per unit (a generator), in Ray tasks."""

    function: Callable[..., Iterator[pa.Table]]
    kwargs: dict = field(default_factory=dict)
    num_cpus: float = 1.0


@dataclass(frozen=True)
class TaskStage:
    """function(one-row table, **kwargs) -> one-row table, in stateless Ray tasks."""

    function: Callable[..., pa.Table]
    kwargs: dict = field(default_factory=dict)
    num_cpus: float = 1.0


@dataclass(frozen=True)
class ActorStage:
    """actor_class(**constructor_kwargs), called with one-row tables, in a pool of min_actors..max_actors actors."""

    actor_class: type
    constructor_kwargs: dict = field(default_factory=dict)
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    min_actors: int = 1
    max_actors: int | None = None  # None: as many as the cluster can place
    accelerator_type: str | None = None


def stream_units(units: list[WorkUnit], read: ReadStage, stages: list[TaskStage | ActorStage] = ()) -> Iterator[dict]:
    """Run every unit through the stages; yields the last stage's rows as they complete (in no particular order).
    Each unit's row is a block of its own, so that it moves on as soon as it is read (Ray Data otherwise gathers a
    task's small outputs into one block, and a read group's units would wait for the whole file)."""
    from ray.data import DataContext

    context = DataContext.get_current()
    block_size, context.target_max_block_size = context.target_max_block_size, 1
    try:
        yield from units_dataset(units, read, stages).iter_rows()
    finally:
        context.target_max_block_size = block_size


def units_dataset(units: list[WorkUnit], read: ReadStage, stages: list[TaskStage | ActorStage] = ()):
    """The Ray dataset of the last stage's output (for jobs that go on with Ray Data operations)."""
    import ray

    groups = [json.dumps([unit.as_row() for unit in group]) for group in read_groups(units)]
    dataset = ray.data.from_items([{"units": group} for group in groups], override_num_blocks=max(1, len(groups)))
    dataset = dataset.map_batches(_read_group, fn_kwargs={"function": read.function, "kwargs": read.kwargs}, batch_size=1,
                                  batch_format="pyarrow", num_cpus=read.num_cpus, max_retries=TASK_RETRIES)
    for stage in stages:
        dataset = _apply(dataset, stage)
    return dataset


def read_groups(units: list[WorkUnit]) -> list[list[WorkUnit]]:
    """A read task's units: those of one compressed file together, in order; any other unit alone."""
    groups, of_file = [], {}
    for unit in units:
        if unit.kind == "bytes" and unit.path.endswith(".gz"):
            if unit.file_key not in of_file:
                of_file[unit.file_key] = []
                groups.append(of_file[unit.file_key])
            of_file[unit.file_key].append(unit)
        else:
            groups.append([unit])
    return groups


def _read_group(batch: pa.Table, function: Callable, kwargs: dict) -> Iterator[pa.Table]:
    units = [WorkUnit.from_row(row) for row in json.loads(batch["units"][0].as_py())]
    yield from function(sorted(units, key=lambda unit: unit.start), **kwargs)


def _apply(dataset, stage: TaskStage | ActorStage):
    import ray

    if isinstance(stage, TaskStage):
        return dataset.map_batches(stage.function, fn_kwargs=stage.kwargs, batch_size=1, batch_format="pyarrow", num_cpus=stage.num_cpus,
                                   max_retries=TASK_RETRIES)
    pool = ray.data.ActorPoolStrategy(min_size=stage.min_actors, max_size=stage.max_actors, max_tasks_in_flight_per_actor=IN_FLIGHT_PER_ACTOR)
    options = {"accelerator_type": stage.accelerator_type} if stage.accelerator_type else {}
    return dataset.map_batches(stage.actor_class, fn_constructor_kwargs=stage.constructor_kwargs, batch_size=1, batch_format="pyarrow",
                               compute=pool, num_cpus=stage.num_cpus, num_gpus=stage.num_gpus, **options)


# ------------------------------------------------------------------------------------------------ unit rows
UNIT_TYPES = {"unit_id": pa.string(), "file_key": pa.string(), "path": pa.string(), "format": pa.string(), "kind": pa.string(),
              "start": pa.int64(), "end": pa.int64()}


def pack(unit: WorkUnit, **columns) -> pa.Table:
    """One row: the unit's fields, then the columns; a pa.Table value becomes a list<struct> column holding its rows,
    other values are scalars (never None: a block's column types come from its values)."""
    arrays = {name: pa.array([getattr(unit, name)], kind) for name, kind in UNIT_TYPES.items()}
    for name, value in columns.items():
        if isinstance(value, pa.Table):
            items = pa.StructArray.from_arrays([column.combine_chunks() for column in value.columns], fields=list(value.schema))
            arrays[name] = pa.ListArray.from_arrays(pa.array([0, value.num_rows], pa.int32()), items)
        else:
            arrays[name] = pa.array([value])
    return pa.table(arrays)


def unpack(row: pa.Table, name: str) -> pa.Table:
    """The table `pack` stored in column `name` of a one-row table."""
    items = row.column(name).combine_chunks().flatten()
    return pa.Table.from_struct_array(items)


def unit_of(row: pa.Table) -> WorkUnit:
    return WorkUnit.from_row({name: row.column(name)[0].as_py() for name in WorkUnit.__dataclass_fields__})
