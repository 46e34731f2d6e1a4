"""The cluster files, offline: `ray up` YAMLs through Ray's own config validation, KubeRay manifests against the
RayCluster/RayJob CRDs (cluster/kuberay/crds), entrypoints that parse, pins that match pyproject.toml, and a
working directory that `ray job submit --working-dir .` can upload."""
from __future__ import annotations

import copy
import importlib
import re
import shlex
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[1]
KUBERAY = REPO / "cluster" / "kuberay"
sys.path.insert(0, str(KUBERAY))

import render  # noqa: E402
import validate  # noqa: E402


def project_pins() -> dict[str, str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["vllm"]
    pins = {}
    for requirement in requirements:
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)", requirement)
        if match:
            pins[match.group(1).lower()] = match.group(3)
    return pins


# ------------------------------------------------------------------------------------------- ray up YAMLs
def ray_validated(config: dict) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


@pytest.mark.parametrize("name", ["aws", "gcp"])
def test_ray_up_yaml_passes_rays_validation_and_has_the_node_groups(name):
    config = yaml.safe_load((REPO / "cluster" / f"{name}.yaml").read_text())
    prepared = ray_validated(config)
    nodes = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head" and nodes["head"]["resources"] == {"CPU": 0}
    assert set(nodes) == {"head", "gpu", "gpu_spot", "cpu_spot"}
    assert prepared["setup_commands"] == []  # not Ray's default, which installs a nightly wheel over the image
    spot = {"aws": lambda node: node["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot",
            "gcp": lambda node: {"preemptible": True} in node["node_config"].get("scheduling", [])}[name]
    assert [group for group in nodes if spot(nodes[group])] == ["gpu_spot", "cpu_spot"]  # never the head or the training group
    assert all(node["max_workers"] >= node.get("min_workers", 0) for node in nodes.values())
    assert "/mnt/shared" in " ".join(prepared["initialization_commands"]) and "-v /mnt/shared:/mnt/shared" in prepared["docker"]["run_options"]


def test_ray_validation_rejects_a_misspelt_field():
    config = yaml.safe_load((REPO / "cluster" / "aws.yaml").read_text())
    config["idle_timeout_minute"] = 5
    with pytest.raises(Exception, match="idle_timeout_minute"):
        ray_validated(config)


# ----------------------------------------------------------------------------------------- KubeRay manifests
def manifests() -> list[tuple[str, dict]]:
    return [(path.name, document) for path in sorted(KUBERAY.glob("*.yaml"))
            for document in yaml.safe_load_all(path.read_text()) if document and document.get("kind") in validate.CRD_FILES]


def test_every_kuberay_manifest_validates_against_its_crd():
    found = manifests()
    assert {name for name, _ in found} >= {"raycluster.yaml", "rayjob-tag.yaml", "rayjob-pipeline.yaml"}
    for name, manifest in found:
        assert validate.problems(manifest) == [], name


def test_validator_catches_typos_wrong_types_and_unknown_versions():
    rayjob = yaml.safe_load((KUBERAY / "rayjob-tag.yaml").read_text())
    misspelt = copy.deepcopy(rayjob)
    misspelt["spec"]["shutdownAfterJobFinish"] = True
    wrong_type = copy.deepcopy(rayjob)
    wrong_type["spec"]["activeDeadlineSeconds"] = "10h"
    nested = copy.deepcopy(rayjob)
    nested["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resourcez"] = {}
    unnamed = copy.deepcopy(rayjob)
    del unnamed["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["name"]
    version = dict(rayjob, apiVersion="ray.io/v2")
    assert validate.problems(misspelt) == ["spec.shutdownAfterJobFinish: unknown field"]
    assert validate.problems(wrong_type) == ["spec.activeDeadlineSeconds: '10h' is not of type 'integer'"]
    assert validate.problems(nested) == ["spec.rayClusterSpec.workerGroupSpecs[0].template.spec.containers[0].resourcez: unknown field"]
    assert "'name' is a required property" in validate.problems(unnamed)[0]
    assert validate.problems(version) == ["RayJob: version 'v2' is not served by the CRD"]


def test_rayjob_manifests_are_rendered_from_the_cluster_spec_and_clean_up_after_themselves():
    assert render.main(["--check"]) == 0
    jobs = {document["metadata"]["name"]: document["spec"] for name, document in manifests() if document["kind"] == "RayJob"}
    modules = {"curate", "annotate", "distill", "synthesize", "convert", "train", "evaluate", "tag", "pipeline"}
    assert {shlex.split(spec["entrypoint"])[2].removeprefix("ray_jobs.") for spec in jobs.values()} == modules
    cluster = yaml.safe_load((KUBERAY / "raycluster.yaml").read_text())["spec"]
    for name, spec in jobs.items():
        assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0, name
        assert 0 < spec["activeDeadlineSeconds"] <= 14 * 24 * 3600, name
        assert spec["rayClusterSpec"] == cluster, name


@pytest.mark.parametrize("job", sorted(render.JOBS))
def test_rayjob_entrypoint_parses_with_its_jobs_own_arguments(job):
    """The entrypoint's flags and config exist: the job's parse_args loads and validates them, as the driver will."""
    command = shlex.split(render.JOBS[job][0])
    assert command[:2] == ["python", "-m"]
    module = importlib.import_module(command[2])
    config, address = module.parse_args(command[3:])
    assert address is None
    assert str(getattr(config, "root", None) or config.output).startswith(render.ROOT)


# ------------------------------------------------------------------------------------ image and runtime_env
def test_container_recipe_installs_the_projects_own_pins():
    dockerfile = (REPO / "cluster" / "Dockerfile").read_text()
    assert 'uv pip install ".[vllm]"' in dockerfile  # every version comes from pyproject.toml
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:\S+-devel-", dockerfile, re.M)  # nvcc for DeepSpeed's JIT ops
    python = re.search(r"^ARG PYTHON_VERSION=(\S+)", dockerfile, re.M).group(1)
    assert f"{python}.0" in SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    pins = project_pins()
    for name, version in re.findall(r"([A-Za-z][A-Za-z0-9_.-]+)==([0-9][^\s\"']*)", dockerfile):
        assert pins.get(name.lower(), version) == version, name
    assert {"ray", "vllm", "deepspeed", "transformers", "torch"} - set(pins) == {"torch"}  # torch: vllm's own CUDA build


@pytest.mark.parametrize("name", ["pip", "uv", "container"])
def test_runtime_env_examples_are_valid_and_pinned_like_the_project(name):
    from ray.runtime_env import RuntimeEnv

    runtime_env = yaml.safe_load((REPO / "cluster" / "runtime_env" / f"{name}.yaml").read_text())
    RuntimeEnv(**runtime_env)
    pins = project_pins()
    for requirement in (runtime_env.get(name) or {}).get("packages", []):
        package, version = requirement.split("==")
        assert pins[package.lower()] == version, requirement


def test_working_dir_upload_is_small_and_leaves_out_venvs_outputs_and_history(tmp_path):
    """What `ray job submit --working-dir .` would upload, zipped by Ray's own packaging (.gitignore and .rayignore)."""
    from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE, _zip_files

    package = tmp_path / "working_dir.zip"
    _zip_files(str(REPO), [], str(package), include_gitignore=True)
    names = zipfile.ZipFile(package).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert {"gliner", "synth", "ray_jobs", "configs", "data", "pyproject.toml"} <= tops
    assert not tops & {".venv", ".venv-upstream", ".git", "outputs", "tests"}
    assert not [name for name in names if "/.work/" in name or "__pycache__" in name]
    assert package.stat().st_size < 64 << 20 < GCS_STORAGE_MAX_SIZE
