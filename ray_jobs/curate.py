"""Curate corpora into the `documents` contract: passages, quality filters, duplicate removal, per-source balance.

    python -m ray_jobs.curate --config configs/curate/<name>.yaml [key=value ...]
    python -m ray_jobs.curate --input PATH_OR_GLOB --source NAME --output DIR [--format auto|...] [key=value ...]

Stages, on Ray Data (every stage scales out; nothing is collected on the driver except what is said below):
1. read: input files are cut into work units (`units`: row ranges of Parquet, byte ranges of JSONL, PubTator and
   PubMed XML; `corpus.work_units`); a task per unit (per file for a gzipped one, read in one pass) reads its
   documents, splits them into passages (`synth.passages`, ids `<doc_id>#p<k>`) and applies the quality filters
   (`synth.quality`, per-source thresholds). Passages and rejected records go to staging Parquet files per unit.
2. exact duplicates: rows are hash-partitioned by their normalised-text key (`groupby` on key mod P); each
   partition keeps the longest text of every key (ties: smaller id).
3. MinHash signatures: `map_batches` over the remaining passages.
4. LSH buckets: each signature is exploded into `bands` rows (band key, id), hash-partitioned by band key; each
   partition emits the id pairs that share a key (`synth.near_duplicates.bucket_pairs`).
5. verification: a reduce-side join done with two hash-partitioned `groupby`s (one keyed by the pair's first id,
   one by its second; each partition also receives the signatures of its ids) attaches both signatures; pairs
   with estimated Jaccard >= threshold are kept. (Ray Data's own `join` needs polars, which is not installed.)
   The table steps of stages 2-5 are `synth.dedup_tables`.
6. components: verified edges are collected on the driver for union-find; edges are few next to passages (one or
   two per duplicate), and the removed ids are broadcast to the filter that follows.
7. balance: an equal number of passages per source (the smallest non-empty source's count, or `balance.per_source`
   when set): each passage scores a seeded 64-bit hash of its id and every source keeps its lowest scores. The
   driver collects (source, score) pairs, 8 bytes a passage, to find each source's cut-off (`synth.source_balance`).
Passage ids are `<doc_id>#p<k>`; a doc_id repeated within one unit is rejected, and doc_ids are assumed unique
across units, files and sources (not checked: give each source its own id space).
Everything that does not reach OUTPUT/documents is a row of OUTPUT/rejected (the `errors` contract) with its stage
and reason: read errors, empty or overlong documents, quality failures, exact and near duplicates (detail: the id
kept), balance drops.

Output, committed at the end of the run: OUTPUT/documents/*.parquet (DOCUMENTS_SCHEMA), OUTPUT/rejected/*.parquet
(ERRORS_SCHEMA), OUTPUT/_SUMMARY.json written last. Work happens in OUTPUT/.staging-<run>; an output with a
complete summary is done, and a rerun skips it unless `overwrite=true`.
"""
from __future__ import annotations

import json
import math
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field, model_validator

from corpus.contracts import DOCUMENTS_SCHEMA, ERRORS_SCHEMA
from synth.dedup_tables import (
    add_signatures, attach_first_signature, explode_band_keys, keep_rows_where_null, mark_exact_duplicates, pair_rows,
    pairs_in_buckets, signature_rows, verify_pairs, with_partition,
)
from corpus.error_rows import error_row, reading_error
from synth.quality import QualityConfig
from synth.source_balance import balance_cutoffs, balance_scores, within_cutoffs

from .runtime.job_command import FLAGS, Flag, JobFailed, job_main, parse_job_args
from .runtime.job_config import Section
from .runtime.job_summary import previous_run, write_summary
from .runtime.output_root import OutputRoot
from .runtime.output_settings import SETTINGS_FILE, require_same_settings
from .runtime.progress import Progress, tracked
from .runtime.table_steps import map_tables, per_partition
from .runtime.unit_pipeline import FAILED, ReadStage, UnitSettings, stream_units

FORMAT = Literal["auto", "pubmed-xml", "pubtator", "jsonl", "parquet", "text"]
# Staged passages: the documents contract plus what the later stages need.
PASSAGES_SCHEMA = pa.schema(list(DOCUMENTS_SCHEMA) + [("input", pa.string()), ("exact_key", pa.binary(16)), ("length", pa.int64())])


