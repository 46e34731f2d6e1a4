import json
import random
from pathlib import Path

import pytest
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.metrics.sequence_labeling import get_entities, precision_recall_fscore_support

from gliner.evaluation.metrics import score_spans, spans_from_iob

# Two documents with a partial overlap, a label mismatch and a spurious prediction.
GOLD = [[(0, 2, "A"), (5, 6, "B")], [(1, 3, "A")]]
PRED = [[(0, 2, "A"), (5, 6, "A")], [(1, 2, "A"), (7, 9, "B")]]


def test_strict_micro_per_type_and_macro():
    scores = score_spans(GOLD, PRED, mode="strict")

    assert (scores.tp, scores.fp, scores.fn) == (1, 3, 2)
    assert scores.precision == pytest.approx(1 / 4)
    assert scores.recall == pytest.approx(1 / 3)
    assert scores.f1 == pytest.approx(2 / 7)

    type_a = scores.per_type["A"]
    assert (type_a.tp, type_a.fp, type_a.fn, type_a.support) == (1, 2, 1, 2)
    assert (type_a.precision, type_a.recall, type_a.f1) == pytest.approx((1 / 3, 1 / 2, 2 / 5))
    type_b = scores.per_type["B"]
    assert (type_b.tp, type_b.fp, type_b.fn, type_b.support) == (0, 1, 1, 1)
    assert (type_b.precision, type_b.recall, type_b.f1) == (0.0, 0.0, 0.0)

    assert scores.macro_precision == pytest.approx(1 / 6)
    assert scores.macro_recall == pytest.approx(1 / 4)
    assert scores.macro_f1 == pytest.approx(1 / 5)


def test_relaxed_counts_partial_overlap_but_not_label_mismatch():
    scores = score_spans(GOLD, PRED, mode="relaxed")

    # (1, 2, A) now matches (1, 3, A); (5, 6, A) still misses (5, 6, B).
    assert (scores.tp, scores.fp, scores.fn) == (2, 2, 1)
    assert (scores.precision, scores.recall, scores.f1) == pytest.approx((1 / 2, 2 / 3, 4 / 7))
    type_a = scores.per_type["A"]
    assert (type_a.tp, type_a.fp, type_a.fn) == (2, 1, 0)
    assert (type_a.precision, type_a.recall, type_a.f1) == pytest.approx((2 / 3, 1.0, 4 / 5))
    assert scores.per_type["B"].f1 == 0.0
    assert (scores.macro_precision, scores.macro_recall, scores.macro_f1) == pytest.approx((1 / 3, 1 / 2, 2 / 5))


def test_relaxed_matching_is_greedy_and_one_to_one():
    # The first prediction (sorted) overlaps both gold spans and takes the first one, leaving the
    # second prediction without a partner: greedy gives 1 TP where an optimal matching would give 2.
    gold = [[(0, 2, "A"), (5, 7, "A")]]
    pred = [[(1, 2, "A"), (0, 6, "A")]]
    scores = score_spans(gold, pred, mode="relaxed")
    assert (scores.tp, scores.fp, scores.fn) == (1, 1, 1)

    two_predictions_one_gold = score_spans([[(0, 4, "A")]], [[(0, 2, "A"), (2, 4, "A")]], mode="relaxed")
    assert (two_predictions_one_gold.tp, two_predictions_one_gold.fp, two_predictions_one_gold.fn) == (1, 1, 0)


def test_relaxed_touching_spans_do_not_overlap():
    scores = score_spans([[(0, 2, "A")]], [[(2, 4, "A")]], mode="relaxed")
    assert (scores.tp, scores.fp, scores.fn) == (0, 1, 1)


def test_duplicate_spans_collapse_and_lists_are_accepted():
    gold = [[(0, 1, "A"), (0, 1, "A")]]
    pred = [[[0, 1, "A"], [0, 1, "A"], [2, 3, "A"]]]
    for mode in ("strict", "relaxed"):
        scores = score_spans(gold, pred, mode=mode)
        assert (scores.tp, scores.fp, scores.fn) == (1, 1, 0)
        assert scores.per_type["A"].support == 1


