"""Train a GLiNER model with Ray Train and DeepSpeed.

    python -m ray_jobs.train --config configs/train/<name>.yaml [key=value ...]
    python -m ray_jobs.train --config ... --train-data PATH --output DIR --max-steps N --num-workers N

The examples are read through Ray Data and materialized once; each worker trains on its share of a new permutation
of them every epoch, builds batches with in-batch negative types, and steps a DeepSpeed engine in the shared fit loop
(fit_loop.py: fp32 weights, bf16 autocast, ranks in lockstep; ZeRO stage, micro-batch and accumulation from the
config; gloo on CPU, NCCL on GPU).
Checkpoints (upstream-compatible model files plus DeepSpeed optimizer state) are reported to Ray Train every
`checkpoint_every` steps and at the end; a failed run restarts from the latest one (`max_failures`), and goes on
with the example after the last one that checkpoint covered. At every checkpoint, held-out examples (by default a
seeded 10% of the training examples) are scored; the best checkpoint by their F1 is kept.
The final model is copied to OUTPUT/final_model, the best to OUTPUT/best_model, and a summary written to
OUTPUT/_SUMMARY.json; OUTPUT may be a local path or an fsspec URL (s3://, gs://, ...), where the checkpoints go too.
"""
from __future__ import annotations

import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field, model_validator

from gliner import GLiNER
from gliner.dropout import use_fast_dropout
from gliner.inputs import to_device
from gliner.evaluation.metrics import precision_recall_f1
from gliner.training import (ExampleError, PaddedShape, batch_logits, batch_loss, build_training_batch, choose_label_sets,
                             freeze_components, freeze_unread_parameters, parameter_groups, parse_example, shared_label_set, span_loss)
from gliner.validation import matched_span_counts, validation_label_set

from .training.fit import FitConfig, ScaleSection, fit
from .training.fit_loop import DEEPSPEED_DIR, STATE_FILE, Batching, MicroBatch, TokenBudget, run_fit_loop
from .training.fit_workers import TrainingRows
from .runtime.job_command import Flag, JobFailed, job_main, parse_job_args
from .runtime.job_config import Section
from .runtime.job_summary import write_summary
from .runtime.shared_storage import absolute_local_path, is_url


class ModelSection(Section):
    backbone: str | None = None  # text encoder: local directory, hub id or package:<distribution> (gliner/model_path.py)
    labels_encoder: str | None = None  # set for a bi-encoder (the same kinds of reference)
    init_from: str | None = None  # a GLiNER checkpoint to continue from (post-training)
    hidden_size: int | None = None
    max_width: int = Field(12, ge=1)
    max_len: int = Field(384, ge=1)
    span_mode: Literal["markerV0", "marker"] = "markerV0"
    dropout: float = Field(0.4, ge=0.0, lt=1.0)
    # A label's vector: its <<ENT>> marker's (upstream's default), or its first word piece's (false: the backbone's
    # own reading of the label word from the first step, where a marker must first learn to look at the next token).
    embed_ent_token: bool = True
    # Components that do not train (no gradient, no optimizer state; still saved): text_encoder (the backbone and its
    # projection), labels_encoder (a bi-encoder's), head (LSTM, span layers, prompt projection). E.g. [labels_encoder]
    # to keep a bi-encoder's label vectors where they are while fine-tuning.
    freeze: list[Literal["text_encoder", "labels_encoder", "head"]] = []


DataFormat = Literal["auto", "parquet", "jsonl", "json", "iob"]  # auto: .jsonl, .json, .tsv (IOB2), else Parquet


