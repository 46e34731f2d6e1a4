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
from typing import Callable

from .job_config import load_config


class BadInput(ValueError):
    """Input or settings the job cannot use; reported as one line, exit status 2."""


class JobFailed(RuntimeError):
    """The run started and failed (a training run whose workers died, ...); one line, exit status 1."""


def job_parser(description: str) -> argparse.ArgumentParser:
    """The arguments every job has; the job adds its own flags."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="the job's YAML config (configs/<job>/*.yaml)")
    parser.add_argument("--address", help="Ray cluster to join (default: RAY_ADDRESS, else an embedded local Ray)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, dotted for sections (e.g. scale.num_workers=2)")
    return parser


def parse_job_args(parser: argparse.ArgumentParser, config_class, argv: list[str] | None, flag_values: Callable[[argparse.Namespace], dict]):
    """(config, address): the YAML, then the flags (`flag_values` maps them to config keys), then the overrides."""
    args = parser.parse_intermixed_args(argv)  # key=value overrides may come before or after the flags
    return load_config(config_class, args.config, args.overrides, flag_values(args)), args.address


def job_main(argv: list[str] | None, parse_args: Callable, run: Callable, report: Callable[[dict], None]) -> int:
    """Parse, run(config, address) -> summary, report(summary); errors become exit statuses as above."""
    try:
        config, address = parse_args(argv)
    except ValueError as error:
        return _error(error, 2)
    try:
        summary = run(config, address)
    except (BadInput, FileNotFoundError) as error:
        return _error(error, 2)
    except JobFailed as error:
        return _error(error, 1)
    report(summary)
    return 0


def _error(error: Exception, status: int) -> int:
    print(f"error: {error}", file=sys.stderr)
    return status
