"""Inference precision: exact fp32 (the default) or a reduced mode, and the agreement check that guards the latter.

On a GPU, "bf16" and "fp16" run the model under autocast. On a CPU a reduced mode runs a reduced copy of the model,
kept beside the fp32 one:
  "bf16": every weight is bf16 (backbones, projections, LSTM, span head MLPs) and runs oneDNN's bf16 kernels
          (AVX-512-BF16 or AMX), except the span head's last layer: the label dot-products, the logits and the
          threshold comparison stay fp32;
  "int8": the linear layers are dynamically quantized (int8 weights per output channel, int8 activations scaled per
          batch; VNNI or AMX kernels), except the span head's out_project, which the factorised head reads as
          fp32 matrices; logits are fp32.
A CPU without the kernels a mode needs would run it slower than fp32, emulated: the mode is then not applied, with a
warning.

A compiled CPU bf16 copy (`compile=True`) runs its text backbone through torch.compile with inductor's freezing: the
copy never trains, so its weights become constants, prepacked once in oneDNN's blocked layout, with bias, GELU and
residual adds fused into the matmuls. On the 2-core EPYC that is 1.0-1.1x eager bf16 with MiniLM backbones and 1.5x
at the DeBERTa-base shape, after 15-25 s and 50-95 s of compiling (docs/performance.md): worth it for a batch job, not
for a few documents.

A reduced CPU mode checks itself when it is switched on: the model predicts a calibration sample (given, or
DEFAULT_CALIBRATION: shipped biomedical abstracts and labels) in fp32 and in the mode, and the mode is refused, with
fp32 kept, when the entity-level agreement (F1 of the mode's entities against fp32's, span and label exact) falls
below `min_agreement`. Agreement over a sample on which fp32 finds no entity is undefined and refused as well.
"""
from __future__ import annotations

import copy
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
DEFAULT_CALIBRATION = Path(__file__).with_name("calibration.json")
DEFAULT_MIN_AGREEMENT = 0.99


class PrecisionRefused(ValueError):
    """A reduced precision disagreed with fp32 on the calibration sample; the model stays fp32."""


@dataclass
class Agreement:
    """How a reduced mode's entities compare with fp32's on a calibration sample."""

    precision: str
    texts: int
    fp32_entities: int
    entities: int
    matching: int
    threshold: float

    @property
    def f1(self) -> float | None:
        """F1 of the mode's entities against fp32's; None (undefined) when neither side has any."""
        total = self.fp32_entities + self.entities
        return 2 * self.matching / total if total else None

    def to_dict(self) -> dict:
        return {**asdict(self), "f1": self.f1}


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def missing_cpu_kernels(precision: str) -> str | None:
    """Why this CPU would run `precision` emulated (slower than fp32), or None when it has the kernels."""
    flags = cpu_flags()
    if precision == "bf16" and not flags & {"avx512_bf16", "amx_bf16"}:
        return "this CPU has no bf16 instructions (avx512_bf16 or amx_bf16)"
    if precision == "int8" and not flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "this CPU has no int8 dot-product instructions (avx512_vnni, avx_vnni or amx_int8)"
    return None


def reduced_copy(model: nn.Module, precision: str, compile: bool = False) -> nn.Module:
    """A copy of the span model that runs in `precision` ("bf16" or "int8"), except the span head's last layer: the
    label dot-products, and so the logits, stay fp32. `compile` (bf16 only): its text backbone compiled for inference."""
    if compile and precision != "bf16":
        raise ValueError(f"compile applies to CPU bf16, not {precision}")
    reduced = copy.deepcopy(model).eval()
    for module in reduced.modules():  # a compiled forward (GLiNER.compile) would still call the original's weights
        module.__dict__.pop("forward", None)
    if precision == "bf16":
        reduced.to(torch.bfloat16)
        reduced.span_head.last_layer.float()
        if compile:
            compile_frozen(reduced.backbone)
        return reduced
    with warnings.catch_warnings():  # torch.ao's eager dynamic quantization warns that torchao will replace it
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(reduced, quantizable_linears(reduced), dtype=torch.qint8)


def compile_frozen(module: nn.Module) -> None:
    """torch.compile `module` for inference only, with inductor's freezing: its weights become constants of the
    compiled code. Freezing is an inductor setting that dynamo reads when it traces, so it is switched on around each
    call (the first compiles; a new shape may recompile) and nowhere else in the process."""
    from torch._inductor import config as inductor_config

    compiled_forward = torch.compile(module.forward, dynamic=True)

    def frozen_forward(*args, **kwargs):
        with inductor_config.patch(freezing=True):
            return compiled_forward(*args, **kwargs)

    module.forward = frozen_forward


def quantizable_linears(model: nn.Module) -> set[str]:
    """The names of the linear layers dynamic int8 replaces: all but the span head's out_project, whose weights the
    factorised span head reads directly (gliner/model.py, SpanHead)."""
    return {name for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and not name.startswith("span_head.out_project")}


def load_calibration(path: str | Path = DEFAULT_CALIBRATION) -> tuple[list[str], list[str]]:
    """(texts, labels) from a JSON file {"texts": [...], "labels": [...]}."""
    calibration = json.loads(Path(path).read_text())
    return list(calibration["texts"]), list(calibration["labels"])


def entity_agreement(precision: str, fp32: list[list[dict]], reduced: list[list[dict]], threshold: float) -> Agreement:
    keys = lambda entities: {(entity["start"], entity["end"], entity["label"]) for entity in entities}  # noqa: E731
    return Agreement(
        precision=precision,
        texts=len(fp32),
        fp32_entities=sum(len(entities) for entities in fp32),
        entities=sum(len(entities) for entities in reduced),
        matching=sum(len(keys(a) & keys(b)) for a, b in zip(fp32, reduced)),
        threshold=threshold,
    )


def set_precision_or_fp32(model, precision: str, min_agreement: float = DEFAULT_MIN_AGREEMENT, threshold: float = 0.5,
                          labels: list[str] | None = None, compile: bool = False):
    """`model.set_precision(precision)` checked on the shipped calibration texts with the job's own `labels` (default:
    the calibration's) and `threshold`, except that a refused mode leaves a warning and the model in fp32 (what a
    batch job wants: keep going, exact); `model.precision` says what it runs in."""
    texts, default_labels = load_calibration()
    try:
        return model.set_precision(precision, calibration=(texts, list(labels or default_labels)), min_agreement=min_agreement,
                                   threshold=threshold, compile=compile)
    except PrecisionRefused as refusal:
        warnings.warn(str(refusal), stacklevel=2)
        return model
