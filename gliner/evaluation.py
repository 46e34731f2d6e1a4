"""Evaluating a model on a gold set: predicting its documents, strict and relaxed scores per dataset, pooling
over datasets. Never imports ray."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from .gold import GoldSet, default_dataset_name
from .metrics import MATCH_MODES, Span, mean, precision_recall_f1, score_spans


def word_spans_to_exclusive(spans_per_doc: Sequence[Iterable]) -> list[list[Span]]:
    """`GLiNER.predict_word_spans` output (Span objects or (start, end, label[, score]) with an INCLUSIVE end) to
    end-exclusive (start, end, label) tuples."""
    converted = []
    for spans in spans_per_doc:
        doc = []
        for span in spans:
            start, end, label = (span.start, span.end, span.label) if hasattr(span, "label") else tuple(span)[:3]
            doc.append((int(start), int(end) + 1, label))
        converted.append(doc)
    return converted


def entities_to_spans(entities_per_doc: Sequence[Iterable[Mapping]]) -> list[list[Span]]:
    """`GLiNER.inference` output (dicts with character "start", exclusive "end" and "label") to span tuples."""
    return [[(int(entity["start"]), int(entity["end"]), entity["label"]) for entity in entities] for entities in entities_per_doc]


def predict(model, gold: GoldSet, threshold: float = 0.5, flat_ner: bool = True, batch_size: int = 8, long_text: str = "window") -> list[list[Span]]:
    """Predictions of a loaded GLiNER on every document of `gold`, as end-exclusive spans."""
    if gold.format == "iob":
        spans = model.predict_word_spans(gold.inputs, gold.labels, threshold=threshold, flat_ner=flat_ner, batch_size=batch_size, long_text=long_text)
        return word_spans_to_exclusive(spans)
    entities = model.inference(gold.inputs, gold.labels, threshold=threshold, flat_ner=flat_ner, batch_size=batch_size, long_text=long_text)
    return entities_to_spans(entities)


def score_predictions(gold_spans: Sequence[Iterable[Span]], pred_spans: Sequence[Iterable[Span]]) -> dict[str, dict]:
    """{"strict": NERScores.to_dict(), "relaxed": ...} for end-exclusive gold and predicted spans per document."""
    return {mode: score_spans(gold_spans, pred_spans, mode=mode).to_dict() for mode in MATCH_MODES}


def evaluate_predictions(gold: GoldSet, pred_spans: Sequence[Iterable[Span]], name: str | None = None) -> dict:
    """The result of one dataset: counts, label handling and strict/relaxed scores (JSON-ready)."""
    if len(pred_spans) != len(gold.spans):
        raise ValueError(f"{len(pred_spans)} predicted documents for {len(gold.spans)} gold documents")
    scores = score_predictions(gold.spans, pred_spans)
    return {
        "name": name or default_dataset_name(gold.path),
        "path": gold.path,
        "format": gold.format,
        "unit": gold.unit,
        "labels": list(gold.labels),
        "label_map": gold.label_map,
        "documents": len(gold.spans),
        "documents_in_file": gold.total_documents,
        "gold_mentions": gold.gold_mentions,
        "gold_mentions_per_label": gold.gold_per_label(),
        "ignored_gold_mentions": dict(gold.ignored),
        "duplicate_gold_mentions": gold.duplicates,
        "gold_offset_mismatches": gold.offset_mismatches,
        "predicted_mentions": sum(len(set(spans)) for spans in pred_spans),
        "strict": scores["strict"],
        "relaxed": scores["relaxed"],
    }


def pool_results(dataset_results: Sequence[Mapping]) -> dict:
    """Overall scores: micro over all datasets pooled (summed tp/fp/fn, also per label) and macro = the mean of
    the datasets' micro F1 (and P, R)."""
    overall: dict = {"datasets": len(dataset_results), "micro": {}, "macro": {}}
    for mode in MATCH_MODES:
        tp = sum(result[mode]["tp"] for result in dataset_results)
        fp = sum(result[mode]["fp"] for result in dataset_results)
        fn = sum(result[mode]["fn"] for result in dataset_results)
        per_label: dict[str, Counter] = {}
        for result in dataset_results:
            for label, scores in result[mode]["per_type"].items():
                counts = per_label.setdefault(label, Counter())
                counts.update({"tp": scores["tp"], "fp": scores["fp"], "fn": scores["fn"]})
        overall["micro"][mode] = {
            **_scores_from_counts(tp, fp, fn),
            "per_type": {label: {**_scores_from_counts(c["tp"], c["fp"], c["fn"]), "support": c["tp"] + c["fn"]} for label, c in sorted(per_label.items())},
        }
        overall["macro"][mode] = {key: mean([result[mode][key] for result in dataset_results]) for key in ("precision", "recall", "f1")}
    overall["documents"] = sum(result["documents"] for result in dataset_results)
    overall["gold_mentions"] = sum(result["gold_mentions"] for result in dataset_results)
    return overall


def _scores_from_counts(tp: int, fp: int, fn: int) -> dict:
    precision, recall, f1 = precision_recall_f1(tp, tp + fp, tp + fn)
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}