def test_empty_documents_give_zero_scores():
    scores = score_spans([[], []], [[], []])
    assert (scores.tp, scores.fp, scores.fn) == (0, 0, 0)
    assert (scores.precision, scores.recall, scores.f1) == (0.0, 0.0, 0.0)
    assert scores.per_type == {}
    assert (scores.macro_precision, scores.macro_recall, scores.macro_f1) == (0.0, 0.0, 0.0)


def test_no_predictions_is_zero_not_an_error():
    scores = score_spans([[(0, 1, "A")], []], [[], []], mode="relaxed")
    assert (scores.tp, scores.fp, scores.fn) == (0, 0, 1)
    assert (scores.precision, scores.recall, scores.f1) == (0.0, 0.0, 0.0)


def test_type_only_in_predictions_enters_the_macro_average():
    scores = score_spans([[(0, 1, "A")]], [[(0, 1, "A"), (3, 4, "C")]])
    assert scores.per_type["C"].support == 0
    assert (scores.per_type["C"].fp, scores.per_type["C"].precision) == (1, 0.0)
    assert (scores.precision, scores.recall, scores.f1) == pytest.approx((1 / 2, 1.0, 2 / 3))
    assert (scores.macro_precision, scores.macro_recall, scores.macro_f1) == pytest.approx((1 / 2, 1 / 2, 1 / 2))


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="documents"):
        score_spans([[]], [[], []])
    with pytest.raises(ValueError, match="mode"):
        score_spans([[]], [[]], mode="partial")
    with pytest.raises(ValueError, match="end > start"):
        score_spans([[(3, 3, "A")]], [[]])


def test_to_dict_is_json_serialisable():
    scores = score_spans(GOLD, PRED)
    as_dict = json.loads(json.dumps(scores.to_dict()))
    assert as_dict["tp"] == 1
    assert as_dict["per_type"]["A"] == {
        "precision": pytest.approx(1 / 3),
        "recall": 0.5,
        "f1": pytest.approx(2 / 5),
        "tp": 1,
        "fp": 2,
        "fn": 1,
        "support": 2,
    }
    assert as_dict["macro_f1"] == pytest.approx(1 / 5)


def test_spans_from_iob_hand_examples():
    tags = ["B-X", "I-X", "O", "I-Y", "I-Y", "B-Y", "I-X", "B-X", "I-X"]
    assert spans_from_iob(tags) == [(0, 2, "X"), (3, 5, "Y"), (5, 6, "Y"), (6, 7, "X"), (7, 9, "X")]
    assert spans_from_iob(["O", "O"]) == []
    assert spans_from_iob([]) == []
    assert spans_from_iob(["B-cell_line", "I-cell_line"]) == [(0, 2, "cell_line")]


@pytest.mark.parametrize("bad_tag", ["X-Foo", "B-", "B", "b-Foo", ""])
def test_spans_from_iob_rejects_non_iob2_tags(bad_tag):
    with pytest.raises(ValueError, match="IOB2"):
        spans_from_iob(["O", bad_tag])


# --- agreement with seqeval on real corpora ---------------------------------------------------


def read_tag_sentences(path: Path) -> list[list[str]]:
    sentences: list[list[str]] = []
    tags: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            tags.append(line.split("\t")[1])
        elif tags:
            sentences.append(tags)
            tags = []
    if tags:
        sentences.append(tags)
    return sentences


def shift_boundary(start: int, end: int, length: int, rng: random.Random) -> tuple[int, int]:
    original = (start, end)
    delta = rng.choice([-1, 1])
    if rng.random() < 0.5:
        start += delta
    else:
        end += delta
    if 0 <= start < end <= length:
        return start, end
    return original


