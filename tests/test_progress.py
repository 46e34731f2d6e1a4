"""A long job's progress: the line a person reads (in place on a terminal, every 30 s in a log) and the file
monitoring reads, with this run's rate and the time left."""
import fcntl
import io
import json
import os
import struct
import termios

from ray_jobs.runtime.output_root import OutputRoot
from ray_jobs.runtime.progress import FILE_EVERY_S, PROGRESS_FILE, Progress, duration, progress_line, tracked


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_at_the_start_then_every_30_s_and_the_file_the_same_figures(tmp_path):
    assert Progress("tag", 1, "units", OutputRoot("s3://bucket/out")).file_every_s == FILE_EVERY_S["object storage"] == 30  # a PUT each
    clock, log = Clock(), io.StringIO()
    progress = Progress("tag", 10, "units", OutputRoot(str(tmp_path)), stream=log, clock=clock)
    for second, done in ((1, 1), (10, 2), (29, 3), (40, 5), (50, 6)):
        clock.now = second
        progress.update(done, documents=250 * done)
    assert log.getvalue().splitlines() == [
        "tag: 1/10 units (10%) | 250 documents | 1 units/s | 9 s left",
        "tag: 5/10 units (50%) | 1,250 documents | 0.125 units/s | 40 s left",
    ]
    record = json.loads((tmp_path / PROGRESS_FILE).read_text())  # on a local disk, at most every second
    assert {key: record[key] for key in ("job", "unit", "done", "total", "figures", "per_s", "seconds_left", "elapsed_s", "finished")} == {
        "job": "tag", "unit": "units", "done": 6, "total": 10, "figures": {"documents": 1500}, "per_s": 0.12, "seconds_left": 33.3,
        "elapsed_s": 50.0, "finished": False}
    assert progress_line(record) == "tag: 6/10 units (60%) | 1,500 documents | 0.12 units/s | 33 s left"  # what `make demo` shows

    clock.now = 60
    progress.update(10, documents=2500)
    progress.finish()
    assert log.getvalue().splitlines()[-1] == "tag: 10/10 units (100%) | 2,500 documents | 0.167 units/s"  # nothing left to time
    assert json.loads((tmp_path / PROGRESS_FILE).read_text())["finished"] is True


def test_a_terminal_gets_one_line_rewritten_at_most_twice_a_second_and_a_resumed_run_its_own_rate():
    clock, terminal = Clock(), Terminal()
    progress = Progress("minilm", 100, "steps", stream=terminal, clock=clock, already_done=40)  # resumed at step 40
    for second, step in ((0.1, 41), (0.3, 42), (1.0, 45), (1.2, 46), (10.0, 60)):
        clock.now = second
        progress.update(step)
    progress.figures["loss"] = 1.23456
    progress.finish()
    frames = terminal.getvalue().split("\r")[1:]
    assert frames == [
        "minilm: 41/100 steps (41%) | 10 steps/s | 6 s left\033[K",
        "minilm: 45/100 steps (45%) | 5 steps/s | 11 s left\033[K",
        "minilm: 60/100 steps (60%) | 2 steps/s | 20 s left\033[K",
        "minilm: 60/100 steps (60%) | 1.23 loss | 2 steps/s | 20 s left\033[K\n",
    ]


def test_on_a_real_terminal_the_line_is_cut_to_its_width():
    """A pseudo-terminal 40 columns wide: a wrapped line would not be rewritten by the next one, so it is cut."""
    controller, terminal_fd = os.openpty()
    fcntl.ioctl(terminal_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 40, 0, 0))
    with os.fdopen(terminal_fd, "w") as terminal:
        clock = Clock()
        progress = Progress("minilm-demo", 400, "steps", stream=terminal, clock=clock)
        clock.now = 2.0
        progress.update(100, loss=7.5)
        written = os.read(controller, 4096).decode()
    os.close(controller)
    assert len("minilm-demo: 100/400 steps (25%) | 7.5 loss | 50 steps/s | 6 s left") > 40
    assert written == "\r" + "minilm-demo: 100/400 steps (25%) | 7.5 loss | 50 steps/s | 6 s left"[:39] + "\033[K"


def test_tracked_counts_each_row_with_running_sums_and_finishes():
    clock, log = Clock(), io.StringIO()
    progress = Progress("curate", 3, "units", stream=log, clock=clock)
    rows = [{"unit": "a", "n": 2}, {"unit": "b", "n": 5}, {"unit": "c", "failed": "read"}]
    clock.now = 3
    assert tracked(iter(rows), progress, lambda row: {"documents": row.get("n", 0)}) == rows
    assert log.getvalue().splitlines() == ["curate: 1/3 units (33%) | 2 documents | 0.333 units/s | 6 s left",
                                           "curate: 3/3 units (100%) | 7 documents | 1 units/s"]


def test_durations_read_as_a_person_says_them():
    assert [duration(seconds) for seconds in (0, 44.6, 60, 190, 3599, 3600, 7500)] == ["0 s", "45 s", "1m00s", "3m10s", "59m59s", "1h00m", "2h05m"]


def test_the_demo_shows_a_running_jobs_progress_file_as_one_line_in_place_on_a_terminal(tmp_path, monkeypatch):
    import os
    import pty
    import time

    from ray_jobs import demo

    controller, terminal = pty.openpty()
    monkeypatch.setattr(demo, "TERMINAL", terminal)
    output = OutputRoot(str(tmp_path))
    with demo.live_progress(tmp_path / PROGRESS_FILE, every_s=0.05):
        progress = Progress("minilm-demo", 100, "steps", output, stream=io.StringIO())
        progress.figures["loss"] = 2.5
        progress.update(10)
        time.sleep(0.5)
    shown = ""
    while not shown.endswith("\r\033[K"):  # the line and the clearing come as two writes
        shown += os.read(controller, 4096).decode()
    os.close(controller)
    os.close(terminal)
    assert shown.startswith("\r  minilm-demo: 10/100 steps (10%) | 2.5 loss | ") and " steps/s | " in shown
    assert shown.endswith("\033[K\r\033[K")  # the line is cleared when the phase ends, for the phase's own line


def test_a_total_not_known_ahead_shows_count_and_rate_only(tmp_path):
    clock, log = Clock(), io.StringIO()
    progress = Progress("convert", None, "annotation rows", OutputRoot(str(tmp_path)), stream=log, clock=clock)
    clock.now = 4
    progress.update(2000, examples=1500)
    progress.finish()
    assert log.getvalue().splitlines() == ["convert: 2,000 annotation rows | 1,500 examples | 500 annotation rows/s"] * 2
    record = json.loads((tmp_path / PROGRESS_FILE).read_text())
    assert (record["total"], record["seconds_left"], record["finished"]) == (None, None, True)
