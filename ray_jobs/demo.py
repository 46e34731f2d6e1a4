"""`make demo`: obtain a model, tag the shipped NCBI-disease test abstracts with four entity types on an embedded
local Ray, score the model on four corpora, and write an HTML page.

    python -m ray_jobs.demo [--model DIR_OR_HUB_ID] [--threshold 0.5] [--outputs outputs/demo]

The terminal gets one line per phase (and, on a terminal, a live progress line while training and tagging), then a
few tagged titles and where everything went; Ray's progress bars, worker logs and warnings go to OUTPUTS/demo.log.
The phases:
1. model: --model; else a model trained by an earlier run (outputs/minilm_cpu/final_model from
   configs/train/minilm_cpu.yaml, or OUTPUTS/model/final_model from an earlier demo); else the published
   GLiNER-biomed checkpoint when the Hugging Face hub answers; else, offline, configs/train/minilm_demo.yaml (about
   three minutes on two CPU cores, from the packaged MiniLM and the shipped corpora: chemical, disease, gene, species).
2. tag: the abstracts through the tag job (configs/tag/ncbi_demo.yaml) into OUTPUTS/tag: entities, PubTator, BioC.
3. evaluate: the evaluate job (configs/evaluate/ncbi_demo.yaml) against the gold mentions of the NCBI-disease
   abstracts and of BC5CDR, BC2GM and linnaeus test sentences, strict F1 per type and pooled, with a threshold
   sweep, into OUTPUTS/evaluate; its report.html is the page to open.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from .runtime.progress import PROGRESS_FILE, polling, progress_line

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
TRAINED_BY_CONFIG = REPO / "outputs" / "minilm_cpu" / "final_model"
PUBLISHED_MODEL = "Ihor/gliner-biomed-small-v1.0"
HUB = ("huggingface.co", 443)


@contextlib.contextmanager
def output_to_log(log_path: Path) -> Iterator[None]:
    """Everything this process and its children write to stdout and stderr (Ray's progress bars, forwarded worker
    logs, warnings of Ray's C++ core) goes to the log file; the terminal gets what `say` writes."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


TERMINAL = os.dup(1)  # the terminal, whatever fd 1 points at later


def say(line: str = "") -> None:
    os.write(TERMINAL, (line + "\n").encode("utf-8"))


@contextlib.contextmanager
def live_progress(progress_file: Path, every_s: float = 0.5) -> Iterator[None]:
    """While a phase runs, its job's _PROGRESS.json as one line rewritten in place on the terminal (only on a
    terminal: a log gets the phase lines alone)."""
    if not os.isatty(TERMINAL):
        yield
        return
    progress_file.unlink(missing_ok=True)  # an earlier run's (a file's mtime is too coarse to tell it from this run's)
    shown = [None]

    def show() -> None:
        try:
            line = progress_line(json.loads(progress_file.read_text()))
        except (OSError, ValueError, KeyError):
            return  # not written yet
        if line != shown[0]:
            width = os.get_terminal_size(TERMINAL).columns
            os.write(TERMINAL, f"\r  {line}"[: width - 1].encode("utf-8") + b"\033[K")
            shown[0] = line

    try:
        with polling(show, every_s):
            yield
    finally:
        os.write(TERMINAL, b"\r\033[K")


def hub_reachable(timeout_s: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false"):
        return False
    try:
        socket.create_connection(HUB, timeout=timeout_s).close()
        return True
    except OSError:
        return False


def obtain_model(requested: str | None, outputs: Path, train_steps: int | None) -> tuple[str, str]:
    """(model, how it was obtained) for phase 1; trains configs/train/minilm_demo.yaml when nothing else is at hand,
    or for `train_steps` steps when they are given."""
    if requested:
        return requested, "given"
    if train_steps is not None:
        return train_demo_model(outputs, [f"max_steps={train_steps}", f"checkpoint_every={train_steps}"])
    demo_trained = demo_model_dir(outputs) / "final_model"
    for trained in (TRAINED_BY_CONFIG, demo_trained):
        if (trained / "model.safetensors").exists():
            return str(trained), "trained by an earlier run"
    if hub_reachable():
        return PUBLISHED_MODEL, "published checkpoint from the Hugging Face hub"
    return train_demo_model(outputs, [])


def train_demo_model(outputs: Path, overrides: list[str]) -> tuple[str, str]:
    from .train import parse_args, run

    config, _ = parse_args(["--config", str(CONFIGS / "train/minilm_demo.yaml"), "--output", str(demo_model_dir(outputs)), *overrides])
    summary = run(config)
    metrics = summary["metrics"]
    rate = metrics.get("steady_examples_per_s") or metrics.get("examples_seen", 0) / max(summary["seconds"], 1e-9)
    return summary["final_model"], (f"trained offline: {metrics.get('step')} steps of configs/train/minilm_demo.yaml in "
                                    f"{summary['seconds']:.0f} s, {rate:.1f} examples/s")


def demo_model_dir(outputs: Path) -> Path:
    """Where the demo trains its own model (the train job's output; the model is its final_model/)."""
    return outputs / "model"


def tag(model: str, threshold: float, output: Path) -> dict:
    from .tag import parse_args, run

    config, _ = parse_args(["--config", str(CONFIGS / "tag/ncbi_demo.yaml"), "--model", model, "--output", str(output),
                            f"threshold={threshold}", "overwrite=true"])
    return run(config)


def evaluate(model: str, threshold: float, output: Path) -> dict:
    from .evaluate import parse_args, run

    config, _ = parse_args(["--config", str(CONFIGS / "evaluate/ncbi_demo.yaml"), f"model={model}", f"output={output}",
                            f"threshold={threshold}"])
    return run(config)


def tagged_titles(tag_summary: dict, count: int) -> list[str]:
    """The first `count` documents' titles of the tag run's input, with their entities in brackets: [text](label score)."""
    from gliner.evaluation.pubtator import read_pubtator

    tag_output = Path(tag_summary["config"]["output"])
    documents = read_pubtator(tag_summary["config"]["input"])[:count]
    entities: dict[str, list[dict]] = {}
    for path in sorted((tag_output / "entities").glob("*.parquet")):
        for row in pq.read_table(path).to_pylist():
            entities.setdefault(row["doc_id"], []).append(row)
    lines = []
    for document in documents:
        title_end = len(document.title)
        pieces, cursor = [], 0
        for entity in sorted(entities.get(document.pmid, []), key=lambda row: row["start"]):
            if entity["end"] > title_end:
                break
            pieces += [document.text[cursor : entity["start"]], f"[{entity['text']}]({entity['label']} {entity['score']:.2f})"]
            cursor = entity["end"]
        lines.append(f"  {document.pmid}: " + "".join(pieces) + document.text[cursor:title_end])
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a GLiNER checkpoint directory or hub id (default: reuse, download or train)")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--outputs", default=str(REPO / "outputs" / "demo"))
    parser.add_argument("--train-steps", type=int, help="train the demo config for this many steps, even if a model exists")
    args = parser.parse_args(argv)
    outputs = Path(args.outputs).resolve()
    outputs.mkdir(parents=True, exist_ok=True)
    log = outputs / "demo.log"
    log.write_text("")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    started = time.time()
    say(f"GLiNER demo: NCBI-disease test abstracts on an embedded local Ray (Ray's own output: {log})")
    try:
        with output_to_log(log):
            phase = time.time()
            with live_progress(demo_model_dir(outputs) / PROGRESS_FILE):  # training, when the demo trains
                model, how = obtain_model(args.model, outputs, args.train_steps)
            say(f"[1/3] model: {model} ({how}; {time.time() - phase:.0f} s)")
            with live_progress(outputs / "tag" / PROGRESS_FILE):
                tag_summary = tag(model, args.threshold, outputs / "tag")
            say(_tag_line(tag_summary))
            evaluate_summary = evaluate(model, args.threshold, outputs / "evaluate")
            say(_evaluate_line(evaluate_summary))
    except Exception as error:  # the terminal must say why, not only the log
        say(f"demo failed: {type(error).__name__}: {error} (details in {log})")
        return 1
    say("\nA few tagged titles:")
    for line in tagged_titles(tag_summary, 4):
        say(line)
    say(f"\nOpen {outputs / 'evaluate' / 'report.html'} (scores, the threshold curve, documents with their entities).")
    say(f"Entities: {outputs / 'tag' / 'entities'}; PubTator and BioC: {outputs / 'tag' / 'exports'}.")
    say(f"Done in {time.time() - started:.0f} s.")
    return 0


def _tag_line(summary: dict) -> str:
    counts, this_run = summary["counts"], summary["this_run"]
    per_label = ", ".join(f"{label} {count}" for label, count in sorted(counts["entities_per_label"].items(), key=lambda item: -item[1]))
    return (f"[2/3] tag: {counts['documents']} abstracts at {this_run['docs_per_s']:.1f} docs/s in {'/'.join(this_run['precisions'])} "
            f"({summary['seconds']:.0f} s with start-up): {counts['entities']} entities ({per_label or 'none'}), "
            f"{counts['errors']} errors")


def _evaluate_line(summary: dict) -> str:
    """Strict scores over every evaluated corpus (micro: their mentions pooled), then F1 per entity type."""
    results = summary["results"]
    overall, strict = results["overall"], results["overall"]["micro"]["strict"]
    per_type = ", ".join(f"{label} {scores['f1']:.2f} ({scores['support']})" for label, scores in strict["per_type"].items())
    names = ", ".join(dataset["name"] for dataset in results["datasets"])
    return (f"[3/3] evaluate: {overall['documents']} documents ({names}), {overall['gold_mentions']} gold mentions, threshold "
            f"{results['threshold']}: strict micro P/R/F1 {strict['precision']:.3f}/{strict['recall']:.3f}/{strict['f1']:.3f}; "
            f"F1 per type (gold mentions): {per_type}")


if __name__ == "__main__":
    # Run the importable module, not __main__: Ray pickles __main__'s functions by value.
    from .demo import main as importable_main

    sys.exit(importable_main())
