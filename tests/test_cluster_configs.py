"""The cluster files, offline: `ray up` YAMLs through Ray's own config validation, KubeRay manifests against the
RayCluster/RayJob CRDs (cluster/kuberay/crds), entrypoints that parse, pins that match pyproject.toml, a
working directory that `ray job submit --working-dir .` can upload, and the container's consistency: CUDA major of
the image and of the pinned wheels (cluster/cuda_builds.yaml), node drivers, who can write the shared mount, and
model caches on node-local disk."""
from __future__ import annotations

import copy
import importlib
import re
import shlex
import sys
import tomllib
import zipfile
from pathlib import Path, PurePosixPath

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
    assert {"gliner", "corpus", "synth", "ray_jobs", "configs", "data", "pyproject.toml"} <= tops
    assert not tops & {".venv", ".venv-upstream", ".git", "outputs", "tests"}
    assert not [name for name in names if "/.work/" in name or "__pycache__" in name]
    assert package.stat().st_size < 64 << 20 < GCS_STORAGE_MAX_SIZE


# ------------------------------------------------------------------ CUDA, drivers, file ownership, model caches
CUDA_BUILDS = yaml.safe_load((REPO / "cluster" / "cuda_builds.yaml").read_text())
DOCKERFILE = (REPO / "cluster" / "Dockerfile").read_text()


def image_cuda_major() -> int:
    """The CUDA major of the Dockerfile's base image (nvidia/cuda:<major>.<minor>.<patch>-...)."""
    match = re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:(\d+)\.\d+\.\d+-\S+$", DOCKERFILE, re.M)
    assert match, "ARG CUDA_IMAGE=nvidia/cuda:X.Y.Z-... not found in cluster/Dockerfile"
    return int(match.group(1))


def cuda_major(version: str) -> int:
    return int(str(version).split(".")[0])


def image_user() -> tuple[int, int]:
    """(uid, gid) of the user the image ends as: the last USER line, looked up in its useradd/groupadd."""
    user = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)[-1]
    useradd = next((line for line in DOCKERFILE.splitlines() if re.search(rf"useradd .*\s{user}\b", line)), "")
    uid, gid = re.search(r"--uid (\d+)", useradd), re.search(r"--gid (\d+)", useradd)
    assert uid and gid, f"the image's user {user} needs an explicit --uid and --gid: {useradd.strip()!r}"
    assert re.search(rf"groupadd --gid {gid.group(1)} {user}\b", DOCKERFILE), f"group {gid.group(1)} of {user} is not created"
    return int(uid.group(1)), int(gid.group(1))


def image_env(name: str) -> str | None:
    match = re.search(rf"\b{name}=(\S+)", DOCKERFILE)
    return match.group(1) if match else None


def required_driver() -> int:
    return int(CUDA_BUILDS["min_driver"][image_cuda_major()])


def ray_up(name: str) -> dict:
    return yaml.safe_load((REPO / "cluster" / f"{name}.yaml").read_text())


def pod_specs(manifest: dict) -> list[tuple[str, dict]]:
    spec = manifest["spec"]["rayClusterSpec"] if manifest["kind"] == "RayJob" else manifest["spec"]
    return [("head", spec["headGroupSpec"]["template"]["spec"])] + [
        (group["groupName"], group["template"]["spec"]) for group in spec["workerGroupSpecs"]]


def shared_volumes(pod: dict) -> set[str]:
    claim = yaml.safe_load((KUBERAY / "shared-storage.yaml").read_text())["metadata"]["name"]
    return {volume["name"] for volume in pod.get("volumes", []) if volume.get("persistentVolumeClaim", {}).get("claimName") == claim}


def mounts(container: dict, volumes: set[str]) -> list[str]:
    return [mount["mountPath"] for mount in container.get("volumeMounts", []) if mount["name"] in volumes]


def under(path: str, root: str) -> bool:
    return PurePosixPath(path).is_relative_to(root)


def test_image_cuda_major_is_the_one_the_pinned_torch_and_vllm_wheels_are_built_for():
    vllm = CUDA_BUILDS["vllm"]
    torch_builds = {str(version): cuda for version, cuda in CUDA_BUILDS["torch"].items()}
    makefile_torch = set(re.findall(r"torch==(\S+)", (REPO / "Makefile").read_text()))
    torch_range = next(requirement for requirement in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
                       if re.match(r"torch\b", requirement))
    # the table describes the versions the project pins: vllm from pyproject, torch from the Makefile (CPU
    # development) and from vllm's own pin (the image), which pyproject's torch range must admit
    assert str(vllm["version"]) == project_pins()["vllm"]
    assert len(makefile_torch) == 1 and set(torch_builds) == makefile_torch | {str(vllm["torch"])}
    assert str(vllm["torch"]) in SpecifierSet(torch_range.removeprefix("torch"))
    # and the image's CUDA major is theirs (nvcc of another major cannot build torch extensions for DeepSpeed)
    builds = {"vllm": vllm["cuda"], **{f"torch {version}": cuda for version, cuda in torch_builds.items()}}
    assert {name: cuda_major(cuda) for name, cuda in builds.items()} == {name: image_cuda_major() for name in builds}
    assert image_cuda_major() in CUDA_BUILDS["min_driver"]


def run_driver_check(command: str, tmp_path: Path, nvidia_smi: str) -> int:
    """Run a host command with a stand-in nvidia-smi (a shell script body) first on PATH; its exit status."""
    import subprocess

    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    (fake / "nvidia-smi").write_text("#!/bin/sh\n" + nvidia_smi)
    (fake / "nvidia-smi").chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin"}
    return subprocess.run(["bash", "-c", command], env=env, capture_output=True, timeout=30).returncode


