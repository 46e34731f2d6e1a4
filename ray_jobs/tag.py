"""Tag a corpus with a GLiNER model: streaming batch inference on Ray Data, from PubMed (or any corpus) to Parquet.

    python -m ray_jobs.tag --config configs/tag/<name>.yaml [key=value ...]
    python -m ray_jobs.tag --model DIR_OR_ID --labels disease,chemical --input PATH_OR_URL --output DIR_OR_URL
                           [--threshold 0.5] [--format auto|pubmed-xml|pubtator|jsonl|parquet|text]

Input files are cut into work units (`units.documents`/`units.bytes`: row ranges of Parquet, byte ranges of JSONL,
PubTator and PubMed XML; `corpus.work_units`) that stream through three stages (`ray_jobs.runtime.unit_pipeline`), which run
the library's inference stages (`gliner.prepare`, forward, `gliner.decoding`, `gliner.merge`) where each belongs:
1. read, in CPU tasks: the unit's documents (`corpus.documents`), each with the job's labels or (`labels_column`) its
   own; records that cannot be tagged become error rows; then the prepare stage: words, windows and token ids, in
   batches of up to `batch_tokens` padded tokens over windows of one label set sorted by length
   (`corpus.tag_batches` carries them);
2. tag, in a pool of `min_actors`..`max_actors` actors that each hold the model on a GPU or CPUs: the forward and
   decode stages only, the next batch's copy to the GPU overlapping the current forward;
3. commit, in CPU tasks: the merge stage (windows back to documents, character offsets), then
   OUTPUT/entities/<unit>.parquet (the `entities` contract), OUTPUT/errors/<unit>.parquet,
   optional OUTPUT/exports/{pubtator,bioc}/<unit>.*, OUTPUT/index/<unit>.parquet (PubMed updates), each written
   atomically, then the unit's marker OUTPUT/_done/<unit>.json.
A rerun skips units with a marker, so a run killed at any point and rerun writes exactly the rows of an
uninterrupted one. PubMed updates (`updates`, on for pubmed-xml): baseline and update files carry new versions of
citations and DeleteCitation records; OUTPUT/current/<unit>.parquet holds the entities of each PMID's latest version
only, over every unit in OUTPUT (so an update run can be added to an earlier output), deleted PMIDs removed. Later
files win in PubMed's numbering. OUTPUT/_SUMMARY.json, written last, sums it up.
"""
from __future__ import annotations

import hashlib
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from corpus.contracts import ENTITIES_SCHEMA
from corpus.documents import Columns, Deletion, Document, DocumentError, read_units
from corpus.error_rows import error_row, error_table, reading_error
from corpus.faults import describe, is_device_error
from corpus.latest_versions import INDEX_SCHEMA, SUPERSEDED_SCHEMA, latest_in_unit, superseded_versions, version_order
from corpus.work_units import WorkUnit, plan_inputs

from .runtime.job_command import BadInput, JobFailed, job_main, parse_job_args
from .runtime.inference_precision import InferencePrecision
from .runtime.job_summary import write_summary
from .runtime.output_root import OutputRoot
from .runtime.output_settings import require_same_settings
from .runtime.progress import PROGRESS_FILE, Progress, tracked
from .runtime.unit_markers import check_same_cuts, done_units, read_markers, write_marker
from .runtime.unit_pipeline import FAILED, ActorStage, ReadStage, TaskStage, UnitSettings, end_actor, pack, stream_units, unit_of, unpack

if TYPE_CHECKING:
    from gliner.label_sets import LabelSet

ATTEMPTS_DIR = "_attempts"  # each actor's attempts at each unit (unit_pipeline.record_attempt)
LOCAL_VERSION_ROWS = 2_000_000  # up to this many (unit, doc_id) versions, current/ is worked out on the driver
TAG_FOLDERS = ("entities", "errors", "exports", "index", "current", "_done", "_SUMMARY.json", "_SETTINGS.json", PROGRESS_FILE, ATTEMPTS_DIR)
# label_set: the document's row in the unit's label sets (`tag_batches.LABEL_SETS_SCHEMA`)
DOCUMENT_SCHEMA = pa.schema([("doc_id", pa.string()), ("text", pa.string()), ("title", pa.string()), ("label_set", pa.int32())])
FILTERED = "filtered"  # a version that exists but is not tagged (an error row says why)


