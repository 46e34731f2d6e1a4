"""Evaluate a GLiNER model on gold NER corpora (IOB sentences, GLiNER-format JSONL, PubTator abstracts), one Ray
task per dataset.

    python -m ray_jobs.evaluate --config configs/evaluate/<name>.yaml [key=value ...]
    python -m ray_jobs.evaluate --model DIR --dataset PATH --labels a,b [--format iob|jsonl|pubtator]
        [--label-map Chemical=chemical,...] [--output DIR] [--threshold 0.5] [--name NAME]

Each dataset maps its gold types to the labels the model is asked for (`label_map`); gold types missing from the
map are dropped and counted as `ignored_gold_mentions`. A JSONL dataset may give each document its own labels
(`labels_column`): the model is asked for those, and only its gold mentions of them count. Strict and relaxed
micro P/R/F1, per-type and macro scores per dataset; overall micro pools all datasets (summed tp/fp/fn), overall
macro is the mean of the datasets' micro F1. Writes OUTPUT/results.json, OUTPUT/results.md and OUTPUT/_SUMMARY.json (the machine-readable outputs),
OUTPUT/report.html (one self-contained page: the tables, the threshold curves, the first `report_documents`
documents of each dataset with gold and predicted entities highlighted) and prints the table.

Threshold sweep (`sweep_thresholds`, default 0.05, 0.10, ..., 0.95; `sweep_thresholds=[]` turns it off): each
dataset is predicted once, at the lowest of the sweep and `threshold`; the candidate spans of that pass are decoded
again at every threshold, which gives exactly what a run at that threshold gives. results.json holds the strict
micro P/R/F1 curve of each dataset (`threshold_curve`) and the pooled one (`overall.threshold_curve`), each with
its best-F1 point (`best`: the lowest threshold among equal F1).

Few-shot (`few_shot:` section or --few-shot-* flags): K training sentences are drawn (seeded) from an IOB train
file, the model is fine-tuned on them for `steps` steps by the train job (1 worker, ZeRO stage 0) into
OUTPUT/few_shot_K_seedS/final_model, and that model is evaluated exactly like a zero-shot one.

Ray: RAY_ADDRESS or --address joins a cluster, else an embedded local Ray starts. The model is loaded inside each
task (`num_cpus_per_task`, `num_gpus_per_task`).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Literal

import ray
from pydantic import Field, field_validator, model_validator

from gliner.evaluation.scoring import evaluate_predictions, pool_results, predict_at_thresholds, report_documents, threshold_curve
from gliner.evaluation.few_shot import sample_few_shot
from gliner.evaluation.gold import check_dataset_path, default_dataset_name, infer_format, load_gold, parse_label_map
from gliner.evaluation.html_report import render_evaluation_report
from gliner.model_path import check_model_path
from gliner.evaluation.report import format_markdown, summary_table

from .runtime.job_command import BadInput, Flag, JobFailed, comma_list, job_main, parse_job_args
from .runtime.inference_precision import InferencePrecision
from .runtime.job_config import Section
from .runtime.job_summary import write_summary
from .runtime.output_root import OutputRoot
from .runtime.shared_storage import absolute_local_path


DEFAULT_SWEEP = [round(0.05 * step, 2) for step in range(1, 20)]  # 0.05, 0.1, ..., 0.95


class DatasetSection(Section):
    path: str  # local path or fsspec URL
    name: str | None = None  # default: parent folder / file stem, e.g. "BC5CDR/test"
    format: Literal["auto", "iob", "jsonl", "pubtator"] = "auto"  # auto: .tsv -> iob, .jsonl -> jsonl (GLiNER's examples), .pubtator -> pubtator
    label_map: dict[str, str] | None = None  # gold type -> label; None: gold types are the labels
    labels: list[str] | None = None  # default: the sorted unique mapped labels
    # label -> a description the model reads in its place (e.g. "disease": "disease or syndrome"); scores still by label
    label_descriptions: dict[str, str] | None = None
    max_documents: int | None = Field(None, ge=1)  # the first N sentences (IOB, JSONL) or documents (PubTator)
    # JSONL: the field with each document's own labels (a list, or label -> description); the rest get `labels`
    labels_column: str | None = None

    @model_validator(mode="after")
    def _resolve(self) -> "DatasetSection":
        if self.format == "auto":
            object.__setattr__(self, "format", infer_format(self.path))
        if self.name is None:
            object.__setattr__(self, "name", default_dataset_name(self.path))
        if self.label_map is not None and not self.label_map:
            raise ValueError(f"dataset {self.name}: label_map is empty")
        if self.labels_column and self.format != "jsonl":
            raise ValueError(f"dataset {self.name}: labels_column needs JSONL records, not {self.format}")
        return self


class FewShotSection(Section):
    k: int = Field(ge=1)  # training sentences
    seed: int = 0
    train_path: str  # an IOB train file
    steps: int = Field(50, ge=1)
    label_map: dict[str, str] | None = None  # default: the datasets' label maps merged
    only_with_entities: bool = True  # draw among sentences with at least one mapped mention
    lr_encoder: float = Field(1e-5, gt=0)
    lr_others: float = Field(5e-5, gt=0)
    micro_batch_size: int = Field(8, ge=1)
    cpus_per_worker: float = Field(0.5, gt=0)
    torch_threads: int | None = Field(None, ge=1)
    use_gpu: bool = False


class EvaluateConfig(InferencePrecision):
    name: str = "gliner-evaluate"
    model: str  # a GLiNER checkpoint directory or hub id
    output: str | None = None  # default: outputs/evaluate/<name>
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    flat_ner: bool = True
    batch_size: int = Field(8, ge=1)
    long_text: Literal["window", "truncate", "error"] = "window"
    num_cpus_per_task: float = Field(1.0, gt=0)
    num_gpus_per_task: float = Field(0.0, ge=0)
    torch_threads: int | None = Field(None, ge=1)  # per task; default: num_cpus_per_task (at least 1)
    datasets: list[DatasetSection] = Field(min_length=1)
    max_documents: int | None = Field(None, ge=1)  # when set, every dataset's max_documents
    sweep_thresholds: list[float] = Field(default_factory=lambda: list(DEFAULT_SWEEP))  # strict P/R/F1 at each; [] turns the sweep off
    report_documents: int = Field(5, ge=0)  # the first N documents of each dataset shown in report.html
    few_shot: FewShotSection | None = None

    @field_validator("sweep_thresholds")
    @classmethod
    def _check_sweep(cls, thresholds: list[float]) -> list[float]:
        outside = [threshold for threshold in thresholds if not 0.0 <= threshold <= 1.0]
        if outside:
            raise ValueError(f"sweep thresholds must lie in [0, 1], got {outside}")
        return sorted(set(thresholds))

    @model_validator(mode="after")
    def _check(self) -> "EvaluateConfig":
        if self.output is None:
            object.__setattr__(self, "output", f"outputs/evaluate/{self.name}")
        for dataset in self.datasets if self.max_documents is not None else ():
            dataset.max_documents = self.max_documents
        names = [dataset.name for dataset in self.datasets]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"dataset names must be unique (set name:), repeated: {duplicates}")
        return self


# ----------------------------------------------------------------------------------------------- command line
def parse_args(argv: list[str] | None = None) -> tuple[EvaluateConfig, str | None]:
    def one_dataset(args) -> dict:
        if not args.dataset:
            given = [flag for flag, value in (("--format", args.format), ("--labels", args.labels), ("--label-map", args.label_map)) if value]
            if given:
                raise ValueError(f"{', '.join(given)} describe --dataset; give --dataset too (or set them in the config's datasets)")
            return {"name": args.name}
        dataset = {"path": args.dataset, "format": args.format or "auto", "name": args.name}
        if args.labels:
            dataset["labels"] = comma_list(args.labels)
        if args.label_map:
            dataset["label_map"] = parse_label_map(args.label_map)
        return {"datasets": [dataset]}

    flags = ["--model", "--output", "--threshold",
             ("--dataset", Flag(None, "one gold file (.tsv IOB or .pubtator); replaces the config's datasets")),
             ("--format", Flag(None, "format of --dataset: iob, jsonl or pubtator (default: from the extension)")),
             ("--labels", Flag(None, "comma-separated labels to predict for --dataset")),
             ("--label-map", Flag(None, "GoldType=label,... for --dataset (types not listed are ignored)")),
             ("--name", Flag(None, "name of --dataset in the results (without --dataset: the run's name)")),
             ("--max-documents", Flag("max_documents", "evaluate only the first N sentences/documents of every dataset")),
             ("--few-shot-k", Flag("few_shot.k", "fine-tune on K sampled training sentences first")),
             ("--few-shot-train", Flag("few_shot.train_path", "IOB train file to sample the few-shot sentences from")),
             ("--few-shot-steps", Flag("few_shot.steps", "fine-tuning steps")), ("--few-shot-seed", Flag("few_shot.seed", "sampling seed"))]
    return parse_job_args(argv, __doc__, EvaluateConfig, flags, one_dataset)


# ----------------------------------------------------------------------------------------------- Ray
@ray.remote(num_cpus=1)
def evaluate_dataset(model: str, dataset: dict, options: dict) -> tuple[dict, list[dict]]:
    """One dataset inside a Ray task: read gold, load the model, predict, score."""
    return evaluate_dataset_locally(model, dataset, options)


def evaluate_dataset_locally(model: str, dataset: dict, options: dict) -> tuple[dict, list[dict]]:
    """(the dataset's result for results.json, its first documents for report.html). One model pass at the lowest
    threshold gives the predictions at the evaluation threshold and at every sweep threshold."""
    import torch

    from gliner import GLiNER
    from gliner.precision import set_precision_or_fp32

    started = time.perf_counter()
    gold = load_gold(dataset["path"], dataset["format"], dataset["label_map"], dataset["labels"], dataset["max_documents"], dataset["labels_column"])
    read_s = time.perf_counter() - started
    torch.set_num_threads(options["torch_threads"] or max(1, int(options["num_cpus"])))
    device = "cuda" if options["num_gpus"] > 0 and torch.cuda.is_available() else "cpu"
    loaded = time.perf_counter()
    gliner = GLiNER.from_pretrained(model, map_location=device)
    set_precision_or_fp32(gliner, options["precision"], options["min_agreement"], options["threshold"], gold.labels, options["compile"])
    load_s = time.perf_counter() - loaded
    predicting = time.perf_counter()
    threshold, sweep = options["threshold"], options["sweep_thresholds"]
    predictions = predict_at_thresholds(gliner, gold, sorted({threshold, *sweep}), flat_ner=options["flat_ner"],
                                        batch_size=options["batch_size"], long_text=options["long_text"],
                                        descriptions=dataset["label_descriptions"])
    predict_s = time.perf_counter() - predicting
    scoring = time.perf_counter()
    result = evaluate_predictions(gold, predictions[threshold], name=dataset["name"])
    if dataset["label_descriptions"]:
        result["label_descriptions"] = dataset["label_descriptions"]
    if sweep:
        result["threshold_curve"] = threshold_curve(gold.spans, {t: predictions[t] for t in sweep})
    result["seconds"] = {
        "read": round(read_s, 3),
        "load_model": round(load_s, 3),
        "predict": round(predict_s, 3),
        "score": round(time.perf_counter() - scoring, 3),
        "total": round(time.perf_counter() - started, 3),
    }
    result["documents_per_s"] = round(len(gold.spans) / predict_s, 2) if predict_s > 0 else None
    result["device"] = device
    result["precision"], result["precision_check"] = gliner.precision, gliner.precision_check
    result["node"] = os.uname().nodename
    return result, report_documents(gold, predictions[threshold], options["report_documents"])


def run(config: EvaluateConfig, address: str | None = None) -> dict:
    """Fine-tune first when few_shot is set, evaluate every dataset as a Ray task, write the outputs; returns the
    summary, whose `results` are also in OUTPUT/results.json."""
    from .runtime.ray_runtime import init_ray

    started = time.time()
    local = not (address or os.environ.get("RAY_ADDRESS"))
    config = _checked_inputs(config, resolve_paths=local)
    output = OutputRoot(config.output if "://" in config.output else str(Path(config.output).resolve()))
    init_ray(address, outputs=[output.url()], inputs=[config.model] + [dataset.path for dataset in config.datasets])

    model, few_shot, few_shot_s = config.model, None, 0.0
    if config.few_shot is not None:
        fine_tuning = time.time()
        if output.protocol is not None:
            raise BadInput(f"few-shot fine-tuning writes checkpoints to a local or shared file system; {config.output} is a URL")
        model, few_shot = fine_tune_few_shot(config, Path(output.path()), address)
        few_shot_s = time.time() - fine_tuning

    options = {
        "threshold": config.threshold,
        "flat_ner": config.flat_ner,
        "batch_size": config.batch_size,
        "long_text": config.long_text,
        "precision": config.precision,
        "min_agreement": config.min_agreement,
        "compile": config.compile,
        "num_cpus": config.num_cpus_per_task,
        "num_gpus": config.num_gpus_per_task,
        "torch_threads": config.torch_threads,
        "sweep_thresholds": config.sweep_thresholds,
        "report_documents": config.report_documents,
    }
    evaluating = time.time()
    task = evaluate_dataset.options(num_cpus=config.num_cpus_per_task, num_gpus=config.num_gpus_per_task)
    refs = [task.remote(model, dataset.model_dump(), options) for dataset in config.datasets]
    dataset_results, documents = [], {}
    for dataset, ref in zip(config.datasets, refs):
        try:
            result, documents[dataset.name] = ray.get(ref)
            dataset_results.append(result)
        except ray.exceptions.RayTaskError as error:
            cause = getattr(error, "cause", None) or error
            raise JobFailed(f"evaluating dataset {dataset.name!r} ({dataset.path}) failed: {type(cause).__name__}: {cause}") from None
    evaluate_s = time.time() - evaluating

    results = {
        "job": "evaluate",
        "name": config.name,
        "model": model,
        "base_model": config.model,
        "threshold": config.threshold,
        "flat_ner": config.flat_ner,
        "sweep_thresholds": config.sweep_thresholds,
        "few_shot": few_shot,
        "datasets": dataset_results,
        "overall": pool_results(dataset_results),
    }
    markdown = format_markdown(results)
    output.write_json("results.json", results)
    heading = f"# {config.name}\n\nModel: `{model}`" + (f" (few-shot k={few_shot['k']}, seed={few_shot['seed']}, steps={few_shot['steps']}, from `{config.model}`)" if few_shot else "")
    output.write_bytes("results.md", (heading + f", threshold {config.threshold}\n\n" + markdown).encode("utf-8"))
    output.write_bytes("report.html", render_evaluation_report(results, documents).encode("utf-8"))
    fields = {
        "name": config.name,
        "inputs": {
            "model": config.model,
            "evaluated_model": model,
            "datasets": [{"name": d.name, "path": d.path, "format": d.format, "max_documents": d.max_documents} for d in config.datasets],
            "few_shot_train": config.few_shot.train_path if config.few_shot else None,
        },
        "counts": {
            "datasets": len(dataset_results),
            "documents": results["overall"]["documents"],
            "gold_mentions": results["overall"]["gold_mentions"],
            "predicted_mentions": sum(r["predicted_mentions"] for r in dataset_results),
            "per_dataset": {
                r["name"]: {key: r[key] for key in ("documents", "gold_mentions", "predicted_mentions", "ignored_gold_mentions")}
                for r in dataset_results
            },
            "few_shot_examples": few_shot["examples"] if few_shot else None,
        },
        "timings": {
            "total_s": round(time.time() - started, 2),
            "few_shot_s": round(few_shot_s, 2),
            "evaluate_s": round(evaluate_s, 2),
            "per_dataset": {r["name"]: r["seconds"] for r in dataset_results},
        },
        "outputs": {"results_json": output.url("results.json"), "results_md": output.url("results.md"), "report_html": output.url("report.html")},
        "results": results,
    }
    return write_summary(output, "evaluate", config, started, fields, ("torch", "transformers"))


def _checked_inputs(config: EvaluateConfig, resolve_paths: bool) -> EvaluateConfig:
    """Clear errors for a missing model or dataset before any Ray work; with a local Ray, local paths become
    absolute so tasks find them whatever their working directory."""
    check_model_path(config.model)
    for dataset in config.datasets:
        try:
            check_dataset_path(dataset.path)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"dataset {dataset.name!r}: {error}") from None
    if config.few_shot is not None:
        try:
            check_dataset_path(config.few_shot.train_path)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"few_shot.train_path: {error}") from None
        if infer_format(config.few_shot.train_path) != "iob":
            raise BadInput(f"few_shot.train_path must be an IOB file (.tsv), got {config.few_shot.train_path}")
    if not resolve_paths:
        return config
    config = config.model_copy(deep=True)
    config.model = absolute_local_path(config.model)
    for dataset in config.datasets:
        dataset.path = absolute_local_path(dataset.path)
    if config.few_shot is not None:
        config.few_shot.train_path = absolute_local_path(config.few_shot.train_path)
    return config


# ----------------------------------------------------------------------------------------------- few-shot
def fine_tune_few_shot(config: EvaluateConfig, output: Path, address: str | None = None) -> tuple[str, dict]:
    """Sample K sentences, fine-tune `config.model` on them with the train job, export the final model.
    Returns (final model directory, few-shot record for results.json)."""
    from gliner.evaluation.iob import read_iob

    from .train import TrainConfig, export_final_model, fit_model

    few_shot = config.few_shot
    label_map = few_shot.label_map if few_shot.label_map is not None else merged_label_map(config.datasets)
    examples = sample_few_shot(read_iob(few_shot.train_path), few_shot.k, few_shot.seed, label_map, few_shot.only_with_entities)
    directory = output / f"few_shot_{few_shot.k}_seed{few_shot.seed}"  # a local path
    directory.mkdir(parents=True, exist_ok=True)
    train_file = directory / "train.json"
    train_file.write_text(json.dumps(examples) + "\n")
    max_width, max_len = model_limits(config.model)
    labels = examples[0]["ner_labels"]
    train_config = TrainConfig.model_validate({
        "name": f"few_shot_{few_shot.k}_seed{few_shot.seed}",
        "output": str(directory),
        "model": {"init_from": config.model, "max_width": max_width, "max_len": max_len},
        "data": {"train": str(train_file), "format": "json", "max_types": max(25, len(labels)), "shuffle": True},
        "optim": {"lr_encoder": few_shot.lr_encoder, "lr_others": few_shot.lr_others, "warmup_ratio": 0.0, "schedule": "constant"},
        "scale": {"num_workers": 1, "zero_stage": 0, "micro_batch_size": few_shot.micro_batch_size, "use_gpu": few_shot.use_gpu,
                  "cpus_per_worker": few_shot.cpus_per_worker, "torch_threads": few_shot.torch_threads},
        "max_steps": few_shot.steps,
        "checkpoint_every": few_shot.steps,
        "keep_checkpoints": 1,
        "log_every": few_shot.steps,
        "validation": {"fraction": 0.0},  # k shots are too few to hold any out
        "seed": few_shot.seed,
    })
    started = time.time()
    result = fit_model(train_config, address)
    if result.error is not None:
        raise JobFailed(f"few-shot fine-tuning failed: {result.error}")
    final = export_final_model(result, directory)
    record = {
        "k": few_shot.k,
        "seed": few_shot.seed,
        "steps": few_shot.steps,
        "train_path": few_shot.train_path,
        "label_map": label_map,
        "labels": labels,
        "examples": len(examples),
        "example_mentions": sum(len(example["ner"]) for example in examples),
        "model": str(final),
        "train_config": train_config.model_dump(),
        "final_metrics": {key: value for key, value in (result.metrics or {}).items() if isinstance(value, (int, float, str, dict, type(None)))},
        "seconds": round(time.time() - started, 2),
    }
    return str(final), record


def merged_label_map(datasets: list[DatasetSection]) -> dict[str, str] | None:
    """The datasets' label maps as one (a gold type mapped to two different labels is an error); None when no
    dataset has one."""
    merged: dict[str, str] = {}
    any_map = False
    for dataset in datasets:
        if dataset.label_map is None:
            continue
        any_map = True
        for gold_type, label in dataset.label_map.items():
            if merged.setdefault(gold_type, label) != label:
                raise BadInput(f"gold type {gold_type!r} maps to {merged[gold_type]!r} and {label!r} in different datasets; set few_shot.label_map")
    return merged if any_map else None


def model_limits(model: str) -> tuple[int, int]:
    """(max_width, max_len) of a checkpoint, so fine-tuning keeps the model's own settings."""
    from gliner.checkpoint import CONFIG_FILE, resolve_model_dir
    from gliner.config import GLiNERConfig

    config = GLiNERConfig.from_json_file(resolve_model_dir(model) / CONFIG_FILE)
    return config.max_width, config.max_len


def print_summary(summary: dict) -> None:
    results = summary["results"]
    print(summary_table(results), end="")
    best = results["overall"].get("threshold_curve", {}).get("best")
    if best is not None:
        print(f"\nbest strict F1 over the sweep: {100 * best['f1']:.2f} at threshold {best['threshold']:g} (all datasets pooled)")
    print(f"\nwrote {summary['outputs']['results_json']}, results.md, report.html, _SUMMARY.json")


def main(argv: list[str] | None = None) -> int:
    return job_main(argv, parse_args, run, print_summary)


if __name__ == "__main__":
    sys.exit(main())