class TrainSource(Section):
    """One of several training files, each with its own format and label map, and what of it to train on: the
    examples with at least `min_mentions` mentions (1 leaves out a corpus's sentences that mention nothing), then at
    most `max_examples` of them, a seeded random sample (a mix of corpora balanced by size).

    label_sets: what each example is trained against. "given": its `ner_labels` where it has them (an IOB corpus gives
    every sentence all of the corpus's types: those it does not mention are true negatives), else its own types plus
    negatives sampled from the batch. "sampled": always the latter, upstream's way; it sets a corpus's types against
    other corpora's (a corpus that annotates one type teaches nothing about telling types apart otherwise), at the
    price of counting another corpus's type against a mention this corpus leaves unannotated."""

    path: str
    format: DataFormat = "auto"
    label_map: dict[str, str] | None = None  # IOB only: gold type -> label (every type the corpus has)
    min_mentions: int = Field(0, ge=0)
    max_examples: int | None = Field(None, ge=1)
    label_sets: Literal["given", "sampled"] = "given"


class ValidationSection(Section):
    """Examples never trained on, scored at every checkpoint: the loss, and strict micro precision, recall and F1 at
    `threshold`, each example against its own label set (its ner_labels, else its types and given negatives;
    gliner.validation). `data`: a source of their own; else a seeded `fraction` of the training examples is held out
    (the paper's 90/10 split; 0: no validation). At most `max_examples` either way (a seeded sample).
    The best checkpoint by F1 is kept whatever keep_checkpoints rotates out, and exported as OUTPUT/best_model;
    `patience`: stop after this many validations in a row without a higher F1 (none: run max_steps)."""

    data: TrainSource | None = None
    fraction: float = Field(0.1, ge=0.0, lt=1.0)
    max_examples: int | None = Field(None, ge=1)
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    patience: int | None = Field(None, ge=1)

    def active(self) -> bool:
        return self.data is not None or self.fraction > 0


class TrainScaleSection(ScaleSection):
    """The shared scale fields, and how the step runs: batch sizes as token budgets, and compiled.

    micro_batch_tokens: a micro-batch holds the examples of one length bucket (data.length_buckets), as many as fit in
    this many words padded to the bucket's length (GLiNER's tokens: the words of `tokenized_text`); micro_batch_size
    is then unused. Shapes stay few, so a compiled step is not compiled again for every batch.
    compile: torch.compile the step's forward and loss (and so their backward); auto: on a GPU only (on a CPU the
    compiled step is slower, and its first steps spend minutes compiling)."""

    micro_batch_tokens: int | None = Field(None, ge=1)
    compile: Literal["auto", "on", "off"] = "auto"
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = "default"

    def compiled(self) -> bool:
        return self.compile == "on" or (self.compile == "auto" and self.use_gpu)


class DataSection(Section):
    train: str | list[TrainSource]  # one file (read with format and label_map below), or several: their union
    format: DataFormat = "auto"
    label_map: dict[str, str] | None = None  # IOB only: gold type -> label (every type the corpus has)
    max_types: int = Field(25, ge=1)
    max_neg_type_ratio: int = Field(1, ge=0)
    shuffle: bool = True  # a new order of the examples every epoch (fit_loop.RowStream), else the files' order
    group_by_length: bool = False  # micro-batches of examples of similar length: less padding (fit_loop.RowStream)
    # With scale.micro_batch_tokens: the word counts examples are padded to (default: 32, 64, 128, ... up to
    # model.max_len), and the multiple subword tokens are padded to.
    length_buckets: list[int] | None = None
    token_multiple: int = Field(64, ge=1)

    def sources(self) -> list[TrainSource]:
        if isinstance(self.train, str):
            return [TrainSource(path=self.train, format=self.format, label_map=self.label_map)]
        return self.train


class OptimSection(Section):
    lr_encoder: float = Field(1e-5, gt=0)
    lr_others: float = Field(5e-5, gt=0)
    weight_decay_encoder: float = Field(0.01, ge=0)
    weight_decay_others: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.05, ge=0, le=1)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    max_grad_norm: float = Field(10.0, ge=0)


