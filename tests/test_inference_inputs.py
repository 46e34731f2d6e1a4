"""What goes into the model and what comes out of `inference` for odd, long and malformed input.

Uses the tiny random models from conftest (MiniLM's real tokenizer, max_len 40 words, max_width 6). Their scores
are meaningless but deterministic, so thresholds are picked from the model's own probabilities.
"""
import warnings

import pytest
import torch

from gliner import GLiNER
from gliner.inputs import build_prompt, encode_words, enumerate_spans, split_words
from gliner.decoding import Span, greedy_select

LABELS = ["person", "location"]
SENTENCE = "Barack Obama visited Paris and Berlin in 2009 , meeting Angela Merkel at the Chancellery near the Spree river ."
LONG_DOC = " ".join([SENTENCE] * 8)  # 160 words, four times the models' max_len
SHORT = "Angela Merkel met Emmanuel Macron in Paris ."


@pytest.fixture(scope="module")
def uni(tiny_uni_dir):
    return GLiNER.from_pretrained(tiny_uni_dir)


@pytest.fixture(scope="module")
def bi(tiny_bi_dir):
    return GLiNER.from_pretrained(tiny_bi_dir)


@pytest.fixture(params=["uni", "bi"])
def model(request):
    return request.getfixturevalue(request.param)


def probabilities(model, word_list, labels):
    with torch.inference_mode():
        logits = model.logits([word_list], labels)
    return torch.sigmoid(logits[0, : len(word_list)].float())


def threshold_for(model, text, labels=LABELS, quantile=0.9):
    """A threshold that keeps roughly the top 10% of the first window's span probabilities."""
    words = split_words(text).tokens[: model.config.max_len]
    return float(torch.quantile(probabilities(model, words, labels).flatten(), quantile))


def spans_key(entities):
    return [(e["start"], e["end"], e["label"]) for e in entities]


def assert_same_entities(a, b, tol=1e-5):
    assert spans_key(a) == spans_key(b)
    for x, y in zip(a, b):
        assert x["text"] == y["text"]
        assert abs(x["score"] - y["score"]) <= tol


def assert_well_formed(text, entities, labels, threshold, flat_ner=True, max_width=6):
    words = split_words(text)
    word_of_start = {s: i for i, s in enumerate(words.starts)}
    word_of_end = {e: i for i, e in enumerate(words.ends)}
    for e in entities:
        assert set(e) == {"start", "end", "text", "label", "score"}
        assert e["text"] == text[e["start"] : e["end"]]
        assert e["start"] in word_of_start and e["end"] in word_of_end, "entity boundaries must be word boundaries"
        assert 0 <= word_of_end[e["end"]] - word_of_start[e["start"]] < max_width
        assert e["label"] in labels
        assert e["score"] > threshold and isinstance(e["score"], float)
    assert [e["start"] for e in entities] == sorted(e["start"] for e in entities)
    if flat_ner:
        for a, b in zip(entities, entities[1:]):
            assert a["end"] <= b["start"], (a, b)


# --------------------------------------------------------------------------------------------- batch building
def test_prompt_layout():
    assert build_prompt(["person", "new york city"], "<<ENT>>", "<<SEP>>") == ["<<ENT>>", "person", "<<ENT>>", "new york city", "<<SEP>>"]
    assert build_prompt(["x"], "[E]", "[S]") == ["[E]", "x", "[S]"]


def first_subword_positions(tokenizer, prompt, words):
    encoded = tokenizer([list(prompt) + list(words)], is_split_into_words=True)
    ids = encoded.word_ids(0)
    return {word_id - len(prompt) + 1: pos for pos, word_id in enumerate(ids)
            if word_id is not None and word_id >= len(prompt) and (pos == 0 or ids[pos - 1] != word_id)}


