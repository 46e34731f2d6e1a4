"""Sentence splitting and passage packing: boundaries, abbreviations, decimals, limits, empty and huge documents."""
import time

import pytest

from synth.passages import paragraph_spans, passage_id, sentence_spans, split_passages, split_sentences


def test_sentences_end_at_terminators_followed_by_space_and_not_lowercase():
    text = "Cisplatin is toxic. Does it harm kidneys? Yes! It does (see below). \"Quoted end.\" Next one"
    assert split_sentences(text) == [
        "Cisplatin is toxic.", "Does it harm kidneys?", "Yes!", "It does (see below).", "\"Quoted end.\"", "Next one",
    ]


@pytest.mark.parametrize("text", [
    "Drugs (e.g. cisplatin) were given. Then patients were seen.",
    "As shown by Smith et al. (2005), toxicity rose. Then patients were seen.",
    "Toxicity rose (Fig. 2A) in all. Then patients were seen.",
    "Toxicity rose (Figs. 2 and 3) in all. Then patients were seen.",
    "Cisplatin vs. carboplatin was tested. Then patients were seen.",
    "The dose was 3.5 mg/kg, p < 0.05 in all. Then patients were seen.",
    "Infection with E. coli and S. aureus grew. Then patients were seen.",
    "Dr. Smith treated them, i.e. all of them. Then patients were seen.",
    "It was approved by the U.S. Food and Drug Administration. Then patients were seen.",
])
def test_abbreviations_decimals_and_species_do_not_end_sentences(text):
    sentences = split_sentences(text)
    assert len(sentences) == 2, sentences
    assert sentences[1] == "Then patients were seen."


def test_unknown_abbreviation_before_capital_ends_a_sentence_but_not_before_lowercase():
    assert len(split_sentences("It was measured at approx. the same time. Next.")) == 2
    assert len(split_sentences("Samples came from the lab Inc. Next they were frozen.")) == 1  # "Inc." is listed
    assert len(split_sentences("Samples came from the Lab Corp. Next they were frozen.")) == 1
    assert len(split_sentences("Samples were frozen etc. Next they were thawed.")) == 2  # "etc." often ends one


def test_blank_lines_are_paragraph_and_sentence_boundaries_single_newlines_are_not():
    text = "First paragraph has no period\n\nSecond one\ncontinues here. And ends.\n \n\nThird"
    assert [text[start:end] for start, end in paragraph_spans(text)] == [
        "First paragraph has no period", "Second one\ncontinues here. And ends.", "Third",
    ]
    assert split_sentences(text) == ["First paragraph has no period", "Second one\ncontinues here.", "And ends.", "Third"]


def test_spans_are_exact_slices_of_the_text():
    text = "  One sentence here.   Two sentences there!\n\n  Three.  "
    for start, end in sentence_spans(text):
        assert text[start:end] == text[start:end].strip()
    assert [passage.text for passage in split_passages(text)] == [text.strip()]


def test_paragraphs_are_packed_whole_when_they_fit():
    paragraphs = ["Alpha beta gamma delta. Epsilon zeta eta.", "Theta iota kappa. Lambda mu nu xi.", "Omicron pi rho sigma tau."]
    text = "\n\n".join(paragraphs)
    passages = split_passages(text, max_words=15)
    assert [passage.text for passage in passages] == [paragraphs[0] + "\n\n" + paragraphs[1], paragraphs[2]]
    assert [passage.index for passage in passages] == [0, 1]
    assert all(text[passage.start:passage.end] == passage.text for passage in passages)


def test_long_paragraph_is_split_at_sentences_never_inside_one_that_fits():
    sentences = [f"Sentence number {index} has exactly seven words." for index in range(10)]
    passages = split_passages(" ".join(sentences), max_words=20)
    assert [len(passage.text.split()) for passage in passages] == [14, 14, 14, 14, 14]
    assert all(passage.text.endswith("words.") for passage in passages)


def test_sentence_longer_than_the_limit_is_cut_at_words():
    text = " ".join(f"w{index}" for index in range(25)) + ". Short one."
    passages = split_passages(text, max_words=10)
    assert [len(passage.text.split()) for passage in passages] == [10, 10, 7]
    assert passages[-1].text == "w20 w21 w22 w23 w24. Short one."


def test_max_chars_is_respected_even_for_a_word_without_spaces():
    text = "Normal start. " + "x" * 2500 + " tail."
    passages = split_passages(text, max_words=100, max_chars=1000)
    assert all(len(passage.text) <= 1000 for passage in passages)
    assert "".join(passage.text for passage in passages).replace(" ", "") == text.replace(" ", "")


def test_empty_and_whitespace_documents_have_no_passages():
    assert split_passages("") == []
    assert split_passages(" \n\n \t ") == []
    assert split_sentences("") == []


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        split_passages("text", max_words=0)


def test_huge_document_without_sentence_punctuation_is_split_quickly():
    text = "lorem ipsum dolor sit amet " * 200_000  # 5.4 MB, one million words, no terminator
    started = time.perf_counter()
    passages = split_passages(text, max_words=256, max_chars=4000)
    seconds = time.perf_counter() - started
    assert len(passages) == -(-1_000_000 // 256)
    assert max(len(passage.text.split()) for passage in passages) == 256
    assert sum(len(passage.text.split()) for passage in passages) == 1_000_000
    assert seconds < 20, f"splitting took {seconds:.1f}s"


def test_huge_document_of_one_token_is_cut_by_characters():
    passages = split_passages("x" * 5_000_000, max_words=256, max_chars=4000)
    assert len(passages) == 1250 and {len(passage.text) for passage in passages} == {4000}


def test_passage_ids_are_stable():
    assert passage_id("PMID123", 0) == "PMID123#p0"
    assert passage_id("doc", 12) == "doc#p12"