class LossSection(Section):
    alpha: float = -1.0
    gamma: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    prob_margin: float = Field(0.0, ge=0, lt=1)
    reduction: Literal["sum", "mean"] = "sum"
    negatives: float = Field(1.0, ge=0, le=1)
    masking: Literal["none", "global", "label", "span"] = "none"


class TrainConfig(FitConfig):
    name: str = "gliner-train"
    model: ModelSection
    data: DataSection
    optim: OptimSection = OptimSection()
    loss: LossSection = LossSection()
    scale: TrainScaleSection = TrainScaleSection()
    validation: ValidationSection = ValidationSection()

    # The data checks are here, not on DataSection: with a model_validator of its own, DataSection failed to unpickle
    # (pydantic SchemaError) where Ray ships this module by value, as it does when `python -m ray_jobs.train` runs it.
    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if not self.model.backbone and not self.model.init_from:
            raise ValueError("model.backbone or model.init_from must be set")
        if not self.data.train:
            raise ValueError("data.train is empty")
        if isinstance(self.data.train, list) and (self.data.format != "auto" or self.data.label_map is not None):
            raise ValueError("data.train lists several sources: give each its own format and label_map, not data.format or data.label_map")
        freeze = set(self.model.freeze)
        if "labels_encoder" in freeze and not self.model.labels_encoder and not self.model.init_from:
            raise ValueError("model.freeze names labels_encoder, but the model is a uni-encoder (no model.labels_encoder)")
        if freeze >= {"text_encoder", "head"} and ("labels_encoder" in freeze or not self.model.labels_encoder):
            raise ValueError(f"model.freeze {self.model.freeze} leaves nothing to train")
        if self.validation.patience is not None and not self.validation.active():
            raise ValueError("validation.patience needs validation: a validation.fraction above 0, or validation.data")
        buckets = self.data.length_buckets
        if buckets is not None and (not buckets or buckets != sorted(set(buckets)) or buckets[0] < 1 or buckets[-1] != self.model.max_len):
            raise ValueError(f"data.length_buckets must be ascending word counts ending at model.max_len ({self.model.max_len}), got {buckets}")
        return self

    def token_budget(self) -> TokenBudget | None:
        """How scale.micro_batch_tokens cuts micro-batches, or None when they are sized in rows."""
        if self.scale.micro_batch_tokens is None:
            return None
        return TokenBudget(self.length_buckets(), self.scale.micro_batch_tokens)

    def length_buckets(self) -> tuple[int, ...]:
        """data.length_buckets, or powers of two from 32 below model.max_len, then max_len."""
        if self.data.length_buckets is not None:
            return tuple(self.data.length_buckets)
        return tuple(2 ** power for power in range(5, 16) if 2 ** power < self.model.max_len) + (self.model.max_len,)


SKIP_REASONS = (
    "not_a_record", "empty_tokenized_text", "bad_tokenized_text", "bad_span", "span_out_of_range", "span_too_wide",
    "bad_negatives", "bad_ner_labels",
)
# What a trained example lost: words past model.max_len with the mentions that reach them, and words left without a
# subword (past the backbone's token limit), whose spans train on empty vectors.
CUT_KEYS = ("cut_examples", "cut_words", "cut_spans", "words_without_tokens")
# Real and padded sizes of the micro-batches (filler rows included), for the padding shares.
PADDING_KEYS = ("words", "padded_words", "tokens", "padded_tokens")
# Stands in for a micro-batch whose rows are all malformed: the rank still steps with the others (weight 0).
PLACEHOLDER_EXAMPLE = {"tokenized_text": ["."], "ner": []}


