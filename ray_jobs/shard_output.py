"""Per-shard outputs of the tag job, committed atomically, with completion markers and the run summary.

OUTPUT/entities/<shard>.parquet, OUTPUT/errors/<shard>.parquet, OUTPUT/exports/{pubtator,bioc}/<shard>.*, and
OUTPUT/_done/<shard>.json last. Each file is written under a temporary name and then moved into place, so a reader
never sees half a file; a shard without its marker is redone from scratch and overwrites whatever it left.
"""
from __future__ import annotations

import json
import uuid

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from gliner.pubtator import PubtatorDocument, PubtatorMention, format_pubtator_document

from .versions import package_versions

ENTITIES_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("start", pa.int32()), ("end", pa.int32()), ("text", pa.string()),
    ("label", pa.string()), ("score", pa.float32()), ("model", pa.string()),
])
ERRORS_SCHEMA = pa.schema([("source", pa.string()), ("doc_id", pa.string()), ("line", pa.int64()), ("reason", pa.string())])


def output_filesystem(output: str):
    filesystem, root = fsspec.core.url_to_fs(output)
    return filesystem, root.rstrip("/")


def done_shards(output: str) -> set[str]:
    filesystem, root = output_filesystem(output)
    if not filesystem.exists(f"{root}/_done"):
        return set()
    return {path.rsplit("/", 1)[-1].removesuffix(".json") for path in filesystem.ls(f"{root}/_done", detail=False) if path.endswith(".json")}


def commit_shard(output: str, shard: str, rows: list[dict], errors: list[dict], documents, predictions, exports, summary: dict) -> None:
    filesystem, root = output_filesystem(output)
    write_atomically(filesystem, f"{root}/entities/{shard}.parquet", lambda handle: pq.write_table(pa.Table.from_pylist(rows, ENTITIES_SCHEMA), handle))
    write_atomically(filesystem, f"{root}/errors/{shard}.parquet", lambda handle: pq.write_table(pa.Table.from_pylist(errors, ERRORS_SCHEMA), handle))
    if "pubtator" in exports:
        text = "".join(_pubtator(document, entities) + "\n" for document, entities in zip(documents, predictions))
        write_atomically(filesystem, f"{root}/exports/pubtator/{shard}.pubtator", lambda handle: handle.write(text.encode("utf-8")))
    if "bioc" in exports:
        collection = {"source": summary["path"], "documents": [_bioc(document, entities) for document, entities in zip(documents, predictions)]}
        payload = json.dumps(collection, ensure_ascii=False).encode("utf-8")
        write_atomically(filesystem, f"{root}/exports/bioc/{shard}.json", lambda handle: handle.write(payload))
    marker = json.dumps(summary).encode("utf-8")
    write_atomically(filesystem, f"{root}/_done/{shard}.json", lambda handle: handle.write(marker))


def write_atomically(filesystem, path: str, write) -> None:
    directory, name = path.rsplit("/", 1)
    filesystem.makedirs(directory, exist_ok=True)
    for leftover in filesystem.glob(f"{directory}/.tmp-*-{name}"):  # from a run killed while writing this file
        filesystem.rm(leftover)
    temporary = f"{directory}/.tmp-{uuid.uuid4().hex}-{name}"
    with filesystem.open(temporary, "wb") as handle:
        write(handle)
    filesystem.mv(temporary, path)


def _pubtator(document, entities: list[dict]) -> str:
    """Title and abstract lines (the text split after the title when it starts with it; offsets stay valid because
    PubTator joins the two with one space)."""
    text = document.text.replace("\n", " ").replace("\r", " ")
    title, abstract = text, ""
    if document.title and text.startswith(document.title + " "):
        title, abstract = document.title, text[len(document.title) + 1:]
    mentions = [PubtatorMention(e["start"], e["end"], e["text"].replace("\n", " ").replace("\r", " "), e["label"], "") for e in entities]
    return format_pubtator_document(PubtatorDocument(document.doc_id, title, abstract, mentions))


def _bioc(document, entities: list[dict]) -> dict:
    annotations = [
        {"id": str(index), "infons": {"type": entity["label"], "score": round(entity["score"], 6)}, "text": entity["text"],
         "locations": [{"offset": entity["start"], "length": entity["end"] - entity["start"]}]}
        for index, entity in enumerate(entities)
    ]
    return {"id": document.doc_id, "infons": {}, "passages": [{"offset": 0, "infons": {}, "text": document.text, "annotations": annotations}]}


def write_summary(config, shards: list[dict], summaries: list[dict], previously_done: set[str], seconds: float) -> dict:
    """Totals over every shard of the input (this run's and those finished before), as OUTPUT/_SUMMARY.json."""
    filesystem, root = output_filesystem(config.output)
    all_summaries = list(summaries)
    for shard in previously_done & {item["shard"] for item in shards}:
        with filesystem.open(f"{root}/_done/{shard}.json", "rb") as handle:
            all_summaries.append(json.loads(handle.read()))
    per_label: dict[str, int] = {}
    for item in all_summaries:
        for label, count in item["entities_per_label"].items():
            per_label[label] = per_label.get(label, 0) + count
    documents_this_run = sum(item["documents"] for item in summaries)
    summary = {
        "job": "tag",
        "input": config.input,
        "output": config.output,
        "shards": len(shards),
        "shards_run": len(summaries),
        "shards_skipped": len(shards) - len(summaries),
        "documents": sum(item["documents"] for item in all_summaries),
        "entities": sum(item["entities"] for item in all_summaries),
        "errors": sum(item["errors"] for item in all_summaries),
        "entities_per_label": dict(sorted(per_label.items())),
        "seconds": round(seconds, 2),
        "docs_per_s": documents_this_run / seconds if seconds > 0 else 0.0,
        "config": config.model_dump(),
        "versions": package_versions("ray", "torch", "transformers"),
    }
    filesystem.makedirs(root, exist_ok=True)
    with filesystem.open(f"{root}/_SUMMARY.json", "wb") as handle:
        handle.write(json.dumps(summary, indent=2).encode("utf-8"))
    return summary
