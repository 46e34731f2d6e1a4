"""Evaluating a model on a gold set: predicting its documents, strict and relaxed scores per dataset, pooling
over datasets. Never imports ray."""
from __future__ import annotations

import json
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


def predict(model, gold: GoldSet, threshold: float = 0.5, flat_ner: bool = True, batch_size: int = 8, long_text: str = "window",
            descriptions: Mapping[str, str] | None = None) -> list[list[Span]]:
    """Predictions of a loaded GLiNER on every document of `gold`, as end-exclusive spans."""
    return predict_at_thresholds(model, gold, [threshold], flat_ner, batch_size, long_text, descriptions)[threshold]


def predict_at_thresholds(model, gold: GoldSet, thresholds: Sequence[float], flat_ner: bool = True, batch_size: int = 8, long_text: str = "window",
                          descriptions: Mapping[str, str] | None = None) -> dict[float, list[list[Span]]]:
    """{threshold: `predict(model, gold, threshold)`} from one model pass. `descriptions`: what the model reads in
    place of some of the gold set's labels (the predictions still carry the labels); a document's own descriptions
    come first. A document asked for no label (its own labels all outside the label map) gets no predictions."""
    labels = described_labels(gold.labels, descriptions)
    asked = list(range(len(gold.inputs)))
    if gold.label_sets is not None:
        asked = [index for index, label_set in enumerate(gold.label_sets) if label_set]
        labels = [_described(gold.label_sets[index], descriptions or {}) for index in asked]
    inputs = [gold.inputs[index] for index in asked]
    if not inputs:
        return {threshold: [[] for _ in gold.inputs] for threshold in thresholds}
    if gold.is_word_level:
        found = model.predict_word_spans_at_thresholds(inputs, labels, thresholds, flat_ner=flat_ner, batch_size=batch_size, long_text=long_text)
        found = {threshold: word_spans_to_exclusive(spans_per_doc) for threshold, spans_per_doc in found.items()}
    else:
        entities = model.inference_at_thresholds(inputs, labels, thresholds, flat_ner=flat_ner, batch_size=batch_size, long_text=long_text)
        found = {threshold: entities_to_spans(entities_per_doc) for threshold, entities_per_doc in entities.items()}
    predictions = {}
    for threshold, spans_per_doc in found.items():
        predictions[threshold] = [[] for _ in gold.inputs]
        for index, spans in zip(asked, spans_per_doc):
            predictions[threshold][index] = spans
    return predictions


def _described(label_set: list[str] | dict[str, str], descriptions: Mapping[str, str]) -> list[str] | dict[str, str]:
    """One document's labels, with its own descriptions, else the dataset's, where there are any."""
    own = label_set if isinstance(label_set, dict) else {}
    if not own and not any(label in descriptions for label in label_set):
        return list(label_set)
    return {label: own.get(label) or descriptions.get(label, label) for label in label_set}


def score_predictions(gold_spans: Sequence[Iterable[Span]], pred_spans: Sequence[Iterable[Span]]) -> dict[str, dict]:
    """{"strict": NERScores.to_dict(), "relaxed": ...} for end-exclusive gold and predicted spans per document."""
    return {mode: score_spans(gold_spans, pred_spans, mode=mode).to_dict() for mode in MATCH_MODES}


def described_labels(labels: list[str], descriptions: Mapping[str, str] | None) -> list[str] | dict[str, str]:
    """The labels, or each mapped to its description (itself where it has none)."""
    if not descriptions:
        return labels
    unknown = sorted(set(descriptions) - set(labels))
    if unknown:
        raise ValueError(f"label_descriptions name {unknown}, which are not among the dataset's labels {labels}")
    return {label: descriptions.get(label, label) for label in labels}


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
        "label_sets": len({json.dumps(label_set, sort_keys=True) for label_set in gold.label_sets}) if gold.label_sets is not None else 1,
        "duplicate_gold_mentions": gold.duplicates,
        "gold_offset_mismatches": gold.offset_mismatches,
        "predicted_mentions": sum(len(set(spans)) for spans in pred_spans),
        "strict": scores["strict"],
        "relaxed": scores["relaxed"],
    }