# ------------------------------------------------------------------------------------------------ config
class InputSpec(Section):
    path: str  # a file, a directory or a glob; local or any fsspec URL
    source: str
    format: FORMAT = "auto"
    id_column: str = "doc_id"
    text_column: str = "text"
    title_column: str | None = None


class PassageSettings(Section):
    max_words: int = Field(256, ge=1)
    max_chars: int = Field(4000, ge=1)
    max_document_chars: int = Field(50_000_000, ge=1)  # longer documents become rejected rows


class DedupSettings(Section):
    enabled: bool = True
    num_perm: int = Field(128, ge=1)
    bands: int = Field(32, ge=1)
    rows: int = Field(4, ge=1)
    ngram: int = Field(3, ge=1)
    threshold: float = Field(0.7, gt=0, le=1)
    seed: int = 0
    max_bucket_size: int = Field(64, ge=2)
    partitions: int | None = Field(None, ge=1)  # shuffle partitions; default: passages / rows_per_partition
    rows_per_partition: int = Field(50_000, ge=1)
    batch_size: int = Field(512, ge=1)  # passages per signature batch

    @model_validator(mode="after")
    def _bands_fit(self) -> "DedupSettings":
        if self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self


class BalanceSettings(Section):
    enabled: bool = True
    per_source: int | None = Field(None, ge=1)  # cap per source; None: the smallest non-empty source's count
    seed: int = 0


class CurateConfig(Section):
    name: str = "curate"
    inputs: list[InputSpec] = Field(min_length=1)
    output: str
    overwrite: bool = False
    units: UnitSettings = UnitSettings()
    passages: PassageSettings = PassageSettings()
    quality: QualityConfig = QualityConfig()
    dedup: DedupSettings = DedupSettings()
    balance: BalanceSettings = BalanceSettings()


def parse_args(argv: list[str] | None = None) -> tuple[CurateConfig, str | None]:
    def one_input(args) -> dict:
        if args.input:
            return {"inputs": [{"path": args.input, "source": args.source or "default", "format": args.format or "auto"}]}
        if args.source or args.format:
            raise ValueError("--source and --format describe --input; give --input too")
        return {}

    flags = [("--input", Flag(None, "one input (replaces the config's inputs): " + FLAGS["--input"].help)),
             ("--source", Flag(None, "source name of --input (default: default)")), ("--format", Flag(None, FLAGS["--format"].help)), "--output"]
    return parse_job_args(argv, __doc__, CurateConfig, flags, one_input)


# ------------------------------------------------------------------------------------------------ planning
def plan_units(config: CurateConfig) -> tuple[list, dict[str, int]]:
    """The work units of every input, and the index of the input each unit belongs to."""
    from corpus.work_units import plan_inputs

    units, input_of = [], {}
    for index, spec in enumerate(config.inputs):
        for unit in plan_inputs(spec.path, spec.format, config.units.sizes(), key_prefix=f"{spec.source}-"):
            units.append(unit)
            input_of[unit.unit_id] = index
    return units, input_of


def partitions_for(config: CurateConfig, passages: int, cpus: float) -> int:
    if config.dedup.partitions:
        return config.dedup.partitions
    return max(int(cpus), math.ceil(passages / config.dedup.rows_per_partition), 1)


# ------------------------------------------------------------------------------------------------ stage 1: read
def curate_units(units: list, config: dict, staging: str, input_of: dict[str, int]) -> Iterator[pa.Table]:
    """A Ray task: read, split and filter the units of a read group into staging files; a summary row per unit."""
    from corpus.documents import Columns, read_units

    settings = CurateConfig.model_validate(config)
    spec = settings.inputs[input_of[units[0].unit_id]]  # a read group's units share their file
    staged, started = OutputRoot(staging), time.perf_counter()
    for unit, records in read_units(units, Columns(spec.id_column, spec.text_column, spec.title_column)):
        summary = curate_unit(unit, records, settings, spec, staged)
        yield pa.table({"unit_id": [unit.unit_id], "summary": [json.dumps(dict(summary, seconds=round(time.perf_counter() - started, 3)))]})
        started = time.perf_counter()


