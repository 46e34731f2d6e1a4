"""Ray start-up: without an address a job runs on its own embedded Ray at once, even where Ray's latest-cluster file
names a cluster that is gone; an address nothing answers at is one clear error within seconds, before any Ray."""
import json
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from ray_jobs import tag

pytestmark = pytest.mark.ray


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


def tag_argv(model, tmp_path) -> list[str]:
    corpus = tmp_path / "notes.jsonl"
    corpus.write_text('{"doc_id": "a", "text": "Aspirin treats headache."}\n{"doc_id": "b", "text": "Cisplatin causes nephrotoxicity."}\n')
    return ["--model", str(model), "--labels", "disease,chemical", "--input", str(corpus), "--output", str(tmp_path / "out"),
            "max_actors=1", "torch_threads=1"]


def test_a_stale_latest_cluster_file_is_ignored_and_the_job_runs_on_its_own_ray(tiny_uni_dir, tmp_path, monkeypatch, capsys):
    import ray
    from ray._private.services import canonicalize_bootstrap_address

    ray.shutdown()
    temp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    monkeypatch.setenv("RAY_TMPDIR", temp)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    gone = f"127.0.0.1:{closed_port()}"
    Path(temp, "ray").mkdir()
    Path(temp, "ray", "ray_current_cluster").write_text(gone)
    assert canonicalize_bootstrap_address(None).endswith(gone.split(":")[1])  # where a plain ray.init() would go and wait
    started = time.time()
    try:
        assert tag.main(tag_argv(tiny_uni_dir, tmp_path)) == 0
        assert not ray.get_runtime_context().gcs_address.endswith(gone.split(":")[1])
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    assert time.time() - started < 120
    assert json.loads((tmp_path / "out" / "_SUMMARY.json").read_text())["counts"]["documents"] == 2
    assert "tagged 2 documents" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["flag", "environment"])
def test_an_unreachable_address_is_one_clear_error_within_seconds(tiny_uni_dir, tmp_path, monkeypatch, capsys, where):
    import ray

    ray.shutdown()
    address = f"127.0.0.1:{closed_port()}"
    argv = tag_argv(tiny_uni_dir, tmp_path)
    if where == "flag":
        argv += ["--address", address]
    else:
        monkeypatch.setenv("RAY_ADDRESS", address)
    started = time.time()
    assert tag.main(argv) == 2
    assert time.time() - started < 15 and not ray.is_initialized()
    assert capsys.readouterr().err == (f"error: cannot reach the Ray cluster at {address} (Connection refused); check --address "
                                       "or RAY_ADDRESS, or leave both unset to run on an embedded local Ray\n")
    assert not (tmp_path / "out" / "_SUMMARY.json").exists()