def test_words_mask_marks_first_subwords_with_one_based_word_numbers(uni):
    tok = uni.tokenizer
    prompt = build_prompt(["person", "location"], "<<ENT>>", "<<SEP>>")
    words = ["Obama", "visited", "unbelievably", "IL-6-mediated", "Paris"]
    batch = encode_words(tok, [words], max_width=3, prompt=prompt)
    mask = batch["words_mask"][0]
    positions = {int(mask[p]): p for p in torch.nonzero(mask).flatten().tolist()}
    assert sorted(positions) == [1, 2, 3, 4, 5]
    assert positions == first_subword_positions(tok, prompt, words)
    # the marked token is the word's own first piece
    for k, word in enumerate(words, start=1):
        first_piece = tok([word], is_split_into_words=True, add_special_tokens=False)["input_ids"][0]
        assert int(batch["input_ids"][0, positions[k]]) == first_piece
    # prompt layout in ids: [CLS] <<ENT>> person <<ENT>> location <<SEP>> text... [SEP]
    ent, sep = tok.convert_tokens_to_ids(["<<ENT>>", "<<SEP>>"])
    ids = batch["input_ids"][0].tolist()
    assert ids[0] == tok.cls_token_id and ids[1] == ent and ids[3] == ent and ids[5] == sep
    assert ids[-1] == tok.sep_token_id
    assert positions[1] == 6
    assert batch["text_lengths"].tolist() == [5]


def test_multi_word_labels_do_not_shift_text_word_numbers(uni):
    tok = uni.tokenizer
    words = ["Obama", "visited", "Paris"]
    short = encode_words(tok, [words], 2, build_prompt(["city"], "<<ENT>>", "<<SEP>>"))
    long = encode_words(tok, [words], 2, build_prompt(["capital city of a country", "head of state"], "<<ENT>>", "<<SEP>>"))
    for batch in (short, long):
        mask = batch["words_mask"][0]
        assert sorted(mask[mask > 0].tolist()) == [1, 2, 3]
        marked = [int(batch["input_ids"][0, (mask == k).nonzero()[0, 0]]) for k in (1, 2, 3)]
        assert marked == tok.convert_tokens_to_ids(["obama", "visited", "paris"])
    # prompts of 1+5+1+3+1 tokens ("capital city of a country" is 5, "head of state" 3) versus 1+1+1
    first_short = int((short["words_mask"][0] == 1).nonzero()[0, 0])
    first_long = int((long["words_mask"][0] == 1).nonzero()[0, 0])
    assert first_long - first_short == (1 + 5 + 1 + 3 + 1) - (1 + 1 + 1)


def test_word_without_subwords_leaves_its_slot_empty(uni):
    tok = uni.tokenizer
    assert tok(["\u200b"], is_split_into_words=True, add_special_tokens=False)["input_ids"] == []
    words = split_words("Obama \u200b visited Paris").tokens
    assert words == ["Obama", "\u200b", "visited", "Paris"]
    prompt = build_prompt(LABELS, "<<ENT>>", "<<SEP>>")
    batch = encode_words(tok, [words], 3, prompt)
    mask = batch["words_mask"][0]
    assert mask[mask > 0].tolist() == [1, 3, 4]  # word 2 has no subword; "visited" keeps number 3
    assert int(batch["input_ids"][0, (mask == 3).nonzero()[0, 0]]) == tok.convert_tokens_to_ids("visited")
    assert batch["text_lengths"].tolist() == [4]


def test_zero_subword_word_gets_zero_vector_and_model_still_scores_all_words(uni):
    from gliner.model import MODEL_INPUTS, extract_words

    words = ["Obama", "\u200b", "visited"]
    batch = encode_words(uni.tokenizer, [words], 6, uni.preparer.prompt(LABELS))
    with torch.inference_mode():
        token_embeds = uni.model.encode_text(batch["input_ids"], batch["attention_mask"])
        vectors = extract_words(token_embeds, batch["words_mask"], 3)
        logits, prompts_mask = uni.model(**{key: batch[key] for key in MODEL_INPUTS})
    assert torch.all(vectors[0, 1] == 0) and torch.all(vectors[0, 0] != 0) and torch.all(vectors[0, 2] != 0)
    assert logits.shape == (1, 3, 6, 2) and prompts_mask.tolist() == [[1, 1]]
    # and inference over such text returns valid offsets
    text = "Obama \u200b visited Paris"
    entities = uni.predict_entities(text, LABELS, threshold=0.0)
    assert entities and all(e["text"] == text[e["start"] : e["end"]] for e in entities)


def test_span_enumeration_order_and_mask():
    span_idx, span_mask = enumerate_spans(torch.tensor([3, 1]), max_width=2)
    assert span_idx.shape == (2, 6, 2)
    assert span_mask.tolist() == [[True, True, True, True, True, False], [True, False, False, False, False, False]]
    assert span_idx[0].tolist() == [[0, 0], [0, 1], [1, 1], [1, 2], [2, 2], [0, 0]]  # (2,3) runs past word 2
    assert span_idx[1].tolist() == [[0, 0]] * 6