class TagConfig(InferencePrecision):
    name: str = "gliner-tag"
    model: str
    # A list of labels, or a mapping of each label to a description that the model reads in its place (the entities
    # carry the label).
    labels: list[str] | dict[str, str] | None = None
    labels_file: str | None = None  # one label per line, or LABEL<tab>DESCRIPTION
    # Each document's own labels, from this JSONL or Parquet field: a list of labels, or a mapping of each label to its
    # description. A document without one gets `labels`/`labels_file`, or (when those are unset) an error row.
    labels_column: str | None = None
    # Bi-encoders: the labels' vectors, from `python -m gliner.label_vectors` (safetensors); none: one Ray task encodes
    # them for the whole job, and every actor reuses them instead of encoding thousands of labels again.
    label_vectors: str | None = None
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    flat_ner: bool = True
    multi_label: bool = False
    long_text: Literal["window", "truncate"] = "window"  # a document over the model's budget: windows over all of it, or cut
    input: str  # a file, a directory, a glob; local or any fsspec URL
    format: Literal["auto", "pubmed-xml", "pubtator", "jsonl", "parquet", "text"] = "auto"
    id_column: str = "doc_id"
    text_column: str = "text"
    title_column: str | None = None
    output: str
    exports: list[Literal["pubtator", "bioc"]] = []
    updates: bool | None = None  # OUTPUT/current from PubMed's versions and deletions; default: on for pubmed-xml
    overwrite: bool = False  # start afresh instead of resuming
    units: UnitSettings = UnitSettings()
    batch_size: int = Field(64, ge=1)  # windows (most documents are one) per model call, at most
    # Padded tokens per model call: batches are cut from windows sorted by length until rows x length would pass
    # this. None: `batch_size` windows per call, sorted by characters, as GLiNER.inference batches them.
    batch_tokens: int | None = Field(16_384, ge=1)
    max_chars: int = Field(2_000_000, ge=1)  # longer documents become error rows instead of stalling a unit
    min_actors: int = Field(1, ge=1)
    max_actors: int | None = Field(None, ge=1)  # None: as many as the cluster can place
    cpus_per_actor: float = Field(1.0, gt=0)
    gpus_per_actor: float = Field(0.0, ge=0)
    accelerator_type: str | None = None  # e.g. H100, L4: where the actors may run
    read_cpus: float = Field(1.0, gt=0)  # per read task
    commit_cpus: float = Field(0.5, gt=0)  # per commit task
    torch_threads: int | None = Field(None, ge=1)  # per actor; default: cpus_per_actor

    @model_validator(mode="after")
    def _check(self) -> "TagConfig":
        if not self.labels and not self.labels_file and not self.labels_column:
            raise ValueError("labels, labels_file or labels_column must be set")
        if self.max_actors is not None and self.max_actors < self.min_actors:
            raise ValueError(f"max_actors={self.max_actors} is less than min_actors={self.min_actors}")
        return self


def parse_args(argv: list[str] | None = None) -> tuple[TagConfig, str | None]:
    return parse_job_args(argv, __doc__, TagConfig, ["--model", "--labels", "--input", "--output", "--threshold", "--format"])


# ------------------------------------------------------------------------------------------------ 1. read
def read_documents(units: list[WorkUnit], config: dict, labels: LabelSet | None) -> Iterator[pa.Table]:
    """Each unit's documents, error rows and (PubMed updates) the final state of each doc_id it holds, prepared for
    the model (`prepare_unit`), as one row. `labels`: the job's, for documents without labels of their own."""
    settings = TagConfig.model_validate(config)
    columns = Columns(settings.id_column, settings.text_column, settings.title_column, settings.labels_column)
    preparer = preparer_of(settings.model)
    reserved_tokens = (preparer.config.ent_token, preparer.config.sep_token)
    started = time.perf_counter()
    for unit, records in read_units(units, columns):
        row = unit_documents(unit, records, settings, time.perf_counter() - started, labels, reserved_tokens)
        yield prepare_unit(row, settings)
        started = time.perf_counter()


def unit_documents(unit: WorkUnit, records: list, settings: TagConfig, read_seconds: float, labels: LabelSet | None,
                   reserved_tokens: tuple[str, ...]) -> pa.Table:
    from corpus.tag_batches import label_sets_table

    errors, versions, deletions = [], [], 0
    for record in records:
        if isinstance(record, Deletion):
            versions += [(doc_id, None) for doc_id in record.doc_ids]
            deletions += len(record.doc_ids)
        elif isinstance(record, DocumentError):
            errors.append(reading_error(record))
        else:
            label_set, problem = _label_set_or_problem(record, settings.max_chars, labels, reserved_tokens)
            if problem:
                errors.append(error_row("filter", problem.split(":")[0], problem, record.doc_id, input=unit.path))
            versions.append((record.doc_id, FILTERED if problem else (record, label_set)))
    replaced = 0
    if settings.updates:
        latest, replaced = latest_in_unit(versions)
        versions = list(latest.items())
    label_sets: dict[LabelSet, int] = {}
    documents = [{"doc_id": document.doc_id, "text": document.text, "title": document.title, "label_set": label_sets.setdefault(label_set, len(label_sets))}
                 for _, item in versions if isinstance(item, tuple) for document, label_set in [item]]
    index = [{"doc_id": doc_id, "deleted": item is None} for doc_id, item in versions] if settings.updates else []
    stats = {"deletions": deletions, "replaced_in_unit": replaced, "read_seconds": round(read_seconds, 3), "read_peak_rss_mb": peak_rss_mb()}
    return pack(unit, documents=pa.Table.from_pylist(documents, DOCUMENT_SCHEMA), label_sets=label_sets_table(list(label_sets)),
                errors=error_table(errors), index=pa.Table.from_pylist(index, INDEX_SCHEMA), stats=json.dumps(stats))