def curate_unit(unit, records: list, settings: "CurateConfig", spec: "InputSpec", staged: OutputRoot) -> dict:
    from corpus.documents import Document

    thresholds = settings.quality.for_source(spec.source)
    passages, rejected, counts, seen = [], [], Counter(), set()
    for record in records:
        problem = _document_problem(record, settings, seen) if isinstance(record, Document) else None
        if not isinstance(record, Document) or problem:
            rows = _read_rejections(record, problem, spec.source, unit.path)
            rejected += rows
            counts["read_errors"] += len(rows)
            continue
        seen.add(record.doc_id)
        counts["documents"] += 1
        _add_passages(record, spec.source, unit.path, settings, thresholds, passages, rejected, counts)
    staged.write_parquet(f"passages/{unit.unit_id}.parquet", pa.Table.from_pylist(passages, PASSAGES_SCHEMA))
    staged.write_parquet(f"rejected/read-{unit.unit_id}.parquet", pa.Table.from_pylist(rejected, ERRORS_SCHEMA))
    return {"unit": unit.unit_id, "path": unit.path, "source": spec.source, "format": unit.format, "documents": counts["documents"],
            "read_errors": counts["read_errors"], "passages": counts["passages"], "passed_quality": len(passages)}


def _document_problem(document, config: CurateConfig, seen: set) -> str | None:
    if not document.text.strip():
        return "empty text"
    if len(document.text) > config.passages.max_document_chars:
        return f"text longer than max_document_chars={config.passages.max_document_chars}"
    if document.doc_id in seen:
        return "doc_id repeated in the same file"
    return None


def _read_rejections(record, problem: str | None, source: str, path: str) -> list[dict]:
    from corpus.documents import Deletion

    if problem:
        return [error_row("read", problem, doc_id=record.doc_id, source=source, input=path)]
    if isinstance(record, Deletion):  # a withdrawn citation is not part of the corpus
        return [error_row("read", "deleted citation (DeleteCitation)", doc_id=doc_id, source=source, input=path, location=record.location)
                for doc_id in record.doc_ids]
    return [reading_error(record, source)]


def _add_passages(document, source: str, path: str, config: CurateConfig, thresholds, passages: list, rejected: list, counts: Counter) -> None:
    from synth.near_duplicates import exact_key
    from synth.passages import passage_id, split_passages
    from synth.quality import first_failure

    for passage in split_passages(document.text, config.passages.max_words, config.passages.max_chars):
        counts["passages"] += 1
        doc_id = passage_id(document.doc_id, passage.index)
        failure = first_failure(passage.text, thresholds) if config.quality.enabled else None
        if failure:
            rejected.append(error_row("quality", failure.reason, failure.detail, doc_id, source, path))
            continue
        meta = {"document_id": document.doc_id, "passage_index": passage.index, "char_start": passage.start,
                "char_end": passage.end, "input": path, "document_meta": document.meta}
        passages.append({"doc_id": doc_id, "text": passage.text, "source": source, "title": document.title,
                         "meta": json.dumps(meta, ensure_ascii=False, default=str), "input": path,
                         "exact_key": exact_key(passage.text), "length": len(passage.text)})


# ------------------------------------------------------------------------------------------------ rejected rows
def duplicate_rejections(table: pa.Table, stage: str) -> pa.Table:
    return rejected_rows(table, stage, stage, pc.binary_join_element_wise("kept ", table["duplicate_of"], ""))


def rejected_rows(table: pa.Table, stage: str, reason: str, details) -> pa.Table:
    """ERRORS_SCHEMA rows for passages (rows with doc_id, source, input)."""
    count = len(table)
    details = details if not isinstance(details, str) else pa.array([details] * count, pa.string())
    return pa.table({"doc_id": table["doc_id"], "source": table["source"], "input": table["input"],
                     "location": pa.nulls(count, pa.string()), "stage": pa.array([stage] * count, pa.string()),
                     "reason": pa.array([reason] * count, pa.string()), "detail": details}, schema=ERRORS_SCHEMA)


# ------------------------------------------------------------------------------------------------ removal, balance
_REMOVED_CACHE: dict = {}


def removed_lookup(removed: list) -> tuple[dict, pa.Array]:
    """{removed id: kept id} and its ids as an Arrow value set, fetched and built once per worker process.
    `removed` is [ObjectRef] (a list, so Ray passes the reference instead of resolving it)."""
    import ray

    key = removed[0].hex()
    if key not in _REMOVED_CACHE:
        _REMOVED_CACHE.clear()
        mapping = ray.get(removed[0])
        _REMOVED_CACHE[key] = (mapping, pa.array(sorted(mapping), pa.string()))
    return _REMOVED_CACHE[key]


def drop_removed(table: pa.Table, removed: list) -> pa.Table:
    mapping, value_set = removed_lookup(removed)
    return table.filter(pc.invert(pc.is_in(table["doc_id"], value_set=value_set))) if mapping else table


