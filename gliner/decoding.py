"""From span logits to entities: threshold, then greedy overlap resolution in upstream's exact order."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Span:
    start: int  # first word
    end: int  # last word (inclusive)
    label: str
    score: float


def decode_batch(logits: torch.Tensor, text_lengths: list[int], labels: list[str], thresholds: list[float], flat_ner: bool = True,
                 multi_label: bool = False) -> dict[float, list[list[Span]]]:
    """{threshold: kept spans per row} of one batch's logits (B, W, K, C): candidates above the lowest threshold
    found on the logits' device and moved to the host in one transfer, then each threshold's greedy selection."""
    candidates = batch_candidates(logits, text_lengths, labels, min(thresholds))
    return {threshold: [greedy_select(above_threshold(row, threshold), flat_ner, multi_label) for row in candidates] for threshold in thresholds}


def batch_candidates(logits: torch.Tensor, text_lengths: list[int], labels: list[str], threshold: float) -> list[list[Span]]:
    """Per row, the spans inside its text with sigmoid(logit) > threshold (strict), in (start, width, label) order.

    logits: (B, W, K, C); row b has text_lengths[b] words. The probability is the fp32 sigmoid of the logit, taken
    over a row's whole logit tensor: torch's vectorised and scalar sigmoid can differ in the last bit on a CPU, where
    each row's sigmoid is its own call so that a score never depends on the threshold or on the other rows (a GPU
    computes every element alike, so there one call covers the batch).
    """
    logits = logits.float()
    cutoff = float32_threshold(threshold)
    if logits.device.type == "cpu":
        return [_row_candidates(logits[row, :length], labels, cutoff) for row, length in enumerate(text_lengths)]
    return _device_candidates(logits, text_lengths, labels, cutoff)


def _row_candidates(logits: torch.Tensor, labels: list[str], cutoff: float) -> list[Span]:
    """One row's candidates on the CPU: numpy scans the (n, K, C) scores for those above the cutoff (a float32
    number, so float32 and float64 comparisons agree) several times faster than torch's nonzero."""
    num_words, max_width, num_labels = logits.shape
    scores = torch.sigmoid(logits).numpy().reshape(-1)
    flat = np.flatnonzero(scores > cutoff)  # ascending: (start, width, label) order
    starts, rest = np.divmod(flat, max_width * num_labels)
    widths, label_indices = np.divmod(rest, num_labels)
    inside = starts + widths < num_words
    return [Span(start, start + width, labels[label], score) for start, width, label, score
            in zip(starts[inside].tolist(), widths[inside].tolist(), label_indices[inside].tolist(), scores[flat[inside]].tolist())]


def _device_candidates(logits: torch.Tensor, text_lengths: list[int], labels: list[str], cutoff: float) -> list[list[Span]]:
    """All rows at once on the device, then one transfer: float64 holds the flat indices and the fp32 scores exactly."""
    probs = torch.sigmoid(logits)
    batch, num_words, max_width, num_labels = probs.shape
    device = probs.device
    lengths = torch.tensor(text_lengths, device=device).view(-1, 1, 1)
    inside = (torch.arange(num_words, device=device).unsqueeze(1) + torch.arange(max_width, device=device)).unsqueeze(0) < lengths  # (B, W, K)
    above = probs > cutoff
    above &= inside.unsqueeze(-1)
    flat = above.reshape(-1).nonzero().squeeze(1)  # ascending: (row, start, width, label) order
    per_row: list[list[Span]] = [[] for _ in range(batch)]
    if not flat.numel():
        return per_row
    indices, scores = torch.stack([flat.double(), probs.reshape(-1)[flat].double()]).cpu().tolist()
    per_span, per_start = max_width * num_labels, num_labels
    for index, score in zip(indices, scores):
        row, rest = divmod(int(index), num_words * per_span)
        start, rest = divmod(rest, per_span)
        width, label = divmod(rest, per_start)
        per_row[row].append(Span(start, start + width, labels[label], score))
    return per_row


def find_candidates(logits: torch.Tensor, num_words: int, labels: list[str], threshold: float) -> list[Span]:
    """`batch_candidates` of one text's logits (W, K, C)."""
    return batch_candidates(logits.unsqueeze(0), [num_words], labels, threshold)[0]


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
