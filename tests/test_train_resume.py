"""Training resumes its data stream: each worker's rows are a function of the seed, the epoch and its rank, a
restarted run skips exactly the micro-batches its checkpoint covered, and a run whose output is an s3:// URL keeps
its checkpoints and final model there (moto's S3 server, tests/s3_server.py)."""
import json
from collections import Counter, defaultdict
from itertools import islice
from pathlib import Path

import fsspec
import pytest

import numpy as np

from gliner import GLiNER
from gliner.iob import read_iob
from ray_jobs.example_reader import read_examples
from ray_jobs.fit import materialized_in_order
from ray_jobs import fit_loop
from ray_jobs.fit_loop import RowStream, TrainingRows
from ray_jobs.train import TrainConfig, run

ROWS = 41  # odd: the 2 workers' shards differ by a row (21 and 20), so do their epochs (6 and 5 micro-batches of 4)


def stream(rank: int, seed: int = 7, shuffle: bool = True, lengths: np.ndarray | None = None) -> RowStream:
    return RowStream(rows=ROWS, rank=rank, world_size=2, micro_batch_size=4, seed=seed, shuffle=shuffle, lengths=lengths)


def test_every_row_once_an_epoch_a_new_order_each_epoch_and_a_resumed_stream_goes_on_where_it_stopped():
    for epoch in range(3):
        shards = [ids for rank in (0, 1) for batch in stream(rank).epoch_micro_batches(epoch) for ids in batch.tolist()]
        assert sorted(shards) == list(range(ROWS))
    assert [stream(rank).micro_batches_per_epoch() for rank in (0, 1)] == [6, 5]
    assert [len(batch) for batch in stream(0).epoch_micro_batches(0)] == [4, 4, 4, 4, 4, 1]
    orders = [stream(0).epoch_order(epoch).tolist() for epoch in range(3)]
    assert len({tuple(order) for order in orders}) == 3  # reshuffled every epoch
    assert stream(0).epoch_order(1).tolist() == orders[1]  # and the same in every attempt
    assert stream(0, seed=8).epoch_order(0).tolist() != orders[0] and stream(0, seed=-1).epoch_order(0).size == ROWS
    assert stream(1, shuffle=False).epoch_order(2).tolist() == list(range(ROWS))
    for rank in (0, 1):
        uninterrupted = [(epoch, ids.tolist()) for epoch, ids in islice(stream(rank).after(0), 20)]
        for consumed in (1, 5, 6, 11, 12):  # mid-epoch and at epoch boundaries of both ranks
            resumed = [(epoch, ids.tolist()) for epoch, ids in islice(stream(rank).after(consumed), 20 - consumed)]
            assert resumed == uninterrupted[consumed:]


def test_grouped_by_length_micro_batches_pad_less_and_keep_every_row_once_and_resume(monkeypatch):
    lengths = np.random.default_rng(0).integers(1, 200, ROWS)
    grouped = [stream(rank, lengths=lengths) for rank in (0, 1)]
    for epoch in range(3):
        batches = [batch for rank in (0, 1) for batch in grouped[rank].epoch_micro_batches(epoch)]
        assert sorted(row for batch in batches for row in batch.tolist()) == list(range(ROWS))
    assert sorted(len(batch) for batch in grouped[0].epoch_micro_batches(0)) == [1, 4, 4, 4, 4, 4]
    assert [g.micro_batches_per_epoch() for g in grouped] == [6, 5]

    def padding(batches) -> float:  # share of a batch padded to its longest row
        return 1 - sum(lengths[b].sum() for b in batches) / sum(lengths[b].max() * len(b) for b in batches)

    for rank in (0, 1):
        plain, by_length = stream(rank).epoch_micro_batches(0), grouped[rank].epoch_micro_batches(0)
        assert [sorted(b.tolist()) for b in plain] != [sorted(b.tolist()) for b in by_length]
        assert {row for b in plain for row in b.tolist()} == {row for b in by_length for row in b.tolist()}  # the same shard
        assert padding(by_length) < padding(plain) / 3
        maxima = [lengths[b].max() for b in by_length]
        assert maxima != sorted(maxima)  # not from short to long
        uninterrupted = [(epoch, ids.tolist()) for epoch, ids in islice(grouped[rank].after(0), 20)]
        assert uninterrupted == [(epoch, ids.tolist()) for epoch, ids in islice(stream(rank, lengths=lengths).after(0), 20)]
        for consumed in (1, 6, 11):
            assert [(e, ids.tolist()) for e, ids in islice(grouped[rank].after(consumed), 20 - consumed)] == uninterrupted[consumed:]

    monkeypatch.setattr(fit_loop, "GROUP_WINDOW", 2)  # windows of 8 rows: rows are sorted within their window only
    shard = grouped[0].epoch_order(1)[0::2]
    batches = grouped[0].epoch_micro_batches(1)
    for window in range(3):
        assert {row for b in batches[2 * window:2 * window + 2] for row in b.tolist()} == set(shard[8 * window:8 * window + 8].tolist())


