"""Job command lines: a bad or missing config is one `error:` line and exit 2, a failed fit exit 1."""
import json

import pytest

from ray_jobs import distill, evaluate, train
from ray_jobs.job_config import summary_main


@pytest.mark.parametrize("main, argv", [
    (train.main, ["--train-data", "examples.parquet", "--output", "out", "no_such_key=1"]),
    (train.main, ["--train-data", "examples.parquet", "--output", "out", "max_steps=many"]),
    (distill.main, ["--documents", "d", "--annotations", "a", "--base-model", "m", "--output", "out", "lora.no_such_key=1"]),
])
def test_bad_config_is_one_error_line_and_exit_2(main, argv, capsys):
    assert main(argv) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: invalid config") and "Traceback" not in stderr


@pytest.mark.parametrize("main", [train.main, distill.main, evaluate.main])
def test_missing_config_file_is_one_error_line_and_exit_2(main, tmp_path, capsys):
    missing = tmp_path / "no_such.yaml"
    assert main(["--config", str(missing)]) == 2
    assert capsys.readouterr().err == f"error: cannot read config {missing}: No such file or directory\n"


def parse_args(argv):
    return {"steps": int(argv[0])}, None


def test_summary_keys_are_printed_as_json(capsys):
    def run(config, address):
        return {"steps": config["steps"], "seconds": 1.5, "not_printed": 0}

    assert summary_main(parse_args, run, ("steps", "seconds"), ["7"]) == 0
    assert json.loads(capsys.readouterr().out) == {"steps": 7, "seconds": 1.5}


def test_failed_fit_is_exit_1_with_its_message(capsys):
    def run(config, address):
        raise RuntimeError("training failed: worker 1 died")

    assert summary_main(parse_args, run, ("steps",), ["7"]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == "training failed: worker 1 died" and captured.out == ""