def prepare_unit(row: pa.Table, settings: TagConfig) -> pa.Table:
    """The prepare stage, on this task's CPU: the unit's documents as words, windows and ready batches, the documents
    that share a label set batched together (a uni-encoder reads the labels in every row)."""
    from dataclasses import replace

    from gliner.inputs import split_words
    from gliner.prepare import Chunk

    from corpus.tag_batches import batches_table, label_sets_of, windows_table, words_table

    started = time.perf_counter()
    documents, label_sets = unpack(row, "documents"), label_sets_of(unpack(row, "label_sets"))
    words_per_text = [split_words(text) for text in documents["text"].to_pylist()]
    documents_per_prompts: dict[tuple[str, ...], list[int]] = {}
    for document, label_set in enumerate(documents["label_set"].to_pylist()):
        documents_per_prompts.setdefault(label_sets[label_set].prompts, []).append(document)
    chunks, batches = [], []
    for prompts, indices in documents_per_prompts.items():
        prepared = preparer_of(settings.model).prepare([words_per_text[index] for index in indices], prompts, settings.long_text,
                                                       settings.batch_size, settings.batch_tokens)
        batches += [replace(batch, chunk_indices=[len(chunks) + chunk for chunk in batch.chunk_indices]) for batch in prepared.batches]
        chunks += [Chunk(indices[chunk.text_index], chunk.window) for chunk in prepared.chunks]
    padded = sum(batch.padded_tokens for batch in batches)
    stats = dict(json.loads(row["stats"][0].as_py()), prepare_seconds=round(time.perf_counter() - started, 3), windows=len(chunks),
                 batches=len(batches), padded_tokens=padded, real_tokens=sum(batch.real_tokens for batch in batches))
    return pack(unit_of(row), documents=documents, label_sets=unpack(row, "label_sets"), errors=unpack(row, "errors"), index=unpack(row, "index"),
                windows=windows_table(chunks), batches=batches_table(batches, label_sets), words=words_table(words_per_text), stats=json.dumps(stats))


_PREPARERS: dict = {}  # per worker process: a read task reuses the tokenizer (and the words it knows) of the last


def preparer_of(model: str):
    from gliner.prepare import Preparer

    if model not in _PREPARERS:
        _PREPARERS.clear()
        _PREPARERS[model] = Preparer.from_pretrained(model)
    return _PREPARERS[model]


def _label_set_or_problem(document: Document, max_chars: int, labels: LabelSet | None, reserved_tokens: tuple[str, ...]) -> tuple[LabelSet | None, str | None]:
    """(the labels to tag the document with, None) or (None, why it cannot be tagged)."""
    from gliner.label_sets import stored_label_set

    if not document.text.strip():
        return None, "empty text"
    if len(document.text) > max_chars:
        return None, f"text too long: {len(document.text)} characters > max_chars={max_chars}"
    if "labels" not in document.meta:
        return (labels, None) if labels is not None else (None, "labels: the document has none, and the job gives no labels or labels_file")
    try:
        return stored_label_set(document.meta["labels"], reserved_tokens), None
    except ValueError as error:
        return None, f"labels: {error}"


# ------------------------------------------------------------------------------------------------ 2. tag
PROBE_TEXT = "Imatinib induced remission of chronic myeloid leukemia in most patients with the BCR-ABL1 fusion."
PROBE_LABELS = ["disease", "chemical", "gene"]  # for the probe and the precision check, when the job gives no labels


