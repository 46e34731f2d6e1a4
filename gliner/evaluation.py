"""NER evaluation on gold corpora: reading gold spans, scoring predictions, pooling and reporting. Never imports ray.

A gold set holds one entry per document (an IOB sentence, or a PubTator title + abstract): the words or the text
the model sees, and the gold spans as `(start, end, label)` with an EXCLUSIVE end, in word indices (IOB) or
character offsets (PubTator), so `gliner.metrics.score_spans` scores both alike. Gold types are renamed to the
labels the model is asked for through a label map; a type missing from the map is dropped and counted
(`ignored_gold_mentions`), so one can evaluate, say, only "disease" on BC5CDR.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .iob import read_iob
from .metrics import MATCH_MODES, NERScores, score_spans
from .pubtator import mention_mismatches, read_pubtator

FORMATS = ("iob", "pubtator")
_EXTENSIONS = {".tsv": "iob", ".iob": "iob", ".iob2": "iob", ".conll": "iob", ".pubtator": "pubtator"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # as gliner.checkpoint: owner/name

Span = tuple[int, int, str]


@dataclass
class GoldSet:
    """Gold annotations of one corpus file, after the label map and `max_documents`."""

    path: str
    format: str  # "iob" (word spans over sentences) or "pubtator" (character spans over documents)
    ids: list[str]
    inputs: list  # IOB: a list of words per sentence; PubTator: the document text
    spans: list[list[Span]]  # per document, end exclusive, mapped labels, duplicates removed
    labels: list[str]  # the labels the model is asked for
    label_map: dict[str, str] | None  # None: gold types are their own labels
    ignored: dict[str, int] = field(default_factory=dict)  # gold type -> mentions dropped (not in the label map)
    duplicates: int = 0  # gold mentions identical (after mapping) to another one of the same document
    offset_mismatches: int = 0  # PubTator mentions whose text differs from the document text at their offsets
    total_documents: int = 0  # in the file, before max_documents

    @property
    def unit(self) -> str:
        return "sentence" if self.format == "iob" else "document"

    @property
    def gold_mentions(self) -> int:
        return sum(len(spans) for spans in self.spans)

    def gold_per_label(self) -> dict[str, int]:
        return dict(sorted(Counter(label for spans in self.spans for _, _, label in spans).items()))


# ----------------------------------------------------------------------------------------------- inputs
def infer_format(path: str | Path, declared: str | None = None) -> str:
    """"iob" or "pubtator": `declared` if given (not "auto"), else from the file extension."""
    if declared not in (None, "auto"):
        if declared not in FORMATS:
            raise ValueError(f"unknown dataset format {declared!r}; expected one of {FORMATS} or 'auto'")
        return declared
    name = str(path).rstrip("/").lower()
    for compression in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(compression)
    suffix = Path(name).suffix
    if suffix not in _EXTENSIONS:
        raise ValueError(f"cannot tell the format of {path} from its extension (.tsv: iob, .pubtator: pubtator); set format: iob|pubtator")
    return _EXTENSIONS[suffix]


def check_dataset_path(path: str) -> None:
    """A clear error for a local dataset path that is missing or not a file (fsspec URLs are left to the reader)."""
    if "://" in str(path):
        return
    local = Path(path).expanduser()
    if not local.exists():
        raise FileNotFoundError(f"dataset file not found: {path}")
    if not local.is_file():
        raise FileNotFoundError(f"dataset path is not a file: {path}")


def check_model_path(model: str) -> None:
    """A local model directory must exist; an `owner/name` hub id that is not a local directory is left to the loader."""
    local = Path(model).expanduser()
    if local.is_dir():
        return
    if local.exists():
        raise FileNotFoundError(f"model path is a file, not a model directory: {model}")
    if "://" in model or not _HUB_ID.match(model) or model.startswith("."):
        raise FileNotFoundError(f"model directory not found: {model}")


def parse_label_map(text: str) -> dict[str, str]:
    """"Chemical=chemical,cell_line=cell line" -> {"Chemical": "chemical", "cell_line": "cell line"}."""
    label_map = {}
    for item in text.split(","):
        if not item.strip():
            continue
        gold_type, separator, label = item.partition("=")
        if not separator or not gold_type.strip() or not label.strip():
            raise ValueError(f"label map entry {item!r} is not of the form GoldType=label")
        label_map[gold_type.strip()] = label.strip()
    return label_map


def resolve_labels(label_map: Mapping[str, str] | None, labels: Sequence[str] | None, gold_types: Iterable[str] = ()) -> list[str]:
    """The labels to predict: `labels` as given, else the sorted unique mapped labels (with no label map: the
    sorted gold types)."""
    if labels:
        resolved = list(dict.fromkeys(labels))
    elif label_map is not None:
        resolved = sorted(set(label_map.values()))
    else:
        resolved = sorted(set(gold_types))
    if not resolved:
        raise ValueError("no labels to predict: give labels, a label map, or a corpus with annotated types")
    for label in resolved:
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"labels must be non-empty strings, got {label!r}")
    return resolved


def map_gold_spans(spans_per_doc: Sequence[Iterable[Span]], label_map: Mapping[str, str] | None, labels: Sequence[str] | None = None) -> tuple[list[list[Span]], dict[str, int], int]:
    """Rename gold types with `label_map`; a type missing from it is dropped and counted per type. With no label
    map, types are kept as they are, except (when `labels` are given) types that are not among the labels.
    Returns (spans per document without duplicates, {type: ignored count}, duplicates removed)."""
    ignored: Counter[str] = Counter()
    duplicates = 0
    mapped_docs = []
    for spans in spans_per_doc:
        kept: dict[Span, None] = {}
        for start, end, gold_type in spans:
            if label_map is not None:
                label = label_map.get(gold_type)
            else:
                label = gold_type if labels is None or gold_type in labels else None
            if label is None:
                ignored[gold_type] += 1
                continue
            span = (int(start), int(end), label)
            if span in kept:
                duplicates += 1
            kept[span] = None
        mapped_docs.append(sorted(kept))
    return mapped_docs, dict(sorted(ignored.items())), duplicates


def load_gold(path: str, data_format: str | None = None, label_map: Mapping[str, str] | None = None, labels: Sequence[str] | None = None, max_documents: int | None = None) -> GoldSet:
    """Read an IOB (.tsv) or PubTator (.pubtator) file into a GoldSet (first `max_documents` documents)."""
    data_format = infer_format(path, data_format)
    check_dataset_path(path)
    label_map = dict(label_map) if label_map is not None else None
    if data_format == "iob":
        examples = read_iob(path)
        total = len(examples)
        examples = examples[:max_documents] if max_documents is not None else examples
        ids = [str(index) for index in range(len(examples))]
        inputs = [example["tokenized_text"] for example in examples]
        raw_spans = [[(start, end + 1, label) for start, end, label in example["ner"]] for example in examples]
        mismatches = 0
    else:
        documents = read_pubtator(path)
        total = len(documents)
        documents = documents[:max_documents] if max_documents is not None else documents
        ids = [document.pmid for document in documents]
        inputs = [document.text for document in documents]
        raw_spans = [[(mention.start, mention.end, mention.type) for mention in document.mentions] for document in documents]
        mismatches = sum(len(mention_mismatches(document)) for document in documents)
    gold_types = {label for spans in raw_spans for _, _, label in spans}
    resolved = resolve_labels(label_map, labels, gold_types)
    spans, ignored, duplicates = map_gold_spans(raw_spans, label_map, resolved)
    return GoldSet(str(path), data_format, ids, inputs, spans, resolved, label_map, ignored, duplicates, mismatches, total)


# ----------------------------------------------------------------------------------------------- predictions
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


# ----------------------------------------------------------------------------------------------- scoring
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


def default_dataset_name(path: str) -> str:
    """data/bioner-iob/BC5CDR/test.tsv -> "BC5CDR/test"."""
    parts = Path(str(path).split("://")[-1]).with_suffix("").parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else (parts[-1] if parts else str(path))


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
            **_prf(tp, fp, fn),
            "per_type": {label: {**_prf(c["tp"], c["fp"], c["fn"]), "support": c["tp"] + c["fn"]} for label, c in sorted(per_label.items())},
        }
        overall["macro"][mode] = {key: _mean([result[mode][key] for result in dataset_results]) for key in ("precision", "recall", "f1")}
    overall["documents"] = sum(result["documents"] for result in dataset_results)
    overall["gold_mentions"] = sum(result["gold_mentions"] for result in dataset_results)
    return overall


def _prf(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


# ----------------------------------------------------------------------------------------------- few-shot
def sample_few_shot(examples: Sequence[Mapping], k: int, seed: int, label_map: Mapping[str, str] | None, only_with_entities: bool = True) -> list[dict]:
    """K training sentences drawn with `random.Random(seed)` from GLiNER examples (inclusive ends), their types
    renamed by `label_map` (unmapped types dropped); every example gets the full label set as `ner_labels`, so the
    other labels train as negatives. `only_with_entities` draws among sentences that keep at least one mention."""
    if k < 1:
        raise ValueError(f"few-shot k must be at least 1, got {k}")
    labels = resolve_labels(label_map, None, {label for example in examples for _, _, label in example["ner"]})
    candidates = []
    for example in examples:
        if label_map is not None:
            ner = [[start, end, label_map[label]] for start, end, label in example["ner"] if label in label_map]
        else:
            ner = [list(span) for span in example["ner"]]
        if ner or not only_with_entities:
            candidates.append({"tokenized_text": list(example["tokenized_text"]), "ner": ner, "ner_labels": labels})
    if len(candidates) < k:
        raise ValueError(f"few-shot k={k} but only {len(candidates)} eligible training sentences")
    return random.Random(seed).sample(candidates, k)


# ----------------------------------------------------------------------------------------------- report
def format_markdown(results: Mapping) -> str:
    """A summary table (one row per dataset, then the pooled micro and the macro over datasets) and a per-type
    table for each dataset. Scores in percent."""
    lines = []
    header = "| dataset | documents | gold mentions | strict P | strict R | strict F1 | relaxed F1 | macro F1 |"
    lines += [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for result in results["datasets"]:
        strict, relaxed = result["strict"], result["relaxed"]
        lines.append(
            f"| {result['name']} | {result['documents']} | {result['gold_mentions']} | {_pct(strict['precision'])} | "
            f"{_pct(strict['recall'])} | {_pct(strict['f1'])} | {_pct(relaxed['f1'])} | {_pct(strict['macro_f1'])} |"
        )
    overall = results.get("overall")
    if overall and len(results["datasets"]) > 1:
        micro_s, micro_r = overall["micro"]["strict"], overall["micro"]["relaxed"]
        lines.append(
            f"| **all (micro, pooled)** | {overall['documents']} | {overall['gold_mentions']} | {_pct(micro_s['precision'])} | "
            f"{_pct(micro_s['recall'])} | {_pct(micro_s['f1'])} | {_pct(micro_r['f1'])} | |"
        )
        macro_s, macro_r = overall["macro"]["strict"], overall["macro"]["relaxed"]
        lines.append(
            f"| **all (macro over datasets)** | | | {_pct(macro_s['precision'])} | {_pct(macro_s['recall'])} | "
            f"{_pct(macro_s['f1'])} | {_pct(macro_r['f1'])} | |"
        )
    lines.append("")
    lines.append("Scores in %. strict: exact span and label; relaxed: overlapping span with the same label (one-to-one); "
                 "macro F1: mean over the dataset's types (strict).")
    for result in results["datasets"]:
        lines += ["", f"### {result['name']}", ""]
        lines.append(f"{result['path']} ({result['format']}, {result['documents']} {result['unit']}s); labels: {', '.join(result['labels'])}")
        if result["ignored_gold_mentions"]:
            ignored = ", ".join(f"{gold_type} {count}" for gold_type, count in result["ignored_gold_mentions"].items())
            lines.append(f"ignored gold mentions (type not in the label map): {ignored}")
        lines += ["", "| type | gold | predicted | strict P | strict R | strict F1 | relaxed P | relaxed R | relaxed F1 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        strict_types, relaxed_types = result["strict"]["per_type"], result["relaxed"]["per_type"]
        for label in sorted(set(strict_types) | set(result["labels"])):
            s = strict_types.get(label) or {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "support": 0}
            r = relaxed_types.get(label) or {"precision": 0.0, "recall": 0.0, "f1": 0.0}
            lines.append(
                f"| {label} | {s['support']} | {s['tp'] + s['fp']} | {_pct(s['precision'])} | {_pct(s['recall'])} | {_pct(s['f1'])} | "
                f"{_pct(r['precision'])} | {_pct(r['recall'])} | {_pct(r['f1'])} |"
            )
    return "\n".join(lines) + "\n"


def summary_table(results: Mapping) -> str:
    """Only the first table of `format_markdown`."""
    text = format_markdown(results)
    return text.split("\n\n", 1)[0] + "\n"


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


__all__ = [
    "FORMATS", "GoldSet", "NERScores", "check_dataset_path", "check_model_path", "default_dataset_name", "entities_to_spans",
    "evaluate_predictions", "format_markdown", "infer_format", "load_gold", "map_gold_spans", "parse_label_map", "pool_results",
    "predict", "resolve_labels", "sample_few_shot", "score_predictions", "summary_table", "word_spans_to_exclusive",
]
