"""Validation while training, without Ray: which rows are held out (the same ones in every attempt, never trained
on), how a batch is scored (each example against its own label set, exactly as the evaluation path scores the same
predictions), and the best checkpoint and early stopping the scores decide."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from gliner.evaluation.iob import read_iob
from gliner.evaluation.metrics import score_spans
from gliner.training import parse_example
from gliner.validation import matched_span_counts, validation_label_set
from ray_jobs.training.fit_loop import RowStream
from ray_jobs.training.fit_validation import held_out_rows, record_validation
from ray_jobs.train import GlinerTask, TrainConfig


def test_held_out_rows_are_a_seeded_share_and_the_stream_trains_on_every_other_row_once_an_epoch():
    held = held_out_rows(101, 0.1, None, seed=42)
    assert len(held) == 10 and list(held) == sorted(set(held.tolist())) and held.max() < 101
    assert np.array_equal(held, held_out_rows(101, 0.1, None, seed=42))  # every attempt, any number of workers
    assert not np.array_equal(held, held_out_rows(101, 0.1, None, seed=43))
    assert len(held_out_rows(101, 0.1, 4, seed=42)) == 4 and len(held_out_rows(101, 0.0, None, seed=42)) == 0
    assert len(held_out_rows(3, 0.1, None, seed=42)) == 1  # a fraction above 0 holds out a row at least
    trained = np.setdiff1d(np.arange(101), held)
    for epoch in range(2):
        seen = [row for rank in (0, 1) for batch in RowStream(len(trained), rank, 2, 4, 42, True, row_ids=trained).epoch_micro_batches(epoch)
                for row in batch.tolist()]
        assert sorted(seen) == trained.tolist()  # each trained row once, no held-out row


def test_an_example_is_scored_against_its_closed_set_or_its_types_and_negatives():
    closed = parse_example({"tokenized_text": ["a", "b"], "ner": [[0, 0, "x"]], "ner_labels": ["z", "x", "y"]}, 4, 10)
    assert validation_label_set(closed, max_types=2) == ["x", "y", "z"]  # a closed set is whole
    open_types = parse_example({"tokenized_text": ["a", "b", "c"], "ner": [[0, 0, "x"], [2, 2, "w"]], "negatives": ["v", "x", "u"]}, 4, 10)
    assert validation_label_set(open_types, max_types=3) == ["w", "x", "u"]  # its types first, then negatives
    assert validation_label_set(open_types, max_types=1) == ["w", "x"]  # never fewer than its own types
    assert validation_label_set(parse_example({"tokenized_text": ["a"]}, 4, 10), max_types=3) == []


def test_span_counts_decode_each_row_over_its_own_labels():
    examples = [parse_example({"tokenized_text": ["a", "b", "c", "d"], "ner": [[0, 1, "x"], [3, 3, "y"]]}, 3, 10),
                parse_example({"tokenized_text": ["a", "b"], "ner": [[1, 1, "z"]]}, 3, 10)]
    slots = ["x", "y", "z"]  # a bi-encoder's shared set: every row has logits for every label
    logits = torch.full((2, 4, 3, 3), -9.0)  # (B, W, K, C)
    logits[0, 0, 1, 0] = 5.0  # row 0: words 0-1 as x (right)
    logits[0, 2, 0, 1] = 4.0  # row 0: word 2 as y (wrong); word 3's y missed
    logits[0, 0, 0, 2] = 9.0  # row 0: z, a label not in its set: never decoded
    logits[1, 1, 0, 2] = 3.0  # row 1: word 1 as z (right)
    logits[1, 3, 0, 2] = 9.0  # row 1: past its 2 words: never decoded
    assert matched_span_counts(logits, examples, [slots, slots], [["x", "y"], ["z"]], threshold=0.5) == (2, 1, 1)
    assert matched_span_counts(logits, examples, [slots, slots], [["x", "y"], ["z"]], threshold=0.99) == (1, 0, 2)  # only sigmoid(5) > 0.99
    assert matched_span_counts(logits, examples, [slots, slots], [[""], ["z"]], threshold=0.5) == (1, 0, 0)  # "": nothing scored


@pytest.mark.parametrize("encoder", ["uni", "bi"])
def test_validation_counts_equal_the_evaluation_paths_on_the_same_examples(encoder, request, data_dir):
    """The held-out score a training run reports is the score the evaluate job would give those examples with their
    label sets: same predictions, same strict matching."""
    model_dir = request.getfixturevalue(f"trained_tiny_{encoder}_dir")
    raw = read_iob(data_dir / "bioner-iob/BC5CDR/train.tsv", {"Chemical": "chemical", "Disease": "disease"})[200:216]
    config = TrainConfig.model_validate({"output": "unused", "max_steps": 1, "model": {"init_from": str(model_dir)},
                                         "data": {"train": "unused"}, "validation": {"threshold": 0.1}})
    task = GlinerTask(config)
    module = task.build_model(None).eval()
    width = task.gliner.config.max_width
    rows = [dict(row, ner=[span for span in row["ner"] if span[1] - span[0] < width], ner_labels=["chemical", "disease"]) for row in raw]
    with torch.no_grad():
        counts = [task.validate(SimpleNamespace(module=module), rows[start:start + 8], torch.device("cpu")) for start in (0, 8)]
    summed = {key: sum(part[key] for part in counts) for key in counts[0]}
    metrics = task.validation_metrics(summed)

    predicted = task.gliner.predict_word_spans([row["tokenized_text"] for row in rows], ["chemical", "disease"], threshold=0.1)
    expected = score_spans([[(s, e + 1, label) for s, e, label in row["ner"]] for row in rows],
                           [[(span.start, span.end + 1, span.label) for span in spans] for spans in predicted])
    assert (summed["val_tp"], summed["val_fp"], summed["val_fn"]) == (expected.tp, expected.fp, expected.fn)
    assert expected.tp > 0 and expected.fp + expected.fn > 0  # a score neither 0 nor perfect: the check has teeth
    assert metrics["val_f1"] == pytest.approx(expected.f1) and metrics["val_examples"] == 16 and metrics["val_loss"] > 0


def test_the_best_checkpoint_is_the_highest_score_the_latest_of_equals_and_patience_counts_validations_without_a_higher_one():
    state = {"step": 0, "best": None, "stale_validations": 0, "stopped_early": False, "validation_history": []}
    reported = []
    for step, f1 in [(3, 0.2), (6, 0.5), (9, 0.5), (12, 0.4), (15, 0.6)]:
        state["step"] = step
        reported.append(record_validation(state, {"val_f1": f1, "val_loss": 1.0}, "val_f1", patience=2))
        if state["stopped_early"]:
            break
    assert [(r["best_step"], r["validations_without_improvement"], r["stopped_early"]) for r in reported] == [
        (3, 0, False), (6, 0, False), (9, 1, False), (9, 2, True)]  # stopped at step 12: 15 never ran
    assert [entry["step"] for entry in state["validation_history"]] == [3, 6, 9, 12] and reported[-1]["best_val_f1"] == 0.5