class UnitTagger:
    """A model actor: the forward and decode stages for the prepared batches of one unit per call (the read tasks
    prepared them). A document the model fails on becomes an error row, unless the device is at fault: a CUDA
    error, or a failure that the known-good probe text then hits too. Then the actor ends (`end_actor`), Ray
    replaces it and its unit runs again elsewhere, with no error rows."""

    def __init__(self, config: dict, labels: list[str] | None, label_vectors: dict | None = None):
        import ray

        self.config = TagConfig.model_validate(config)
        self.labels = labels or PROBE_LABELS  # the job's (what the model reads); the batches carry their own
        self.label_vectors = label_vectors  # bi-encoders: {prompt: vector}, encoded once for the job
        self.threads = self.config.torch_threads or max(1, int(self.config.cpus_per_actor))
        self.actor_id, self.node_id = ray.get_runtime_context().get_actor_id(), ray.get_runtime_context().get_node_id()
        self.model = self.load_model()
        self.probe()  # a model that cannot take the probe now could not tell a bad device from a bad document later

    def load_model(self):
        import torch

        from gliner import GLiNER
        from gliner.precision import set_precision_or_fp32

        if self.config.gpus_per_actor > 0 and not torch.cuda.is_available():
            raise RuntimeError(f"gpus_per_actor={self.config.gpus_per_actor}, but this actor sees no CUDA device (a CPU-only torch?)")
        device = "cuda" if self.config.gpus_per_actor > 0 else "cpu"
        model = GLiNER.from_pretrained(self.config.model, map_location=device)
        if self.label_vectors:
            model.use_label_vectors(self.label_vectors)
        torch.set_num_threads(self.threads)  # before a compile: its kernels keep the thread count they were built with
        return set_precision_or_fp32(model, self.config.precision, self.config.min_agreement, self.config.threshold, self.labels,
                                     self.config.compile)

    def predict(self, batches: list, doc_ids: list[str]) -> dict[int, list]:
        """Kept spans per chunk of the batches (doc_ids: each chunk's document), labelled by what the model read."""
        from itertools import groupby

        import torch

        # OpenMP's thread count is per calling thread, and Ray Data may call from another thread than __init__.
        torch.set_num_threads(self.threads)
        spans: dict[int, list] = {}
        for labels, same_labels in groupby(batches, key=lambda batch: batch.labels):
            for batch, decoded in self.model.predict_batches(list(same_labels), list(labels), [self.config.threshold], self.config.flat_ner,
                                                             self.config.multi_label):
                spans.update(zip(batch.chunk_indices, decoded[self.config.threshold]))
        return spans

    def probe(self) -> None:
        from gliner.inputs import split_words

        prepared = self.model.preparer.prepare([split_words(PROBE_TEXT)], self.labels, self.config.long_text)
        self.predict(prepared.batches, ["probe"])

    def __call__(self, row: pa.Table) -> pa.Table:
        from corpus.tag_batches import batches_of, label_sets_of

        started_at, started = time.time(), time.perf_counter()
        documents, windows = unpack(row, "documents"), unpack(row, "windows")
        doc_ids = documents["doc_id"].to_pylist()
        chunk_doc_ids = [doc_ids[index] for index in windows["text_index"].to_pylist()]
        batches = batches_of(unpack(row, "batches"), label_sets_of(unpack(row, "label_sets")))
        spans, failures = self.predict_each_if_needed(batches, chunk_doc_ids, unit_of(row).path)
        stats = {"actor": self.actor_id, "actor_node": self.node_id, "tag_started_at": started_at, "tag_seconds": round(time.perf_counter() - started, 3),
                 "actor_peak_rss_mb": peak_rss_mb(), "precision": self.model.precision, "precision_check": self.model.precision_check}
        return tagged_unit(row, spans, stats, failures)

    def predict_each_if_needed(self, batches: list, chunk_doc_ids: list[str], path: str) -> tuple[dict[int, list], list[dict]]:
        """The unit's spans per chunk; if its batches fail (a document the model cannot take), window by window,
        and the documents whose windows fail alone become error rows (stage "tag") while the unit goes on."""
        try:
            return self.predict(batches, chunk_doc_ids), []
        except Exception as error:  # noqa: BLE001 (whatever broke, one window at a time finds it)
            self.end_if_device_fault(error)
        spans, failures, failed = {}, [], set()
        for single in (row for batch in batches for row in batch.rows()):
            doc_id = chunk_doc_ids[single.chunk_indices[0]]
            if doc_id in failed:
                continue
            try:
                spans.update(self.predict([single], chunk_doc_ids))
            except Exception as error:  # noqa: BLE001
                self.end_if_device_fault(error)
                failed.add(doc_id)
                failures.append(error_row("tag", type(error).__name__, describe(error)[:2000], doc_id, input=path))
        return {chunk: found for chunk, found in spans.items() if chunk_doc_ids[chunk] not in failed}, failures

    def end_if_device_fault(self, error: Exception) -> None:
        """End the actor if the device is at fault: the error says so, or the probe text fails now too."""
        if is_device_error(error):
            end_actor(f"device error: {describe(error)}")
        try:
            self.probe()
        except Exception as probe_error:  # noqa: BLE001
            end_actor(f"the probe text fails too ({describe(probe_error)}) after {describe(error)}")


def tagged_unit(row: pa.Table, spans: dict[int, list], stats: dict, failures: list[dict] = ()) -> pa.Table:
    """The unit's row with the spans found (and the error rows of documents the model failed on), for the commit
    stage; the batches stay behind."""
    from corpus.tag_batches import spans_table

    failed = {failure["doc_id"] for failure in failures}
    documents = unpack(row, "documents")
    stats = dict(json.loads(row["stats"][0].as_py()), documents=documents.num_rows - len(failed), **stats)
    errors = pa.concat_tables([unpack(row, "errors"), error_table(list(failures))])
    return pack(unit_of(row), documents=documents, label_sets=unpack(row, "label_sets"), errors=errors, index=unpack(row, "index"),
                windows=unpack(row, "windows"), words=unpack(row, "words"), spans=spans_table(spans, chunk_prompts(row)), stats=json.dumps(stats))