def near_duplicate_rejections(table: pa.Table, removed: list) -> pa.Table:
    mapping, value_set = removed_lookup(removed)
    hits = table.filter(pc.is_in(table["doc_id"], value_set=value_set))
    hits = hits.append_column("duplicate_of", pa.array([mapping[doc_id] for doc_id in hits["doc_id"].to_pylist()], pa.string()))
    return duplicate_rejections(hits, "near_duplicate")


def select_balanced(table: pa.Table, cutoffs: dict, seed: int, target: int, keep: bool) -> pa.Table:
    """Documents whose score is within their source's cut-off (keep=True), or the others as rejected rows."""
    within = within_cutoffs(table, cutoffs, seed)
    if keep:
        return to_documents(table.filter(pa.array(within)))
    return rejected_rows(table.filter(pa.array(~within)), "balance", "balance", f"{target} passages kept per source")


def count_reasons(table: pa.Table) -> pa.Table:
    counts = table.group_by(["source", "stage", "reason"], use_threads=False).aggregate([("stage", "count")])
    return counts.rename_columns({"stage_count": "count"})


def to_documents(table: pa.Table) -> pa.Table:
    return table.select(DOCUMENTS_SCHEMA.names).cast(DOCUMENTS_SCHEMA)


# ------------------------------------------------------------------------------------------------ the job
def run(config: CurateConfig, address: str | None = None) -> dict:
    from .runtime.ray_runtime import init_ray

    started = time.time()
    output = OutputRoot(config.output)
    if config.overwrite:
        output.remove(SETTINGS_FILE)
    require_same_settings(output, row_settings(config))  # a complete output made otherwise is refused, not kept
    previous = previous_run(output, config.overwrite)
    if previous is not None:
        return previous
    resources = init_ray(address, outputs=[config.output], inputs=[source.path for source in config.inputs])
    for leftover in output.filesystem.glob(output.path(".staging-*")):
        output.filesystem.rm(leftover, recursive=True)
    staging = OutputRoot(output.url(f".staging-{uuid.uuid4().hex[:12]}"))
    fields = _Job(config, staging, resources).execute()
    _commit(output, staging)
    return write_summary(output, "curate", config, started, fields, ("pyarrow", "numpy"))


def row_settings(config: CurateConfig) -> dict:
    """What decides the output's rows (OUTPUT/_SETTINGS.json): the inputs, passages, filters, dedup and balance;
    not the shuffle partitions or batch sizes, which decide only the speed."""
    dedup = config.dedup.model_dump(exclude={"partitions", "rows_per_partition", "batch_size"})
    return {"inputs": [spec.model_dump() for spec in config.inputs], "passages": config.passages.model_dump(),
            "quality": config.quality.model_dump(), "dedup": dedup, "balance": config.balance.model_dump()}


