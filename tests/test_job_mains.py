"""Job command lines: a bad or missing config is one `error:` line and exit 2, bad input exit 2, a failed run exit 1."""
import pytest

from ray_jobs import convert, curate, distill, evaluate, pipeline, tag, train
from ray_jobs.runtime.job_command import BadInput, JobFailed, job_main


@pytest.mark.parametrize("main, argv", [
    (train.main, ["--train-data", "examples.parquet", "--output", "out", "no_such_key=1"]),
    (train.main, ["--train-data", "examples.parquet", "--output", "out", "max_steps=many"]),
    (distill.main, ["--documents", "d", "--annotations", "a", "--base-model", "m", "--output", "out", "lora.no_such_key=1"]),
    (tag.main, ["--model", "m", "--labels", "x", "--input", "i", "--output", "o", "min_actors=3", "max_actors=2"]),
    (curate.main, ["--input", "i", "--output", "o", "units.documents=0"]),
])
def test_bad_config_is_one_error_line_and_exit_2(main, argv, capsys):
    assert main(argv) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("error: invalid config") and "Traceback" not in stderr


@pytest.mark.parametrize("main", [train.main, distill.main, evaluate.main, tag.main, curate.main, convert.main, pipeline.main])
def test_missing_config_file_is_one_error_line_and_exit_2(main, tmp_path, capsys):
    missing = tmp_path / "no_such.yaml"
    assert main(["--config", str(missing)]) == 2
    assert capsys.readouterr().err == f"error: cannot read config {missing}: No such file or directory\n"


def test_missing_input_is_exit_2_before_ray_starts(tmp_path, capsys):
    import ray

    assert tag.main(["--model", "m", "--labels", "x", "--input", str(tmp_path / "none.jsonl"), "--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == f"error: no input files at {tmp_path / 'none.jsonl'}\n" and not ray.is_initialized()


def test_an_input_of_unknown_format_is_exit_2_before_ray_starts(tmp_path, capsys):
    import ray

    (tmp_path / "table.csv").write_text("doc_id,text\n")
    assert tag.main(["--model", "m", "--labels", "x", "--input", str(tmp_path / "table.csv"), "--output", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith(f"error: cannot tell the format of {tmp_path / 'table.csv'}; pass format=")
    assert not ray.is_initialized()


def parse_args(argv):
    return {"steps": int(argv[0])}, None


@pytest.mark.parametrize("error, status", [(BadInput("no such corpus"), 2), (FileNotFoundError("no such corpus"), 2),
                                           (JobFailed("training failed: worker 1 died"), 1)])
def test_errors_of_a_run_become_one_line_and_an_exit_status(error, status, capsys):
    def run(config, address):
        raise error

    assert job_main(["7"], parse_args, run, print) == status
    captured = capsys.readouterr()
    assert captured.err == f"error: {error}\n" and captured.out == ""


def test_a_completed_run_is_reported_and_exit_0(capsys):
    assert job_main(["7"], parse_args, lambda config, address: {"steps": config["steps"]}, lambda summary: print(summary["steps"])) == 0
    assert capsys.readouterr().out == "7\n"


def test_an_unexpected_exception_is_not_hidden():
    def run(config, address):
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        job_main(["7"], parse_args, run, print)
