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
from gliner.evaluation.iob import read_iob
from ray_jobs.training import fit_loop
from ray_jobs.training.fit_loop import RowStream, TokenBudget
from ray_jobs.training.fit_validation import held_out_rows
from ray_jobs.train import TrainConfig, run

ROWS = 41  # odd: the 2 workers' shards differ by a row (21 and 20), so do their epochs (6 and 5 micro-batches of 4)


def stream(rank: int, seed: int = 7, shuffle: bool = True, lengths: np.ndarray | None = None) -> RowStream:
    return RowStream(rows=ROWS, rank=rank, world_size=2, micro_batch_size=4, seed=seed, shuffle=shuffle, lengths=lengths)


def test_every_row_once_an_epoch_a_new_order_each_epoch_and_a_resumed_stream_goes_on_where_it_stopped():
    for epoch in range(3):
        shards = [ids for rank in (0, 1) for batch in stream(rank).epoch_micro_batches(epoch) for ids in batch.tolist()]
        assert sorted(shards) == list(range(ROWS))
    assert [len(stream(rank).epoch_micro_batches(0)) for rank in (0, 1)] == [6, 5]
    assert [len(batch) for batch in stream(0).epoch_micro_batches(0)] == [4, 4, 4, 4, 4, 1]
    orders = [stream(0).epoch_order(epoch).tolist() for epoch in range(3)]
    assert len({tuple(order) for order in orders}) == 3  # reshuffled every epoch
    assert stream(0).epoch_order(1).tolist() == orders[1]  # and the same in every attempt
    assert stream(0, seed=8).epoch_order(0).tolist() != orders[0] and stream(0, seed=-1).epoch_order(0).size == ROWS
    assert stream(1, shuffle=False).epoch_order(2).tolist() == list(range(ROWS))
    for rank in (0, 1):
        uninterrupted = [(epoch, ids.tolist()) for epoch, ids, _ in islice(stream(rank).after(0), 20)]
        for consumed in (1, 5, 6, 11, 12):  # mid-epoch and at epoch boundaries of both ranks
            resumed = [(epoch, ids.tolist()) for epoch, ids, _ in islice(stream(rank).after(consumed), 20 - consumed)]
            assert resumed == uninterrupted[consumed:]


def test_grouped_by_length_micro_batches_pad_less_and_keep_every_row_once_and_resume(monkeypatch):
    lengths = np.random.default_rng(0).integers(1, 200, ROWS)
    grouped = [stream(rank, lengths=lengths) for rank in (0, 1)]
    for epoch in range(3):
        batches = [batch for rank in (0, 1) for batch in grouped[rank].epoch_micro_batches(epoch)]
        assert sorted(row for batch in batches for row in batch.tolist()) == list(range(ROWS))
    assert sorted(len(batch) for batch in grouped[0].epoch_micro_batches(0)) == [1, 4, 4, 4, 4, 4]
    assert [len(g.epoch_micro_batches(2)) for g in grouped] == [6, 5]

    def padding(batches) -> float:  # share of a batch padded to its longest row
        return 1 - sum(lengths[b].sum() for b in batches) / sum(lengths[b].max() * len(b) for b in batches)

    for rank in (0, 1):
        plain, by_length = stream(rank).epoch_micro_batches(0), grouped[rank].epoch_micro_batches(0)
        assert [sorted(b.tolist()) for b in plain] != [sorted(b.tolist()) for b in by_length]
        assert {row for b in plain for row in b.tolist()} == {row for b in by_length for row in b.tolist()}  # the same shard
        assert padding(by_length) < padding(plain) / 3
        maxima = [lengths[b].max() for b in by_length]
        assert maxima != sorted(maxima)  # not from short to long
        uninterrupted = [(epoch, ids.tolist()) for epoch, ids, _ in islice(grouped[rank].after(0), 20)]
        assert uninterrupted == [(epoch, ids.tolist()) for epoch, ids, _ in islice(stream(rank, lengths=lengths).after(0), 20)]
        for consumed in (1, 6, 11):
            assert [(e, ids.tolist()) for e, ids, _ in islice(grouped[rank].after(consumed), 20 - consumed)] == uninterrupted[consumed:]

    monkeypatch.setattr(fit_loop, "GROUP_WINDOW", 2)  # windows of 8 rows: rows are sorted within their window only
    shard = grouped[0].epoch_order(1)[0::2]
    batches = grouped[0].epoch_micro_batches(1)
    for window in range(3):
        assert {row for b in batches[2 * window:2 * window + 2] for row in b.tolist()} == set(shard[8 * window:8 * window + 8].tolist())


