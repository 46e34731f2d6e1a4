"""From span logits to entities: threshold, then greedy overlap resolution in upstream's exact order."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Span:
    start: int  # first word
    end: int  # last word (inclusive)
    label: str
    score: float


def find_candidates(logits: torch.Tensor, num_words: int, labels: list[str], threshold: float) -> list[Span]:
    """Spans with sigmoid(logit) > threshold (strict), in (start, width, label) row-major order.

    logits: (W, K, C) for one text. Spans that run past the text's last word are dropped. The probability is
    the fp32 sigmoid of the logit, taken over the text's whole logit tensor: torch's vectorised and scalar sigmoid
    can differ in the last bit on CPU, so a sigmoid of only the spans near the threshold would give a span a
    score that depends on the threshold.
    """
    logits = logits[:num_words].float()
    probs = torch.sigmoid(logits)
    widths = torch.arange(logits.size(1), device=logits.device)
    inside = (torch.arange(logits.size(0), device=logits.device).unsqueeze(1) + widths) < num_words
    starts, offsets, classes = torch.where(inside.unsqueeze(-1) & (probs > float32_threshold(threshold)))
    scores = probs[starts, offsets, classes].tolist()
    starts, offsets, classes = starts.tolist(), offsets.tolist(), classes.tolist()
    return [Span(s, s + k, labels[c], p) for s, k, c, p in zip(starts, offsets, classes, scores)]


def above_threshold(candidates: list[Span], threshold: float) -> list[Span]:
    """The candidates `find_candidates` keeps at `threshold`, from those it found at a threshold at most that."""
    cutoff = float32_threshold(threshold)
    return [span for span in candidates if span.score > cutoff]


def float32_threshold(threshold: float) -> float:
    """The threshold as the float32 number that fp32 scores are compared with."""
    return float(torch.tensor(threshold, dtype=torch.float32))


def greedy_select(candidates: list[Span], flat_ner: bool = True, multi_label: bool = False) -> list[Span]:
    """Highest score first (ties keep candidate order), skip what conflicts with a kept span; sort by start."""
    ranked = sorted(candidates, key=lambda span: -span.score)
    kept = _select_flat(ranked, multi_label) if flat_ner else _select_nested(ranked, multi_label)
    return sorted(kept, key=lambda span: span.start)


def _select_flat(ranked: list[Span], multi_label: bool) -> list[Span]:
    """Kept spans never overlap (identical boundaries may repeat with multi_label), so a word-occupancy map
    decides each conflict in O(width)."""
    if not ranked:
        return []
    occupied = bytearray(max(span.end for span in ranked) + 1)
    kept_boundaries: set[tuple[int, int]] = set()
    kept = []
    for span in ranked:
        clash = any(occupied[span.start : span.end + 1])
        if clash and not (multi_label and (span.start, span.end) in kept_boundaries):
            continue
        kept.append(span)
        kept_boundaries.add((span.start, span.end))
        occupied[span.start : span.end + 1] = b"\x01" * (span.end - span.start + 1)
    return kept


def _select_nested(ranked: list[Span], multi_label: bool) -> list[Span]:
    kept: list[Span] = []
    for span in ranked:
        if not any(_nested_conflict(span, other, multi_label) for other in kept):
            kept.append(span)
    return kept


def _nested_conflict(a: Span, b: Span, multi_label: bool) -> bool:
    """Nested decoding allows containment but not partial overlap; identical boundaries need multi_label."""
    if (a.start, a.end) == (b.start, b.end):
        return not multi_label
    overlaps = a.start <= b.end and b.start <= a.end
    nested = (a.start <= b.start and a.end >= b.end) or (b.start <= a.start and b.end >= a.end)
    return overlaps and not nested