class GlinerTask:
    """The fit loop's task for a GLiNER span model: examples in, span loss out (fit_loop.FitTask)."""

    count_keys = ("examples",) + tuple(f"skipped_{reason}" for reason in SKIP_REASONS) + CUT_KEYS + PADDING_KEYS
    rate_keys = ("examples", "tokens")
    validation_keys = ("val_examples", "val_skipped", "val_loss_sum", "val_tp", "val_fp", "val_fn")
    validation_score = "val_f1"

    def __init__(self, config: "TrainConfig"):
        self.config = config
        self.gliner: GLiNER | None = None
        self.rng = random.Random(config.seed)
        self.step_loss = compiled_step(config.scale) if config.scale.compiled() else batch_loss
        self.budget = config.token_budget()
        self.validation = config.validation if config.validation.active() else None

    def build_model(self, checkpoint_dir: Path | None) -> torch.nn.Module:
        self.gliner = initial_model(self.config, checkpoint_dir).train()
        freeze_unread_parameters(self.gliner.model)
        freeze_components(self.gliner.model, self.config.model.freeze)
        if self.config.scale.compiled():
            return self.gliner.model  # torch's dropout, which compiles (the CPU mask below would break the graph)
        return use_fast_dropout(self.gliner.model)  # on CPU the mask draw was the costliest op of a step

    def optimizer(self, model: torch.nn.Module) -> torch.optim.Optimizer:
        optim = self.config.optim
        groups = parameter_groups(model, optim.lr_encoder, optim.lr_others, optim.weight_decay_encoder, optim.weight_decay_others)
        return torch.optim.AdamW(groups, fused=True)  # the same update as the per-tensor loop, several times faster on CPU

    def start(self, rank: int, step: int) -> None:
        torch.manual_seed(self.config.seed + rank + step)  # dropout differs per rank and after a resume
        self.rng = random.Random(self.config.seed * 1000 + rank + step)

    def micro_batch(self, rows: list[dict], bucket: int | None) -> MicroBatch:
        counts = dict.fromkeys(self.count_keys, 0.0)
        examples = self._examples(rows, counts)
        counts["examples"] = len(examples)
        counts["cut_examples"] = sum(example.cut_words > 0 for example in examples)
        counts["cut_words"] = sum(example.cut_words for example in examples)
        counts["cut_spans"] = sum(example.cut_spans for example in examples)
        weight = 1.0 if examples else 0.0
        if not examples:
            examples = [parse_example(PLACEHOLDER_EXAMPLE, self.config.model.max_width, self.config.model.max_len)]
        tensors = self._tensors(examples, self._shape(bucket, len(rows)))
        counts.update(padding_counts(tensors, len(examples) if weight else 0))
        return MicroBatch(tensors, counts, weight)

    def _examples(self, rows: list[dict], counts: dict[str, float]) -> list:
        """The rows that parse; each that does not adds 1 to counts["skipped_<reason>"]."""
        examples = []
        for row in rows:
            try:
                examples.append(parse_example(row, self.config.model.max_width, self.config.model.max_len))
            except ExampleError as error:
                counts[f"skipped_{error.reason}"] = counts.get(f"skipped_{error.reason}", 0.0) + 1
        return examples

    def validate(self, engine, rows: list[dict], device: torch.device) -> dict[str, float]:
        """The loss and strict span matches of rows held out of training, each against its own label set
        (gliner.validation); the loss as in training, without its random parts (negative masking)."""
        skipped: dict[str, float] = {}
        examples = self._examples(rows, skipped)
        counts = {"val_examples": len(examples), "val_skipped": sum(skipped.values())}
        if not examples:
            return counts
        gliner = self.gliner
        label_sets = [validation_label_set(example, self.config.data.max_types) or [""] for example in examples]
        slot_labels = [sorted(set().union(*label_sets))] * len(examples) if gliner.config.is_bi_encoder else label_sets
        tensors = to_device(build_training_batch(gliner.config, gliner.tokenizer, examples, slot_labels, gliner.labels_tokenizer), device)
        logits = batch_logits(engine.module, tensors)
        loss_options = {**self.config.loss.model_dump(), "masking": "none"}
        loss = span_loss(logits, tensors["labels"], tensors["label_mask"], tensors["span_mask"], **loss_options)
        counts["val_loss_sum"] = float(loss) * (1 if self.config.loss.reduction == "sum" else len(examples))
        counts["val_tp"], counts["val_fp"], counts["val_fn"] = matched_span_counts(
            logits.cpu(), examples, slot_labels, label_sets, self.config.validation.threshold)
        return counts

    def validation_metrics(self, counts: dict[str, float]) -> dict:
        """val_loss per example (the training loss's sum reduction) and strict micro precision, recall and F1."""
        precision, recall, f1 = precision_recall_f1(int(counts["val_tp"]), int(counts["val_tp"] + counts["val_fp"]),
                                                    int(counts["val_tp"] + counts["val_fn"]))
        return {"val_loss": counts["val_loss_sum"] / max(1.0, counts["val_examples"]), "val_precision": precision, "val_recall": recall,
                "val_f1": f1, "val_examples": int(counts["val_examples"]), "val_skipped": int(counts["val_skipped"])}

    def _shape(self, bucket: int | None, rows: int) -> PaddedShape | None:
        if bucket is None:
            return None
        return PaddedShape(rows=self.budget.rows_per_batch(bucket), words=bucket, labels=self.config.data.max_types,
                           token_multiple=self.config.data.token_multiple)

    def _tensors(self, examples: list, shape: PaddedShape | None) -> dict:
        config, gliner = self.config, self.gliner
        if gliner.config.is_bi_encoder:
            label_sets = [shared_label_set(examples, config.data.max_types, self.rng)]
        else:
            label_sets = choose_label_sets(examples, config.data.max_types, config.data.max_neg_type_ratio, self.rng)
        return build_training_batch(gliner.config, gliner.tokenizer, examples, label_sets, gliner.labels_tokenizer, shape)

    def loss(self, engine, tensors: dict) -> torch.Tensor:
        return self.step_loss(engine.module, tensors, **self.config.loss.model_dump())

    def save_model(self, engine, directory: Path) -> None:
        was_training = self.gliner.training
        self.gliner.save_pretrained(directory)  # fp32: the engine never casts the weights
        self.gliner.train(was_training)

    def metrics(self, window: dict, totals: dict) -> dict:
        return {
            "skipped": {reason: int(totals[f"skipped_{reason}"]) for reason in SKIP_REASONS if totals[f"skipped_{reason}"]},
            **{key: int(totals[key]) for key in CUT_KEYS},
            "padding_share_words": round(1 - window["words"] / max(1.0, window["padded_words"]), 4),
            "padding_share_tokens": round(1 - window["tokens"] / max(1.0, window["padded_tokens"]), 4),
        }

    def batching(self, rows: TrainingRows) -> Batching:
        if self.budget is not None:
            return Batching(rows.list_lengths("tokenized_text"), self.budget)
        return Batching(rows.list_lengths("tokenized_text") if self.config.data.group_by_length else None)

    def finish(self, engine, rank: int) -> None:
        pass


