"""Train the CPU config (all-MiniLM-L6-v2 backbone) on BC5CDR + NCBI-disease and evaluate it.

    .venv/bin/python benchmarks/train_minilm.py [--reuse | --precision-only]

1. Data: BC5CDR and NCBI-disease train sentences from data/, each with its corpus's annotated types as `ner_labels`
   (NCBI sentences never teach "chemical" as a negative: that corpus does not annotate chemicals); the config lists both.
2. Train: `python -m ray_jobs.train --config configs/train/minilm_cpu.yaml` as shipped (embedded local Ray, 1 worker,
   DeepSpeed, fp32 on 2 threads, the packaged MiniLM), timed end to end. `--reuse` skips this when the model already exists.
   The job holds out a seeded 10% of the sentences (at most 500) and scores them at every checkpoint: the validation
   curve (loss, strict micro F1) is printed and recorded, with the checkpoint it picks as best_model.
3. Evaluate with `ray_jobs.evaluate` (configs/evaluate/biomed_zero_shot.yaml): supervised BC5CDR and NCBI-disease
   test, zero-shot BC2GM, linnaeus, JNLPBA, and NCBI-disease abstracts (PubTator, document level); the final model
   and, when validation picked another checkpoint, the best one.
4. Precision modes: strict F1 on NCBI-disease test (sentences and PubTator abstracts) with the trained model in fp32,
   bf16, compiled bf16 and int8 (gliner/precision.py; min_agreement 0, so every mode runs and its self-check is recorded), and each
   mode's entity F1 against fp32's on the same documents. `--precision-only` reruns just this step.
5. Upstream check: the trained checkpoint loaded by upstream gliner==0.2.29 predicts on the 100 NCBI test
   abstracts; the share of abstracts with identical entity lists against ours (upstream's computation, tests/parity/reference.py) is reported.
Writes benchmarks/results/train_minilm.json; benchmarks/train_minilm.md records a run's output.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from inference_vs_upstream import UPSTREAM, ensure_upstream_venv, identical_documents, machine, run_worker, versions  # noqa: E402

from ray_jobs.training.example_reader import iob_examples  # noqa: E402
from ray_jobs.runtime.job_config import load_config  # noqa: E402
from ray_jobs.train import TrainConfig  # noqa: E402
from gliner.evaluation.pubtator import read_pubtator  # noqa: E402

CONFIG = REPO / "configs" / "train" / "minilm_cpu.yaml"
OUTPUT = REPO / "outputs" / "minilm_cpu"
RESULTS = REPO / "benchmarks" / "results" / "train_minilm.json"
TARGETS = {"BC5CDR": 0.75, "NCBI-disease": 0.70}


def count_training_examples() -> int:
    sources = load_config(TrainConfig, CONFIG).data.sources()
    return sum(len(iob_examples(str(REPO / source.path), source.label_map)) for source in sources)


def train() -> float:
    started = time.time()
    subprocess.run([str(REPO / ".venv/bin/python"), "-m", "ray_jobs.train", "--config", str(CONFIG), f"output={OUTPUT}"], cwd=REPO, check=True)
    return time.time() - started


def evaluate(model: str = "final_model") -> dict:
    from ray_jobs.evaluate import parse_args, run

    config, _ = parse_args(["--config", str(REPO / "configs/evaluate/biomed_zero_shot.yaml"), f"model={OUTPUT / model}",
                            f"output={REPO / 'outputs/evaluate/minilm_cpu' / model}"])
    return run(config)["results"]


def strict_and_relaxed_f1(results: dict) -> dict:
    return {row["name"]: {"strict": row["strict"]["f1"], "relaxed": row["relaxed"]["f1"]} for row in results["datasets"]}


def validation_table(training: dict, f1: dict) -> str:
    """The validation curve, then the test F1 of the final and the best checkpoint side by side."""
    validation, best = training["validation"], training["best"]
    lines = ["| step | val loss | val P | val R | val F1 |", "|---:|---:|---:|---:|---:|"]
    for entry in validation["history"]:
        mark = " (best)" if entry["step"] == best["step"] else ""
        lines.append(f"| {entry['step']}{mark} | {entry['val_loss']:.3f} | {entry['val_precision']:.3f} | {entry['val_recall']:.3f} | {entry['val_f1']:.3f} |")
    lines += ["", f"| test set (strict F1) | final (step {training['metrics']['step']}) | best (step {best['step']}) |", "|---|---:|---:|"]
    lines += [f"| {name} | {scores['strict']:.3f} | {f1['best'][name]['strict']:.3f} |" for name, scores in f1["final"].items()]
    return "\n".join(lines)


PRECISION_DATASETS = {
    "NCBI-disease": ("data/bioner-iob/NCBI-disease/test.tsv", {"Disease": "disease"}),
    "NCBI-disease (PubTator)": ("data/ncbi-disease-pubtator/test.pubtator",
                                {"SpecificDisease": "disease", "DiseaseClass": "disease", "CompositeMention": "disease", "Modifier": "disease"}),
}


def precision_modes(threshold: float = 0.5) -> dict:
    """{precision: {"self_check": ..., dataset: {"strict_f1", "entity_f1_vs_fp32", "seconds"}}}."""
    import torch

    from gliner import GLiNER
    from gliner.evaluation.scoring import evaluate_predictions, predict
    from gliner.evaluation.gold import load_gold
    from gliner.precision import entity_agreement

    torch.set_num_threads(2)
    golds = {name: load_gold(str(REPO / path), label_map=label_map) for name, (path, label_map) in PRECISION_DATASETS.items()}
    as_entities = lambda spans_per_doc: [[{"start": s, "end": e, "label": label} for s, e, label in spans] for spans in spans_per_doc]  # noqa: E731
    model, fp32, modes = GLiNER.from_pretrained(OUTPUT / "final_model"), {}, {}
    for mode in ("fp32", "bf16", "bf16-compiled", "int8"):
        precision, _, compiled = mode.partition("-")
        model.set_precision(precision, min_agreement=0.0, threshold=threshold, compile=bool(compiled))
        modes[mode] = {"self_check": model.precision_check}
        for name, gold in golds.items():
            started = time.perf_counter()
            predicted = predict(model, gold, threshold)
            seconds = time.perf_counter() - started
            fp32.setdefault(name, predicted)
            agreement = entity_agreement(precision, as_entities(fp32[name]), as_entities(predicted), threshold)
            modes[mode][name] = {"strict_f1": evaluate_predictions(gold, predicted)["strict"]["f1"],
                                      "entity_f1_vs_fp32": agreement.f1, "entities": agreement.entities, "seconds": round(seconds, 2)}
    return modes


def upstream_agreement() -> dict:
    texts = [document.text for document in read_pubtator(REPO / "data/ncbi-disease-pubtator/test.pubtator")]
    work = REPO / "benchmarks" / ".work"
    work.mkdir(parents=True, exist_ok=True)
    texts_file = work / "ncbi_test_texts.json"
    texts_file.write_text(json.dumps(texts))
    labels = ["chemical", "disease"]
    theirs = run_worker(UPSTREAM, "upstream_inference_worker.py", OUTPUT / "final_model", texts_file, labels, work / "trained_up.json", ["--repeats", "1"])
    ours = run_worker(REPO / ".venv/bin/python", "ours_inference_worker.py", OUTPUT / "final_model", texts_file, labels, work / "trained_ours.json",
                      ["--repeats", "1", "--reference"])
    same, max_diff = identical_documents(ours["predictions"], theirs["predictions"])
    entities = sum(map(len, theirs["predictions"]))
    return {"documents": len(texts), "identical_share": same, "max_score_diff": max_diff, "upstream_entities": entities}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reuse", action="store_true", help="keep an existing trained model")
    parser.add_argument("--precision-only", action="store_true", help="rerun only the precision modes on the existing model, "
                        "replacing that part of the results file")
    args = parser.parse_args()
    if args.precision_only:
        record = json.loads(RESULTS.read_text())
        record["precision_modes"] = precision_modes()
        RESULTS.write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps(record["precision_modes"], indent=2))
        return
    ensure_upstream_venv()
    examples = count_training_examples()
    summary_file = OUTPUT / "_SUMMARY.json"
    if args.reuse and (OUTPUT / "final_model" / "model.safetensors").exists():
        train_seconds = json.loads(summary_file.read_text())["seconds"] if summary_file.exists() else None
    else:
        train_seconds = train()
    training = json.loads(summary_file.read_text())
    f1 = {"final": strict_and_relaxed_f1(evaluate())}
    best_is_final = training["best"]["step"] == training["metrics"]["step"]
    f1["best"] = f1["final"] if best_is_final else strict_and_relaxed_f1(evaluate("best_model"))
    modes = precision_modes()
    check = upstream_agreement()
    record = {"machine": machine(), "versions": versions(), "training_examples": examples, "train_seconds": train_seconds,
              "train_metrics": training.get("metrics"), "validation": training["validation"], "best_checkpoint": training["best"],
              "strict_micro_f1": f1["final"], "best_checkpoint_strict_micro_f1": f1["best"], "targets": TARGETS,
              "precision_modes": modes, "upstream_check": check}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    print(validation_table(training, f1))


if __name__ == "__main__":
    main()