def test_encode_words_pads_rows_and_enumerates_spans_per_row(uni):
    batch = encode_words(uni.tokenizer, [["a", "b", "c", "d"], ["e"]], 3, uni.preparer.prompt(LABELS))
    assert batch["text_lengths"].tolist() == [4, 1]
    assert batch["span_idx"].shape == (2, 12, 2)
    starts = [s for s in range(4) for _ in range(3)]
    widths = [w for _ in range(4) for w in range(3)]
    for row, length in enumerate((4, 1)):
        valid = [s + w < length for s, w in zip(starts, widths)]
        assert batch["span_mask"][row].tolist() == valid
        assert batch["span_idx"][row].tolist() == [[s, s + w] if ok else [0, 0] for s, w, ok in zip(starts, widths, valid)]
    assert batch["attention_mask"][1].sum() < batch["attention_mask"][0].sum()
    assert batch["words_mask"][1].max() == 1 and batch["words_mask"][0].max() == 4


# --------------------------------------------------------------------------------------------- prompt tokens in text
def test_prompt_tokens_inside_text_are_ordinary_words(model):
    text = "<<ENT>> Obama <<SEP>> visited <<ENT>>Paris"
    words = split_words(text).tokens
    batch = encode_words(model.tokenizer, [words], model.config.max_width, model.preparer.prompt(LABELS))
    ent_id = model.tokenizer.convert_tokens_to_ids("<<ENT>>") if not model.config.is_bi_encoder else None
    if ent_id is not None:
        assert int((batch["input_ids"] == ent_id).sum()) == len(LABELS)
    assert sorted(batch["words_mask"][0][batch["words_mask"][0] > 0].tolist()) == list(range(1, len(words) + 1))
    entities = model.predict_entities(text, LABELS, threshold=0.0)
    assert entities
    assert_well_formed(text, entities, LABELS, 0.0)
    with torch.inference_mode():
        logits = model.logits([words], LABELS)
    assert logits.shape[-1] == len(LABELS)


# --------------------------------------------------------------------------------------------- long documents
def test_long_text_window_covers_the_whole_text(model):
    words = split_words(LONG_DOC)
    assert len(words) == 160 > model.config.max_len
    threshold = threshold_for(model, LONG_DOC)
    entities = model.predict_entities(LONG_DOC, LABELS, threshold=threshold)
    assert_well_formed(LONG_DOC, entities, LABELS, threshold)
    starts = [words.starts.index(e["start"]) for e in entities]
    assert max(starts) >= 120, "entities must be found in the last window too"


def test_long_text_nested_and_multi_label_through_windows(model):
    threshold = threshold_for(model, LONG_DOC)
    entities = model.predict_entities(LONG_DOC, LABELS, threshold=threshold, flat_ner=False, multi_label=True)
    assert_well_formed(LONG_DOC, entities, LABELS, threshold, flat_ner=False)
    flat = model.predict_entities(LONG_DOC, LABELS, threshold=threshold)
    assert len(entities) >= len(flat)


def test_long_text_truncate_warns_and_keeps_first_max_len_words(model):
    words = split_words(LONG_DOC)
    threshold = threshold_for(model, LONG_DOC)
    with pytest.warns(UserWarning, match="Sentence of length 160 has been truncated to 40"):
        entities = model.predict_entities(LONG_DOC, LABELS, threshold=threshold, long_text="truncate")
    assert entities
    assert_well_formed(LONG_DOC, entities, LABELS, threshold)
    assert all(e["end"] <= words.ends[39] for e in entities)
    # truncation equals predicting the first 40 words on their own
    first_40 = LONG_DOC[: words.ends[39]]
    assert_same_entities(entities, model.predict_entities(first_40, LABELS, threshold=threshold))


def test_long_text_error_mode_raises(model):
    with pytest.raises(ValueError, match="160 words"):
        model.predict_entities(LONG_DOC, LABELS, long_text="error")
    with pytest.raises(ValueError, match="text 1 "):
        model.inference([SHORT, LONG_DOC], LABELS, long_text="error")