def padding_counts(tensors: dict, real_rows: int) -> dict[str, float]:
    """Words and subword tokens of the micro-batch's real rows, against its padded sizes; and the words a row holds
    that got no subword (cut by the backbone's token limit)."""
    text_lengths = tensors["text_lengths"][:real_rows]
    words_with_tokens = tensors["words_mask"][:real_rows].gt(0).sum(-1)
    return {
        "words": float(text_lengths.sum()), "padded_words": float(tensors["labels"].shape[:2].numel()),  # labels: (B, W, K, C)
        "tokens": float(tensors["attention_mask"][:real_rows].sum()), "padded_tokens": float(tensors["attention_mask"].numel()),
        "words_without_tokens": float((text_lengths - words_with_tokens).clamp(min=0).sum()),
    }


def compiled_step(scale: TrainScaleSection):
    """batch_loss under torch.compile: forward and loss traced once per shape family, and their backward compiled
    with them (AOT autograd). Sizes come from the batch's shapes, never from its values (gliner.training.batch_loss)."""

    def step(module, tensors, **loss_options):
        return batch_loss(module, tensors, **loss_options)

    return torch.compile(step, mode=scale.compile_mode)


def train_loop_per_worker(config_dict: dict) -> None:
    run_fit_loop(GlinerTask(TrainConfig.model_validate(config_dict)))


