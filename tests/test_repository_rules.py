"""A rule of the repository that no single behaviour test would catch: the libraries never import Ray (gliner/ and
synth/ run in any process, Ray's or not)."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["gliner", "synth"])
def test_no_module_of_the_library_imports_ray(package):
    sources = sorted((REPO / package).glob("*.py"))
    assert sources
    offenders = {path.name: sorted(name for name in imported_modules(path) if name == "ray" or name.startswith("ray."))
                 for path in sources}
    assert not {name: modules for name, modules in offenders.items() if modules}


def test_importing_every_library_module_leaves_ray_unloaded():
    modules = [f"{package}.{path.stem}" for package in ("gliner", "synth") for path in sorted((REPO / package).glob("*.py"))
               if path.stem != "__init__"]
    code = f"import importlib, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\nprint(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"

