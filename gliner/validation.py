"""Scoring a training-format batch during training: each example against a label set of its own, so that the
score depends on neither the batch it lands in nor the sampled negatives of training."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .decoding import batch_candidates, greedy_select
from .training import Example


def validation_label_set(example: Example, max_types: int) -> list[str]:
    """Its closed label set (`ner_labels`) where it has one; else its own types, then its given negatives, up to
    max_types (the types it mentions first). Sorted: no sampling, the same set at every checkpoint."""
    if example.label_set is not None:
        return sorted(set(example.label_set))
    own = sorted({label for _, _, label in example.spans})
    negatives = sorted(set(example.negatives or ()) - set(own))
    return (own + negatives)[:max(max_types, len(own))]


def matched_span_counts(logits: torch.Tensor, examples: Sequence[Example], slot_labels: Sequence[Sequence[str]],
                        label_sets: Sequence[Sequence[str]], threshold: float) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of strict span matching, summed over the rows.

    logits: (B, W, K, C), row b's label slots named by slot_labels[b]; row b is decoded (flat, greedy, as inference)
    over the labels of label_sets[b] only, and its gold is its mentions of those labels."""
    tp = fp = fn = 0
    for row, (example, slots, labels) in enumerate(zip(examples, slot_labels, label_sets)):
        position = {label: slot for slot, label in enumerate(slots)}
        scored = [label for label in labels if label]  # "": the placeholder of an example with no types
        predicted = set()
        if scored:
            columns = [position[label] for label in scored]
            candidates = batch_candidates(logits[row:row + 1, :, :, columns], [len(example.tokens)], scored, threshold)[0]
            predicted = {(span.start, span.end, span.label) for span in greedy_select(candidates, flat_ner=True)}
        gold = {span for span in example.spans if span[2] in position and span[2] in labels}
        matched = len(predicted & gold)
        tp, fp, fn = tp + matched, fp + len(predicted) - matched, fn + len(gold) - matched
    return tp, fp, fn