@pytest.mark.parametrize("name", ["aws", "gcp"])
def test_every_ray_up_node_runs_a_driver_that_supports_the_images_cuda(name, tmp_path):
    config, needed = ray_up(name), required_driver()
    checks = [command for command in config["initialization_commands"] if "nvidia-smi" in command]
    assert len(checks) == 1, "one host-side driver check in initialization_commands"
    # it stops a GPU node whose driver is older than the table's minimum, and passes CPU nodes (nvidia-smi fails)
    gpu = 'if [ "$1" = "-L" ]; then echo "GPU 0: NVIDIA H100"; else echo "{}"; fi\n'
    assert run_driver_check(checks[0], tmp_path, gpu.format(f"{needed - 1}.172.08")) != 0
    assert run_driver_check(checks[0], tmp_path, gpu.format(f"{needed}.65.06")) == 0
    assert run_driver_check(checks[0], tmp_path, "echo 'NVIDIA-SMI has failed' >&2; exit 9\n") == 0
    for node_type, node in config["available_node_types"].items():
        assert "initialization_commands" not in node, node_type  # a node-level list would replace the check
        if name == "gcp":  # Deep Learning VM families name their driver: ...-nvidia-<driver>
            images = [disk["initializeParams"]["sourceImage"] for disk in node["node_config"]["disks"] if disk.get("boot")]
            assert len(images) == 1, node_type
            driver = re.search(r"-nvidia-(\d+)$", images[0])
            assert driver and int(driver.group(1)) >= needed, (node_type, images[0])


def test_every_kuberay_pod_that_mounts_the_shared_volume_can_write_to_it():
    uid, gid = image_user()
    pods = [(f"{name} {group}", pod) for name, manifest in manifests() for group, pod in pod_specs(manifest)]
    assert len(pods) >= 4 * 11
    for where, pod in pods:
        shared = shared_volumes(pod)
        writers = [container for container in pod["containers"] if mounts(container, shared)]
        assert writers, where  # every Ray pod mounts it
        context = pod.get("securityContext", {})
        for container in writers:
            runs_as = {**context, **container.get("securityContext", {})}
            assert (runs_as.get("runAsUser"), runs_as.get("runAsGroup")) == (uid, gid), where
        assert context.get("fsGroup") == gid, where
        # NFS-backed claims (EFS, Filestore) ignore fsGroup: an init container, as root, hands the output root to uid:gid
        owned = [match.group(1)
                 for init in pod.get("initContainers", [])
                 if mounts(init, shared) and init.get("securityContext", {}).get("runAsUser") == 0
                 for match in re.finditer(rf"chown {uid}:{gid} (\S+)", " ".join(init["command"] + init.get("args", [])))]
        shared_paths = [path for init in pod.get("initContainers", []) for path in mounts(init, shared)]
        assert any(under(render.ROOT, path) and any(under(path, mount) for mount in shared_paths) for path in owned), where


@pytest.mark.parametrize("name", ["aws", "gcp"])
def test_ray_up_hosts_hand_the_shared_output_root_to_the_images_user(name):
    uid, gid = image_user()
    commands = ray_up(name)["initialization_commands"]
    owned = [path for command in commands for path in re.findall(rf"chown {uid}:{gid} (\S+)", command)]
    assert any(under(render.ROOT, path) for path in owned), owned


def test_model_cache_is_on_node_local_disk_never_on_the_shared_mount():
    cache = image_env("HF_HOME")
    assert cache, "cluster/Dockerfile sets no HF_HOME"
    # KubeRay: the cache lies in a disk-backed emptyDir (or hostPath), in every container of every pod
    for name, manifest in manifests():
        for group, pod in pod_specs(manifest):
            volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
            for container in pod["containers"]:
                env = {item["name"]: item.get("value") for item in container.get("env", [])}
                path = env.get("HF_HOME", cache)
                assert path == cache, (name, group)
                holders = [mount for mount in container.get("volumeMounts", []) if under(path, mount["mountPath"])]
                assert holders, (name, group, "HF_HOME is on no volume")
                volume = volumes[max(holders, key=lambda mount: len(mount["mountPath"]))["name"]]
                node_local = "hostPath" in volume or ("emptyDir" in volume and volume["emptyDir"].get("medium") != "Memory")
                assert node_local, (name, group, volume)
                assert not any(under(path, shared) for shared in mounts(container, shared_volumes(pod))), (name, group)
    # ray up: HF_HOME is the image's, bind-mounted from a host directory that is not the NFS mount
    for name in ["aws", "gcp"]:
        config = ray_up(name)
        options = " ".join(config["docker"]["run_options"])
        assert re.findall(r"-e HF_HOME=(\S+)", options) == [cache], name
        binds = dict(re.findall(r"-v (\S+?):(\S+)", options))
        nfs = [match.group(1) for command in config["initialization_commands"]
               for match in [re.search(r"mount -t nfs\S* .* (\S+)$", command)] if match]
        assert nfs, name
        host = [host for host, inside in binds.items() if under(cache, inside)]
        assert len(host) == 1, (name, binds)
        assert not any(under(host[0], shared) or under(shared, host[0]) for shared in nfs), (name, host, nfs)
        assert not any(under(cache, binds[shared]) for shared in nfs if shared in binds), name
        assert any(f"mkdir -p {host[0]}" in command for command in config["initialization_commands"]), name
    # runtime_env examples say the same
    for name in ["pip", "uv", "container"]:
        env_vars = yaml.safe_load((REPO / "cluster" / "runtime_env" / f"{name}.yaml").read_text()).get("env_vars", {})
        assert env_vars.get("HF_HOME", cache) == cache, name
