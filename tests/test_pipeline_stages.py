"""The pipeline's stage table names real jobs, and each stage runs as its own driver: the command the pipeline
starts for a stage reads back, through that job's own command line, exactly the config the pipeline resolved."""
import importlib

import pytest

from ray_jobs.runtime.job_config import Section, load_config
from ray_jobs.pipeline import JOBS, STAGES, PipelineConfig, resolved_stages, stage_command, wired_values


def test_every_stage_has_a_job():
    assert set(JOBS) == set(STAGES)


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory) -> PipelineConfig:
    root = tmp_path_factory.mktemp("pipeline")
    overrides = [f"root={root}", "models.teacher=teacher_dir", "models.student=student_dir", "models.backbone=backbone_dir"]
    return load_config(PipelineConfig, "configs/pipeline/tiny_cpu.yaml", overrides)


@pytest.mark.parametrize("stage", STAGES)
def test_stage_driver_reads_back_the_resolved_config(stage, tiny_pipeline, tmp_path):
    module_name, config_class = JOBS[stage]
    module = importlib.import_module(f"ray_jobs.{module_name}")
    assert issubclass(getattr(module, config_class), Section) and callable(module.main)
    module, job_config = resolved_stages(tiny_pipeline)[stage]
    command = stage_command(module, job_config, tmp_path / f"{stage}.yaml", "127.0.0.1:6379")
    assert command[1:3] == ["-m", f"ray_jobs.{module_name}"] and command[-2:] == ["--address", "127.0.0.1:6379"]
    parse = getattr(module, "parse_synthesize_args", None) or module.parse_args
    read_back, address = parse(command[3:])
    assert read_back == job_config and address == "127.0.0.1:6379"
    assert read_back.output == f"{tiny_pipeline.root}/{stage}"


def test_wiring_feeds_each_stage_the_outputs_before_it_and_falls_back_when_a_producer_is_disabled(tiny_pipeline):
    root = tiny_pipeline.root
    jobs = resolved_stages(tiny_pipeline)
    wired = {stage: wired_values(stage, tiny_pipeline, jobs) for stage in STAGES}
    assert wired["annotate"] == {"documents": f"{root}/curate/documents", "model": "teacher_dir", "output": f"{root}/annotate"}
    assert wired["distill"]["data.annotations"] == f"{root}/annotate/annotations" and wired["distill"]["model.base"] == "student_dir"
    assert wired["synthesize"]["model"] == f"{root}/distill/merged" and wired["synthesize"]["exclude_annotated"] == [f"{root}/annotate"]
    assert wired["convert"]["annotations"] == [f"{root}/annotate/annotations", f"{root}/synthesize/annotations"]
    assert wired["pretrain"]["data.train"] == f"{root}/convert/examples" and wired["pretrain"]["model.backbone"] == "backbone_dir"
    # post-training data: general-domain passages, annotated with open types by the teacher, converted, and merged
    # with the given examples in the stated proportions
    assert wired["posttrain_annotate"]["documents"] == f"{root}/posttrain_curate/documents" and wired["posttrain_annotate"]["model"] == "teacher_dir"
    assert wired["posttrain_convert"]["annotations"] == [f"{root}/posttrain_annotate/annotations"]
    posttrain = jobs["posttrain"][1]
    assert [(source.path, source.max_examples) for source in posttrain.data.sources()] == [
        (f"{root}/posttrain_convert/examples", None), ("data/bioner-iob/NCBI-disease/train.tsv", 200)]
    assert posttrain.data.sources()[1].label_map == {"Disease": "disease"}
    assert jobs["posttrain_annotate"][1].prompt == "configs/annotate/prompt_general.yaml"
    # the training stages validate (a held-out 10%): the stages after them load the best checkpoint's model
    assert wired["posttrain"]["model.init_from"] == f"{root}/pretrain/best_model"
    assert wired["evaluate"]["model"] == wired["tag"]["model"] == f"{root}/posttrain/best_model"

    without = tiny_pipeline.model_copy(deep=True)
    without.stages["synthesize"].enabled = False
    without.stages["posttrain"].enabled = False
    without.stages["pretrain"].overrides = without.stages["pretrain"].overrides + ["validation.fraction=0"]
    jobs = resolved_stages(without)
    assert wired_values("convert", without, jobs)["annotations"] == [f"{root}/annotate/annotations"]
    assert wired_values("tag", without, jobs)["model"] == f"{root}/pretrain/final_model"  # no validation: the last
    without.stages["curate"].enabled = False
    assert "documents" not in wired_values("annotate", without, jobs)  # left to the stage's own config


def test_a_pipeline_whose_stage_would_miss_its_input_is_refused_before_anything_runs(tiny_pipeline, monkeypatch):
    from ray_jobs import pipeline
    from ray_jobs.runtime.job_command import BadInput

    jobs = resolved_stages(tiny_pipeline)
    assert pipeline.missing_inputs(tiny_pipeline, jobs) == []  # shipped data, or made by the stage before

    broken = tiny_pipeline.model_copy(deep=True)
    broken.stages["distill"].overrides = broken.stages["distill"].overrides + ["data.annotations=elsewhere/annotations"]
    broken.stages["posttrain"].overrides = broken.stages["posttrain"].overrides + ["data.train=outputs/post_training/examples"]
    broken.stages["tag"].overrides = broken.stages["tag"].overrides + ["input=data/ncbi-disease-pubtator/*.pubtator"]  # a glob that matches
    jobs = resolved_stages(broken)
    missing = pipeline.missing_inputs(broken, jobs)
    assert missing[0] == "stage distill: elsewhere/annotations does not exist, and no enabled stage before it makes it"
    assert missing[1:] == ["stage posttrain: outputs/post_training/examples does not exist, and no enabled stage before it makes it"]
    monkeypatch.setattr(pipeline, "run_stage", lambda *args: pytest.fail("a stage ran"))
    with pytest.raises(BadInput, match="would fail part way"):
        pipeline.run(broken, address="127.0.0.1:1")  # refused before it connects to any Ray
