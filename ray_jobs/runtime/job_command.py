"""Every job's command line: `python -m ray_jobs.<job> --config FILE [--flags] [key=value ...] [--address ADDR]`.

Exit status, the same in every job:
- 0: the run completed (its summary is written);
- 2: a bad config or bad input (one `error:` line, no traceback): an invalid or unreadable config, a missing input,
  an unknown format, a cluster that cannot be reached or cannot hold the job;
- 1: the run failed (`JobFailed`: one `error:` line) or broke (any other exception: its traceback).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

from corpus.work_units import InputError

from .job_config import load_config


class BadInput(InputError):
    """Input or settings the job cannot use; reported as one line, exit status 2."""


class JobFailed(RuntimeError):
    """The run started and failed (a training run whose workers died, ...); one line, exit status 1."""


@dataclass(frozen=True)
class Flag:
    """A flag sets one config key (values are strings; the config's types convert and check them), or, with key
    None, is read by the job's own `combine`."""

    key: str | None
    help: str
    repeat: bool = False  # may be given several times: a list
    split: bool = False  # comma-separated: a list


# The flags the jobs share, each meaning the same in every job that takes it.
FLAGS = {
    "--model": Flag("model", "model: a local directory or a hub id"),
    "--labels": Flag("labels", "comma-separated labels, e.g. disease,chemical", split=True),
    "--input": Flag("input", "a file, a directory or a glob; local path or fsspec URL"),
    "--output": Flag("output", "output directory; local path or fsspec URL"),
    "--format": Flag("format", "input format (default auto: from the file names)"),
    "--threshold": Flag("threshold", "score threshold of an entity"),
    "--documents": Flag("documents", "the documents contract: a Parquet (or JSONL) file, directory or glob"),
    "--annotations": Flag("annotations", "the annotations contract: a Parquet (or JSONL) file, directory or glob"),
    "--max-steps": Flag("max_steps", "optimizer steps"),
    "--num-workers": Flag("scale.num_workers", "Ray Train workers"),
}


def parse_job_args(argv: list[str] | None, description: str, config_class, flags: Sequence[str | tuple[str, Flag]],
                   combine: Callable[[argparse.Namespace], dict] | None = None):
    """(config, address): the YAML of --config, then the flags (shared ones by name, the job's own as (name, Flag)),
    then the key=value overrides. `combine(args)` maps flags with key None to config values."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="the job's YAML config (configs/<job>/*.yaml)")
    parser.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else an embedded local Ray)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, dotted for sections (e.g. scale.num_workers=2)")
    declared = [(item, FLAGS[item]) if isinstance(item, str) else item for item in flags]
    for name, flag in declared:
        parser.add_argument(name, action="append" if flag.repeat else "store", help=flag.help)
    args = parser.parse_intermixed_args(argv)  # key=value overrides may come before or after the flags
    values = {}
    for name, flag in declared:
        value = getattr(args, name.lstrip("-").replace("-", "_"))
        if flag.key and value is not None:
            values[flag.key] = comma_list(value) if flag.split else value
    values.update(combine(args) if combine else {})
    return load_config(config_class, args.config, args.overrides, values), args.address


def comma_list(value: str) -> list[str]:
    """"a, b,,c" -> ["a", "b", "c"]."""
    return [part.strip() for part in value.split(",") if part.strip()]


def job_main(argv: list[str] | None, parse_args: Callable, run: Callable, report: Callable[[dict], None]) -> int:
    """Parse, run(config, address) -> summary, report(summary); errors become exit statuses as above."""
    try:
        config, address = parse_args(argv)
    except ValueError as error:
        return _error(error, 2)
    try:
        summary = run(config, address)
    except (InputError, FileNotFoundError) as error:  # BadInput is one
        return _error(error, 2)
    except JobFailed as error:
        return _error(error, 1)
    report(summary)
    return 0


def _error(error: Exception, status: int) -> int:
    print(f"error: {error}", file=sys.stderr)
    return status
