"""Training a span model, in the order a step runs.

1. Examples: a raw record {"tokenized_text": [words], "ner": [[start, end, label], ...]} (word indices, inclusive
   end; dicts {"start", "end", "label"} are accepted too) is checked and parsed into an `Example`. It may carry
   "negatives" (or upstream's "ner_negatives"): types known to be absent, and "ner_labels": a fixed label set.
2. Label sets: each example's own types plus negative types (its own, or sampled from the other examples in the
   batch); bi-encoders share one set per batch.
3. The batch: model inputs plus one-hot targets over every (span, label) pair.
4. The loss: element-wise binary cross-entropy over those pairs, optionally focal, exactly as upstream computes it.
5. The step: forward a batch through the model and score it (`batch_loss`).
6. The optimiser: parameter groups (encoder vs the rest, as upstream splits them) and the learning-rate schedule.
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .config import GLiNERConfig
from .inputs import build_prompt, encode_labels_for_bi_encoder, encode_words
from .model import MODEL_INPUTS, BiEncoderSpanModel, SpanModel, is_encoder_parameter

# -----------------------------------------------------------------------------
# examples


class ExampleError(ValueError):
    """A training example that cannot be used; `reason` is a short, countable category."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Example:
    tokens: list[str]
    spans: list[tuple[int, int, str]]  # (first word, last word inclusive, label)
    negatives: list[str] | None = None
    label_set: list[str] | None = None
    cut_words: int = 0  # words past max_len, cut off (counted by the training job, never silently)
    cut_spans: int = 0  # mentions lost with them


def parse_example(raw: dict, max_width: int, max_len: int) -> Example:
    """Validate one raw example; words past `max_len` are cut, with the spans that reach them (upstream truncates
    too), and the example says how many of each it lost."""
    if not isinstance(raw, dict):
        raise ExampleError("not_a_record", f"expected a mapping, got {type(raw).__name__}")
    tokens = raw.get("tokenized_text")
    if not isinstance(tokens, (list, tuple)) or not tokens:
        raise ExampleError("empty_tokenized_text", "tokenized_text is missing or empty")
    if not all(isinstance(token, str) for token in tokens):
        raise ExampleError("bad_tokenized_text", "tokenized_text must hold strings")
    all_spans = {_parse_span(item, len(tokens), max_width) for item in (raw.get("ner") or [])}
    spans = sorted(span for span in all_spans if span[1] < max_len)
    negatives = raw.get("negatives", raw.get("ner_negatives"))
    label_set = raw.get("ner_labels")
    return Example(list(tokens[:max_len]), spans, _string_list(negatives, "negatives"), _string_list(label_set, "ner_labels"),
                   cut_words=max(0, len(tokens) - max_len), cut_spans=len(all_spans) - len(spans))


def _parse_span(item, num_words: int, max_width: int) -> tuple[int, int, str]:
    if isinstance(item, dict):
        item = (item.get("start"), item.get("end"), item.get("label"))
    if not isinstance(item, (list, tuple)) or len(item) != 3:
        raise ExampleError("bad_span", f"a span must be [start, end, label], got {item!r}")
    start, end, label = item
    if not isinstance(start, int) or not isinstance(end, int) or not isinstance(label, str) or not label.strip():
        raise ExampleError("bad_span", f"a span needs integer offsets and a label, got {item!r}")
    if not 0 <= start <= end < num_words:
        raise ExampleError("span_out_of_range", f"span {item!r} is outside the {num_words} words")
    if end - start + 1 > max_width:
        raise ExampleError("span_too_wide", f"span {item!r} is wider than max_width={max_width}")
    return start, end, label


def _string_list(values, field: str) -> list[str] | None:
    if values is None:
        return None
    if not isinstance(values, (list, tuple)) or not all(isinstance(value, str) for value in values):
        raise ExampleError(f"bad_{field}", f"{field} must be a list of strings")
    return list(values)


# -----------------------------------------------------------------------------
# label sets with negative types