def test_token_budget_micro_batches_hold_one_bucket_each_in_few_shapes_every_row_once_and_resume():
    rows = 301
    lengths = np.random.default_rng(1).integers(1, 90, rows)
    lengths[:3] = [200, 64, 65]  # past the largest bucket (the task cuts it), and both sides of a bucket's edge
    budget = TokenBudget(buckets=(16, 32, 64), tokens=256)  # 16, 8 and 4 rows a micro-batch
    streams = [RowStream(rows, rank, 2, 8, seed=3, shuffle=True, lengths=lengths, budget=budget) for rank in (0, 1)]
    assert budget.bucket_of(lengths[:3]).tolist() == [64, 64, 64] and budget.bucket_of(np.array([1, 16, 17, 33])).tolist() == [16, 16, 32, 64]
    epochs = {rank: [streams[rank].epoch_plan(epoch) for epoch in range(3)] for rank in (0, 1)}
    for epoch in range(3):
        plans = [epochs[rank][epoch] for rank in (0, 1)]
        assert sorted(row for plan in plans for ids, _ in plan for row in ids.tolist()) == list(range(rows))
        for plan in plans:
            assert all(set(budget.bucket_of(lengths[ids]).tolist()) == {bucket} for ids, bucket in plan)
            short = [(bucket, len(ids)) for ids, bucket in plan if len(ids) != budget.rows_per_batch(bucket)]
            assert len(short) <= 3 and all(size < budget.rows_per_batch(bucket) for bucket, size in short)  # one per bucket
            assert [bucket for ids, bucket in plan[-len(short):]] == sorted(bucket for bucket, _ in short) if short else True
            assert {(bucket, len(ids)) for ids, bucket in plan[:-3]} <= {(16, 16), (32, 8), (64, 4)}
            order = [bucket for _, bucket in plan[:-3]]
            assert order not in (sorted(order), sorted(order, reverse=True))  # buckets interleave, not short to long
    assert len(epochs[0][0]) != len(epochs[0][1]) or len(epochs[0][0]) != len(epochs[1][0])  # epochs differ in length
    for rank in (0, 1):
        uninterrupted = [(epoch, ids.tolist(), bucket) for epoch, ids, bucket in islice(streams[rank].after(0), 70)]
        boundary = len(epochs[rank][0])
        for consumed in (1, boundary - 1, boundary, boundary + 1, 60):
            resumed = [(epoch, ids.tolist(), bucket) for epoch, ids, bucket in islice(streams[rank].after(consumed), 70 - consumed)]
            assert resumed == uninterrupted[consumed:]


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
def test_a_run_on_s3_that_fails_resumes_its_token_budget_stream_and_exports_its_final_model_to_s3(s3_server, local_ray, tmp_path, tiny_backbone, train_file):
    """s3_server is session-scoped, so it starts before this module's Ray, whose workers inherit its endpoint. Two
    workers train on token-budget micro-batches of two length buckets. The run fails at step 8 and restarts
    (max_failures by default) from its step-6 checkpoint. The steps
    the final run kept (1-6 from the first attempt, 7-12 from the second) trained on the same rows, step by step, as
    an uninterrupted run: the stream the first attempt followed up to its failure, RowStream's from row 0 (a second,
    uninterrupted run would add 40 s)."""
    output = f"{s3_server.new_bucket()}/run"
    budget = TokenBudget(buckets=(32, 64), tokens=256)  # 8 sentences of up to 32 words, or 4 of up to 64
    data = {"train": str(train_file), "length_buckets": list(budget.buckets)}  # shuffled (the default)
    scale = {"num_workers": 2, "micro_batch_tokens": budget.tokens}
    summary = run(config(output, tiny_backbone, train_file, tmp_path / "trace", fail_at_step=8, data=data, scale=scale, keep_checkpoints=1))
    metrics = summary["metrics"]
    assert metrics["step"] == 12 and metrics["resumed_from_step"] == 6
    assert summary["final_model"] == f"{output}/final_model" and summary["best_model"] == f"{output}/best_model"
    # Validation on the default held-out 10% (4 of the 41 rows) at every checkpoint, its record carried across the
    # restart; the best by F1 (the latest of equals) is kept and exported, whatever keep_checkpoints=1 rotates out.
    validation = summary["validation"]
    assert (validation["rows"], validation["training_rows"], validation["stopped_early"]) == (4, 37, False)
    scores = {entry["step"]: entry["val_f1"] for entry in validation["history"]}
    assert list(scores) == [3, 6, 9, 12] and all(entry["val_examples"] == 4 for entry in validation["history"])
    best_step = max(scores, key=lambda step: (scores[step], step))
    assert summary["best"]["step"] == metrics["best_step"] == best_step and summary["best"]["val_f1"] == scores[best_step]
    assert 2 <= metrics["batch_shapes"] <= 4 and metrics["compiled_graphs"] == 0  # rank 0's: 2 buckets x 64 or 128 subwords
    assert 0 < metrics["padding_share_words"] < 1 and 0 < metrics["padding_share_tokens"] < 1  # the epochs' short batches: most of 41 rows
    long_rows = sum(len(example["tokenized_text"]) > 64 for example in json.loads(train_file.read_text()))
    assert long_rows > 0 and metrics["cut_examples"] >= long_rows and metrics["tokens_seen"] > 0  # cut to max_len, counted

    keys = s3_server.keys(output)
    checkpoints = {key.split("/")[2] for key in keys if key.startswith("run/resume/checkpoint_") and key.count("/") > 2}
    s3 = fsspec.filesystem("s3", use_listings_cache=False)
    kept_steps = {json.loads(s3.cat(f"{output.rpartition('/')[0]}/run/resume/{name}/trainer_state.json"))["step"] for name in checkpoints}
    assert kept_steps == {best_step, 12}  # the best and the latest (to resume from)
    for folder in ("final_model", "best_model"):
        model_keys = {key.removeprefix(f"run/{folder}/") for key in keys if key.startswith(f"run/{folder}/")}
        assert {"gliner_config.json", "model.safetensors"} <= model_keys and not any(key.startswith("deepspeed") for key in model_keys)
    assert "run/_SUMMARY.json" in keys
    assert not Path("s3:").exists()  # nothing written to a local path named after the URL
    local_copy = tmp_path / "final_model"
    s3.get(f"{output}/final_model/", str(local_copy), recursive=True)
    assert GLiNER.from_pretrained(local_copy).predict_entities("Cisplatin caused nephrotoxicity .", ["chemical", "disease"], threshold=0.0)

    traced = traced_steps(tmp_path / "trace")
    examples = json.loads(train_file.read_text())
    lengths = np.array([len(example["tokenized_text"]) for example in examples])
    trained = np.setdiff1d(np.arange(ROWS), held_out_rows(ROWS, 0.1, None, seed=42))
    streams = {rank: RowStream(len(trained), rank, 2, 8, seed=42, shuffle=True, lengths=lengths, budget=budget, row_ids=trained)
               for rank in (0, 1)}
    uninterrupted = {rank: [(epoch, ids.tolist()) for epoch, ids, _ in islice(streams[rank].after(0), 12)] for rank in (0, 1)}
    for rank in (0, 1):
        first, second = traced[None, rank], traced[6, rank]
        assert sorted(first) == list(range(1, 9)) and sorted(second) == list(range(7, 13))  # attempt 1 got as far as the failure
        assert [first[step] for step in range(1, 9)] == [ids for _, ids in uninterrupted[rank][:8]]
        kept = [first[step] for step in range(1, 7)] + [second[step] for step in range(7, 13)]
        assert kept == [ids for _, ids in uninterrupted[rank]]
    # Each epoch both ranks finished, across the resume too, trained on every row once; the next was reshuffled.
    finished = min(uninterrupted[rank][-1][0] for rank in (0, 1))
    assert finished >= 2
    for epoch in range(finished):
        rows = [row for rank in (0, 1) for seen, ids in uninterrupted[rank] if seen == epoch for row in ids]
        assert Counter(rows) == Counter(trained.tolist())  # never a held-out row
    assert [ids.tolist() for ids in streams[0].epoch_micro_batches(0)] != [ids.tolist() for ids in streams[0].epoch_micro_batches(1)]
