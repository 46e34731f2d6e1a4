"""Gold corpora: dataset formats and paths, label maps, and the gold spans of one corpus file (GoldSet). Never imports ray.

A gold set holds one entry per document (an IOB sentence, a GLiNER-format JSONL example, or a PubTator title +
abstract): the words or the text the model sees, and the gold spans as `(start, end, label)` with an EXCLUSIVE end,
in word indices (IOB, JSONL) or character offsets (PubTator), so `gliner.evaluation.metrics.score_spans` scores both alike.
Gold types are renamed to the labels the model is asked for through a label map; a type missing from the map is
dropped and counted (`ignored_gold_mentions`), so one can evaluate, say, only "disease" on BC5CDR.

JSONL lines are GLiNER's examples, {"tokenized_text": [words], "ner": [[start, end inclusive, type], ...]}, and may
carry their own label set in a field (`labels_column`): a list of types, or a mapping of type to the description the
model reads. Such a document is asked for its own labels (renamed by the label map), and only its gold mentions of
those count; the others are ignored and counted like unmapped types.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .iob import read_iob
from .metrics import Span
from .pubtator import mention_mismatches, read_pubtator

FORMATS = ("iob", "jsonl", "pubtator")
_EXTENSIONS = {".tsv": "iob", ".iob": "iob", ".iob2": "iob", ".conll": "iob", ".jsonl": "jsonl", ".pubtator": "pubtator"}


@dataclass
class GoldSet:
    """Gold annotations of one corpus file, after the label map and `max_documents`."""

    path: str
    format: str  # "iob" or "jsonl" (word spans over sentences) or "pubtator" (character spans over documents)
    ids: list[str]
    inputs: list  # IOB: a list of words per sentence; PubTator: the document text
    spans: list[list[Span]]  # per document, end exclusive, mapped labels, duplicates removed
    labels: list[str]  # the labels the model is asked for
    label_map: dict[str, str] | None  # None: gold types are their own labels
    ignored: dict[str, int] = field(default_factory=dict)  # gold type -> mentions dropped (not in the label map)
    duplicates: int = 0  # gold mentions identical (after mapping) to another one of the same document
    offset_mismatches: int = 0  # PubTator mentions whose text differs from the document text at their offsets
    total_documents: int = 0  # in the file, before max_documents
    # Per document, the labels it is asked for (a list, or a mapping of label to the description the model reads);
    # None: every document is asked for `labels`, which is then the union of these.
    label_sets: list[list[str] | dict[str, str]] | None = None

    @property
    def unit(self) -> str:
        return "sentence" if self.is_word_level else "document"

    @property
    def is_word_level(self) -> bool:
        return self.format in ("iob", "jsonl")

    @property
    def gold_mentions(self) -> int:
        return sum(len(spans) for spans in self.spans)

    def gold_per_label(self) -> dict[str, int]:
        return dict(sorted(Counter(label for spans in self.spans for _, _, label in spans).items()))


def infer_format(path: str | Path, declared: str | None = None) -> str:
    """"iob", "jsonl" or "pubtator": `declared` if given (not "auto"), else from the file extension."""
    if declared not in (None, "auto"):
        if declared not in FORMATS:
            raise ValueError(f"unknown dataset format {declared!r}; expected one of {FORMATS} or 'auto'")
        return declared
    name = str(path).rstrip("/").lower()
    for compression in (".gz", ".bz2", ".xz"):
        name = name.removesuffix(compression)
    suffix = Path(name).suffix
    if suffix not in _EXTENSIONS:
        raise ValueError(f"cannot tell the format of {path} from its extension (.tsv: iob, .jsonl: jsonl, .pubtator: pubtator); "
                         "set format: iob|jsonl|pubtator")
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


def default_dataset_name(path: str) -> str:
    """data/bioner-iob/BC5CDR/test.tsv -> "BC5CDR/test"."""
    parts = Path(str(path).split("://")[-1]).with_suffix("").parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else (parts[-1] if parts else str(path))


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


def map_gold_spans(spans_per_doc: Sequence[Iterable[Span]], label_map: Mapping[str, str] | None, labels: Sequence[str] | None = None,
                   asked_per_doc: Sequence[Iterable[str]] | None = None) -> tuple[list[list[Span]], dict[str, int], int]:
    """Rename gold types with `label_map`; a type missing from it is dropped and counted per type. With no label
    map, types are kept as they are, except (when `labels` are given) types that are not among the labels. With
    `asked_per_doc` (the labels each document is asked for), a document's mentions of other labels are dropped and
    counted too. Returns (spans per document without duplicates, {type: ignored count}, duplicates removed)."""
    ignored: Counter[str] = Counter()
    duplicates = 0
    mapped_docs = []
    for index, spans in enumerate(spans_per_doc):
        asked = set(asked_per_doc[index]) if asked_per_doc is not None else None
        kept: dict[Span, None] = {}
        for start, end, gold_type in spans:
            if label_map is not None:
                label = label_map.get(gold_type)
            else:
                label = gold_type if labels is None or gold_type in labels else None
            if label is None or (asked is not None and label not in asked):
                ignored[gold_type] += 1
                continue
            span = (int(start), int(end), label)
            if span in kept:
                duplicates += 1
            kept[span] = None
        mapped_docs.append(sorted(kept))
    return mapped_docs, dict(sorted(ignored.items())), duplicates


def load_gold(path: str, data_format: str | None = None, label_map: Mapping[str, str] | None = None, labels: Sequence[str] | None = None,
              max_documents: int | None = None, labels_column: str | None = None) -> GoldSet:
    """Read an IOB (.tsv), JSONL (.jsonl) or PubTator (.pubtator) file into a GoldSet (first `max_documents`
    documents); `labels_column`: the JSONL field that holds each document's own labels."""
    data_format = infer_format(path, data_format)
    if labels_column and data_format != "jsonl":
        raise ValueError(f"labels_column={labels_column!r}: only JSONL records have fields; {path} is {data_format}")
    check_dataset_path(path)
    label_map = dict(label_map) if label_map is not None else None
    if data_format == "jsonl":
        ids, inputs, raw_spans, stored_sets, total = read_jsonl_gold(path, labels_column, max_documents)
        return _with_label_sets(path, ids, inputs, raw_spans, stored_sets, label_map, labels, total)
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