def choose_label_sets(examples: Sequence[Example], max_types: int, max_neg_type_ratio: int, rng: random.Random) -> list[list[str]]:
    """Per example: its own types plus negatives (explicit, or sampled from the other types in the batch, up to
    `len(spans) * ratio` with ratio drawn from 0..max_neg_type_ratio), shuffled and cut to max_types; or its closed
    label set (`ner_labels`), shuffled. Shuffled because a label's slot must carry no meaning: a corpus's types in
    one fixed order let the model score by slot instead of by label (trained briefly on IOB corpora whose sets were
    always sorted, a four-type model put every entity in the first slot)."""
    batch_types = sorted({label for example in examples for _, _, label in example.spans})
    rng.shuffle(batch_types)
    in_batch_negatives = batch_types[:100]
    label_sets = []
    for example in examples:
        if example.label_set is not None:
            label_set = list(example.label_set)
            rng.shuffle(label_set)
            label_sets.append(label_set or [""])
            continue
        ratio = rng.randint(0, max_neg_type_ratio) if max_neg_type_ratio else 0
        if example.negatives is not None:
            negatives = example.negatives
        else:
            negatives = in_batch_negatives[: len(example.spans) * ratio]
        types = sorted({label for _, _, label in example.spans} | set(negatives))
        rng.shuffle(types)
        label_sets.append(types[:max_types] or [""])  # a type-less example still trains every span as negative
    return label_sets


def shared_label_set(examples: Sequence[Example], max_types: int, rng: random.Random) -> list[str]:
    """Bi-encoders score one label set per batch: every example's types and negatives, up to max_types each."""
    types = set()
    for example in examples:
        types |= {label for _, _, label in example.spans} | set(example.negatives or ()) | set(example.label_set or ())
    ordered = sorted(types)
    rng.shuffle(ordered)
    return ordered[: max_types * len(examples)] or [""]


# -----------------------------------------------------------------------------
# the training batch


@dataclass(frozen=True)
class PaddedShape:
    """The sizes a training batch is padded to, so that a compiled step meets few shapes: `rows` examples (filler
    rows train nothing), `words` words (W), subword tokens (T) rounded up to a multiple of `token_multiple`, and
    `labels` label slots (C) per row; a bi-encoder's shared label set and its label tokens are rounded up to
    multiples of LABEL_MULTIPLE instead."""

    rows: int
    words: int
    labels: int
    token_multiple: int = 64


LABEL_MULTIPLE = 8
FILLER_EXAMPLE = Example(tokens=["."], spans=[])


def build_training_batch(config: GLiNERConfig, tokenizer, examples: Sequence[Example], label_sets: Sequence[Sequence[str]],
                         labels_tokenizer=None, shape: PaddedShape | None = None) -> dict[str, torch.Tensor]:
    """Model inputs plus `labels` (B, W, K, C) one-hot targets and `label_mask` (B, C) of real label slots.

    Uni-encoders take one label set per row (`label_sets[i]`); bi-encoders one shared set (`label_sets[0]`).
    With a `shape`, every size is padded to it (the examples must fit it); the padding is masked out of the loss.
    """
    real_rows = len(examples)
    if shape is not None:
        examples = list(examples) + [FILLER_EXAMPLE] * (shape.rows - real_rows)
        label_sets = list(label_sets) + [[""]] * (len(examples) - len(label_sets)) if not config.is_bi_encoder else label_sets
    word_lists = [example.tokens for example in examples]
    token_multiple = shape.token_multiple if shape else None
    num_words = shape.words if shape else None
    if config.is_bi_encoder:
        shared = list(label_sets[0])
        inputs = encode_words(tokenizer, word_lists, config.max_width, num_words=num_words, token_multiple=token_multiple)
        padded_set = shared + [""] * (-len(shared) % LABEL_MULTIPLE if shape else 0)
        label_inputs = encode_labels_for_bi_encoder(labels_tokenizer, padded_set, LABEL_MULTIPLE if shape else None)
        inputs["labels_input_ids"], inputs["labels_attention_mask"] = label_inputs["input_ids"], label_inputs["attention_mask"]
        rows, num_labels = [shared] * len(examples), len(padded_set)
    else:
        prompts = [build_prompt(labels, config.ent_token, config.sep_token) for labels in label_sets]
        inputs = encode_words(tokenizer, word_lists, config.max_width, prompts_per_row=prompts, num_words=num_words, token_multiple=token_multiple)
        rows = [list(labels) for labels in label_sets]
        num_labels = max(max(len(row) for row in rows), shape.labels if shape else 0)  # a closed set may exceed max_types
    num_words = inputs["span_idx"].size(1) // config.max_width
    targets = torch.zeros(len(examples), num_words, config.max_width, num_labels)  # (B, W, K, C)
    label_mask = torch.zeros(len(examples), num_labels, dtype=torch.long)  # (B, C)
    for row, (example, labels) in enumerate(zip(examples[:real_rows], rows)):
        label_mask[row, : len(labels)] = 1
        index = {label: position for position, label in enumerate(labels)}
        for start, end, label in example.spans:
            if label in index:
                targets[row, start, end - start, index[label]] = 1.0
    inputs["span_mask"][real_rows:] = False  # filler rows
    inputs["labels"], inputs["label_mask"] = targets, label_mask
    return inputs


