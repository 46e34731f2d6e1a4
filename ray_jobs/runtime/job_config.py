"""Job configuration: pydantic models loaded from YAML, with `key=value` overrides (dotted keys for sections).

Unknown keys are an error naming them; values given on the command line are parsed as YAML scalars
(`max_steps=100`, `use_gpu=true`, `labels=[a,b]`)."""
from __future__ import annotations

from pathlib import Path
from typing import TypeVar

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
