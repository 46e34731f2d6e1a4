"""OUTPUT/_SUMMARY.json: one format for every job, written atomically and last, so that it marks the output complete.

    {"job", "status": "complete", "finished_at", "seconds", <the job's own fields: inputs, counts, ...>,
     "config", "versions"}

An output is complete when its summary parses and says so; a missing, cut-off or other summary means the job must
(re)run. Jobs that are all-or-nothing skip a complete output unless asked to overwrite it (`previous_run`).
"""
from __future__ import annotations

import time

from .output_root import OutputRoot
from .versions import package_versions

SUMMARY_FILE = "_SUMMARY.json"
COMPLETE = "complete"
INCOMPLETE = "incomplete"


def write_summary(output: OutputRoot | str, job: str, config, started: float, fields: dict, packages: tuple[str, ...] = (),
                  complete: bool = True) -> dict:
    """Write the summary last, once every other file of the output is in place; returns it. A run that leaves work
    undone (units that failed) writes its summary as "incomplete": the output is then not complete."""
    output = output if isinstance(output, OutputRoot) else OutputRoot(output)
    summary = {"job": job, "status": COMPLETE if complete else INCOMPLETE, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "seconds": round(time.time() - started, 2), **fields,
               "config": config.model_dump(), "versions": package_versions("ray", *packages)}
    output.write_json(SUMMARY_FILE, summary)
    return summary


def read_summary(output: OutputRoot | str) -> dict | None:
    """The output's summary when it is complete, else None."""
    output = output if isinstance(output, OutputRoot) else OutputRoot(output)
    summary = output.read_json(SUMMARY_FILE)
    return summary if isinstance(summary, dict) and summary.get("status") == COMPLETE else None


def previous_run(output: OutputRoot | str, overwrite: bool) -> dict | None:
    """For jobs that write their output all at once: the summary of a complete output to keep (None: run)."""
    summary = None if overwrite else read_summary(output)
    if summary is not None:
        print(f"{summary.get('job', 'job')}: {output if isinstance(output, str) else output.url()} is complete "
              f"({SUMMARY_FILE}); skipped. Pass overwrite=true to redo it.")
        return dict(summary, skipped=True)
    return None