# -----------------------------------------------------------------------------
# the span loss (upstream's: probabilities clamped at EPS before the log)

EPS = 1e-6
MASKING_MODES = ("none", "global", "label", "span")


def span_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    label_mask: torch.Tensor,
    span_mask: torch.Tensor,
    *,
    alpha: float = -1.0,
    gamma: float = 0.0,
    prob_margin: float = 0.0,
    label_smoothing: float = 0.0,
    reduction: str = "sum",
    negatives: float = 1.0,
    masking: str = "none",
) -> torch.Tensor:
    """logits, labels: (B, W, K, C); label_mask: (B, C) real label slots; span_mask: (B, W*K) spans inside text.

    alpha >= 0 weights positives by alpha and negatives by 1 - alpha; gamma > 0 is the focal modulation;
    prob_margin is subtracted from negatives' probabilities; label_smoothing pulls targets towards 0.5;
    masking drops each negative ("global"), all-negative span rows ("label") or labels ("span") with probability
    1 - negatives.
    """
    if masking not in MASKING_MODES:
        raise ValueError(f"masking must be one of {MASKING_MODES}, got {masking!r}")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    batch, _, _, num_labels = logits.shape
    logits = logits.reshape(batch, -1, num_labels)  # (B, W*K, C)
    labels = labels.reshape(batch, -1, num_labels).to(logits.dtype)  # (B, W*K, C)
    losses = _focal_bce(logits, labels, alpha, gamma, prob_margin, label_smoothing)  # (B, W*K, C)
    losses = losses * _negative_sampling_mask(labels, negatives, masking)
    losses = losses * label_mask.unsqueeze(1).to(losses.dtype) * span_mask.reshape(batch, -1, 1).to(losses.dtype)
    if reduction == "mean":
        valid_spans = span_mask.to(losses.dtype).sum()
        return losses.sum() / valid_spans if valid_spans > 0 else losses.sum() * 0.0
    return losses.sum()


def _focal_bce(logits, targets, alpha: float, gamma: float, prob_margin: float, label_smoothing: float) -> torch.Tensor:
    if label_smoothing:
        targets = targets * (1 - label_smoothing) + 0.5 * label_smoothing
    probs = torch.sigmoid(logits)
    negative_probs = (probs - prob_margin).clamp(0.0, 1.0)
    losses = -targets * torch.log(probs.clamp(min=EPS)) - (1.0 - targets) * torch.log((1.0 - negative_probs).clamp(min=EPS))
    if gamma > 0:
        p_true = probs * targets + (1 - negative_probs) * (1 - targets)
        losses = losses * (1 - p_true) ** gamma
    if alpha >= 0:
        losses = (alpha * targets + (1 - alpha) * (1 - targets)) * losses
    return losses


def _negative_sampling_mask(labels: torch.Tensor, negatives: float, masking: str) -> torch.Tensor | float:
    if masking == "none" or negatives >= 1.0:
        return 1.0
    if masking == "global":
        negative = labels == 0  # (B, W*K, C)
    elif masking == "label":
        negative = (labels.sum(dim=1) == 0).unsqueeze(1).expand_as(labels)  # labels no span has
    else:
        negative = (labels.sum(dim=2) == 0).unsqueeze(2).expand_as(labels)  # spans with no label
    keep = torch.rand(labels.shape, device=labels.device) < negatives
    return torch.where(negative, keep.to(labels.dtype), torch.ones_like(labels))


# -----------------------------------------------------------------------------
# the step

def batch_loss(model: SpanModel, batch: dict[str, torch.Tensor], **loss_options) -> torch.Tensor:
    """`batch` from build_training_batch (on the model's device) -> the scalar loss.

    Under autocast the encoder runs in half precision; the loss (a sigmoid, a log and a sum over every span and
    label) is always computed in fp32."""
    # The model is called in this frame, not through batch_logits: compiled, the LSTM's graph break inside a nested
    # call would split the rest of each frame into a graph of its own (5 graphs a step instead of 4).
    logits, _ = model(**model_inputs(model, batch))
    logits = logits[..., :batch["labels"].size(-1)].float()  # (B, W, K, C)
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return span_loss(logits, batch["labels"], batch["label_mask"], batch["span_mask"], **loss_options)


