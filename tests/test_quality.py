"""The eight quality filters: each with a passing and a failing text, thresholds from config, per-source overrides."""
from pathlib import Path

import pytest

from ray_jobs.runtime.job_config import load_config
from synth.quality import QualityConfig, QualityThresholds, first_failure, measure_text

REPO = Path(__file__).resolve().parents[1]

GOOD = (
    "Cisplatin is widely used in the treatment of solid tumours in children and adults. "
    "Its use is limited by acute kidney injury, which develops in about a third of the patients. "
    "We studied the urine of ninety children who received the drug for the first time. "
    "Magnesium loss was seen in most of them within two days of the first dose. "
    "The loss was larger when the dose was given as a short infusion than as a long one. "
    "Supplements given before the infusion reduced the loss by about one half. "
    "These findings suggest that magnesium should be monitored from the first cycle on. "
    "A randomised trial of routine supplements is now under way in three centres."
)
GOOD_SENTENCES = [sentence if sentence.endswith(".") else sentence + "." for sentence in GOOD.split(". ")]
DEFAULTS = QualityThresholds()


def test_good_text_passes_every_filter():
    assert first_failure(GOOD, DEFAULTS) is None


def _sentences(words_per_sentence: list[list[str]]) -> str:
    return " ".join(" ".join(words).capitalize() + "." for words in words_per_sentence)


@pytest.mark.parametrize("measure, text", [
    ("special_char_word_ratio", " ".join(word if index % 2 else "*** |" for index, word in enumerate(GOOD.split()))),
    ("sentence_count", "Cisplatin is widely used in the treatment of solid tumours in children. It harms the kidneys of many of them."),
    ("avg_words_per_sentence", " ".join(["The drug was given to them."] * 8)),
    ("capitalisation_ratio", GOOD.upper()),
    ("lexical_diversity", _sentences([["cell"] * 12 for _ in range(8)])),
    ("stopword_ratio", _sentences([[f"gene{index}x{sentence}" for index in range(12)] for sentence in range(8)])),
    ("repetition_score", " ".join(GOOD_SENTENCES[:1] * 3 + GOOD_SENTENCES[1:5])),
    ("newline_ratio", GOOD.replace(" the ", "\nthe ")),
])
def test_each_filter_rejects_its_failing_text(measure, text):
    failure = first_failure(text, DEFAULTS)
    assert failure is not None and failure.measure == measure, (failure, measure_text(text))
    threshold_name = {"special_char_word_ratio": "max_special_char_word_ratio", "sentence_count": "min_sentences",
                      "avg_words_per_sentence": "min_avg_words_per_sentence", "capitalisation_ratio": "max_capitalisation_ratio",
                      "lexical_diversity": "min_lexical_diversity", "stopword_ratio": "min_stopword_ratio",
                      "repetition_score": "max_repetition", "newline_ratio": "max_newline_ratio"}[measure]
    assert failure.threshold == getattr(DEFAULTS, threshold_name)
    assert failure.reason.startswith(measure) and f"{failure.threshold:g}" in failure.reason
    relaxed = DEFAULTS.model_copy(update={threshold_name: 0 if threshold_name.startswith("min") else 100})
    assert first_failure(text, relaxed) is None or first_failure(text, relaxed).measure != measure


def test_measures_follow_their_definitions():
    text = "The cell. The CELL grew, *** grew!\nNo."
    measures = measure_text(text)
    # words: The cell. The CELL grew, *** grew! No.  -> 8 words, "***" special; cores skip "***".
    assert measures.special_char_word_ratio == pytest.approx(1 / 8)
    assert measures.sentence_count == 3
    assert measures.avg_words_per_sentence == pytest.approx(8 / 3)
    letters = sum(character.isalpha() for character in text)
    assert measures.capitalisation_ratio == pytest.approx(sum(character.isupper() for character in text) / letters)
    # cores: the cell the cell grew grew no -> 4 distinct of 7; stopwords: the, the, no
    assert measures.lexical_diversity == pytest.approx(4 / 7)
    assert measures.stopword_ratio == pytest.approx(3 / 7)
    # 3-grams: (the cell the) (cell the cell) (the cell grew) (cell grew grew) (grew grew no): none repeats
    assert measures.repetition_score == 0.0
    assert measures.newline_ratio == pytest.approx(1 / 3)
    assert measure_text("the cell the cell the cell").repetition_score == pytest.approx(1 - 2 / 4)


def test_empty_text_fails_on_sentences_not_with_an_error():
    failure = first_failure("", DEFAULTS)
    assert failure.measure == "sentence_count" and failure.value == 0


def test_first_failing_filter_in_order_is_the_reason():
    short_and_shouting = "CISPLATIN HARMS KIDNEYS IN CHILDREN. IT DOES."
    assert first_failure(short_and_shouting, DEFAULTS).measure == "sentence_count"


def test_thresholds_and_per_source_overrides_come_from_config(tmp_path):
    path = tmp_path / "quality.yaml"
    path.write_text("min_sentences: 2\nmax_newline_ratio: 0.3\nper_source:\n"
                    "  drug_labels: {max_newline_ratio: 0.5}\n  clinical_trials: {max_newline_ratio: 0.15}\n")
    config = load_config(QualityConfig, path)
    # 8 sentences, 3 newlines: ratio 0.375
    text = GOOD.replace("children and adults. ", "children and adults.\n").replace("the drug ", "the\ndrug ").replace("under way", "under\nway")
    assert measure_text(text).newline_ratio == pytest.approx(3 / 8)
    assert first_failure(text, config.for_source("pubmed")).reason == "newline_ratio > 0.3"
    assert first_failure(text, config.for_source("drug_labels")) is None
    assert first_failure(text, config.for_source("clinical_trials")).reason == "newline_ratio > 0.15"
    assert config.for_source("drug_labels").min_sentences == 2  # untouched thresholds are the section's


def test_override_of_an_unknown_threshold_is_an_error(tmp_path):
    path = tmp_path / "quality.yaml"
    path.write_text("per_source:\n  drug_labels: {max_newlines: 0.5}\n")
    with pytest.raises(ValueError, match="max_newlines"):
        load_config(QualityConfig, path)


def test_shipped_biomed_config_has_the_papers_newline_ratios():
    from ray_jobs.curate import CurateConfig

    config = load_config(CurateConfig, REPO / "configs/curate/biomed_sources.yaml")
    ratios = {source: config.quality.for_source(source).max_newline_ratio for source in ("pubmed", "clinical_trials", "patents", "drug_labels")}
    assert ratios == {"pubmed": 0.30, "clinical_trials": 0.15, "patents": 0.15, "drug_labels": 0.5}
    assert config.quality.for_source("pubmed") == QualityThresholds()
