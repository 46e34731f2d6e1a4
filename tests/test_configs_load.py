"""Every shipped YAML in configs/ loads into its job's config (validated: unknown keys, types, bounds, the GPU-cluster
rules such as ZeRO-3 and fp16 refusals and annotate's feeding rule), and every pipeline wires all its stages."""
from pathlib import Path

import pytest

from ray_jobs import annotate, convert, curate, distill, evaluate, pipeline, tag, train
from ray_jobs.runtime.job_config import load_config
from synth.prompts import load_prompt

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CONFIG_CLASSES = {
    "annotate": annotate.AnnotateConfig, "synthesize": annotate.AnnotateConfig, "convert": convert.ConvertConfig,
    "curate": curate.CurateConfig, "distill": distill.DistillConfig, "evaluate": evaluate.EvaluateConfig,
    "pipeline": pipeline.PipelineConfig, "tag": tag.TagConfig, "train": train.TrainConfig,
}
YAML_FILES = sorted(CONFIGS.glob("*/*.yaml"))


def test_every_config_folder_is_known_and_no_yaml_is_left_out():
    assert {path.parent.name for path in YAML_FILES} == set(CONFIG_CLASSES)
    assert len(YAML_FILES) >= 29


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_config_loads_into_its_jobs_config(path):
    if path.name.startswith("prompt_"):
        assert load_prompt(path).messages("Cisplatin causes nephrotoxicity.")
        return
    config = load_config(CONFIG_CLASSES[path.parent.name], path)
    if path.parent.name == "pipeline":
        models = ["models.teacher=teacher", "models.student=student", "models.backbone=backbone"]
        config = load_config(pipeline.PipelineConfig, path, models)
        stages = {stage: job for stage, (_, job) in pipeline.resolved_stages(config).items()}
        assert list(stages) == list(pipeline.STAGES)
        outputs = {stage: job.output if "://" in job.output else str(Path(job.output).resolve()) for stage, job in stages.items()}
        root = config.root.rstrip("/") if "://" in config.root else str(Path(config.root).resolve())
        assert outputs == {stage: f"{root}/{stage}" for stage in stages}


CLUSTER = CONFIGS.parent / "cluster"
# Every YAML in cluster/ and the test that validates it (tests/test_cluster_configs.py).
CLUSTER_YAML_CHECKS = {
    "aws.yaml": "Ray's own ray-up schema", "gcp.yaml": "Ray's own ray-up schema",
    "cuda_builds.yaml": "the image's CUDA against the pinned wheels",
    "kuberay/*.yaml": "the KubeRay CRDs", "kuberay/crds/*.yaml": "the schemas themselves",
    "runtime_env/*.yaml": "ray.runtime_env.RuntimeEnv",
}


def test_every_cluster_yaml_parses_and_has_a_validating_test():
    import yaml

    paths = sorted(CLUSTER.rglob("*.yaml"))
    assert len(paths) >= 20
    for path in paths:
        documents = [document for document in yaml.safe_load_all(path.read_text()) if document is not None]
        assert documents and all(isinstance(document, dict) for document in documents), path
        relative = path.relative_to(CLUSTER)
        assert any(relative.match(pattern) and len(relative.parts) == len(Path(pattern).parts) for pattern in CLUSTER_YAML_CHECKS), \
            f"cluster/{relative} is validated by no test: add its check to tests/test_cluster_configs.py and CLUSTER_YAML_CHECKS"


def test_cpu_configs_read_what_the_configs_before_them_write():
    """Run in the order their comments give, the CPU configs need nothing but the repository, the packaged MiniLM and
    the tiny LLM that `python -m synth.tiny_llm outputs/tiny_llm --gain 8` writes (tests/test_cpu_configs.py runs
    those without an LLM). A new CPU config belongs in `checked` and in that test."""
    from gliner.model_path import resolve_packaged_model

    def load(name: str):
        return load_config(CONFIG_CLASSES[name.split("/")[0]], CONFIGS / f"{name}.yaml")

    tiny_llm = "outputs/tiny_llm"
    curated, annotate, distill = load("curate/tiny_cpu"), load("annotate/tiny_cpu"), load("distill/tiny_cpu")
    assert annotate.documents == distill.data.documents == f"{curated.output}/documents"
    assert distill.data.annotations == f"{annotate.output}/annotations"
    assert annotate.model == distill.model.base == tiny_llm
    trained = load("train/minilm_cpu")
    assert all((CONFIGS.parent / source.path).is_file() for source in trained.data.sources())
    assert Path(resolve_packaged_model(trained.model.backbone), "model.safetensors").is_file()
    for name in ("evaluate/tiny_cpu", "evaluate/supervised_minilm", "evaluate/biomed_zero_shot"):
        assert load(name).model == f"{trained.output}/final_model", name
    demo_trained = load("train/minilm_demo")  # make demo's 3-minute recipe: the same backbone, four types from four corpora
    assert demo_trained.model.backbone == trained.model.backbone
    assert all((CONFIGS.parent / source.path).is_file() for source in demo_trained.data.sources())
    demo_types = sorted({label for source in demo_trained.data.sources() for label in source.label_map.values()})
    assert demo_types == ["chemical", "disease", "gene", "species"] == sorted(load("tag/ncbi_demo").labels)
    evaluated = {label for dataset in load("evaluate/ncbi_demo").datasets for label in dataset.label_map.values()}
    assert evaluated == set(demo_types)
    for name in ("evaluate/ncbi_demo", "tag/ncbi_demo"):
        assert load(name).model == f"{demo_trained.output}/final_model", name
    models = load("pipeline/tiny_cpu").models
    assert (models.teacher, models.student, models.backbone) == (tiny_llm, tiny_llm, trained.model.backbone)
    demo = {"train/minilm_demo", "tag/ncbi_demo", "evaluate/ncbi_demo"}
    checked = {"curate/tiny_cpu", "annotate/tiny_cpu", "distill/tiny_cpu", "train/minilm_cpu", "evaluate/tiny_cpu", "pipeline/tiny_cpu", *demo}
    assert {f"{path.parent.name}/{path.stem}" for path in YAML_FILES if "cpu" in path.stem} | demo == checked


def test_the_cpu_cluster_tagging_config_compiles_bf16_and_compile_needs_bf16():
    """configs/tag/pubmed_hpc.yaml, the shipped CPU-cluster tagging config, asks for compiled bf16 on CPU actors;
    compile with any other precision is a config error, in tag and evaluate alike."""
    hpc = load_config(tag.TagConfig, CONFIGS / "tag/pubmed_hpc.yaml")
    assert (hpc.precision, hpc.compile, hpc.gpus_per_actor, hpc.min_agreement) == ("bf16", True, 0.0, 0.99)
    for job_config, path in ((tag.TagConfig, "tag/pubmed_hpc.yaml"), (evaluate.EvaluateConfig, "evaluate/ncbi_demo.yaml")):
        with pytest.raises(ValueError, match="compile: true is for precision bf16, got precision int8"):
            load_config(job_config, CONFIGS / path, ["precision=int8", "compile=true"])
