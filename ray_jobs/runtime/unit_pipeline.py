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

Faults (`corpus.faults`): a read whose storage keeps failing (after retries with backoff), or a commit that cannot
write, makes a *failed row* for its unit, which the later stages pass on untouched. A worker that dies (killed for
memory, a device error that ends its actor) has its unit retried `units.retries` times, on a fresh worker (an
actor counts its attempts at a unit under `attempts_root`); a unit that still kills its worker is a *poison unit*
and fails too. Ray Data is told to go on past such units
(`max_errored_blocks`), so `stream_units` yields a row for every unit: committed, or failed with its reason.
"""
from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Callable

import pyarrow as pa
from pydantic import Field

from corpus.faults import RETRY_ATTEMPTS, RETRY_FIRST_DELAY_S, TransientFault, describe, is_transient
from corpus.work_units import UnitSizes, WorkUnit

from .job_config import Section

IN_FLIGHT_PER_ACTOR = 2  # the unit being processed and the next, already fetched
FAILED = "failed"  # the column of a failed row: why the unit failed


MAX_UNIT_BYTES = 1 << 30  # a unit's text travels as one Arrow string array (2 GiB at most)


class UnitSettings(Section):
    """How input files are cut into work units (a unit ends at whichever limit it reaches first). A unit's input is
    at most `bytes` (of uncompressed input, plus the one record that straddles its end): its read task holds that
    and its Arrow copy, about twice `bytes` of memory."""

    documents: int = Field(10_000, ge=1)
    bytes: int = Field(256 << 20, ge=1, le=MAX_UNIT_BYTES)
    # Times a unit is retried on a fresh worker after its worker died on it (out of memory, a failed device): then
    # it is a poison unit, recorded as failed.
    retries: int = Field(2, ge=0)

    def sizes(self) -> UnitSizes:
        return UnitSizes(self.documents, self.bytes)


@dataclass(frozen=True)
class ReadStage:
    """function(units of a read group, **kwargs) -> one table per unit (a generator), in Ray tasks."""

    function: Callable[..., Iterator[pa.Table]]
    kwargs: dict = field(default_factory=dict)
    num_cpus: float = 1.0
    # Each table the function yields is one unit's row (with its unit_id): a read resumes after the units it
    # yielded, and a unit that cannot be read becomes a failed row. False (rows of any shape): a transient fault is
    # retried only before the first row, and otherwise fails the stage.
    unit_rows: bool = True


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
    # Where the actors record each attempt at a unit (a URL or path; the job's OUTPUT/_attempts), so that a unit
    # whose worker keeps dying is recognised by its own attempts, not by deaths of units queued beside it.
    attempts_root: str | None = None


def stream_units(units: list[WorkUnit], read: ReadStage, stages: list[TaskStage | ActorStage] = (), retries: int = 2) -> Iterator[dict]:
    """Run every unit through the stages; yields the last stage's rows as they complete (in no particular order),
    then a failed row ({"unit_id", "failed"}) for each unit whose row never came (its task failed `retries` + 1
    times). Each unit's row is a block of its own, so that it moves on as soon as it is read (Ray Data otherwise
    gathers a task's small outputs into one block, and a read group's units would wait for the whole file)."""
    from ray.data import DataContext

    context = DataContext.get_current()
    saved = context.target_max_block_size, context.max_errored_blocks
    context.target_max_block_size, context.max_errored_blocks = 1, -1
    seen = set()
    try:
        for row in units_dataset(units, read, stages, retries).iter_rows():
            seen.add(row["unit_id"])
            yield row
    finally:
        context.target_max_block_size, context.max_errored_blocks = saved
    for unit in units:
        if unit.unit_id not in seen:
            yield {"unit_id": unit.unit_id, FAILED: f"its read or commit task failed {retries + 1} times (a worker killed for memory, "
                                                     "or an error: the Ray logs of the job say which)"}


def units_dataset(units: list[WorkUnit], read: ReadStage, stages: list[TaskStage | ActorStage] = (), retries: int = 2):
    """The Ray dataset of the last stage's output (for jobs that go on with Ray Data operations)."""
    import ray

    groups = [json.dumps([unit.as_row() for unit in group]) for group in read_groups(units)]
    dataset = ray.data.from_items([{"units": group} for group in groups], override_num_blocks=max(1, len(groups)))
    # Task stages are idempotent (a unit is read, or committed, again from scratch), so a task lost with its worker
    # is retried. The explicit setting also keeps Ray Data from fusing a task stage into the actor stage after it,
    # which it does when their remote arguments are equal: parsing would then run inside the model's actor.
    dataset = dataset.map_batches(_read_group, fn_kwargs={"function": read.function, "kwargs": read.kwargs, "unit_rows": read.unit_rows}, batch_size=1,
                                  batch_format="pyarrow", num_cpus=read.num_cpus, max_retries=retries)
    for stage in stages:
        dataset = _apply(dataset, stage, retries)
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