def read_jsonl_gold(path: str, labels_column: str | None, max_documents: int | None) -> tuple[list[str], list[list[str]], list[list[Span]], list, int]:
    """(ids, words, gold spans end-exclusive, each document's stored labels or None, documents in the file) of a
    GLiNER-format JSONL file; a line that is not a valid example is an error naming it (a gold set is read whole)."""
    import json

    import fsspec

    from ..training import ExampleError, parse_example

    ids, inputs, spans, stored_sets, total = [], [], [], [], 0
    with fsspec.open(path, "rt", encoding="utf-8", compression="infer") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            total += 1
            if max_documents is not None and len(inputs) >= max_documents:
                continue
            try:
                record = json.loads(line)
                example = parse_example(record, max_width=len(record.get("tokenized_text") or ()) + 1, max_len=len(record.get("tokenized_text") or ()))
            except (json.JSONDecodeError, ExampleError, AttributeError) as error:
                raise ValueError(f"{path} line {number}: not a GLiNER example ({error})") from None
            ids.append(str(record.get("id", total - 1)))
            inputs.append(example.tokens)
            spans.append([(start, end + 1, label) for start, end, label in example.spans])
            stored_sets.append(record.get(labels_column) if labels_column else None)
    return ids, inputs, spans, stored_sets, total


def _with_label_sets(path: str, ids: list[str], inputs: list, raw_spans: list[list[Span]], stored_sets: list, label_map: dict[str, str] | None,
                     labels: Sequence[str] | None, total: int) -> GoldSet:
    """The gold set of documents of which some may carry their own labels: each is asked for those (renamed by the
    label map), the others for the dataset's, and only gold mentions of what a document is asked for count."""
    gold_types = {label for spans in raw_spans for _, _, label in spans}
    default = resolve_labels(label_map, labels, gold_types) if any(stored is None for stored in stored_sets) else []
    label_sets = [default if stored is None else mapped_label_set(stored, label_map, f"{path} document {ids[index]}")
                  for index, stored in enumerate(stored_sets)]
    spans, ignored, duplicates = map_gold_spans(raw_spans, label_map, None, label_sets)
    if all(stored is None for stored in stored_sets):
        return GoldSet(str(path), "jsonl", ids, inputs, spans, default, label_map, ignored, duplicates, 0, total)
    union = sorted({label for label_set in label_sets for label in label_set})
    return GoldSet(str(path), "jsonl", ids, inputs, spans, union, label_map, ignored, duplicates, 0, total, label_sets)


def mapped_label_set(stored, label_map: Mapping[str, str] | None, where: str) -> list[str] | dict[str, str]:
    """A document's own labels (a list, or a mapping of label to description), renamed by the label map (a label
    it lacks is not asked for); a ValueError naming `where` if they are not labels."""
    from ..label_sets import stored_label_set

    try:
        given = stored_label_set(stored).given
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    if label_map is None:
        return given
    if isinstance(given, list):
        return list(dict.fromkeys(label_map[label] for label in given if label in label_map))
    return {label_map[label]: description for label, description in given.items() if label in label_map}
