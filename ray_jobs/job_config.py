"""Job configuration: pydantic models loaded from YAML, with `key=value` overrides (dotted keys for sections).

Unknown keys are an error naming them; values given on the command line are parsed as YAML scalars
(`max_steps=100`, `use_gpu=true`, `labels=[a,b]`)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class Section(BaseModel):
    """Base for every config model: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def load_config(model: type[ConfigT], path: str | Path | None, overrides: list[str] = (), values: dict | None = None) -> ConfigT:
    data = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:  # a missing or unreadable file is a bad config like any other
            raise ValueError(f"cannot read config {path}: {error.strerror or error}") from None
        data = yaml.safe_load(text) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config file must hold a mapping at the top level")
    for key, value in (values or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    for override in overrides:
        key, separator, raw = override.partition("=")
        if not separator or not key:
            raise ValueError(f"override {override!r} is not of the form key=value")
        _set_dotted(data, key.strip(), yaml.safe_load(raw) if raw else "")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ValueError(f"invalid config{f' {path}' if path else ''}:\n{error}") from None


def _set_dotted(data: dict, dotted_key: str, value) -> None:
    *parents, leaf = dotted_key.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"cannot set {dotted_key}: {part} is not a section")
    node[leaf] = value


def cli_main(parse_args: Callable, run: Callable, argv: list[str] | None = None, run_errors: tuple = ()) -> int:
    """A job's command line: a bad config (ValueError from parse_args), or an error of a `run_errors` type from
    run(config, address), becomes one `error:` line on stderr and exit status 2 instead of a traceback."""
    try:
        config, address = parse_args(argv)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        run(config, address)
    except run_errors as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def summary_main(parse_args: Callable, run: Callable, summary_keys: tuple[str, ...], argv: list[str] | None = None) -> int:
    """A training job's command line: cli_main, printing the `summary_keys` of the summary that run(config, address)
    returns as JSON; a failed fit (RuntimeError) is printed on stderr with exit status 1."""
    def run_and_print(config, address) -> None:
        summary = run(config, address)
        print(json.dumps({key: summary[key] for key in summary_keys}, indent=2, default=str))

    try:
        return cli_main(parse_args, run_and_print, argv)
    except RuntimeError as error:
        print(error, file=sys.stderr)
        return 1
