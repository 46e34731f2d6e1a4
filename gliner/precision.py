"""Inference precision: exact fp32 (the default) or a reduced mode, and the agreement check that guards the latter.

On a GPU, "bf16" and "fp16" run the model under autocast. On a CPU the reduced modes change the backbone(s) only,
the part that holds nearly all of the compute; the projection, LSTM, span head and label side stay fp32, so logits and
the threshold comparison are fp32 in every mode:
  "bf16": the backbone(s) hold bf16 weights and run oneDNN's bf16 kernels (AVX-512-BF16 or AMX), their outputs are
          cast back to fp32;
  "int8": the backbone(s)' linear layers are dynamically quantized (int8 weights per output channel, int8
          activations scaled per batch; VNNI or AMX kernels).
A CPU without the kernels a mode needs would run it slower than fp32, emulated: the mode is then not applied, with a
warning.

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


def reduced_copy(model: nn.Module, precision: str) -> nn.Module:
    """A copy of the span model whose backbone(s) run in `precision` ("bf16" or "int8"); the rest stays fp32."""
    reduced = copy.deepcopy(model)
    for name in ("backbone", "labels_backbone"):
        if hasattr(reduced, name):
            setattr(reduced, name, reduced_backbone(getattr(reduced, name), precision))
    return reduced.eval()


def reduced_backbone(backbone: nn.Module, precision: str) -> nn.Module:
    if precision == "bf16":
        backbone = backbone.to(torch.bfloat16)
        backbone.register_forward_hook(hidden_states_to_fp32)  # the fp32 rest of the model takes fp32 inputs
    else:
        with warnings.catch_warnings():  # torch.ao's eager dynamic quantization warns that torchao will replace it
            warnings.simplefilter("ignore")
            backbone = torch.ao.quantization.quantize_dynamic(backbone, {nn.Linear}, dtype=torch.qint8)
    return backbone


def hidden_states_to_fp32(module: nn.Module, inputs, output):
    """Forward hook: a bf16 backbone's output (a transformers ModelOutput: run_backbone asks for return_dict) with
    its last hidden states cast to fp32."""
    output.last_hidden_state = output.last_hidden_state.float()
    return output


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


def set_precision_or_fp32(model, precision: str, min_agreement: float = DEFAULT_MIN_AGREEMENT):
    """`model.set_precision(precision)`, except that a refused mode leaves a warning and the model in fp32 (what a
    batch job wants: keep going, exact); `model.precision` says what it runs in."""
    try:
        return model.set_precision(precision, min_agreement=min_agreement)
    except PrecisionRefused as refusal:
        warnings.warn(str(refusal), stacklevel=2)
        return model