def chunk_prompts(row: pa.Table) -> list[tuple[str, ...]]:
    """What the model read for each window of the unit: its document's label set's prompts."""
    from corpus.tag_batches import label_sets_of

    label_sets, label_set_of = label_sets_of(unpack(row, "label_sets")), unpack(row, "documents")["label_set"].to_pylist()
    return [label_sets[label_set_of[document]].prompts for document in unpack(row, "windows")["text_index"].to_pylist()]


def unit_entities(row: pa.Table, config: TagConfig) -> pa.Table:
    """The merge stage: each document's spans from its windows, at character offsets, as `entities` rows named by
    the labels of its label set (the model read the set's prompts)."""
    from gliner.merge import merge_windows, to_entities

    from corpus.tag_batches import chunks_of, label_sets_of, spans_of, words_of

    documents, chunks = unpack(row, "documents"), chunks_of(unpack(row, "windows"))
    label_sets = label_sets_of(unpack(row, "label_sets"))
    merged = merge_windows(chunks, spans_of(unpack(row, "spans"), chunk_prompts(row), len(chunks)), documents.num_rows, config.flat_ner,
                           config.multi_label)
    entities = [dict(entity, doc_id=doc_id, model=config.model)
                for doc_id, text, words, label_set, spans in zip(documents["doc_id"].to_pylist(), documents["text"].to_pylist(),
                                                                 words_of(unpack(row, "words")), documents["label_set"].to_pylist(), merged)
                for entity in to_entities(text, words, label_sets[label_set].named(spans))]
    return pa.Table.from_pylist(entities, ENTITIES_SCHEMA)


# ------------------------------------------------------------------------------------------------ 3. commit
def commit_unit(row: pa.Table, config: dict) -> pa.Table:
    """The unit's entities (`unit_entities`), every file of the unit, atomically, then its marker; returns the
    unit's summary."""
    from corpus.tag_exports import bioc_collection, pubtator_text

    settings = TagConfig.model_validate(config)
    output, unit, started = OutputRoot(settings.output), unit_of(row), time.perf_counter()
    entities, errors, index = unit_entities(row, settings), unpack(row, "errors"), unpack(row, "index")
    output.write_parquet(f"entities/{unit.unit_id}.parquet", entities)
    output.write_parquet(f"errors/{unit.unit_id}.parquet", errors)
    if settings.updates:
        output.write_parquet(f"index/{unit.unit_id}.parquet", index.append_column("unit_id", pa.array([unit.unit_id] * index.num_rows, pa.string())))
    if settings.exports:
        documents = unpack(row, "documents").to_pylist()
        by_doc: dict[str, list[dict]] = {}
        for entity in entities.to_pylist():
            by_doc.setdefault(entity["doc_id"], []).append(entity)
        if "pubtator" in settings.exports:
            output.write_bytes(f"exports/pubtator/{unit.unit_id}.pubtator", pubtator_text(documents, by_doc).encode("utf-8"))
        if "bioc" in settings.exports:
            output.write_bytes(f"exports/bioc/{unit.unit_id}.json", json.dumps(bioc_collection(unit.path, documents, by_doc), ensure_ascii=False).encode("utf-8"))
    deleted = index.filter(index["deleted"]).num_rows if index.num_rows else 0
    summary = dict(json.loads(row["stats"][0].as_py()), unit=unit.as_row(), entities=entities.num_rows, errors=errors.num_rows,
                   entities_per_label=dict(Counter(entities["label"].to_pylist())), index_documents=index.num_rows - deleted,
                   index_deleted=deleted, commit_seconds=round(time.perf_counter() - started, 3), committed_at=time.time(),
                   commit_peak_rss_mb=peak_rss_mb())
    write_marker(output, unit.unit_id, summary)
    return pa.table({"unit_id": [unit.unit_id], "summary": [json.dumps(summary)]})


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports kilobytes)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ------------------------------------------------------------------------------------------------ the job
def run(config: TagConfig, address: str | None = None, tagger: type = UnitTagger) -> dict:
    """Tag every unit not done yet, then (PubMed updates) OUTPUT/current; returns the summary. `tagger` is the model
    stage's actor class (benchmarks swap in one without a model to measure the data plane alone)."""
    from .runtime.ray_runtime import init_ray

    started = time.time()
    output = OutputRoot(config.output)
    if config.overwrite:
        output.remove(*TAG_FOLDERS)
    units = plan_inputs(config.input, config.format, config.units.sizes())
    label_set = _labels(config)  # the job's; the read tasks give each document its own where the input has one
    labels = list(label_set.prompts) if label_set else None  # what the model reads; the entities are called by label_set.names
    columnless = sorted({unit.format for unit in units} - {"jsonl", "parquet"}) if config.labels_column else []
    if columnless:
        raise BadInput(f"labels_column={config.labels_column!r}: only JSONL and Parquet records have columns, and the input has {columnless}")
    if config.updates is None:
        config = config.model_copy(update={"updates": any(unit.format == "pubmed-xml" for unit in units)})
    require_same_settings(output, row_settings(config, label_set))
    done = done_units(output)
    check_same_cuts(done, units, output)
    output.remove_temporaries()
    output.remove(ATTEMPTS_DIR)  # a rerun gives every unit not done its full number of attempts again
    pending = [unit for unit in units if unit.unit_id not in done]
    init_ray(address, outputs=[config.output], inputs=[config.model, config.input])
    settings = config.model_dump()
    read = ReadStage(read_documents, {"config": settings, "labels": label_set}, num_cpus=config.read_cpus)
    vectors = job_label_vectors(config, labels) if pending else None
    stages = [
        ActorStage(tagger, {"config": settings, "labels": labels, "label_vectors": vectors}, num_cpus=config.cpus_per_actor, num_gpus=config.gpus_per_actor,
                   min_actors=config.min_actors, max_actors=config.max_actors, accelerator_type=config.accelerator_type,
                   attempts_root=output.url(ATTEMPTS_DIR)),
        TaskStage(commit_unit, {"config": settings}, num_cpus=config.commit_cpus),
    ]
    tagging = time.time()
    rows = tracked(stream_units(pending, read, stages, config.units.retries), Progress("tag", len(pending), "units", output),
                   _unit_documents) if pending else []
    tagging_s = time.time() - tagging
    this_run = [json.loads(row["summary"]) for row in rows if FAILED not in row]
    output.remove(ATTEMPTS_DIR)
    failed = sorted((row["unit_id"], row[FAILED]) for row in rows if FAILED in row)
    markers = read_markers(output, done | {item["unit"]["unit_id"] for item in this_run})  # every committed unit in OUTPUT
    fields = _counts(units, len(units) - len(pending), this_run, markers, tagging_s)
    fields["counts"]["units_failed"] = len(failed)
    fields["failed_units"] = [{"unit_id": unit_id, "reason": reason} for unit_id, reason in failed]
    if config.updates and not failed:
        fields["current"] = build_current(output, markers, config.commit_cpus)
    summary = write_summary(output, "tag", config, started, fields, ("torch", "transformers"), complete=not failed)
    if failed:
        raise JobFailed(f"{len(failed)} of {len(units)} unit(s) failed and were not committed (a rerun does only those"
                        f"{'; current/ is built once every unit is done' if config.updates else ''}): "
                        + "; ".join(f"{unit_id}: {reason}" for unit_id, reason in failed[:10]) + (" ..." if len(failed) > 10 else ""))
    return summary


