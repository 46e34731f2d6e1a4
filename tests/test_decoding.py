"""Decoding from hand-built logits: strict threshold, length filter, greedy flat/nested selection (reference 1.11)."""
import math

import pytest
import torch

from gliner.decoding import Span, find_candidates, greedy_select

LABELS = ["person", "location", "org"]
NEG = -30.0  # sigmoid(-30) ~ 1e-13: never a candidate


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def make_logits(num_words: int, max_width: int, entries: dict[tuple[int, int, int], float], num_labels: int = 3) -> torch.Tensor:
    """(W, K, C) logits, all NEG except entries[(start, width, label)] = logit."""
    logits = torch.full((num_words, max_width, num_labels), NEG)
    for (start, width, label), value in entries.items():
        logits[start, width, label] = value
    return logits


def key(spans):
    return [(s.start, s.end, s.label) for s in spans]


# ------------------------------------------------------------------------------------------- find_candidates
def test_threshold_is_strict():
    logits = make_logits(3, 2, {(0, 0, 0): 0.0, (1, 0, 1): 1e-3})
    candidates = find_candidates(logits, 3, LABELS, 0.5)
    assert key(candidates) == [(1, 1, "location")]  # sigmoid(0) == 0.5 is not > 0.5


def test_threshold_zero_keeps_everything_inside_the_text_and_one_keeps_nothing():
    logits = torch.zeros(4, 3, 2)
    all_spans = find_candidates(logits, 4, ["a", "b"], 0.0)
    # widths 0..2 for starts 0..3, minus those running past word 3: 4*3 - (1 + 2) = 9 spans, 2 labels each
    assert len(all_spans) == 18
    assert find_candidates(torch.full((4, 3, 2), 30.0), 4, ["a", "b"], 1.0) == []


def test_candidates_in_start_width_label_order_with_inclusive_end_and_probability_scores():
    entries = {(2, 1, 0): logit(0.9), (0, 2, 2): logit(0.6), (0, 0, 1): logit(0.7), (2, 0, 2): logit(0.8), (2, 0, 0): logit(0.55)}
    candidates = find_candidates(make_logits(5, 3, entries), 5, LABELS, 0.5)
    assert key(candidates) == [(0, 0, "location"), (0, 2, "org"), (2, 2, "person"), (2, 2, "org"), (2, 3, "person")]
    assert [round(c.score, 6) for c in candidates] == [0.7, 0.6, 0.55, 0.8, 0.9]
    assert all(isinstance(c.score, float) for c in candidates)


def test_candidates_past_the_last_word_are_dropped():
    # logits padded to 6 word rows, but the text has 4 words (0..3)
    entries = {(3, 0, 0): 5.0, (3, 1, 0): 5.0, (2, 1, 1): 5.0, (2, 2, 1): 5.0, (4, 0, 0): 5.0, (5, 0, 2): 5.0}
    candidates = find_candidates(make_logits(6, 3, entries), 4, LABELS, 0.5)
    assert key(candidates) == [(2, 3, "location"), (3, 3, "person")]


def test_half_precision_logits_are_scored_in_float32():
    logits = make_logits(2, 1, {(0, 0, 0): 2.0, (1, 0, 1): -2.0}).half()
    candidates = find_candidates(logits, 2, LABELS, 0.1)
    assert key(candidates) == [(0, 0, "person"), (1, 1, "location")]
    assert candidates[0].score == pytest.approx(1 / (1 + math.exp(-2.0)), abs=1e-6)


# ------------------------------------------------------------------------------------------- greedy_select
def S(start, end, label, score):
    return Span(start, end, label, score)


def test_flat_overlap_resolved_by_score():
    spans = [S(0, 2, "person", 0.6), S(2, 3, "org", 0.9), S(4, 4, "location", 0.7)]
    assert key(greedy_select(spans)) == [(2, 3, "org"), (4, 4, "location")]


def test_flat_adjacent_spans_do_not_conflict_but_touching_inclusive_ends_do():
    assert key(greedy_select([S(0, 1, "a", 0.9), S(2, 3, "b", 0.8)])) == [(0, 1, "a"), (2, 3, "b")]
    assert key(greedy_select([S(0, 1, "a", 0.9), S(1, 3, "b", 0.8)])) == [(0, 1, "a")]


def test_flat_rejects_nested_spans():
    spans = [S(0, 4, "org", 0.9), S(1, 2, "person", 0.95)]
    assert key(greedy_select(spans, flat_ner=True)) == [(1, 2, "person")]


def test_equal_scores_keep_candidate_order():
    spans = [S(3, 4, "b", 0.8), S(0, 3, "a", 0.8), S(4, 5, "c", 0.8)]
    # the first candidate wins its ties: (3,4) kept, (0,3) and (4,5) overlap it
    assert key(greedy_select(spans)) == [(3, 4, "b")]
    assert key(greedy_select(list(reversed(spans)))) == [(0, 3, "a"), (4, 5, "c")]