@pytest.fixture(scope="module")
def train_file(tmp_path_factory, data_dir) -> Path:
    examples = read_iob(data_dir / "bioner-iob/BC5CDR/train.tsv", {"Chemical": "chemical", "Disease": "disease"})[:ROWS]
    path = tmp_path_factory.mktemp("train") / "train.json"
    path.write_text(json.dumps(examples))
    return path


def config(output: str, backbone: Path, train_file: Path, trace: Path, **changes) -> TrainConfig:
    return TrainConfig.model_validate({
        "name": "resume", "output": output, "max_steps": 12, "checkpoint_every": 3, "keep_checkpoints": 10, "row_trace": str(trace),
        "model": {"backbone": str(backbone), "hidden_size": 32, "max_width": 8, "max_len": 64},
        "data": {"train": str(train_file)},  # shuffled (the default): a new order every epoch
        "optim": {"lr_encoder": 5e-4, "lr_others": 5e-3, "warmup_ratio": 0.0, "schedule": "constant"},
        "scale": {"num_workers": 2, "micro_batch_size": 4},
        **changes,
    })


def traced_steps(folder: Path) -> dict:
    """{(resumed_from_step, rank): {step: row numbers}} from every worker's trace files."""
    steps = defaultdict(dict)
    for path in folder.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            steps[record["resumed_from_step"], record["rank"]][record["step"]] = record["rows"]
    return steps


@pytest.mark.ray
def test_a_run_on_s3_that_fails_resumes_its_data_stream_and_exports_its_final_model_to_s3(s3_server, local_ray, tmp_path, tiny_backbone, train_file):
    """s3_server is session-scoped, so it starts before this module's Ray, whose workers inherit its endpoint. The run
    fails at step 8 and restarts (max_failures by default) from its step-6 checkpoint, where rank 0 is at the start
    of its second epoch and rank 1 one micro-batch into it. The steps the final run kept (1-6 from the first attempt,
    7-12 from the second) trained on the same rows, step by step, as an uninterrupted run (micro-batches grouped by
    length, from the lengths the workers read): the stream the first
    attempt followed up to its failure, RowStream's from row 0 (a second, uninterrupted run would add 40 s)."""
    output = f"{s3_server.new_bucket()}/run"
    grouped = {"train": str(train_file), "group_by_length": True}  # shuffled (the default), then grouped by length
    summary = run(config(output, tiny_backbone, train_file, tmp_path / "trace", fail_at_step=8, data=grouped))
    assert summary["metrics"]["step"] == 12 and summary["metrics"]["resumed_from_step"] == 6
    assert summary["final_model"] == f"{output}/final_model"

    keys = s3_server.keys(output)
    checkpoints = {key.split("/")[2] for key in keys if key.startswith("run/resume/checkpoint_") and key.count("/") > 2}
    assert len(checkpoints) == 4 and all(f"run/resume/{name}/trainer_state.json" in keys for name in checkpoints)  # steps 3, 6, 9, 12
    final_keys = {key.removeprefix("run/final_model/") for key in keys if key.startswith("run/final_model/")}
    assert {"gliner_config.json", "model.safetensors"} <= final_keys and not any(key.startswith("deepspeed") for key in final_keys)
    assert "run/_SUMMARY.json" in keys
    assert not Path("s3:").exists()  # nothing written to a local path named after the URL
    local_copy = tmp_path / "final_model"
    fsspec.filesystem("s3", use_listings_cache=False).get(f"{output}/final_model/", str(local_copy), recursive=True)
    assert GLiNER.from_pretrained(local_copy).predict_entities("Cisplatin caused nephrotoxicity .", ["chemical", "disease"], threshold=0.0)

    traced = traced_steps(tmp_path / "trace")
    examples = json.loads(train_file.read_text())
    lengths = np.array([len(example["tokenized_text"]) for example in examples])
    uninterrupted = {rank: [ids.tolist() for _, ids in islice(stream(rank, seed=42, lengths=lengths).after(0), 12)] for rank in (0, 1)}
    kept = {}
    for rank in (0, 1):
        first, second = traced[None, rank], traced[6, rank]
        assert sorted(first) == list(range(1, 9)) and sorted(second) == list(range(7, 13))  # attempt 1 got as far as the failure
        assert [first[step] for step in range(1, 9)] == uninterrupted[rank][:8]
        kept[rank] = [first[step] for step in range(1, 7)] + [second[step] for step in range(7, 13)]
        assert kept[rank] == uninterrupted[rank]
    # Epochs of 6 micro-batches on rank 0 and 5 on rank 1: each epoch, across the resume too, trains on every row once.
    epochs = [kept[0][:6] + kept[1][:5], kept[0][6:12] + kept[1][5:10]]
    assert all(Counter(row for batch in epoch for row in batch) == Counter(range(ROWS)) for epoch in epochs)
    assert kept[0][:6] != kept[0][6:12]  # reshuffled

    # Row number i is the file's i-th example, as the workers read it.
    rows = TrainingRows(materialized_in_order(read_examples(str(train_file))).iterator())
    assert len(rows) == ROWS
    assert [row["tokenized_text"] for row in rows.take(np.array([40, 0, 17]))] == [examples[i]["tokenized_text"] for i in (40, 0, 17)]
    assert rows.list_lengths("tokenized_text").tolist() == lengths.tolist()
