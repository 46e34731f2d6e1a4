"""How far a long job is, for the person watching it and for monitoring: done of how many, rate, time left.

    progress = Progress("tag", total=40, unit="units", output=OutputRoot(...))
    progress.update(12, documents=3120)
        on a terminal: one line, rewritten in place (at most twice a second)
            tag: 12/40 units (30%) | 3,120 documents | 0.8 units/s | 35 s left
        anywhere else (a log, `ray job submit`): that line when the run starts, then every 30 s
        OUTPUT/_PROGRESS.json: the same figures, when the run ends and every 30 s (every second on a local disk,
        where a write costs nothing: `make demo` shows it live)
    progress.finish()

The rate is this run's (a resumed run counts only what it does itself). _SUMMARY.json stays the completion marker;
_PROGRESS.json is a view that each update writes over, never read back by a job.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone

PROGRESS_FILE = "_PROGRESS.json"
TERMINAL_EVERY_S = 0.5
LOG_EVERY_S = 30.0
FILE_EVERY_S = {"object storage": 30.0, "local disk": 1.0}


class Progress:
    def __init__(self, job: str, total: int | None, unit: str, output=None, stream=None, clock=time.monotonic, already_done: int = 0):
        """total None: not known ahead (the line then has no share and no time left)."""
        self.job, self.total, self.unit, self.output = job, total, unit, output
        self.file_every_s = FILE_EVERY_S["local disk" if output is None or output.protocol is None else "object storage"]
        self.already_done = already_done  # by earlier runs (a resumed training run's steps): not in this run's rate
        self.stream = stream if stream is not None else sys.stderr
        self.in_place = bool(getattr(self.stream, "isatty", lambda: False)())
        self.clock = clock
        self.started = clock()
        self.done, self.figures = already_done, {}
        self.last_line: float | None = None
        self.last_file: float | None = None

    def update(self, done: int, **figures: float) -> None:
        """`done` of `total` so far in this run, and any running figures (documents, loss, ...) to show beside it."""
        self.done, self.figures = done, {**self.figures, **figures}
        now = self.clock()
        if self.last_line is None or now - self.last_line >= (TERMINAL_EVERY_S if self.in_place else LOG_EVERY_S):
            self._print(self.line())
            self.last_line = now
        if self.output is not None and (self.last_file is None or now - self.last_file >= self.file_every_s):
            self.output.write_json(PROGRESS_FILE, self.record())
            self.last_file = now

    def finish(self) -> None:
        """The last line (ended, on a terminal) and the last _PROGRESS.json."""
        self._print(self.line())
        if self.in_place:
            self.stream.write("\n")
            self.stream.flush()
        if self.output is not None:
            self.output.write_json(PROGRESS_FILE, {**self.record(), "finished": True})

    # ------------------------------------------------------------------------------------------------ figures
    def rate(self) -> float | None:
        elapsed, done = self.clock() - self.started, self.done - self.already_done
        return done / elapsed if done > 0 and elapsed > 0 else None

    def seconds_left(self) -> float | None:
        rate = self.rate()
        return None if rate is None or self.total is None else max(0, self.total - self.done) / rate

    def line(self) -> str:
        return progress_line(self.record())

    def record(self) -> dict:
        """What _PROGRESS.json holds; `progress_line` reads it back as the line."""
        rate, left = self.rate(), self.seconds_left()
        return {"job": self.job, "unit": self.unit, "done": self.done, "total": self.total, "figures": dict(self.figures),
                "per_s": None if rate is None else round(rate, 4), "seconds_left": None if left is None else round(left, 1),
                "elapsed_s": round(self.clock() - self.started, 1), "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "finished": False}

    def _print(self, line: str) -> None:
        if self.in_place:  # a line wider than the terminal wraps, and \r then rewrites only its last row: cut it
            width = terminal_width(self.stream)
            self.stream.write(f"\r{line if width is None else line[:width - 1]}\033[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def terminal_width(stream) -> int | None:
    """The columns of the terminal `stream` writes to; None when it has no file descriptor to ask."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
        return None


def progress_line(record: dict) -> str:
    """tag: 12/40 units (30%) | 3,120 documents | 0.8 units/s | 35 s left"""
    done, total, unit = record["done"], record["total"], record["unit"]
    if total is None:
        parts = [f"{record['job']}: {done:,} {unit}"]
    else:
        share = f" ({100 * done / total:.0f}%)" if total else ""
        parts = [f"{record['job']}: {done:,}/{total:,} {unit}{share}"]
    parts += [f"{_number(value)} {name.replace('_', ' ')}" for name, value in record["figures"].items()]
    if record["per_s"] is not None:
        parts.append(f"{_number(record['per_s'])} {unit}/s")
    if record["seconds_left"] is not None and total is not None and done < total:
        parts.append(f"{duration(record['seconds_left'])} left")
    return " | ".join(parts)


def duration(seconds: float) -> str:
    """45 s, 3m10s, 2h05m."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _number(value: float) -> str:
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def tracked(rows: Iterable[dict], progress: Progress, counts: Callable[[dict], dict] = lambda row: {}) -> list[dict]:
    """Every row of `rows` (one per unit), each counted on `progress` as it arrives, with the running sums of
    `counts(row)` beside it; finished when the rows end."""
    collected: list[dict] = []
    sums: Counter = Counter()
    for row in rows:
        collected.append(row)
        sums.update(counts(row))
        progress.update(len(collected), **sums)
    progress.finish()
    return collected


# ---------------------------------------------------------------------------------------------------- Ray Data
# A job whose rows flow through one Ray Data write (annotate) has no loop on the driver to count them in: a pass-through
# stage reports each batch's rows to a small actor, and a driver thread reads it into a Progress while the write runs.
class RowCounter:
    def __init__(self):
        self.rows = 0

    def add(self, rows: int) -> None:
        self.rows += rows

    def count(self) -> int:
        return self.rows


def counted(dataset, counter, num_cpus: float):
    """`dataset` unchanged, each batch's rows reported to `counter` (a RowCounter actor) as it passes."""
    return dataset.map_batches(_report_rows, fn_kwargs={"counter": counter}, batch_format="pyarrow", num_cpus=num_cpus)


def _report_rows(batch, counter):
    counter.add.remote(batch.num_rows)
    return batch


@contextlib.contextmanager
def watched(progress: Progress, counter, every_s: float = TERMINAL_EVERY_S) -> Iterator[None]:
    """While the block runs, `counter`'s rows shown on `progress`; finished when the block ends without an error."""
    import ray

    def watch() -> None:
        with contextlib.suppress(ray.exceptions.RayError):
            progress.update(ray.get(counter.count.remote(), timeout=30))

    with polling(watch, every_s):
        yield
    watch()  # progress never fails a job: a counter lost with its node leaves the last count read
    progress.finish()


@contextlib.contextmanager
def polling(poll: Callable[[], None], every_s: float) -> Iterator[None]:
    """While the block runs, `poll()` every `every_s` seconds in a thread of its own; stopped and joined at its end."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            poll()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def row_counter():
    """A RowCounter actor (no CPU) on the driver's node, for `counted` and `watched`: a worker node that dies (an
    engine's, in tests/test_node_failure.py) must not take the job's progress with it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    driver_node = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(num_cpus=0)(RowCounter).options(scheduling_strategy=driver_node).remote()