def batch_logits(model: SpanModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, W, K, C) fp32 span logits of a build_training_batch batch, C its label slots."""
    logits, _ = model(**model_inputs(model, batch))
    return logits[..., :batch["labels"].size(-1)].float()


def model_inputs(model: SpanModel, batch: dict[str, torch.Tensor]) -> dict:
    """The model's arguments for a build_training_batch batch; sizes from its shapes, never from its values (no host
    sync)."""
    inputs = {key: batch[key] for key in MODEL_INPUTS}
    inputs["num_words"] = batch["span_mask"].size(1) // model.config.max_width
    if isinstance(model, BiEncoderSpanModel):
        inputs["labels_embeds"] = model.encode_labels(batch["labels_input_ids"], batch["labels_attention_mask"])
    else:
        inputs["num_labels"] = batch["labels"].size(-1)
    return inputs


# -----------------------------------------------------------------------------
# the optimiser

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


# What `model.freeze` may name: each parameter belongs to exactly one component.
FREEZABLE = ("text_encoder", "labels_encoder", "head")
_COMPONENT_PREFIXES = {"text_encoder": ("backbone.", "projection."), "labels_encoder": ("labels_backbone.", "labels_projection.")}


def component_of(name: str) -> str:
    """The component a parameter belongs to: the text encoder (backbone and its projection), the bi-encoder's label
    encoder (its backbone and projection), or the head (LSTM, span layers, prompt projection)."""
    for component, prefixes in _COMPONENT_PREFIXES.items():
        if name.startswith(prefixes):
            return component
    return "head"


def freeze_components(model: nn.Module, components: Sequence[str]) -> int:
    """Stop gradients for every parameter of the named components (FREEZABLE): they get no gradient and, left out of
    `parameter_groups`, no optimizer state; they stay in the checkpoint. Returns how many parameters were frozen."""
    unknown = set(components) - set(FREEZABLE)
    if unknown:
        raise ValueError(f"cannot freeze {sorted(unknown)}: the components are {list(FREEZABLE)}")
    if "labels_encoder" in components and not isinstance(model, BiEncoderSpanModel):
        raise ValueError("model.freeze names labels_encoder, but the model is a uni-encoder (its labels are in the prompt)")
    frozen = 0
    for name, parameter in model.named_parameters():
        if component_of(name) in components:
            frozen += parameter.requires_grad_(False).numel()
    if not any(parameter.requires_grad for parameter in model.parameters()):
        raise ValueError(f"model.freeze {list(components)} leaves nothing to train")
    return frozen


def freeze_unread_parameters(model: nn.Module) -> list[str]:
    """Stop gradients for the weights the span model never reads: a BERT-style backbone's pooler (a span model takes
    the last hidden states). Eager autograd leaves them without a gradient anyway; a compiled backward hands them an
    empty one, on which ZeRO's gradient hooks fail. They stay in the checkpoint. Returns their names."""
    frozen = []
    for name, parameter in model.named_parameters():
        if ".pooler." in name and parameter.requires_grad:
            parameter.requires_grad_(False)
            frozen.append(name)
    return frozen


def parameter_groups(model: nn.Module, lr_encoder: float, lr_others: float, weight_decay_encoder: float, weight_decay_others: float) -> list[dict]:
    """Backbones with their projections (upstream's `token_rep_layer`) and the GLiNER layers get their own
    learning rate and weight decay; biases and norm weights never decay."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        is_encoder = is_encoder_parameter(name)
        decays = not any(marker in name for marker in NO_DECAY)
        groups.setdefault((is_encoder, decays), []).append(parameter)
    result = []
    for (is_encoder, decays), parameters in sorted(groups.items()):
        result.append({
            "params": parameters,
            "lr": lr_encoder if is_encoder else lr_others,
            "weight_decay": (weight_decay_encoder if is_encoder else weight_decay_others) if decays else 0.0,
        })
    return result


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, schedule: str = "cosine") -> float:
    """Linear warm-up, then cosine (or linear) decay to 0 at total_steps, or constant."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))