def initial_model(config: TrainConfig, checkpoint_dir: Path | None) -> GLiNER:
    if checkpoint_dir is not None:
        return GLiNER.from_pretrained(checkpoint_dir)
    if config.model.init_from:
        return GLiNER.from_pretrained(config.model.init_from, max_length=config.model.max_len, max_width=config.model.max_width)
    return GLiNER.from_backbone(
        config.model.backbone,
        labels_encoder=config.model.labels_encoder,
        hidden_size=config.model.hidden_size,
        max_width=config.model.max_width,
        max_len=config.model.max_len,
        span_mode=config.model.span_mode,
        dropout=config.model.dropout,
        embed_ent_token=config.model.embed_ent_token,
        max_types=config.data.max_types,
        max_neg_type_ratio=config.data.max_neg_type_ratio,
    )


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, str | None]:
    train_data = Flag("data.train", "training examples: Parquet, JSONL or JSON; local path or fsspec URL")
    return parse_job_args(argv, __doc__, TrainConfig, [("--train-data", train_data), "--output", "--max-steps", "--num-workers"])


def fit_model(config: TrainConfig, address: str | None = None):
    """Fit on Ray Train; returns the Ray Train result."""
    from .runtime.ray_runtime import init_ray

    output = output_location(config.output)
    sources = config.data.sources()
    given_validation = [config.validation.data] if config.validation.data else []
    init_ray(address, outputs=[output], inputs=[*(source.path for source in sources + given_validation), config.model.init_from or config.model.backbone])
    parts = [selected_examples(source, seed=index) for index, source in enumerate(sources)]
    dataset = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    validation = selected_examples(config.validation.data, seed=len(sources)) if config.validation.data else None
    score = GlinerTask.validation_score if config.validation.active() else None
    return fit(with_absolute_model_paths(config), train_loop_per_worker, dataset, output, validation, score)  # the fit loop shuffles


def selected_examples(source: TrainSource, seed: int):
    """The source's examples that the config selects (TrainSource), as a Ray dataset."""
    from .training.example_reader import read_examples

    examples = read_examples(source.path, source.format, source.label_map)
    if source.min_mentions:
        examples = examples.filter(lambda row, least=source.min_mentions: len(row["ner"]) >= least)
    if source.max_examples is not None:
        examples = examples.random_shuffle(seed=seed).limit(source.max_examples)
    if source.label_sets == "sampled":
        examples = examples.map(lambda row: {**row, "ner_labels": None})
    return examples


def output_location(output: str) -> str:
    """A URL as it is (Ray Train writes checkpoints there itself), a local path made absolute."""
    return output if is_url(output) else str(Path(output.removeprefix("file://")).expanduser().resolve())


def with_absolute_model_paths(config: TrainConfig) -> TrainConfig:
    """The config the workers get: local model directories given relative to here made absolute."""
    model = config.model
    paths = {"backbone": model.backbone, "labels_encoder": model.labels_encoder, "init_from": model.init_from}
    return config.model_copy(update={"model": model.model_copy(update={key: absolute_local_path(path) for key, path in paths.items()})})


def export_final_model(result, output: str | Path) -> Path | str:
    """Copy the last checkpoint's model files (not the optimizer state) to OUTPUT/final_model, replacing an earlier
    one. Returns the local folder, or for a URL output the URL it was uploaded to."""
    return export_model(result.checkpoint, output, "final_model")


