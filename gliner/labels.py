"""Checking and normalising the entity labels a caller asks for."""
from __future__ import annotations

from collections.abc import Sequence


def normalize_labels(labels: Sequence[str] | str, reserved_tokens: Sequence[str] = ()) -> list[str]:
    """Labels in first-seen order without duplicates; a clear ValueError for anything that cannot be a label."""
    if isinstance(labels, str):
        raise ValueError("labels must be a list of strings, not a single string")
    if labels is None or len(labels) == 0:
        raise ValueError("labels must be a non-empty list of strings")
    for index, label in enumerate(labels):
        if not isinstance(label, str):
            raise ValueError(f"label {index} is a {type(label).__name__}, not a string")
        if not label.strip():
            raise ValueError(f"label {index} is empty or whitespace")
        for token in reserved_tokens:
            if token in label:
                raise ValueError(f"label {label!r} contains the reserved prompt token {token!r}")
    return list(dict.fromkeys(labels))
