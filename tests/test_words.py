"""Word splitting: upstream's `\\w+(?:[-_]\\w+)*|\\S` regex with Python code-point offsets (reference 1.2)."""
import pytest

from gliner.inputs import Words, split_words


def split(text: str) -> list[tuple[str, int, int]]:
    words = split_words(text)
    return list(zip(words.tokens, words.starts, words.ends))


def assert_offsets_consistent(text: str, words: Words) -> None:
    assert len(words.tokens) == len(words.starts) == len(words.ends) == len(words)
    previous_end = 0
    for token, start, end in zip(words.tokens, words.starts, words.ends):
        assert text[start:end] == token
        assert start >= previous_end and end > start
        assert text[previous_end:start].strip() == "" or previous_end == start  # only whitespace is skipped
        previous_end = end
    assert text[previous_end:].strip() == ""


def test_punctuation_is_split_off_abbreviations_and_contractions():
    assert split_words("U.S.").tokens == ["U", ".", "S", "."]
    assert split_words("don't").tokens == ["don", "'", "t"]
    assert split("U.S. don't") == [("U", 0, 1), (".", 1, 2), ("S", 2, 3), (".", 3, 4), ("don", 5, 8), ("'", 8, 9), ("t", 9, 10)]


@pytest.mark.parametrize("word", ["e-mail", "snake_case", "IL-6-mediated", "__init__", "COVID-19", "state-of-the-art"])
def test_hyphen_and_underscore_joined_words_stay_whole(word):
    assert split(f"see {word} now") == [("see", 0, 3), (word, 4, 4 + len(word)), ("now", 5 + len(word), 8 + len(word))]


def test_doubled_or_trailing_hyphens_split():
    assert split_words("x--y").tokens == ["x", "-", "-", "y"]
    assert split_words("-z-").tokens == ["-", "z", "-"]
    assert split_words("well- known").tokens == ["well", "-", "known"]


def test_whitespace_of_every_kind_separates_and_is_skipped():
    text = "a\tb\nc  d\r\ne\u00a0f\u2003g\u3000h "
    assert split(text) == [("a", 0, 1), ("b", 2, 3), ("c", 4, 5), ("d", 7, 8), ("e", 10, 11), ("f", 12, 13), ("g", 14, 15), ("h", 16, 17)]


def test_empty_and_whitespace_only_text_has_no_words():
    for text in ("", " ", "\t\n \r\n", "\u00a0\u3000"):
        words = split_words(text)
        assert len(words) == 0 and words.tokens == [] and words.starts == [] and words.ends == []


def test_emoji_offsets_are_code_points():
    # 😀 is one code point (two UTF-16 units, four UTF-8 bytes); ❤️ is U+2764 plus the variation selector U+FE0F.
    text = "I 😀 NY ❤️x"
    assert split(text) == [("I", 0, 1), ("😀", 2, 3), ("NY", 4, 6), ("❤", 7, 8), ("\ufe0f", 8, 9), ("x", 9, 10)]


def test_cjk_run_without_spaces_is_one_word():
    text = "我在东京大学 studied"
    assert split(text) == [("我在东京大学", 0, 6), ("studied", 7, 14)]


def test_combining_marks_follow_python_word_class():
    # Precomposed é is a word character; a combining acute (U+0301) is not, so it becomes a word of its own.
    assert split("café ok") == [("café", 0, 4), ("ok", 5, 7)]
    assert split("cafe\u0301 ok") == [("cafe", 0, 4), ("\u0301", 4, 5), ("ok", 6, 8)]


def test_offsets_after_astral_characters_are_not_utf16():
    text = "𝐀𝐁 Obama"  # two mathematical bold letters (astral, \w) then a name
    assert split(text) == [("𝐀𝐁", 0, 2), ("Obama", 3, 8)]


def test_zero_width_space_is_its_own_word():
    assert split("a \u200b b") == [("a", 0, 1), ("\u200b", 2, 3), ("b", 4, 5)]


def test_prompt_tokens_in_text_are_plain_punctuation_words():
    assert split_words("<<ENT>> x <<SEP>>").tokens == ["<", "<", "ENT", ">", ">", "x", "<", "<", "SEP", ">", ">"]


@pytest.mark.parametrize(
    "text",
    [
        "Barack Obama visited Paris, France in 2009 (again).",
        "U.S.-based e-mail: john_doe@example.com; IL-6-mediated  \t signalling\n\n'quoted'",
        "I 😀 NY ❤️ 我在东京大学 cafe\u0301 \u200b नमस्ते दुनिया 𝐀𝐁",
        "  leading and trailing spaces  ",
        "$100.50 — 3½ «guillemets» ¿qué?",
    ],
)
def test_every_word_is_its_text_slice(text):
    words = split_words(text)
    assert len(words) > 0
    assert_offsets_consistent(text, words)
