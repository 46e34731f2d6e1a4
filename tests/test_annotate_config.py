"""Annotate/synthesize configs and the prompt file: every shipped file validates; bad values are named."""
from pathlib import Path

import pytest

from ray_jobs.annotate import AnnotateConfig
from ray_jobs.job_config import load_config
from ray_jobs.synthesize import synthesize_config
from synth.prompts import load_prompt

CONFIGS = sorted(Path(__file__).resolve().parents[1].glob("configs/[as]*/*.yaml"))


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.parent.name in ("annotate", "synthesize") and p.name != "prompt_biomed.yaml"], ids=lambda p: p.name)
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
