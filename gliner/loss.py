"""The span classification loss: element-wise binary cross-entropy over every (span, label) pair, optionally
focal, computed exactly as upstream GLiNER computes it (probabilities clamped at 1e-6 before the log)."""
from __future__ import annotations

import torch

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
    logits = logits.reshape(batch, -1, num_labels)
    labels = labels.reshape(batch, -1, num_labels).to(logits.dtype)
    losses = _focal_bce(logits, labels, alpha, gamma, prob_margin, label_smoothing)
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
        negative = labels == 0
    elif masking == "label":
        negative = (labels.sum(dim=1) == 0).unsqueeze(1).expand_as(labels)
    else:
        negative = (labels.sum(dim=2) == 0).unsqueeze(2).expand_as(labels)
    keep = torch.rand(labels.shape, device=labels.device) < negatives
    return torch.where(negative, keep.to(labels.dtype), torch.ones_like(labels))