def test_text_that_fits_is_the_same_in_every_long_text_mode(model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no truncation warning for a text that fits
        results = [model.predict_entities(SENTENCE, LABELS, threshold=0.0, long_text=mode) for mode in ("window", "truncate", "error")]
    assert results[0] and results[0] == results[1] == results[2]


def test_exactly_max_len_words_is_one_window_and_one_more_is_two(model):
    words = split_words(LONG_DOC)
    budget = model.preparer.text_token_budget(LABELS)
    assert len(model.preparer.windows(split_words(LONG_DOC[: words.ends[39]]), budget, "window", 0)) == 1
    assert len(model.preparer.windows(split_words(LONG_DOC[: words.ends[40]]), budget, "window", 0)) == 2


def test_windowed_entities_equal_predictions_on_each_window_alone(model):
    """Each window's words, run as a text of their own, give exactly what the window gave inside the document.

    The expected document result is rebuilt by hand: keep from each window's stand-alone prediction the entities
    starting in the words it owns, shift them to document offsets, and resolve overlaps greedily.
    """
    doc_words = split_words(LONG_DOC)
    threshold = threshold_for(model, LONG_DOC)
    windows = model.preparer.windows(doc_words, model.preparer.text_token_budget(LABELS), "window", 0)
    assert len(windows) > 2
    owned_by_window = []
    candidates = []
    for window in windows:
        begin, finish = doc_words.starts[window.start], doc_words.ends[window.end - 1]
        piece = LONG_DOC[begin:finish]
        piece_words = split_words(piece)
        assert piece_words.tokens == doc_words.tokens[window.start : window.end]
        owned = []
        for e in model.predict_entities(piece, LABELS, threshold=threshold):
            first = window.start + piece_words.starts.index(e["start"])
            last = window.start + piece_words.ends.index(e["end"])
            if window.own_start <= first < window.own_end:
                owned.append((begin + e["start"], begin + e["end"], e["label"], e["score"]))
                candidates.append(Span(first, last, e["label"], e["score"]))
        owned_by_window.append(owned)
    expected = [(doc_words.starts[s.start], doc_words.ends[s.end], s.label, s.score) for s in greedy_select(candidates)]

    for batch_size in (1, 8):
        entities = model.inference([LONG_DOC], LABELS, threshold=threshold, batch_size=batch_size)[0]
        assert [(e["start"], e["end"], e["label"]) for e in entities] == [x[:3] for x in expected]
        for e, x in zip(entities, expected):
            assert abs(e["score"] - x[3]) <= 1e-5
        # every reported entity is one its owning window found on its own
        for e in entities:
            first = doc_words.starts.index(e["start"])
            (owner,) = [i for i, w in enumerate(windows) if w.own_start <= first < w.own_end]
            assert any((s, t, lab) == (e["start"], e["end"], e["label"]) and abs(sc - e["score"]) <= 1e-5
                       for s, t, lab, sc in owned_by_window[owner])


def test_windowing_is_deterministic(model):
    threshold = threshold_for(model, LONG_DOC)
    a = model.predict_entities(LONG_DOC, LABELS, threshold=threshold)
    b = model.predict_entities(LONG_DOC, LABELS, threshold=threshold)
    assert a == b


def test_word_longer_than_the_token_budget_gets_a_window_of_its_own(model):
    giant = "-".join(["x"] * 400)  # one word of 799 subwords
    text = f"Obama {giant} Paris"
    words = split_words(text)
    assert words.tokens == ["Obama", giant, "Paris"]
    windows = model.preparer.windows(words, model.preparer.text_token_budget(LABELS), "window", 0)
    assert [(w.start, w.end, w.own_start, w.own_end) for w in windows] == [(0, 1, 0, 1), (1, 2, 1, 2), (2, 3, 2, 3)]
    # at threshold 0 every single-word window keeps its only span
    entities = model.predict_entities(text, LABELS, threshold=0.0)
    assert [(e["start"], e["end"]) for e in entities] == [(0, 5), (6, 6 + len(giant)), (7 + len(giant), len(text))]
    assert_well_formed(text, entities, LABELS, 0.0)


def test_truncation_warning_points_at_the_callers_line(uni):
    """BUG: the warning is attributed to torch/utils/_contextlib.py (stacklevel=4 in GLiNER._windows_for does not
    count the @torch.inference_mode wrapper frame, nor predict_entities' extra frame), not to the user's call."""
    with pytest.warns(UserWarning, match="truncated") as record:
        uni.inference([LONG_DOC], LABELS, long_text="truncate")
    assert record[0].filename == __file__
    with pytest.warns(UserWarning, match="truncated") as record:
        uni.predict_entities(LONG_DOC, LABELS, long_text="truncate")
    assert record[0].filename == __file__


# --------------------------------------------------------------------------------------------- token budget
MANY_LABELS = [f"kind of thing number {i}" for i in range(60)]
HEAVY_TEXT = " ".join(["interleukin-6-mediated hyperphosphorylation"] * 16)  # 32 words, many subwords each


def test_prompt_of_many_labels_shrinks_the_text_token_budget(uni):
    tok = uni.tokenizer
    prompt = build_prompt(MANY_LABELS, "<<ENT>>", "<<SEP>>")
    prompt_tokens = len(tok(prompt, is_split_into_words=True, add_special_tokens=False)["input_ids"])
    assert uni.preparer.text_token_budget(MANY_LABELS) == tok.model_max_length - 2 - prompt_tokens
    assert uni.preparer.text_token_budget(MANY_LABELS) < uni.preparer.text_token_budget(LABELS)


def test_many_labels_window_a_text_that_fits_in_max_len_words(uni):
    words = split_words(HEAVY_TEXT)
    assert len(words) <= uni.config.max_len
    budget = uni.preparer.text_token_budget(MANY_LABELS)
    counts = [len(uni.tokenizer([w], is_split_into_words=True, add_special_tokens=False)["input_ids"]) for w in words.tokens]
    assert sum(counts) > budget  # the text alone would not fit beside the prompt
    assert len(uni.preparer.windows(words, uni.preparer.text_token_budget(LABELS), "window", 0)) == 1
    windows = uni.preparer.windows(words, budget, "window", 0)
    assert len(windows) > 1
    prompt = uni.preparer.prompt(MANY_LABELS)
    for w in windows:
        assert sum(counts[w.start : w.end]) <= budget
        batch = encode_words(uni.tokenizer, [words.tokens[w.start : w.end]], uni.config.max_width, prompt)
        assert batch["input_ids"].shape[1] <= uni.tokenizer.model_max_length
        # no text word lost its first subword to the tokenizer's truncation
        assert batch["words_mask"].max() == w.end - w.start
        assert int((batch["input_ids"] == uni.config.class_token_index).sum()) == len(MANY_LABELS)
    entities = uni.predict_entities(HEAVY_TEXT, MANY_LABELS, threshold=0.0)
    assert_well_formed(HEAVY_TEXT, entities, MANY_LABELS, 0.0)
    assert entities[-1]["end"] == len(HEAVY_TEXT) or entities[-1]["start"] > len(HEAVY_TEXT) // 2
    with pytest.raises(ValueError, match="tokens"):
        uni.predict_entities(HEAVY_TEXT, MANY_LABELS, long_text="error")


def test_text_filling_the_token_budget_exactly_is_one_window(uni):
    budget = uni.preparer.text_token_budget(MANY_LABELS)
    # "a" is one token: a text of `budget` one-token words fills the encoder exactly... but max_len caps words,
    # so use words of known size: n heavy words then one-token words to land exactly on the budget
    heavy = "hyperphosphorylation"
    heavy_tokens = len(uni.tokenizer([heavy], is_split_into_words=True, add_special_tokens=False)["input_ids"])
    n_heavy = budget // heavy_tokens
    filler = budget - n_heavy * heavy_tokens
    assert n_heavy + filler <= uni.config.max_len
    exact = " ".join([heavy] * n_heavy + ["a"] * filler)
    words = split_words(exact)
    assert len(uni.preparer.windows(words, budget, "window", 0)) == 1
    batch = encode_words(uni.tokenizer, [words.tokens], uni.config.max_width, uni.preparer.prompt(MANY_LABELS))
    assert batch["input_ids"].shape[1] == uni.tokenizer.model_max_length
    assert batch["words_mask"].max() == len(words)
    assert len(uni.preparer.windows(split_words(exact + " a"), budget, "window", 0)) == 2


def test_bi_encoder_text_budget_ignores_labels(bi):
    assert bi.preparer.text_token_budget(MANY_LABELS) == bi.preparer.text_token_budget(LABELS) == bi.tokenizer.model_max_length - 2
    assert len(bi.preparer.windows(split_words(HEAVY_TEXT), bi.preparer.text_token_budget(MANY_LABELS), "window", 0)) == 1
    entities = bi.predict_entities(HEAVY_TEXT, MANY_LABELS, threshold=0.0)
    assert_well_formed(HEAVY_TEXT, entities, MANY_LABELS, 0.0)


def test_prompt_longer_than_the_encoder_raises_clearly(uni):
    labels = [f"label number {i} from a rather long biomedical ontology" for i in range(100)]
    assert uni.preparer.text_token_budget(labels) < 1
    with pytest.raises(ValueError, match="label prompt alone fills the encoder window"):
        uni.predict_entities(SHORT, labels)
    with pytest.raises(ValueError):
        uni.predict_entities(SHORT, labels, long_text="error")


# --------------------------------------------------------------------------------------------- malformed input
@pytest.mark.parametrize("text", ["", " ", "\n\t  \r\n", "\u3000"])
def test_empty_or_blank_text_gives_no_entities(model, text):
    assert model.predict_entities(text, LABELS, threshold=0.0) == []


def test_blank_texts_alongside_others_keep_positions(model):
    alone = model.inference([SHORT, SENTENCE], LABELS, threshold=0.0)
    mixed = model.inference(["", SHORT, "   ", SENTENCE, "\n"], LABELS, threshold=0.0)
    assert len(mixed) == 5 and mixed[0] == mixed[2] == mixed[4] == []
    assert alone[0] and alone[1]
    assert_same_entities(mixed[1], alone[0])
    assert_same_entities(mixed[3], alone[1])
    assert model.inference(["", " "], LABELS) == [[], []]
    assert model.inference([], LABELS) == []


@pytest.mark.parametrize("labels", [[], (), ["person", ""], ["  "], ["person", "\t\n"], "person", ["person", None], None])
def test_bad_labels_raise(model, labels):
    with pytest.raises(ValueError):
        model.predict_entities(SHORT, labels)


@pytest.mark.parametrize("label", ["<<ENT>>", "my <<ENT>> label", "<<SEP>>", "a<<SEP>>"])
def test_labels_with_prompt_tokens_raise(model, label):
    with pytest.raises(ValueError, match="reserved"):
        model.inference([SHORT], ["person", label])


def test_duplicate_labels_are_removed_keeping_first_order(model):
    plain = model.inference([SHORT, SENTENCE], ["location", "person"], threshold=0.0)
    duplicated = model.inference([SHORT, SENTENCE], ["location", "person", "location", "person", "location"], threshold=0.0)
    assert plain == duplicated
    # order matters to the uni-encoder's prompt, so dedup must keep first occurrences, not sort
    swapped = model.inference([SHORT, SENTENCE], ["person", "location", "person"], threshold=0.0)
    reference = model.inference([SHORT, SENTENCE], ["person", "location"], threshold=0.0)
    assert swapped == reference
    if not model.config.is_bi_encoder:  # the uni-encoder's prompt is positional: a sorted dedup would show
        assert model.inference([SHORT, SENTENCE], ["location", "person"], threshold=0.0) != reference


@pytest.mark.parametrize(
    "texts, index",
    [([None], 0), ([5], 0), ([b"Obama"], 0), ([SHORT, None], 1), ([SHORT, SENTENCE, b"x"], 2), ([SHORT, ["nested"]], 1)],
)
def test_non_string_texts_raise_naming_the_index(model, texts, index):
    with pytest.raises(ValueError, match=f"text {index}"):
        model.inference(texts, LABELS)


@pytest.mark.parametrize("texts", [None, 5, 3.5, b"bytes", {"a": 1}])
def test_non_sequence_texts_raise(model, texts):
    with pytest.raises(ValueError):
        model.inference(texts, LABELS)


@pytest.mark.parametrize("text", [None, 5, b"Obama"])
def test_predict_entities_non_string_raises(model, text):
    with pytest.raises(ValueError, match="text 0"):
        model.predict_entities(text, LABELS)


def test_single_string_works_like_a_list_of_one(model):
    as_str = model.inference(SHORT, LABELS, threshold=0.0)
    as_list = model.inference([SHORT], LABELS, threshold=0.0)
    assert len(as_str) == 1 and as_str[0]
    assert as_str == as_list == [model.predict_entities(SHORT, LABELS, threshold=0.0)]
    assert model.inference((SHORT,), LABELS, threshold=0.0) == as_list


@pytest.mark.parametrize("threshold", [-0.01, 1.01, 2, float("nan"), float("inf"), "0.5", None])
def test_threshold_outside_unit_interval_raises(model, threshold):
    with pytest.raises(ValueError, match="threshold"):
        model.inference([SHORT], LABELS, threshold=threshold)


def test_threshold_bounds_are_allowed(model):
    assert model.predict_entities(SHORT, LABELS, threshold=1.0) == []
    everything = model.predict_entities(SHORT, LABELS, threshold=0.0)
    assert everything and all(e["score"] > 0.0 for e in everything)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, "8", None])