def best_checkpoint(result, score: str):
    """(checkpoint, metrics) of the kept checkpoint with the highest `score`, the latest of equal ones (the fit loop's
    best_step, and the one Ray Train keeps)."""
    return max(((checkpoint, metrics) for checkpoint, metrics in result.best_checkpoints if score in metrics),
               key=lambda pair: (pair[1][score], pair[1]["step"]))


def export_model(checkpoint, output: str | Path, folder: str) -> Path | str:
    """The checkpoint's model files (not the optimizer state) as OUTPUT/<folder>, replacing an earlier one. Returns the
    local folder, or for a URL output the URL they were uploaded to."""
    if is_url(str(output)):
        return upload_model(checkpoint, f"{str(output).rstrip('/')}/{folder}")
    destination = Path(output_location(str(output))) / folder
    if destination.exists():
        shutil.rmtree(destination)
    copy_model_files(checkpoint, destination)
    return destination


def upload_model(checkpoint, url: str) -> str:
    """The model files gathered in a local temporary folder, then uploaded to `url` (fsspec)."""
    import fsspec

    filesystem, path = fsspec.core.url_to_fs(url, use_listings_cache=False)
    with tempfile.TemporaryDirectory() as local:
        gathered = Path(local) / "model"
        copy_model_files(checkpoint, gathered)
        if filesystem.exists(path):
            filesystem.rm(path, recursive=True)
        filesystem.put(f"{gathered}/", path, recursive=True)  # the trailing slash: the folder's contents, not the folder
    return url


def copy_model_files(checkpoint, destination: Path) -> None:
    with checkpoint.as_directory() as checkpoint_dir:
        shutil.copytree(checkpoint_dir, destination, ignore=shutil.ignore_patterns(DEEPSPEED_DIR, STATE_FILE))


def run(config: TrainConfig, address: str | None = None) -> dict:
    """Fit, copy the final model to OUTPUT/final_model and write OUTPUT/_SUMMARY.json; returns the summary."""
    started = time.time()
    result = fit_model(config, address)
    if result.error is not None:
        raise JobFailed(f"training failed: {result.error}") from result.error
    fields = {"final_model": str(export_final_model(result, config.output)), "metrics": result.metrics}
    if config.validation.active():
        fields.update(validation_fields(result, config.output))
    return write_summary(config.output, "train", config, started, fields, ("torch", "transformers", "deepspeed"))


def validation_fields(result, output: str) -> dict:
    """OUTPUT/best_model exported, and the summary's record of the validation: the best checkpoint's scores, and
    every checkpoint's."""
    checkpoint, metrics = best_checkpoint(result, GlinerTask.validation_score)
    with result.checkpoint.as_directory() as checkpoint_dir:
        history = json.loads((Path(checkpoint_dir) / STATE_FILE).read_text())["validation_history"]
    return {
        "best_model": str(export_model(checkpoint, output, "best_model")),
        "best": {key: metrics[key] for key in ("step", "val_loss", "val_precision", "val_recall", "val_f1")},
        "validation": {"rows": metrics["validation_rows"], "training_rows": metrics["training_rows"],
                       "stopped_early": bool(result.metrics.get("stopped_early")), "history": history},
    }


def trained_model_folder(config: TrainConfig) -> str:
    """The folder of OUTPUT that later stages should load: the best checkpoint's model when there is validation."""
    return "best_model" if config.validation.active() else "final_model"


def print_summary(summary: dict) -> None:
    best = summary.get("best")
    tail = f"; best {best['val_f1']:.4f} validation F1 at step {best['step']} -> {summary['best_model']}" if best else ""
    print(f"trained {summary['metrics'].get('step')} steps in {summary['seconds']} s -> {summary['final_model']}{tail}")


def main(argv: list[str] | None = None) -> int:
    return job_main(argv, parse_args, run, print_summary)


if __name__ == "__main__":
    sys.exit(main())
