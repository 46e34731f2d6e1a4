"""Rules of the repository that no single behaviour test would catch: the libraries never import Ray (gliner/,
corpus/ and synth/ run in any process, Ray's or not), the layers import only downwards (gliner <- corpus <- synth <-
ray_jobs; the model never imports its evaluation; the jobs' runtime never imports a job), and ray_jobs/ itself holds
only jobs."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


LIBRARIES = ("gliner", "corpus", "synth")


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")


def absolute_imports(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            names.add(".".join(base + ([node.module] if node.module else [])))
    return names


@pytest.mark.parametrize("package", LIBRARIES)
def test_no_module_of_the_library_imports_ray(package):
    sources = sorted((REPO / package).rglob("*.py"))
    assert sources
    offenders = {path.name: sorted(name for name in absolute_imports(path) if name == "ray" or name.startswith("ray."))
                 for path in sources}
    assert not {name: modules for name, modules in offenders.items() if modules}


def test_importing_every_library_module_leaves_ray_unloaded():
    modules = [module_name(path) for package in LIBRARIES for path in sorted((REPO / package).rglob("*.py")) if path.stem != "__init__"]
    code = f"import importlib, sys\nfor name in {modules!r}:\n    importlib.import_module(name)\nprint(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"



# What each folder may not import: the layers go downwards only.
FORBIDDEN = {
    "gliner": ("corpus", "synth", "ray_jobs"),
    "corpus": ("synth", "ray_jobs"),
    "synth": ("ray_jobs",),
    "ray_jobs.runtime": ("ray_jobs.training",) + tuple(f"ray_jobs.{path.stem}" for path in (REPO / "ray_jobs").glob("*.py")),
    "ray_jobs.training": tuple(f"ray_jobs.{path.stem}" for path in (REPO / "ray_jobs").glob("*.py")),
}


def test_the_layers_import_only_downwards_and_ray_jobs_holds_only_jobs():
    offenders = []
    for folder, forbidden in FORBIDDEN.items():
        for path in sorted((REPO / folder.replace(".", "/")).rglob("*.py")):
            offenders += [(module_name(path), name) for name in absolute_imports(path)
                          if name != "ray_jobs" and any(name == bad or name.startswith(bad + ".") for bad in forbidden)]
    model = [path for path in (REPO / "gliner").glob("*.py")]  # the model itself, without its evaluation
    offenders += [(module_name(path), name) for path in model for name in absolute_imports(path) if name.startswith("gliner.evaluation")]
    assert not offenders
    jobs = sorted(path.stem for path in (REPO / "ray_jobs").glob("*.py") if path.stem != "__init__")
    assert jobs == ["annotate", "convert", "curate", "demo", "distill", "evaluate", "pipeline", "synthesize", "tag", "train"]
    assert all("def main(" in (REPO / "ray_jobs" / f"{job}.py").read_text() for job in jobs)
