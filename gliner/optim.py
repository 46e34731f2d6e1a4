"""Optimiser parameter groups (encoder vs the rest, as upstream splits them) and the learning-rate schedule."""
from __future__ import annotations

import math

from torch import nn

NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def parameter_groups(model: nn.Module, lr_encoder: float, lr_others: float, weight_decay_encoder: float, weight_decay_others: float) -> list[dict]:
    """Backbone parameters (under `token_rep_layer`, as upstream decides it) and the GLiNER layers get their own
    learning rate and weight decay; biases and norm weights never decay."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        is_encoder = "token_rep_layer" in name
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