def _read_group(batch: pa.Table, function: Callable, kwargs: dict, unit_rows: bool = True, attempts: int = RETRY_ATTEMPTS,
                first_delay_s: float = RETRY_FIRST_DELAY_S) -> Iterator[pa.Table]:
    """The read stage's rows for a read group. A transient fault part-way (a connection reset, throttling) reads
    the units not yielded yet again, with backoff; if it persists, those units become failed rows."""
    pending = sorted((WorkUnit.from_row(row) for row in json.loads(batch["units"][0].as_py())), key=lambda unit: unit.start)
    yielded = False
    for attempt in range(1, attempts + 1):
        try:
            for table in function(pending, **kwargs):
                if unit_rows:
                    pending = [unit for unit in pending if unit.unit_id != table["unit_id"][0].as_py()]
                yielded = True
                yield table
            return
        except Exception as error:  # noqa: BLE001 (sorted by is_transient)
            if not is_transient(error) or (yielded and not unit_rows):
                raise
            print(f"[read] {describe(error)} while reading {pending[0].path}; attempt {attempt} of {attempts}", file=sys.stderr, flush=True)
            if attempt == attempts and not unit_rows:
                raise TransientFault(f"reading {pending[0].path}: {describe(error)} (after {attempts} attempts)") from error
            if attempt == attempts:
                for unit in pending:
                    yield failed_row(unit, f"reading {unit.path}: {describe(error)} (after {attempts} attempts)")
                return
            time.sleep(first_delay_s * 2 ** (attempt - 1))


def _apply(dataset, stage: TaskStage | ActorStage, retries: int):
    import ray

    if isinstance(stage, TaskStage):
        return dataset.map_batches(_passing_failed_rows(stage.function), fn_kwargs=stage.kwargs, batch_size=1, batch_format="pyarrow",
                                   num_cpus=stage.num_cpus, max_retries=retries)
    pool = ray.data.ActorPoolStrategy(min_size=stage.min_actors, max_size=stage.max_actors, max_tasks_in_flight_per_actor=IN_FLIGHT_PER_ACTOR)
    options = {"accelerator_type": stage.accelerator_type} if stage.accelerator_type else {}
    # A dead actor is always replaced (a failed GPU's actor comes back on another) and the units it held are
    # retried (Ray Data's defaults, spelled out). The units queued on an actor die with it, so Ray's count of a
    # unit's retries would also fail the innocent units beside a poison unit: the attempts recorded under
    # `attempts_root` bound the poison unit alone.
    actor_class = _guarded_actor(stage.actor_class, stage.attempts_root, retries)
    return dataset.map_batches(actor_class, fn_constructor_kwargs=stage.constructor_kwargs, batch_size=1, batch_format="pyarrow",
                               compute=pool, num_cpus=stage.num_cpus, num_gpus=stage.num_gpus, max_restarts=-1, max_task_retries=-1,
                               **options)


def _passing_failed_rows(function: Callable[..., pa.Table]) -> Callable[..., pa.Table]:
    """A task stage's function, passing a failed row on, and failing the unit on a transient fault that persisted
    (named as the function: Ray Data's plan shows it)."""
    @functools.wraps(function)
    def task(row: pa.Table, **kwargs) -> pa.Table:
        if is_failed(row):
            return row
        try:
            return function(row, **kwargs)
        except TransientFault as error:
            return failed_row(unit_of(row), str(error))

    return task


def _guarded_actor(actor_class: type, attempts_root: str | None, retries: int) -> type:
    """The actor class, passing failed rows on without calling the model, and failing a unit that has been
    attempted `retries` + 1 times already (each attempt killed its worker). Named as the class: Ray Data's plan
    shows it."""
    class Actor(actor_class):
        def __call__(self, row: pa.Table) -> pa.Table:
            if is_failed(row):
                return row
            if attempts_root is not None:
                unit = unit_of(row)
                attempts = record_attempt(attempts_root, unit.unit_id)
                if attempts > retries + 1:
                    return failed_row(unit, f"its worker died {attempts - 1} times on it (killed for memory, or a device "
                                            "that failed; the Ray logs of the job say which): a poison unit")
            return super().__call__(row)

    Actor.__name__ = Actor.__qualname__ = actor_class.__name__
    return Actor


def record_attempt(attempts_root: str, unit_id: str) -> int:
    """Record one more attempt at the unit; returns how many there have been, this one included (one listing and
    one small write: the same cost for every unit)."""
    import uuid

    from .output_root import OutputRoot

    root = OutputRoot(attempts_root)
    earlier = len(root.names(unit_id))
    root.write_bytes(f"{unit_id}/{uuid.uuid4().hex}", b"")
    return earlier + 1


def end_actor(reason: str) -> None:
    """End this actor's process at once, as a crash: Ray replaces the actor and retries its unit elsewhere (an
    orderly exit would not be replaced)."""
    import os

    print(f"[actor] ending this actor: {reason}", file=sys.stderr, flush=True)
    os._exit(1)


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


def failed_row(unit: WorkUnit, reason: str) -> pa.Table:
    return pack(unit, **{FAILED: reason})


def is_failed(row: pa.Table) -> bool:
    return FAILED in row.column_names


def unit_of(row: pa.Table) -> WorkUnit:
    return WorkUnit.from_row({name: row.column(name)[0].as_py() for name in WorkUnit.__dataclass_fields__})
