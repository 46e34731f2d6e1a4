"""plan_windows: coverage, budgets, ownership partition, span containment, degenerate budgets and progress."""
import random

import pytest

from gliner.inputs import Window, count_tokens_per_word, plan_windows


def check_plan(counts, max_words, max_tokens, overlap, windows):
    n = len(counts)
    assert windows, "a non-empty text needs at least one window"
    assert windows[0].start == 0 and windows[-1].end == n
    covered = set()
    for w in windows:
        assert 0 <= w.start < w.end <= n
        covered.update(range(w.start, w.end))
        assert w.end - w.start <= max_words
        if max_tokens is not None and w.end - w.start > 1:
            assert sum(counts[w.start : w.end]) <= max_tokens
        # a window owns only starts it contains
        assert w.start <= w.own_start <= w.own_end <= w.end
    assert covered == set(range(n))
    # ownership regions partition [0, n): contiguous, in order, no gaps, no overlaps
    assert windows[0].own_start == 0 and windows[-1].own_end == n
    for a, b in zip(windows, windows[1:]):
        assert a.own_end == b.own_start
        assert b.start > a.start and b.end >= a.end  # progress
    owners = [sum(w.own_start <= i < w.own_end for w in windows) for i in range(n)]
    assert owners == [1] * n


def test_short_text_is_one_window_owning_everything():
    assert plan_windows([1] * 10, max_words=40, max_tokens=100, overlap=12) == [Window(0, 10, 0, 10)]


def test_empty_text_has_no_windows():
    assert plan_windows([], max_words=40, max_tokens=100, overlap=12) == []


def test_exact_windows_for_word_budget():
    windows = plan_windows([1] * 25, max_words=10, max_tokens=None, overlap=4)
    # starts step by max_words - overlap = 6; ownership boundaries at the overlap midpoints
    assert windows == [Window(0, 10, 0, 8), Window(6, 16, 8, 14), Window(12, 22, 14, 20), Window(18, 25, 20, 25)]


def test_exact_windows_for_token_budget():
    counts = [3, 1, 2, 4, 1, 1, 5, 2]
    windows = plan_windows(counts, max_words=100, max_tokens=6, overlap=1)
    # greedy: [3,1,2]=6 | from 2: [2,4]=6 | from 3: [4,1,1]=6 | from 5: [1,5]=6 | from 6: [5]... [5,2]=7 > 6 so [5] | from 7: [2]
    assert [(w.start, w.end) for w in windows] == [(0, 3), (2, 4), (3, 6), (5, 7), (6, 7), (7, 8)]
    check_plan(counts, 100, 6, 1, windows)


@pytest.mark.parametrize("seed", range(20))
def test_random_plans_cover_respect_budgets_and_partition(seed):
    rng = random.Random(seed)
    n = rng.randint(1, 300)
    counts = [rng.choice([0, 1, 1, 1, 2, 3, 5]) for _ in range(n)]
    max_words = rng.randint(1, 60)
    max_tokens = rng.choice([None, rng.randint(1, 80)])
    overlap = rng.randint(0, 70)
    windows = plan_windows(counts, max_words, max_tokens, overlap)
    check_plan(counts, max_words, max_tokens, overlap, windows)


@pytest.mark.parametrize("seed", range(20))
def test_spans_starting_in_own_region_end_inside_the_window(seed):
    rng = random.Random(100 + seed)
    max_width = rng.randint(1, 12)
    overlap = 2 * max_width + rng.randint(0, 20)
    max_words = overlap + rng.randint(1, 40)
    counts = [rng.randint(1, 3) for _ in range(rng.randint(1, 400))]
    # words cost <= 3 tokens, so every window keeps more than `overlap` words even when the token budget binds
    max_tokens = rng.choice([None, 3 * (overlap + 1) + rng.randint(0, 30)])
    windows = plan_windows(counts, max_words, max_tokens, overlap)
    check_plan(counts, max_words, max_tokens, overlap, windows)
    n = len(counts)
    for w in windows:
        for start in range(w.own_start, w.own_end):
            for width in range(max_width):
                end = start + width  # inclusive
                if end < n:
                    assert end < w.end, (w, start, width)


def test_span_containment_with_api_like_settings():
    # the API uses max_len words, overlap max(2 * max_width, 32)
    max_width, max_words = 12, 384
    overlap = max(2 * max_width, 32)
    counts = [1, 2, 1, 3] * 500
    windows = plan_windows(counts, max_words, 510, overlap)
    check_plan(counts, max_words, 510, overlap, windows)
    for w in windows:
        for start in range(w.own_start, w.own_end):
            assert min(start + max_width - 1, len(counts) - 1) < w.end


def test_word_longer_than_token_budget_gets_its_own_window():
    counts = [1, 1, 100, 1, 1]
    windows = plan_windows(counts, max_words=10, max_tokens=3, overlap=1)
    check_plan(counts, 10, 3, 1, windows)
    assert any((w.start, w.end) == (2, 3) for w in windows)
    owner = [w for w in windows if w.own_start <= 2 < w.own_end]
    assert len(owner) == 1 and owner[0].start <= 2 < owner[0].end


def test_single_huge_word_text():
    assert plan_windows([1000], max_words=5, max_tokens=10, overlap=2) == [Window(0, 1, 0, 1)]


def test_zero_token_words_cost_nothing():
    windows = plan_windows([0] * 50, max_words=20, max_tokens=1, overlap=5)
    assert all(w.end - w.start == 20 or w.end == 50 for w in windows)
    check_plan([0] * 50, 20, 1, 5, windows)


@pytest.mark.parametrize("max_tokens", [0, -1, -500])
def test_no_token_room_raises(max_tokens):
    with pytest.raises(ValueError, match="token budget"):
        plan_windows([1, 1, 1], max_words=10, max_tokens=max_tokens, overlap=2)


def test_max_words_below_one_raises():
    with pytest.raises(ValueError):
        plan_windows([1, 1], max_words=0, max_tokens=None, overlap=0)


@pytest.mark.parametrize("overlap", [10, 11, 50, 10_000])
def test_progress_with_overlap_at_least_window_size(overlap):
    windows = plan_windows([1] * 30, max_words=10, max_tokens=None, overlap=overlap)
    # each window starts one word after the previous one
    assert [(w.start, w.end) for w in windows] == [(s, min(s + 10, 30)) for s in range(21)]
    check_plan([1] * 30, 10, None, overlap, windows)


def test_max_words_one():
    windows = plan_windows([2, 2, 2], max_words=1, max_tokens=None, overlap=3)
    assert windows == [Window(0, 1, 0, 1), Window(1, 2, 1, 2), Window(2, 3, 2, 3)]


def test_count_tokens_per_word_with_real_tokenizer(tiny_backbone):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_backbone))
    words = ["Obama", "IL-6-mediated", "\u200b", "东京大学", ",", "unbelievably"]
    counts = count_tokens_per_word(tokenizer, words)
    expected = [len(tokenizer([w], is_split_into_words=True, add_special_tokens=False)["input_ids"]) for w in words]
    assert counts == expected
    assert counts[2] == 0 and counts[1] == 5 and counts[4] == 1
    assert count_tokens_per_word(tokenizer, []) == []