def job_label_vectors(config: TagConfig, prompts: list[str] | None) -> dict | None:
    """A bi-encoder's {prompt: vector} for every actor of the job: read from `label_vectors` (refused if another
    model encoded them, or one of the job's labels lacks one; with `labels_column`, every vector of the file, as
    the documents' labels are not known yet), else encoded once by a Ray task; None for a uni-encoder. An actor
    encodes a label set it has no vectors for itself."""
    import ray

    from gliner.checkpoint import read_model_config
    from gliner.label_vectors import load
    from gliner.model_path import model_fingerprint, resolve_packaged_model

    if not read_model_config(resolve_packaged_model(config.model)).is_bi_encoder:
        return None
    if config.label_vectors is None:
        return ray.get(ray.remote(_encode_label_vectors).options(num_cpus=config.read_cpus).remote(config.model, prompts)) if prompts else None
    try:
        vectors = load(config.label_vectors, model_fingerprint(config.model))
    except (OSError, ValueError) as error:
        raise BadInput(f"label_vectors: {error}") from error
    missing = [prompt for prompt in prompts or () if prompt not in vectors]
    if missing:
        raise BadInput(f"label_vectors: {config.label_vectors} has no vector for {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return vectors if config.labels_column else {prompt: vectors[prompt] for prompt in prompts}


def _encode_label_vectors(model: str, prompts: list[str]) -> dict:
    from gliner import GLiNER
    from gliner.label_vectors import encode_all

    return dict(zip(prompts, encode_all(GLiNER.from_pretrained(model), prompts)))


def _unit_documents(row: dict) -> dict:
    return {} if FAILED in row else {"documents": json.loads(row["summary"]).get("documents", 0)}


def row_settings(config: TagConfig, label_set: LabelSet | None) -> dict:
    """What decides the output's rows (OUTPUT/_SETTINGS.json): a rerun with other values is refused."""
    from gliner.model_path import model_fingerprint

    fields = ["model", "threshold", "flat_ner", "multi_label", "long_text", "precision", "max_chars", "format", "id_column", "text_column",
              "title_column", "updates"] + (["labels_column"] if config.labels_column else [])
    return {"weights": model_fingerprint(config.model), "labels": label_set.given if label_set else None,
            **{name: getattr(config, name) for name in fields}}


def _counts(units: list[WorkUnit], skipped: int, this_run: list[dict], markers: list[dict], tagging_s: float) -> dict:
    """Totals over the input's units (this run's and those done before), and what this run's actors did."""
    planned = {unit.unit_id for unit in units}
    mine = [marker for marker in markers if marker["unit"]["unit_id"] in planned]
    per_label: Counter = Counter()
    for marker in mine:
        per_label.update(marker["entities_per_label"])
    actors: dict[str, dict] = {}
    for item in this_run:
        actor = actors.setdefault(item["actor"], {"units": 0, "documents": 0, "peak_rss_mb": 0.0, "precision": item["precision"],
                                                  "precision_check": item["precision_check"]})
        actor["units"] += 1
        actor["documents"] += item["documents"]
        actor["peak_rss_mb"] = max(actor["peak_rss_mb"], item["actor_peak_rss_mb"])
    documents_run = sum(item["documents"] for item in this_run)
    padded = sum(item.get("padded_tokens", 0) for item in this_run)
    return {
        "inputs": {"files": len({unit.file_key for unit in units}), "units": len(units)},
        "counts": {"units": len(units), "units_run": len(this_run), "units_skipped": skipped,
                   "documents": sum(marker["documents"] for marker in mine), "entities": sum(marker["entities"] for marker in mine),
                   "errors": sum(marker["errors"] for marker in mine), "deletions": sum(marker["deletions"] for marker in mine),
                   "entities_per_label": dict(sorted(per_label.items()))},
        "this_run": {"documents": documents_run, "tagging_seconds": round(tagging_s, 2),
                     "precisions": sorted({item["precision"] for item in this_run}),
                     "docs_per_s": round(documents_run / tagging_s, 2) if tagging_s > 0 else 0.0, "actors": actors,
                     "batches": sum(item.get("batches", 0) for item in this_run),
                     "padding_share": round(1 - sum(item.get("real_tokens", 0) for item in this_run) / padded, 4) if padded else 0.0,
                     "prepare_seconds": round(sum(item.get("prepare_seconds", 0.0) for item in this_run), 2),
                     "tag_seconds": round(sum(item["tag_seconds"] for item in this_run), 2),
                     "peak_rss_mb": {stage: max((item[f"{stage}_peak_rss_mb"] for item in this_run), default=0.0)
                                     for stage in ("read", "actor", "commit")}},
    }


# ------------------------------------------------------------------------------------------------ PubMed versions
def build_current(output: OutputRoot, markers: list[dict], num_cpus: float) -> dict:
    """OUTPUT/current/<unit>.parquet for every unit in OUTPUT: its entities less the documents a later unit
    replaces or deletes. A unit whose superseded set is unchanged since the last run is not rewritten."""
    import ray

    ranked = sorted(markers, key=lambda marker: version_order(marker["unit"]["path"], marker["unit"]["start"]))
    ranks = {marker["unit"]["unit_id"]: rank for rank, marker in enumerate(ranked)}
    superseded = _superseded(output, ranks, sum(marker["index_documents"] + marker["index_deleted"] for marker in markers))
    kinds = Counter(superseded["kind"].to_pylist())
    by_unit: dict[str, list[str]] = {}
    for unit_id, doc_id, kind in zip(superseded["unit_id"].to_pylist(), superseded["doc_id"].to_pylist(), superseded["kind"].to_pylist()):
        if kind != "withdrawn":
            by_unit.setdefault(unit_id, []).append(doc_id)
    manifest = output.read_json("current/_manifest.json") or {}
    fingerprints = {unit_id: _fingerprint(by_unit.get(unit_id, [])) for unit_id in ranks}
    present = set(output.names("current", ".parquet"))
    stale = [unit_id for unit_id in ranks if manifest.get(unit_id, {}).get("fingerprint") != fingerprints[unit_id] or unit_id not in present]
    write = ray.remote(num_cpus=num_cpus)(write_current_unit)
    written = ray.get([write.remote(output.url(), unit_id, sorted(by_unit.get(unit_id, []))) for unit_id in stale])
    for unit_id, entities in zip(stale, written):
        manifest[unit_id] = {"fingerprint": fingerprints[unit_id], "entities": entities}
    for unit_id in set(manifest) - set(ranks):
        manifest.pop(unit_id)
    output.write_json("current/_manifest.json", manifest)
    return {
        "units": len(ranks), "units_rewritten": len(stale),
        "documents": sum(marker["index_documents"] for marker in markers) - kinds["replaced"] - kinds["deleted"],
        "replaced": kinds["replaced"] + sum(marker["replaced_in_unit"] for marker in markers),  # versions a later one replaced
        "deleted": kinds["withdrawn"],  # PMIDs whose latest record is a DeleteCitation
        "entities": sum(item["entities"] for item in manifest.values()),
    }


def _superseded(output: OutputRoot, ranks: dict[str, int], versions: int) -> pa.Table:
    """Every version that is not current, from the units' indexes: on the driver for a few million versions, else
    hash-partitioned by doc_id over the cluster (a year of PubMed is some 40 million)."""
    import ray

    from .runtime.table_steps import map_tables, per_partition

    if versions <= LOCAL_VERSION_ROWS:
        import pyarrow.parquet as pq

        tables = [pq.read_table(output.path(f"index/{unit_id}.parquet"), filesystem=output.filesystem) for unit_id in sorted(ranks)]
        return superseded_versions(_with_rank(pa.concat_tables([INDEX_SCHEMA.append(pa.field("unit_id", pa.string())).empty_table(), *tables]), ranks))
    partitions = max(1, int(ray.cluster_resources().get("CPU", 1)), -(-versions // max(1, LOCAL_VERSION_ROWS)))
    index = ray.data.read_parquet([output.url(f"index/{unit_id}.parquet") for unit_id in sorted(ranks)])
    ranked = map_tables(index, _with_rank_and_partition, ranks=ranks, partitions=partitions)
    found = per_partition(ranked, superseded_versions, partitions).iter_batches(batch_format="pyarrow", batch_size=None)
    return pa.concat_tables([SUPERSEDED_SCHEMA.empty_table(), *(batch.cast(SUPERSEDED_SCHEMA) for batch in found)])


def _with_rank(table: pa.Table, ranks: dict[str, int]) -> pa.Table:
    return table.append_column("rank", pa.array([ranks[unit_id] for unit_id in table["unit_id"].to_pylist()], pa.int64()))


def _with_rank_and_partition(table: pa.Table, ranks: dict[str, int], partitions: int) -> pa.Table:
    from synth.dedup_tables import with_partition

    return with_partition(_with_rank(table, ranks), "doc_id", partitions)


def write_current_unit(output_url: str, unit_id: str, superseded: list[str]) -> int:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    output = OutputRoot(output_url)
    with output.filesystem.open(output.path(f"entities/{unit_id}.parquet"), "rb") as handle:
        entities = pq.read_table(handle)
    if superseded:
        entities = entities.filter(pc.invert(pc.is_in(entities["doc_id"], value_set=pa.array(superseded, pa.string()))))
    output.write_parquet(f"current/{unit_id}.parquet", entities)
    return entities.num_rows


def _fingerprint(doc_ids: list[str]) -> str:
    return hashlib.sha1("\n".join(sorted(doc_ids)).encode("utf-8")).hexdigest()


# ------------------------------------------------------------------------------------------------ reporting
def _labels(config: TagConfig) -> LabelSet | None:
    """The labels of `labels` and `labels_file` (with their descriptions; None if neither is set), checked on the
    driver against the model's prompt markers before Ray starts (the read tasks would otherwise refuse a label such as
    "<<ENT>>" one unit at a time)."""
    from gliner.checkpoint import read_model_config
    from gliner.label_sets import LabelSet
    from gliner.model_path import resolve_packaged_model

    if not config.labels and not config.labels_file:
        return None
    given = config.labels or []
    described = dict(given) if isinstance(given, dict) else dict.fromkeys(given)
    if config.labels_file:
        import fsspec

        with fsspec.open(config.labels_file, "r", encoding="utf-8") as handle:
            for line in handle:
                label, _, description = line.strip().partition("\t")
                if label.strip():
                    described[label.strip()] = description.strip() or None
    markers = read_model_config(resolve_packaged_model(config.model))
    try:
        return LabelSet.of({label: description or label for label, description in described.items()}, (markers.ent_token, markers.sep_token))
    except ValueError as error:
        raise BadInput(f"labels: {error}") from error


def print_summary(summary: dict) -> None:
    counts, this_run = summary["counts"], summary["this_run"]
    print(f"tagged {counts['documents']} documents in {counts['units']} unit(s) ({counts['units_skipped']} already done): "
          f"{counts['entities']} entities, {counts['errors']} errors; this run {this_run['documents']} documents at "
          f"{this_run['docs_per_s']:.1f} docs/s on {len(this_run['actors'])} actor(s)")
    if "current" in summary:
        current = summary["current"]
        print(f"  current: {current['documents']} documents ({current['replaced']} versions replaced, {current['deleted']} deleted), "
              f"{current['entities']} entities")
    for label, count in sorted(counts["entities_per_label"].items(), key=lambda item: -item[1]):
        print(f"  {label}: {count}")


def main(argv: list[str] | None = None) -> int:
    return job_main(argv, parse_args, run, print_summary)


if __name__ == "__main__":
    # Run the importable module, not __main__: Ray pickles __main__'s functions by value, pydantic models included.
    from .tag import main as importable_main

    sys.exit(importable_main())