class _Job:
    def __init__(self, config: CurateConfig, staging: OutputRoot, resources: dict):
        self.config, self.staging, self.resources = config, staging, resources
        self.timings: dict[str, float] = {}

    def execute(self) -> dict:
        units, input_of = plan_units(self.config)
        unit_summaries = self._timed("read_filter", self._read_filter, units, input_of)
        passed = sum(item["passed_quality"] for item in unit_summaries)
        self.partitions = partitions_for(self.config, passed, self.resources.get("CPU", 1))
        dedup = {"near_duplicates": 0, "candidate_pairs": 0, "verified_pairs": 0, "components": 0}
        balance = {"enabled": self.config.balance.enabled, "target_per_source": None, "kept": {}}
        if passed:
            passages = self._dataset("passages")
            if self.config.dedup.enabled:
                passages = self._timed("exact_dedup", self._exact, passages)
                passages = self._timed("near_dedup", self._near, passages, dedup)
            self._timed("balance_write", self._balance_and_write, passages, balance)
        self._ensure_outputs()
        rejected_counts = self._timed("count_rejected", self._count_rejected)
        return self._summary(unit_summaries, dedup, balance, rejected_counts)

    # -------------------------------------------------------------- stages
    def _read_filter(self, units: list, input_of: dict[str, int]) -> list[dict]:
        read = ReadStage(curate_units, {"config": self.config.model_dump(), "staging": self.staging.url(), "input_of": input_of})
        rows = tracked(stream_units(units, read, retries=self.config.units.retries), Progress("curate", len(units), "units", OutputRoot(self.config.output)))
        failed = [row for row in rows if FAILED in row]
        if failed:
            raise JobFailed(f"{len(failed)} of {len(units)} unit(s) could not be read, so nothing was written (a rerun tries again): "
                            + "; ".join(f"{row['unit_id']}: {row[FAILED]}" for row in failed[:5]))
        return [json.loads(row["summary"]) for row in rows]

    def _exact(self, passages):
        keyed = map_tables(passages, with_partition, key="exact_key", partitions=self.partitions)
        marked = self._partitioned(keyed, mark_exact_duplicates).materialize()
        duplicates = map_tables(marked, keep_rows_where_null, column="duplicate_of", is_null=False)
        map_tables(duplicates, duplicate_rejections, stage="exact_duplicate").write_parquet(f"{self.staging.url()}/rejected")
        unique = map_tables(marked, keep_rows_where_null, column="duplicate_of", is_null=True)
        return map_tables(unique, lambda table: table.drop_columns(["duplicate_of"]))

    def _near(self, passages, dedup: dict):
        import ray

        settings = self.config.dedup
        signed = map_tables(passages, add_signatures, batch_size=settings.batch_size, num_perm=settings.num_perm,
                      ngram=settings.ngram, seed=settings.seed).materialize()
        signatures = signed.select_columns(["doc_id", "signature", "length"])
        pairs = self._candidate_pairs(signatures)
        dedup["candidate_pairs"] = pairs.count()
        edges = self._verified_edges(signatures, pairs)
        removed = self._components(edges, dedup)
        removed_ref = [ray.put(removed)]
        map_tables(signed, near_duplicate_rejections, removed=removed_ref).write_parquet(f"{self.staging.url()}/rejected")
        return map_tables(signed, drop_removed, removed=removed_ref)

    def _candidate_pairs(self, signatures):
        settings = self.config.dedup
        band_rows = map_tables(signatures, explode_band_keys, bands=settings.bands, rows=settings.rows, partitions=self.partitions)
        return self._partitioned(band_rows, pairs_in_buckets, max_bucket_size=settings.max_bucket_size).materialize()

    def _verified_edges(self, signatures, pairs) -> list[dict]:
        """Reduce-side join: pairs meet a's signature in partitions keyed by a, then b's in partitions keyed by b."""
        signature_side = map_tables(signatures, signature_rows, partitions=self.partitions).materialize()
        by_first = signature_side.union(map_tables(pairs, pair_rows, key="a", partitions=self.partitions))
        with_first = self._partitioned(by_first, attach_first_signature, partitions=self.partitions)
        verified = self._partitioned(signature_side.union(with_first), verify_pairs, threshold=self.config.dedup.threshold)
        return verified.take_all()

    def _components(self, edges: list[dict], dedup: dict) -> dict[str, str]:
        from synth.near_duplicates import representatives

        lengths = {}
        for edge in edges:
            lengths[edge["a"]], lengths[edge["b"]] = edge["len_a"], edge["len_b"]
        removed = representatives(((edge["a"], edge["b"]) for edge in edges), lengths)
        dedup.update(verified_pairs=len(edges), components=len(set(removed.values())), near_duplicates=len(removed))
        return removed

    def _balance_and_write(self, passages, balance: dict) -> None:
        settings = self.config.balance
        if settings.enabled:
            scores_by_source = self._collect_scores(passages)
            cutoffs, target = balance_cutoffs(scores_by_source, settings.per_source)
            balance.update(target_per_source=target, seed=settings.seed,
                           kept={source: min(len(scores), target) for source, scores in scores_by_source.items()})
            choice = {"cutoffs": cutoffs, "seed": settings.seed, "target": target}
            map_tables(passages, select_balanced, keep=False, **choice).write_parquet(f"{self.staging.url()}/rejected")
            documents = map_tables(passages, select_balanced, keep=True, **choice)
        else:
            documents = map_tables(passages, to_documents)
        documents.write_parquet(f"{self.staging.url()}/documents")

    def _collect_scores(self, passages) -> dict[str, np.ndarray]:
        scores: dict[str, list] = {}
        scored = map_tables(passages.select_columns(["doc_id", "source"]), balance_scores, seed=self.config.balance.seed)
        for batch in scored.iter_batches(batch_format="pyarrow", batch_size=100_000):
            for source in pc.unique(batch["source"]).to_pylist():
                scores.setdefault(source, []).append(batch.filter(pc.equal(batch["source"], source))["score"].to_numpy())
        return {source: np.concatenate(parts) for source, parts in scores.items()}

    def _count_rejected(self) -> list[dict]:
        """Counts per block, summed on the driver: the result is small (sources x reasons), so no shuffle is needed."""
        rejected = self._dataset("rejected", columns=["source", "stage", "reason"])
        totals = Counter()
        for row in map_tables(rejected, count_reasons).take_all():
            totals[(row["source"], row["stage"], row["reason"])] += row["count"]
        return [{"source": source, "stage": stage, "reason": reason, "count": count} for (source, stage, reason), count in totals.items()]

    # -------------------------------------------------------------- helpers
    def _partitioned(self, dataset, function, **kwargs):
        return per_partition(dataset, function, self.partitions, **kwargs)

    def _timed(self, name: str, function, *args):
        started = time.perf_counter()
        result = function(*args)
        self.timings[name] = round(time.perf_counter() - started, 3)
        return result

    def _dataset(self, folder: str, columns: list[str] | None = None):
        import ray

        return ray.data.read_parquet(self.staging.url(folder), columns=columns)

    def _ensure_outputs(self) -> None:
        """Readers find both folders even when nothing passed (Ray writes no file for an empty dataset)."""
        for name, schema in (("documents", DOCUMENTS_SCHEMA), ("rejected", ERRORS_SCHEMA)):
            if not self.staging.names(name, ".parquet"):
                self.staging.write_parquet(f"{name}/empty.parquet", schema.empty_table())

    def _summary(self, unit_summaries, dedup, balance, rejected_counts) -> dict:
        per_source: dict[str, Counter] = {}
        for item in unit_summaries:
            counter = per_source.setdefault(item["source"], Counter())
            for key in ("documents", "read_errors", "passages", "passed_quality"):
                counter[key] += item[key]
        by_reason, by_stage = Counter(), Counter()
        for row in rejected_counts:
            counter = per_source.setdefault(row["source"], Counter())
            counter[f"rejected_{row['stage']}"] += row["count"]
            by_stage[row["stage"]] += row["count"]
            by_reason[f"{row['stage']}: {row['reason']}"] += row["count"]
        for source, counter in per_source.items():
            counter["kept"] = balance["kept"].get(source, counter["passed_quality"] - counter["rejected_exact_duplicate"] - counter["rejected_near_duplicate"])
        return {
            "name": self.config.name, "output": self.config.output,
            "inputs": [spec.model_dump() for spec in self.config.inputs],
            "units": {"count": len(unit_summaries), "files": len({item["path"] for item in unit_summaries})},
            "per_source": {source: dict(counter) for source, counter in sorted(per_source.items())},
            "totals": dict(sum(per_source.values(), Counter())),
            "rejected_by_stage": dict(sorted(by_stage.items())), "rejected_by_reason": dict(sorted(by_reason.items())),
            "dedup": dict(dedup, exact_duplicates=by_stage["exact_duplicate"], partitions=self.partitions), "balance": balance,
            "timings": self.timings,
        }


