"""Completion markers of work units: OUTPUT/_done/<unit_id>.json, written after every other file of the unit.

A unit with a marker is done and skipped by a rerun; a unit without one is redone from scratch and overwrites
whatever it left, so a killed run rerun writes exactly what an uninterrupted run writes. Unit ids name their file
and range, so an output whose units were cut otherwise (other unit sizes, a changed file) is refused rather than
completed with overlapping units.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from corpus.work_units import WorkUnit

from .job_command import BadInput
from .output_root import OutputRoot

DONE_DIR = "_done"


def done_units(output: OutputRoot) -> set[str]:
    return set(output.names(DONE_DIR, ".json"))


def write_marker(output: OutputRoot, unit_id: str, summary: dict) -> None:
    output.write_json(f"{DONE_DIR}/{unit_id}.json", summary)


def read_markers(output: OutputRoot, unit_ids, threads: int = 16) -> list[dict]:
    """The summaries of these done units (read by a pool of threads: thousands of small objects on S3)."""
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda unit_id: output.read_json(f"{DONE_DIR}/{unit_id}.json"), sorted(unit_ids)))


def check_same_cuts(done: set[str], units: list[WorkUnit], output: OutputRoot) -> None:
    """BadInput when a planned file has done units that this plan does not have."""
    planned = {unit.unit_id for unit in units}
    keys = {unit.file_key for unit in units}
    foreign = sorted(unit_id for unit_id in done - planned if unit_id.rsplit(".", 1)[0] in keys)
    if foreign:
        raise BadInput(f"{output.url()} holds units of the same input files cut differently ({foreign[0]}, ...: other "
                       "unit sizes, or the files changed); rerun with the units settings it was made with, or pass "
                       "overwrite=true to start it afresh")
