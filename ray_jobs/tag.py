"""Tag a corpus with a GLiNER model: Ray Data batch inference from PubMed (or any corpus) to Parquet.

    python -m ray_jobs.tag --config configs/tag/<name>.yaml [key=value ...]
    python -m ray_jobs.tag --model DIR_OR_ID --labels disease,chemical --input PATH_OR_URL --output DIR_OR_URL
                           [--threshold 0.5] [--format auto|pubmed-xml|pubtator|jsonl|parquet|text]

Each input file is a shard. A pool of actors, each holding the model, tags whole shards: read the file, predict
(long documents through the library's windows), and commit OUTPUT/entities/<shard>.parquet (the `entities`
contract), OUTPUT/errors/<shard>.parquet and optional PubTator / BioC JSON exports atomically, then a completion
marker OUTPUT/_done/<shard>.json. A rerun skips shards with a marker, so a killed run resumed writes exactly the
rows an uninterrupted run writes. OUTPUT/_SUMMARY.json sums it up.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections import Counter
from pathlib import PurePosixPath
from typing import Literal

from pydantic import Field, model_validator

from .job_config import Section, cli_main, load_config

class TagConfig(Section):
    name: str = "gliner-tag"
    model: str
    labels: list[str] | None = None
    labels_file: str | None = None  # one label per line
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    flat_ner: bool = True
    multi_label: bool = False
    input: str  # a file, a directory, a glob; local or any fsspec URL
    format: Literal["auto", "pubmed-xml", "pubtator", "jsonl", "parquet", "text"] = "auto"
    id_column: str = "doc_id"
    text_column: str = "text"
    title_column: str | None = None
    output: str
    exports: list[Literal["pubtator", "bioc"]] = []
    batch_size: int = Field(8, ge=1)
    max_chars: int = Field(2_000_000, ge=1)  # longer documents become error rows instead of stalling a shard
    num_actors: int | None = Field(None, ge=1)  # default: from the cluster's resources
    cpus_per_actor: float = Field(1.0, gt=0)
    gpus_per_actor: float = Field(0.0, ge=0)
    torch_threads: int | None = Field(None, ge=1)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"

    @model_validator(mode="after")
    def _needs_labels(self) -> "TagConfig":
        if not self.labels and not self.labels_file:
            raise ValueError("labels or labels_file must be set")
        return self


def parse_args(argv: list[str] | None = None) -> tuple[TagConfig, str | None]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (configs/tag/*.yaml)")
    parser.add_argument("--model", help="GLiNER checkpoint directory or hub id")
    parser.add_argument("--labels", help="comma-separated labels, e.g. disease,chemical")
    parser.add_argument("--input", help="file, directory or glob; local or fsspec URL")
    parser.add_argument("--output", help="output directory or URL")
    parser.add_argument("--threshold", type=float)
    parser.add_argument("--format", choices=["auto", "pubmed-xml", "pubtator", "jsonl", "parquet", "text"])
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. exports=[pubtator,bioc]")
    args = parser.parse_intermixed_args(argv)
    labels = [label.strip() for label in args.labels.split(",") if label.strip()] if args.labels else None
    flags = {"model": args.model, "labels": labels, "input": args.input, "output": args.output, "threshold": args.threshold, "format": args.format}
    return load_config(TagConfig, args.config, args.overrides, flags), args.address


# ------------------------------------------------------------------------------------------------ planning
def list_input_files(pattern: str) -> list[str]:
    """Files under a directory, matching a glob, or the single file named; sorted, URLs kept as URLs."""
    import fsspec

    filesystem, _, paths = fsspec.get_fs_token_paths(pattern)
    if len(paths) == 1 and filesystem.isdir(paths[0]):
        paths = [path for path in filesystem.find(paths[0]) if not PurePosixPath(path).name.startswith((".", "_"))]
    if not paths:
        raise FileNotFoundError(f"no input files at {pattern}")
    protocol = filesystem.protocol if isinstance(filesystem.protocol, str) else filesystem.protocol[0]
    return sorted(path if protocol in ("file", "local") else f"{protocol}://{path}" for path in paths)


def shard_id(path: str, root: str) -> str:
    """A stable, file-system-safe name per input file: its relative path, plus a short hash of the full path."""
    relative = path[len(root):].lstrip("/") if path.startswith(root) else PurePosixPath(path).name
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", relative)[-80:]
    return f"{readable}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"


def pool_size(config: TagConfig, resources: dict) -> int:
    """Actors the cluster can hold while keeping a CPU for Ray Data (never a fixed number: 2 cores must not deadlock)."""
    if config.num_actors:
        return config.num_actors
    if config.gpus_per_actor > 0:
        return max(1, int(resources.get("GPU", 0) // config.gpus_per_actor))
    return max(1, int((resources.get("CPU", 1) - 1) // config.cpus_per_actor))


# ------------------------------------------------------------------------------------------------ the actor
class ShardTagger:
    """Holds the model; tags one whole shard per call and commits its files atomically."""

    def __init__(self, config: dict, labels: list[str]):
        import torch

        from gliner import GLiNER

        self.config = TagConfig.model_validate(config)
        self.labels = labels
        self.threads = self.config.torch_threads or max(1, int(self.config.cpus_per_actor))
        device = "cuda" if self.config.gpus_per_actor > 0 and torch.cuda.is_available() else "cpu"
        self.model = GLiNER.from_pretrained(self.config.model, map_location=device)
        self.model.set_precision(self.config.precision)

    def __call__(self, batch: dict) -> dict:
        import torch

        # OpenMP's thread count is per calling thread, and Ray Data may call from another thread than __init__
        # (Ray sets OMP_NUM_THREADS from num_cpus), so it is set where the work runs.
        torch.set_num_threads(self.threads)
        summaries = [self.tag_shard(shard, path, data_format) for shard, path, data_format in zip(batch["shard"], batch["path"], batch["format"])]
        return {"summary": [json.dumps(summary) for summary in summaries]}

    def tag_shard(self, shard: str, path: str, data_format: str) -> dict:
        from synth.documents import Document, read_documents

        from .shard_output import commit_shard

        started = time.perf_counter()
        documents, errors = [], []
        for record in read_documents(path, data_format, self.config.id_column, self.config.text_column, self.config.title_column):
            if not isinstance(record, Document):
                errors.append({"source": record.source, "doc_id": record.doc_id, "line": record.line, "reason": record.reason})
            elif not record.text.strip():
                errors.append({"source": path, "doc_id": record.doc_id, "line": None, "reason": "empty text"})
            elif len(record.text) > self.config.max_chars:
                errors.append({"source": path, "doc_id": record.doc_id, "line": None, "reason": f"text longer than max_chars={self.config.max_chars}"})
            else:
                documents.append(record)
        predictions = self.model.inference(
            [document.text for document in documents], self.labels, threshold=self.config.threshold,
            flat_ner=self.config.flat_ner, multi_label=self.config.multi_label, batch_size=self.config.batch_size,
        )
        rows = [
            {"doc_id": document.doc_id, "start": entity["start"], "end": entity["end"], "text": entity["text"],
             "label": entity["label"], "score": entity["score"], "model": self.config.model}
            for document, entities in zip(documents, predictions) for entity in entities
        ]
        summary = {
            "shard": shard, "path": path, "documents": len(documents), "entities": len(rows), "errors": len(errors),
            "entities_per_label": dict(Counter(row["label"] for row in rows)), "seconds": round(time.perf_counter() - started, 3),
        }
        commit_shard(self.config.output, shard, rows, errors, documents, predictions, self.config.exports, summary)
        return summary


# ------------------------------------------------------------------------------------------------ the job
def run(config: TagConfig, address: str | None = None) -> dict:
    import ray

    from synth.documents import infer_format

    from .ray_runtime import init_ray
    from .shard_output import done_shards, write_summary

    started = time.time()
    labels = _labels(config)
    files = list_input_files(config.input)
    root = config.input.rstrip("/") if not any(ch in config.input for ch in "*?[") else str(PurePosixPath(config.input).parent)
    shards = [{"shard": shard_id(path, root), "path": path, "format": infer_format(path) if config.format == "auto" else config.format} for path in files]
    finished = done_shards(config.output)
    pending = [shard for shard in shards if shard["shard"] not in finished]
    resources = init_ray(address)
    size = min(pool_size(config, resources), max(1, len(pending)))
    summaries = []
    if pending:
        dataset = ray.data.from_items(pending, override_num_blocks=len(pending))
        tagged = dataset.map_batches(
            ShardTagger, fn_constructor_kwargs={"config": config.model_dump(), "labels": labels}, batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=size), num_cpus=config.cpus_per_actor, num_gpus=config.gpus_per_actor,
        )
        summaries = [json.loads(row["summary"]) for row in tagged.take_all()]
    summary = write_summary(config, shards, summaries, finished, time.time() - started)
    _print_summary(summary)
    return summary


def _labels(config: TagConfig) -> list[str]:
    labels = list(config.labels or [])
    if config.labels_file:
        import fsspec

        with fsspec.open(config.labels_file, "r", encoding="utf-8") as handle:
            labels += [line.strip() for line in handle if line.strip()]
    return list(dict.fromkeys(labels))


def _print_summary(summary: dict) -> None:
    print(f"tagged {summary['documents']} documents in {summary['shards_run']} shard(s) "
          f"({summary['shards_skipped']} already done): {summary['entities']} entities, {summary['errors']} errors, "
          f"{summary['docs_per_s']:.1f} docs/s")
    for label, count in sorted(summary["entities_per_label"].items(), key=lambda item: -item[1]):
        print(f"  {label}: {count}")


def main(argv: list[str] | None = None) -> int:
    return cli_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