def report_documents(gold: GoldSet, pred_spans: Sequence[Iterable[Span]], count: int) -> list[dict]:
    """The first `count` documents as {"id", "text", "gold", "predicted"}, entities as {"start", "end", "label"}
    in characters of "text" (IOB sentences: the words joined by spaces), for the HTML report."""
    documents = []
    for index in range(min(count, len(gold.inputs))):
        if gold.is_word_level:
            text, starts, ends = _joined_words(gold.inputs[index])
        else:
            text = gold.inputs[index]
            starts = ends = None
        entities = {}
        for key, spans in (("gold", gold.spans[index]), ("predicted", pred_spans[index])):
            entities[key] = [_character_entity(span, starts, ends) for span in sorted(set(spans))]
        documents.append({"id": gold.ids[index], "text": text, **entities})
    return documents


def _joined_words(words: Sequence[str]) -> tuple[str, list[int], list[int]]:
    """(words joined by spaces, each word's first character, each word's end character)."""
    starts, ends, position = [], [], 0
    for word in words:
        starts.append(position)
        ends.append(position + len(word))
        position += len(word) + 1
    return " ".join(words), starts, ends


def _character_entity(span: Span, word_starts: list[int] | None, word_ends: list[int] | None) -> dict:
    start, end, label = span
    if word_starts is not None:
        start, end = word_starts[start], word_ends[end - 1]
    return {"start": start, "end": end, "label": label}


def threshold_curve(gold_spans: Sequence[Iterable[Span]], predictions: Mapping[float, Sequence[Iterable[Span]]]) -> dict:
    """Strict micro P/R/F1 at each threshold of `predictions` ({threshold: spans per document}), ascending, and
    the best point: the highest F1, the lowest threshold among equal ones."""
    points = []
    for threshold in sorted(predictions):
        scores = score_spans(gold_spans, predictions[threshold], mode="strict")
        points.append({"threshold": threshold, **_scores_from_counts(scores.tp, scores.fp, scores.fn)})
    return _curve(points)


def pool_curves(curves: Sequence[Mapping]) -> dict:
    """The datasets' threshold curves pooled: tp/fp/fn summed at each threshold (all curves share the thresholds)."""
    points = []
    for same_threshold in zip(*(curve["points"] for curve in curves)):
        points.append({"threshold": same_threshold[0]["threshold"], **_scores_from_counts(*_summed_counts(same_threshold))})
    return _curve(points)


def pool_results(dataset_results: Sequence[Mapping]) -> dict:
    """Overall scores: micro over all datasets pooled (summed tp/fp/fn, also per label) and macro = the mean of
    the datasets' micro F1 (and P, R); the pooled threshold curve when the datasets have one."""
    overall: dict = {"datasets": len(dataset_results), "micro": {}, "macro": {}}
    for mode in MATCH_MODES:
        per_label: dict[str, Counter] = {}
        for result in dataset_results:
            for label, scores in result[mode]["per_type"].items():
                counts = per_label.setdefault(label, Counter())
                counts.update({"tp": scores["tp"], "fp": scores["fp"], "fn": scores["fn"]})
        overall["micro"][mode] = {
            **_scores_from_counts(*_summed_counts([result[mode] for result in dataset_results])),
            "per_type": {label: {**_scores_from_counts(c["tp"], c["fp"], c["fn"]), "support": c["tp"] + c["fn"]} for label, c in sorted(per_label.items())},
        }
        overall["macro"][mode] = {key: mean([result[mode][key] for result in dataset_results]) for key in ("precision", "recall", "f1")}
    overall["documents"] = sum(result["documents"] for result in dataset_results)
    overall["gold_mentions"] = sum(result["gold_mentions"] for result in dataset_results)
    if dataset_results and all("threshold_curve" in result for result in dataset_results):
        overall["threshold_curve"] = pool_curves([result["threshold_curve"] for result in dataset_results])
    return overall


def _curve(points: list[dict]) -> dict:
    return {"points": points, "best": max(points, key=lambda point: point["f1"]) if points else None}


def _summed_counts(scores: Iterable[Mapping]) -> tuple[int, int, int]:
    """(tp, fp, fn) summed over score dicts."""
    scores = list(scores)
    return tuple(sum(item[key] for item in scores) for key in ("tp", "fp", "fn"))


def _scores_from_counts(tp: int, fp: int, fn: int) -> dict:
    precision, recall, f1 = precision_recall_f1(tp, tp + fp, tp + fn)
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}