def test_bad_batch_size_raises(model, batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        model.inference([SHORT], LABELS, batch_size=batch_size)


@pytest.mark.parametrize("mode", ["bogus", "", "Window", None])
def test_bad_long_text_mode_raises(model, mode):
    with pytest.raises(ValueError, match="long_text"):
        model.inference([SHORT], LABELS, long_text=mode)


def test_validation_happens_before_any_work_even_for_empty_texts(model):
    with pytest.raises(ValueError):
        model.inference([""], [])
    with pytest.raises(ValueError):
        model.inference([""], LABELS, threshold=5)


# --------------------------------------------------------------------------------------------- batching and order
TEXTS = [
    SHORT,
    "Obama .",
    SENTENCE,
    "The IL-6-mediated response in U.S. patients was studied at the Mayo Clinic in Rochester , Minnesota .",
    "东京大学 hosted Marie Curie 😀 in 1911 .",
    LONG_DOC,
    "Paris",
]


def test_results_do_not_depend_on_batch_size(model):
    threshold = threshold_for(model, SENTENCE, quantile=0.8)
    reference = model.inference(TEXTS, LABELS, threshold=threshold, batch_size=1)
    assert sum(map(len, reference)) > 10
    for batch_size in (2, 3, 8, 64):
        results = model.inference(TEXTS, LABELS, threshold=threshold, batch_size=batch_size)
        for text, a, b in zip(TEXTS, results, reference):
            assert_well_formed(text, a, LABELS, threshold)
            assert_same_entities(a, b)


def test_results_do_not_depend_on_text_order(model):
    threshold = threshold_for(model, SENTENCE, quantile=0.8)
    forward = model.inference(TEXTS, LABELS, threshold=threshold, batch_size=4)
    order = [5, 2, 0, 6, 4, 1, 3]
    shuffled = model.inference([TEXTS[i] for i in order], LABELS, threshold=threshold, batch_size=4)
    for position, i in enumerate(order):
        assert_same_entities(shuffled[position], forward[i])
    alone = [model.predict_entities(text, LABELS, threshold=threshold) for text in TEXTS]
    for a, b in zip(alone, forward):
        assert_same_entities(a, b)


# --------------------------------------------------------------------------------------------- encode_labels
def test_encode_labels_needs_a_bi_encoder(uni):
    with pytest.raises(ValueError, match="bi-encoder"):
        uni.encode_labels(LABELS)


def test_encode_labels_on_bi_encoder(bi):
    vectors = bi.encode_labels(["person", "location", "person", "organization"])
    assert isinstance(vectors, torch.Tensor)
    assert vectors.shape == (3, bi.config.hidden_size)
    assert torch.isfinite(vectors).all()
    alone = bi.encode_labels(["location"])
    assert alone.shape == (1, bi.config.hidden_size)
    assert torch.allclose(vectors[1], alone[0], atol=1e-5)
    with pytest.raises(ValueError):
        bi.encode_labels([])
    with pytest.raises(ValueError):
        bi.encode_labels(["person", " "])


def test_predict_word_spans_matches_text_prediction(model):
    words = "Cisplatin induced nephrotoxicity in three patients with ovarian cancer .".split()
    text = " ".join(words)
    by_words = model.predict_word_spans([words], LABELS, threshold=0.0)[0]
    by_text = model.predict_entities(text, LABELS, threshold=0.0)
    assert [(s.label, " ".join(words[s.start : s.end + 1])) for s in by_words] == [(e["label"], e["text"]) for e in by_text]
    assert [s.score for s in by_words] == [e["score"] for e in by_text]
    with pytest.raises(ValueError, match="word list 0"):
        model.predict_word_spans(["not a list"], LABELS)
