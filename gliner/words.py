"""Word splitting with character offsets, as upstream's default `whitespace` splitter does it."""
from __future__ import annotations

import re
from dataclasses import dataclass

# A word is a run of word characters joined by single '-' or '_', or any other single non-space character.
WORD_PATTERN = re.compile(r"\w+(?:[-_]\w+)*|\S")


@dataclass(frozen=True)
class Words:
    tokens: list[str]
    starts: list[int]  # code-point offset of each word's first character
    ends: list[int]  # code-point offset just past each word's last character

    def __len__(self) -> int:
        return len(self.tokens)


def split_words(text: str) -> Words:
    matches = list(WORD_PATTERN.finditer(text))
    return Words([m.group() for m in matches], [m.start() for m in matches], [m.end() for m in matches])
