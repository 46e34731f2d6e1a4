"""The GLiNER-biomed passage quality filters: eight measures, thresholds from config with per-source overrides.

Definitions (ours; the paper names the measures and thresholds but not their exact formulas). "Words" are the
whitespace-separated tokens of the text; a word's *core* is the word lowercased with leading and trailing
punctuation stripped (`string.punctuation` plus typographic quotes and dashes); words whose core is empty count
as words but have no core.

  special_char_word_ratio  words in which letters and digits are fewer than half of the characters ("***",
                           "|", "--->", "<br>"), over all words. 0 for no words.
  sentence_count           sentences by `synth.passages.sentence_spans` (documented rule-based splitter).
  avg_words_per_sentence   words / sentences (0 when there are no sentences).
  capitalisation_ratio     uppercase letters / letters (0 with no letters); 1.0 for text in capitals.
  lexical_diversity        distinct cores / cores (type-token ratio). 0 with no cores.
  stopword_ratio           cores that are in `STOPWORDS` / cores. 0 with no cores.
  repetition_score         1 - distinct core 3-grams / core 3-grams (0 with fewer than 3 cores): the share of
                           3-grams that repeat an earlier one; a sentence written twice raises it.
  newline_ratio            newline characters / sentences (newlines when there is no sentence).

A text passes when every measure is on the right side of its threshold; `first_failure` checks them in the order
above and returns the first that fails, so each rejection has exactly one reason.
"""
from __future__ import annotations

import string
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from .passages import sentence_spans

# A small English stopword list (function words), written for this filter.
STOPWORDS = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between both
but by can could did do does doing down during each either few for from further had has have having he her here
hers herself him himself his how however i if in into is it its itself just may me might more most must my myself
neither no nor not now of off on once only or other our ours ourselves out over own same shall she should so some
such than that the their theirs them themselves then there these they this those through thus to too under until
up upon very was we were what when where whether which while who whom whose why will with within without would
yet you your yours yourself yourselves
""".split())

_STRIP = string.punctuation + "\u201c\u201d\u2018\u2019\u2013\u2014\u2026\u00ab\u00bb"


class QualityThresholds(BaseModel):
    """Thresholds of the eight filters; defaults are the paper's (PubMed newline ratio)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_special_char_word_ratio: float = Field(0.3, ge=0)
    min_sentences: int = Field(6, ge=0)
    min_avg_words_per_sentence: float = Field(10.0, ge=0)
    max_capitalisation_ratio: float = Field(0.2, ge=0)
    min_lexical_diversity: float = Field(0.1, ge=0)
    min_stopword_ratio: float = Field(0.05, ge=0)
    max_repetition: float = Field(0.2, ge=0)
    max_newline_ratio: float = Field(0.30, ge=0)


class QualityOverride(BaseModel):
    """Per-source changes to some thresholds; unknown names are errors."""

    model_config = ConfigDict(extra="forbid")

    max_special_char_word_ratio: float | None = None
    min_sentences: int | None = None
    min_avg_words_per_sentence: float | None = None
    max_capitalisation_ratio: float | None = None
    min_lexical_diversity: float | None = None
    min_stopword_ratio: float | None = None
    max_repetition: float | None = None
    max_newline_ratio: float | None = None


class QualityConfig(QualityThresholds):
    """`quality:` in a curate config: the default thresholds, `enabled`, and `per_source.<source>.<threshold>`."""

    enabled: bool = True
    per_source: dict[str, QualityOverride] = {}

    def for_source(self, source: str) -> QualityThresholds:
        base = self.model_dump(exclude={"enabled", "per_source"})
        override = self.per_source.get(source)
        if override is not None:
            base.update(override.model_dump(exclude_none=True))
        return QualityThresholds(**base)


@dataclass(frozen=True)
class QualityMeasures:
    special_char_word_ratio: float
    sentence_count: int
    avg_words_per_sentence: float
    capitalisation_ratio: float
    lexical_diversity: float
    stopword_ratio: float
    repetition_score: float
    newline_ratio: float


@dataclass(frozen=True)
class QualityFailure:
    measure: str
    value: float
    comparison: str  # "<" (below a minimum) or ">" (above a maximum)
    threshold: float

    @property
    def reason(self) -> str:
        """Stable per threshold (no measured value), so rejections can be counted by reason."""
        return f"{self.measure} {self.comparison} {self.threshold:g}"

    @property
    def detail(self) -> str:
        return f"{self.measure}={self.value:.4g}"


# (measure, threshold field, comparison that fails) in the order they are checked.
CHECKS = (
    ("special_char_word_ratio", "max_special_char_word_ratio", ">"),
    ("sentence_count", "min_sentences", "<"),
    ("avg_words_per_sentence", "min_avg_words_per_sentence", "<"),
    ("capitalisation_ratio", "max_capitalisation_ratio", ">"),
    ("lexical_diversity", "min_lexical_diversity", "<"),
    ("stopword_ratio", "min_stopword_ratio", "<"),
    ("repetition_score", "max_repetition", ">"),
    ("newline_ratio", "max_newline_ratio", ">"),
)


def first_failure(text: str, thresholds: QualityThresholds) -> QualityFailure | None:
    """The first filter `text` fails, or None when it passes all of them."""
    measures = measure_text(text)
    for measure, threshold_name, comparison in CHECKS:
        value, threshold = getattr(measures, measure), getattr(thresholds, threshold_name)
        if (value < threshold) if comparison == "<" else (value > threshold):
            return QualityFailure(measure, value, comparison, threshold)
    return None


def measure_text(text: str) -> QualityMeasures:
    words = text.split()
    cores = [core for word in words if (core := word.strip(_STRIP).lower())]
    sentences = len(sentence_spans(text))
    newlines = text.count("\n")
    return QualityMeasures(
        special_char_word_ratio=_ratio(sum(_is_special(word) for word in words), len(words)),
        sentence_count=sentences,
        avg_words_per_sentence=_ratio(len(words), sentences),
        capitalisation_ratio=capitalisation_ratio(text),
        lexical_diversity=_ratio(len(set(cores)), len(cores)),
        stopword_ratio=_ratio(sum(core in STOPWORDS for core in cores), len(cores)),
        repetition_score=repetition_score(cores),
        newline_ratio=newlines / sentences if sentences else float(newlines),
    )


def capitalisation_ratio(text: str) -> float:
    # str.isupper is true only for cased letters, so every uppercase character is also counted as a letter.
    return _ratio(sum(map(str.isupper, text)), sum(map(str.isalpha, text)))


def repetition_score(cores: list[str], n: int = 3) -> float:
    grams = [tuple(cores[index:index + n]) for index in range(len(cores) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def _is_special(word: str) -> bool:
    alphanumeric = sum(character.isalnum() for character in word)
    return 2 * alphanumeric < len(word)


def _ratio(part: int, whole: int) -> float:
    return part / whole if whole else 0.0