def corrupt_sentence(tags: list[str], labels: list[str], rng: random.Random) -> list[str]:
    """A fake prediction: drop, shift, relabel gold entities, add spurious ones, then flip a few tags."""
    length = len(tags)
    pred_spans = []
    for label, start, last in get_entities(tags):
        start, end = start, last + 1
        roll = rng.random()
        if roll < 0.15:
            continue
        if roll < 0.30:
            start, end = shift_boundary(start, end, length, rng)
        elif roll < 0.40:
            label = rng.choice([other for other in labels if other != label])
        pred_spans.append((start, end, label))
    if rng.random() < 0.2:
        start = rng.randrange(length)
        pred_spans.append((start, min(length, start + rng.randint(1, 3)), rng.choice(labels)))

    pred = ["O"] * length
    for start, end, label in pred_spans:
        pred[start:end] = [f"B-{label}"] + [f"I-{label}"] * (end - start - 1)
    # Single-tag flips make some sequences ill-formed (I- after O, type change inside an entity).
    tag_pool = ["O"] + [f"{prefix}-{label}" for prefix in "BI" for label in labels]
    for position in range(length):
        if rng.random() < 0.02:
            pred[position] = rng.choice(tag_pool)
    return pred


def has_ill_formed_inside_tag(tags: list[str]) -> bool:
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return True
        previous = tag
    return False


# NCBI-disease has one type, so "Other" gives the relabelling step somewhere to go.
@pytest.mark.parametrize(
    "dataset, labels", [("NCBI-disease", ["Disease", "Other"]), ("BC5CDR", ["Chemical", "Disease"])]
)
def test_strict_scores_equal_seqeval_on_corrupted_corpus(data_dir, dataset, labels):
    gold_tags = read_tag_sentences(data_dir / "bioner-iob" / dataset / "test.tsv")
    rng = random.Random(20240501)
    pred_tags = [corrupt_sentence(tags, labels, rng) for tags in gold_tags]
    assert sum(has_ill_formed_inside_tag(tags) for tags in pred_tags) > 10

    scores = score_spans([spans_from_iob(tags) for tags in gold_tags], [spans_from_iob(tags) for tags in pred_tags])

    assert 0.3 < scores.f1 < 0.9  # the corruption did something, but not everything
    assert abs(scores.precision - precision_score(gold_tags, pred_tags)) <= 1e-12
    assert abs(scores.recall - recall_score(gold_tags, pred_tags)) <= 1e-12
    assert abs(scores.f1 - f1_score(gold_tags, pred_tags)) <= 1e-12

    precisions, recalls, f1s, supports = precision_recall_fscore_support(gold_tags, pred_tags, zero_division=0)
    assert sorted(scores.per_type) == sorted(set(labels) | {label for label, _, _ in get_entities(gold_tags)})
    for index, label in enumerate(sorted(scores.per_type)):
        type_scores = scores.per_type[label]
        assert abs(type_scores.precision - precisions[index]) <= 1e-12
        assert abs(type_scores.recall - recalls[index]) <= 1e-12
        assert abs(type_scores.f1 - f1s[index]) <= 1e-12
        assert type_scores.support == supports[index]
    macro = precision_recall_fscore_support(gold_tags, pred_tags, average="macro", zero_division=0)
    assert abs(scores.macro_f1 - macro[2]) <= 1e-12


def seqeval_spans(tags: list[str]) -> list[tuple[int, int, str]]:
    return [(start, last + 1, label) for label, start, last in get_entities(tags)]


def test_spans_from_iob_equals_seqeval_get_entities(data_dir):
    rng = random.Random(7)
    gold_tags = read_tag_sentences(data_dir / "bioner-iob" / "BC5CDR" / "test.tsv")
    corrupted = [corrupt_sentence(tags, ["Chemical", "Disease"], rng) for tags in gold_tags]
    tag_pool = ["O", "B-A", "I-A", "B-B", "I-B", "I-B"]
    random_sequences = [[rng.choice(tag_pool) for _ in range(rng.randint(0, 12))] for _ in range(2000)]
    sequences = gold_tags + corrupted + random_sequences
    assert sum(has_ill_formed_inside_tag(tags) for tags in sequences) > 1000

    for tags in sequences:
        assert spans_from_iob(tags) == seqeval_spans(tags), tags
