"""A threshold sweep from one prediction pass is exact: candidates kept at the lowest threshold and decoded again at
each threshold give what a pass at that threshold gives, spans, scores and F1 alike (no Ray)."""
import numpy as np
import pytest
import torch

from gliner import GLiNER
from gliner.decoding import Span, above_threshold, find_candidates
from gliner.evaluation.scoring import evaluate_predictions, pool_curves, predict, predict_at_thresholds, threshold_curve
from gliner.evaluation.gold import load_gold

THRESHOLDS = [0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3]  # the trained tiny model scores its spans below about 0.3
DISEASE_MAP = {"SpecificDisease": "disease", "DiseaseClass": "disease", "CompositeMention": "disease", "Modifier": "disease"}


@pytest.fixture(scope="module")
def trained_model(trained_tiny_uni_dir):
    return GLiNER.from_pretrained(trained_tiny_uni_dir)


def test_candidates_above_a_threshold_are_those_found_at_it():
    # Short texts with few candidates: on CPU torch's scalar sigmoid (a short tensor's tail) and its vectorised one
    # can differ in the last bit, and a score must not depend on how many spans pass the threshold.
    for seed in range(100):
        torch.manual_seed(seed)
        logits = torch.randn(8, 4, 2) * 3
        lowest = find_candidates(logits, 7, ["a", "b"], 0.01)
        for threshold in [0.01, 0.3, 0.5, 0.7, 0.9, 0.999]:
            assert above_threshold(lowest, threshold) == find_candidates(logits, 7, ["a", "b"], threshold)
    # scores are float32 numbers compared with the float32 threshold, as torch compares them
    at_boundary = Span(0, 0, "a", float(np.float32(0.3)))
    assert above_threshold([at_boundary], 0.3) == []
    assert above_threshold([at_boundary], 0.2999999) == [at_boundary]


def test_word_spans_at_thresholds_equal_separate_passes(trained_model, data_dir):
    gold = load_gold(str(data_dir / "bioner-iob/BC5CDR/test.tsv"), label_map={"Chemical": "chemical", "Disease": "disease"}, max_documents=40)
    assert max(len(words) for words in gold.inputs) > trained_model.config.max_len  # some sentences run in windows
    for flat_ner in (True, False):
        swept = trained_model.predict_word_spans_at_thresholds(gold.inputs, gold.labels, THRESHOLDS, flat_ner=flat_ner, batch_size=4)
        for threshold in THRESHOLDS:
            assert swept[threshold] == trained_model.predict_word_spans(gold.inputs, gold.labels, threshold=threshold, flat_ner=flat_ner, batch_size=4)
    assert len({sum(map(len, spans)) for spans in swept.values()}) >= 4  # the thresholds keep different numbers of spans


@pytest.mark.parametrize("path, label_map, documents", [
    ("bioner-iob/BC5CDR/test.tsv", {"Chemical": "chemical", "Disease": "disease"}, 60),
    ("ncbi-disease-pubtator/test.pubtator", DISEASE_MAP, 4),  # abstracts: several windows each
])
def test_curve_equals_an_evaluation_at_each_threshold(trained_model, data_dir, path, label_map, documents):
    gold = load_gold(str(data_dir / path), label_map=label_map, max_documents=documents)
    curve = threshold_curve(gold.spans, predict_at_thresholds(trained_model, gold, THRESHOLDS))
    assert [point["threshold"] for point in curve["points"]] == THRESHOLDS
    for point in curve["points"]:
        strict = evaluate_predictions(gold, predict(trained_model, gold, threshold=point["threshold"]))["strict"]
        assert point == {key: strict[key] for key in ("precision", "recall", "f1", "tp", "fp", "fn")} | {"threshold": point["threshold"]}
    assert len({point["tp"] + point["fp"] for point in curve["points"]}) >= 4
    assert curve["best"]["f1"] == max(point["f1"] for point in curve["points"])


def test_curve_numbers_best_point_and_pooling():
    gold = [[(0, 1, "a"), (2, 3, "b")], [(0, 2, "a")]]
    predictions = {
        0.3: [[(0, 1, "a"), (2, 3, "b"), (4, 5, "a")], [(0, 2, "a"), (3, 4, "b")]],  # tp 3, fp 2
        0.5: [[(0, 1, "a"), (2, 3, "b")], [(0, 1, "a")]],  # tp 2, fp 1, fn 1
        0.7: [[(0, 1, "a")], []],  # tp 1, fn 2
    }
    curve = threshold_curve(gold, predictions)
    assert [(p["threshold"], p["tp"], p["fp"], p["fn"]) for p in curve["points"]] == [(0.3, 3, 2, 0), (0.5, 2, 1, 1), (0.7, 1, 0, 2)]
    assert [p["f1"] for p in curve["points"]] == pytest.approx([6 / 8, 2 / 3, 1 / 2])
    assert curve["best"]["threshold"] == 0.3

    other = threshold_curve([[(0, 1, "a")]], {0.3: [[]], 0.5: [[(0, 1, "a")]], 0.7: [[(0, 1, "a")]]})
    assert other["best"]["threshold"] == 0.5  # F1 1.0 at 0.5 and 0.7: the lower threshold
    pooled = pool_curves([curve, other])
    assert [(p["tp"], p["fp"], p["fn"]) for p in pooled["points"]] == [(3, 2, 1), (3, 1, 1), (2, 0, 2)]
    assert pooled["best"]["threshold"] == 0.5 and pooled["best"]["f1"] == pytest.approx(3 / 4)