def _commit(output: OutputRoot, staging: OutputRoot) -> None:
    """Replace documents/ and rejected/ by the staged ones (the summary, written after, marks them complete)."""
    output.remove("_SUMMARY.json", "documents", "rejected")
    staged = staging.root.removeprefix(output.root + "/")
    for name in ("documents", "rejected"):
        output.move_folder(f"{staged}/{name}", name)
    output.remove(staged)


def print_summary(summary: dict) -> None:
    totals = summary["totals"]
    print(f"curated {totals.get('documents', 0)} documents into {totals.get('passages', 0)} passages: "
          f"{totals.get('passed_quality', 0)} passed quality, {summary['dedup']['exact_duplicates']} exact and "
          f"{summary['dedup']['near_duplicates']} near duplicates removed, {totals.get('kept', 0)} kept "
          f"in {summary['seconds']:.1f}s")
    for source, counts in summary["per_source"].items():
        print(f"  {source}: {counts}")
    for reason, count in summary["rejected_by_reason"].items():
        print(f"  rejected {reason}: {count}")


def main(argv: list[str] | None = None) -> int:
    return job_main(argv, parse_args, run, print_summary)


if __name__ == "__main__":
    # Run the importable module, not __main__: Ray pickles __main__'s functions by value, pydantic models included.
    from .curate import main as importable_main

    sys.exit(importable_main())
