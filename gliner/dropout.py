"""Dropout with a cheaper random mask on CPU.

On CPU torch draws one Bernoulli sample per element from a sequential generator. For the span layer's activations
(one row per span, 4x the hidden size) that draw is the most expensive operation of a training step. Here each 64-bit
draw gives four 16-bit uniforms, so the drop probability is p rounded to a multiple of 2^-16 (0.1 becomes 0.100006).
Other devices use torch's kernel, whose generator is already parallel. A training loop opts in with
`use_fast_dropout(model)`; a loaded model keeps torch's own dropout (inference never draws a mask anyway).
"""
from __future__ import annotations

import torch
from torch import nn

_LEVELS = 1 << 16


class Dropout(nn.Dropout):
    """Drop-in for `nn.Dropout` (same arguments, no parameters, so checkpoint keys do not change)."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or inputs.device.type != "cpu" or not inputs.is_floating_point():
            return super().forward(inputs)
        if self.p >= 1:
            return inputs * 0
        return inputs * keep_mask(inputs.shape, self.p).to(inputs.dtype).mul_(1.0 / (1.0 - self.p))


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """A boolean tensor whose elements are True independently with probability 1 - p (p rounded to 2^-16 steps)."""
    count = shape.numel()
    draws = torch.empty((count + 3) // 4, dtype=torch.int64).random_(torch.iinfo(torch.int64).min, None)
    uniforms = draws.view(torch.int16)[:count]  # each uniform over [-32768, 32767]
    return (uniforms >= -(_LEVELS // 2) + round(p * _LEVELS)).view(shape)


def use_fast_dropout(module: nn.Module) -> nn.Module:
    """Swap every plain `nn.Dropout` inside `module` (the span layers and the Hugging Face backbones) for `Dropout`,
    keeping p; returns the module."""
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, Dropout(child.p, child.inplace))
    return module
