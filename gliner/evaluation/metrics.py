"""Span-level NER metrics (precision, recall, F1; micro, per type and macro).

A span is `(start, end, label)` with `end` exclusive, so the same code scores word-index spans and
character-offset spans.
"""

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

Span = tuple[int, int, str]

MATCH_MODES = ("strict", "relaxed")


@dataclass
class TypeScores:
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    support: int  # number of gold spans of this type


@dataclass
class NERScores:
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int
    per_type: dict[str, TypeScores]
    macro_precision: float
    macro_recall: float
    macro_f1: float

    def to_dict(self) -> dict:
        return asdict(self)


def score_spans(
    gold: Sequence[Iterable[Span]],
    pred: Sequence[Iterable[Span]],
    mode: str = "strict",
) -> NERScores:
    """Score predicted spans against gold spans, document by document.

    `gold[i]` and `pred[i]` hold the spans of document i; within a document spans are sets.
    """
    if mode not in MATCH_MODES:
        raise ValueError(f"unknown match mode {mode!r}; expected one of {MATCH_MODES}")
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} documents but pred has {len(pred)}")

    gold_counts: Counter[str] = Counter()
    pred_counts: Counter[str] = Counter()
    tp_counts: Counter[str] = Counter()
    for gold_doc, pred_doc in zip(gold, pred):
        gold_spans = _as_span_set(gold_doc)
        pred_spans = _as_span_set(pred_doc)
        if mode == "strict":
            matched = _strict_matches(gold_spans, pred_spans)
        else:
            matched = _relaxed_matches(gold_spans, pred_spans)
        gold_counts.update(label for _, _, label in gold_spans)
        pred_counts.update(label for _, _, label in pred_spans)
        tp_counts.update(label for _, _, label in matched)

    labels = sorted(set(gold_counts) | set(pred_counts))
    per_type = {
        label: _type_scores(tp_counts[label], pred_counts[label], gold_counts[label]) for label in labels
    }
    tp = sum(tp_counts.values())
    n_pred = sum(pred_counts.values())
    n_gold = sum(gold_counts.values())
    precision, recall, f1 = precision_recall_f1(tp, n_pred, n_gold)
    return NERScores(
        precision=precision,
        recall=recall,
        f1=f1,
        tp=tp,
        fp=n_pred - tp,
        fn=n_gold - tp,
        per_type=per_type,
        macro_precision=mean([scores.precision for scores in per_type.values()]),
        macro_recall=mean([scores.recall for scores in per_type.values()]),
        macro_f1=mean([scores.f1 for scores in per_type.values()]),
    )


def spans_from_iob(tags: Sequence[str]) -> list[Span]:
    """Entity spans (end exclusive) of an IOB2 tag sequence.

    Like conlleval and seqeval's default mode, an `I-X` after `O` or after a tag of another type
    starts a new entity instead of being dropped.
    """
    spans: list[Span] = []
    entity_start = 0
    entity_type: str | None = None
    for position, tag in enumerate(tags):
        prefix, tag_type = split_iob_tag(tag)
        continues_entity = prefix == "I" and tag_type == entity_type
        if entity_type is not None and not continues_entity:
            spans.append((entity_start, position, entity_type))
            entity_type = None
        if prefix != "O" and not continues_entity:
            entity_start, entity_type = position, tag_type
    if entity_type is not None:
        spans.append((entity_start, len(tags), entity_type))
    return spans


def split_iob_tag(tag: str) -> tuple[str, str | None]:
    """`"B-Disease"` -> `("B", "Disease")`, `"O"` -> `("O", None)`; anything else raises ValueError."""
    if tag == "O":
        return "O", None
    prefix, dash, tag_type = tag.partition("-")
    if prefix not in ("B", "I") or not dash or not tag_type:
        raise ValueError(f"not an IOB2 tag: {tag!r} (expected O, B-<type> or I-<type>)")
    return prefix, tag_type


def spans_overlap(first: Span, second: Span) -> bool:
    return first[0] < second[1] and second[0] < first[1]


def _as_span_set(spans: Iterable[Span]) -> set[Span]:
    span_set = set()
    for span in spans:
        start, end, label = span
        # An empty span is almost always an end-inclusive span passed by mistake.
        if end <= start:
            raise ValueError(f"span {tuple(span)!r} is empty; spans must have end > start (end exclusive)")
        span_set.add((start, end, label))
    return span_set


def _strict_matches(gold_spans: set[Span], pred_spans: set[Span]) -> list[Span]:
    return sorted(gold_spans & pred_spans)


def _relaxed_matches(gold_spans: set[Span], pred_spans: set[Span]) -> list[Span]:
    """Greedy one-to-one matching of predictions to overlapping gold spans of the same label."""
    unmatched_gold = sorted(gold_spans)
    matched: list[Span] = []
    for pred_span in sorted(pred_spans):
        for gold_span in unmatched_gold:
            if gold_span[2] == pred_span[2] and spans_overlap(gold_span, pred_span):
                unmatched_gold.remove(gold_span)
                matched.append(pred_span)
                break
    return matched


def _type_scores(tp: int, n_pred: int, n_gold: int) -> TypeScores:
    precision, recall, f1 = precision_recall_f1(tp, n_pred, n_gold)
    return TypeScores(
        precision=precision, recall=recall, f1=f1, tp=tp, fp=n_pred - tp, fn=n_gold - tp, support=n_gold
    )


def precision_recall_f1(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    precision = _safe_divide(tp, n_pred)
    recall = _safe_divide(tp, n_gold)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    return precision, recall, f1


def _safe_divide(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def mean(values: list[float]) -> float:
    """The arithmetic mean; 0.0 for no values."""
    return sum(values) / len(values) if values else 0.0