def test_equal_scores_from_find_candidates_prefer_earlier_start_then_width_then_label():
    logits = make_logits(4, 3, {(0, 1, 1): 1.0, (1, 0, 0): 1.0, (0, 1, 0): 1.0, (1, 2, 2): 1.0})
    candidates = find_candidates(logits, 4, LABELS, 0.5)
    assert key(candidates) == [(0, 1, "person"), (0, 1, "location"), (1, 1, "person"), (1, 3, "org")]
    assert key(greedy_select(candidates)) == [(0, 1, "person")]
    assert key(greedy_select(candidates, multi_label=True)) == [(0, 1, "person"), (0, 1, "location")]


def test_same_span_two_labels_one_kept_unless_multi_label():
    spans = [S(1, 2, "person", 0.7), S(1, 2, "org", 0.9)]
    assert key(greedy_select(spans)) == [(1, 2, "org")]
    assert key(greedy_select(spans, flat_ner=False)) == [(1, 2, "org")]
    assert key(greedy_select(spans, multi_label=True)) == [(1, 2, "org"), (1, 2, "person")]
    assert key(greedy_select(spans, flat_ner=False, multi_label=True)) == [(1, 2, "org"), (1, 2, "person")]


def test_multi_label_still_resolves_partial_overlaps_in_flat_mode():
    spans = [S(1, 2, "person", 0.9), S(1, 2, "org", 0.8), S(2, 3, "location", 0.85)]
    assert key(greedy_select(spans, flat_ner=True, multi_label=True)) == [(1, 2, "person"), (1, 2, "org")]


def test_nested_mode_keeps_containment_rejects_partial_overlap():
    spans = [S(0, 5, "org", 0.9), S(1, 2, "person", 0.8), S(4, 7, "location", 0.85), S(2, 2, "person", 0.7), S(5, 5, "x", 0.6)]
    kept = greedy_select(spans, flat_ner=False)
    # (4,7) partially overlaps (0,5); (1,2) and (2,2) and (5,5) are nested in (0,5) and in each other
    assert key(kept) == [(0, 5, "org"), (1, 2, "person"), (2, 2, "person"), (5, 5, "x")]


def test_nested_mode_containment_in_either_direction():
    inner_first = [S(2, 3, "person", 0.9), S(0, 6, "org", 0.8)]
    assert key(greedy_select(inner_first, flat_ner=False)) == [(0, 6, "org"), (2, 3, "person")]
    assert key(greedy_select(inner_first, flat_ner=True)) == [(2, 3, "person")]


def test_output_sorted_by_start_and_scores_preserved():
    spans = [S(6, 6, "c", 0.99), S(0, 0, "a", 0.6), S(3, 4, "b", 0.8)]
    kept = greedy_select(spans)
    assert kept == [S(0, 0, "a", 0.6), S(3, 4, "b", 0.8), S(6, 6, "c", 0.99)]


def test_nested_output_with_equal_starts_keeps_score_order():
    spans = [S(0, 0, "a", 0.7), S(0, 3, "b", 0.9)]
    assert key(greedy_select(spans, flat_ner=False)) == [(0, 3, "b"), (0, 0, "a")]


def test_no_candidates():
    assert greedy_select([]) == [] and greedy_select([], flat_ner=False, multi_label=True) == []


def test_end_to_end_from_logits():
    # 6 words; "person" on words 0-1 (0.9), overlapping "org" on 1-3 (0.8), "location" on 4 (0.75),
    # "org" on 4 at exactly the threshold (excluded), a 0.99 span running past the text (dropped).
    entries = {(0, 1, 0): logit(0.9), (1, 2, 2): logit(0.8), (4, 0, 1): logit(0.75), (4, 0, 2): 0.0, (5, 2, 0): logit(0.99)}
    logits = make_logits(8, 3, entries)
    candidates = find_candidates(logits, 6, LABELS, 0.5)
    assert key(candidates) == [(0, 1, "person"), (1, 3, "org"), (4, 4, "location")]
    assert key(greedy_select(candidates)) == [(0, 1, "person"), (4, 4, "location")]
    assert key(greedy_select(candidates, flat_ner=False)) == [(0, 1, "person"), (4, 4, "location")]


def test_a_gpus_one_scan_per_batch_finds_what_the_cpus_row_scans_find():
    """The device path (one sigmoid, mask and nonzero over the batch, one transfer) run here on CPU tensors: the same
    candidates, in the same order, as each row scanned on its own; rows of several lengths, padding never read."""
    from gliner.decoding import _device_candidates, batch_candidates

    torch.manual_seed(0)
    logits = torch.randint(-6, 7, (3, 9, 4, 3)).float() * 0.5  # every score far from the threshold's last bit
    lengths = [9, 4, 1]
    logits[1, 4:] = float("nan")  # past a row's words: never read
    on_rows = batch_candidates(logits, lengths, LABELS, 0.9)
    at_once = _device_candidates(logits, lengths, LABELS, 0.9)
    assert [key(row) for row in at_once] == [key(row) for row in on_rows] and sum(map(len, on_rows)) > 10
    assert all(abs(a.score - b.score) < 1e-6 for a_row, b_row in zip(at_once, on_rows) for a, b in zip(a_row, b_row))
    assert all(span.end < length for row, length in zip(on_rows, lengths) for span in row)
