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

    logits: (W, K, C) for one text. Spans that run past the text's last word are dropped.
    """
    probs = torch.sigmoid(logits.float())
    starts, widths, classes = torch.where(probs > threshold)
    keep = starts + widths < num_words
    starts, widths, classes = starts[keep], widths[keep], classes[keep]
    scores = probs[starts, widths, classes].tolist()
    return [
        Span(start, start + width, labels[label], score)
        for start, width, label, score in zip(starts.tolist(), widths.tolist(), classes.tolist(), scores)
    ]


def greedy_select(candidates: list[Span], flat_ner: bool = True, multi_label: bool = False) -> list[Span]:
    """Highest score first (ties keep candidate order), skip what conflicts with a kept span; sort by start."""
    conflicts = _flat_conflict if flat_ner else _nested_conflict
    kept: list[Span] = []
    for span in sorted(candidates, key=lambda span: -span.score):
        if not any(conflicts(span, other, multi_label) for other in kept):
            kept.append(span)
    return sorted(kept, key=lambda span: span.start)


def _flat_conflict(a: Span, b: Span, multi_label: bool) -> bool:
    if (a.start, a.end) == (b.start, b.end):
        return not multi_label
    return a.start <= b.end and b.start <= a.end


def _nested_conflict(a: Span, b: Span, multi_label: bool) -> bool:
    if (a.start, a.end) == (b.start, b.end):
        return not multi_label
    overlaps = a.start <= b.end and b.start <= a.end
    nested = (a.start <= b.start and a.end >= b.end) or (b.start <= a.start and b.end >= a.end)
    return overlaps and not nested
