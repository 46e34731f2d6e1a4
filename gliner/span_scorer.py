"""Exact factorised scoring of every span against every label, without building span vectors.

markerV0 scores span (s, e) for label c as  out_project(ReLU([S_s ; E_e])) . p_c  where out_project is
Linear(2D, 4D) -> ReLU -> Linear(4D, D). The ReLU on the concatenation acts element-wise, so the first layer splits
into per-word terms,  W1 ReLU([S_s ; E_e]) + b1 = A_s + B_e  with  A = ReLU(S) W1[:, :D]^T  and
B = ReLU(E) W1[:, D:]^T + b1,  and the last layer folds into the labels:  score = ReLU(A_s + B_e) . q_c + beta_c
with  q_c = W2^T p_c  and  beta_c = b2 . p_c.  Per span that is 4D*C multiply-adds instead of 12*D^2, and nothing
of shape (B, W, K, D) is ever materialised. `marker` (a single output linear) separates completely into per-word
start and end scores. Results equal the reference span layer up to float rounding.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .span_rep import SpanMarker


@dataclass
class LabelSide:
    """What the labels contribute to every span score: markerV0 (q (B,C,4D), beta (B,C)); marker (q (B,C,2D), beta)."""

    vectors: torch.Tensor
    bias: torch.Tensor


def label_side(marker: SpanMarker, prompts: torch.Tensor) -> LabelSide:
    """From projected label vectors p (B, C, D) (after prompt_rep_layer) to the per-label factors."""
    last = marker.out_project[-1] if isinstance(marker.out_project, torch.nn.Sequential) else marker.out_project
    return LabelSide(vectors=prompts @ last.weight, bias=prompts @ last.bias)


def score_all_spans(marker: SpanMarker, words: torch.Tensor, labels: LabelSide) -> torch.Tensor:
    """words (B, W, D) -> logits (B, W, K, C); spans running past W get -inf."""
    batch, num_words, _ = words.shape
    num_labels = labels.bias.size(-1)
    logits = words.new_full((batch, num_words, marker.max_width, num_labels), float("-inf"))
    starts = marker.project_start(words).relu()
    ends = marker.project_end(words).relu()
    if isinstance(marker.out_project, torch.nn.Sequential):
        _fill_markerv0(marker, starts, ends, labels, logits)
    else:
        _fill_marker(starts, ends, labels, logits)
    return logits


def _fill_markerv0(marker: SpanMarker, starts, ends, labels: LabelSide, logits: torch.Tensor) -> None:
    first = marker.out_project[0]
    width = starts.size(-1)
    start_terms = starts @ first.weight[:, :width].t()
    end_terms = torch.addmm(first.bias, ends.flatten(0, 1), first.weight[:, width:].t()).view(*ends.shape[:2], -1)
    label_vectors_t = labels.vectors.transpose(1, 2)  # (B, 4D, C)
    for offset in range(min(marker.max_width, starts.size(1))):
        hidden = marker.out_project[2]((start_terms[:, : starts.size(1) - offset] + end_terms[:, offset:]).relu())
        logits[:, : starts.size(1) - offset, offset] = torch.baddbmm(labels.bias.unsqueeze(1), hidden, label_vectors_t)


def _fill_marker(starts, ends, labels: LabelSide, logits: torch.Tensor) -> None:
    width = starts.size(-1)
    start_scores = starts @ labels.vectors[..., :width].transpose(1, 2)  # (B, W, C)
    end_scores = ends @ labels.vectors[..., width:].transpose(1, 2) + labels.bias.unsqueeze(1)
    for offset in range(min(logits.size(2), starts.size(1))):
        logits[:, : starts.size(1) - offset, offset] = start_scores[:, : starts.size(1) - offset] + end_scores[:, offset:]
