"""Where a model lives: a local directory or an `owner/name` hub id. Torch-free, so job drivers check paths cheaply."""
from __future__ import annotations

import re
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_model_path(model: str) -> None:
    """A local model directory must exist; an `owner/name` hub id that is not a local directory is left to the loader."""
    local = Path(model).expanduser()
    if local.is_dir():
        return
    if local.exists():
        raise FileNotFoundError(f"model path is a file, not a model directory: {model}")
    if "://" in model or not HUB_ID.match(model) or model.startswith("."):
        raise FileNotFoundError(f"model directory not found: {model}")
