"""The versions a job's summary records: Python's and those of the installed packages it names."""
from __future__ import annotations

import platform
from importlib import metadata


def package_versions(*packages: str) -> dict[str, str]:
    """Read from the installed distributions' metadata, so no package is imported for it."""
    return {"python": platform.python_version(), **{package: metadata.version(package) for package in packages}}
