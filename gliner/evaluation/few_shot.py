"""Few-shot training sets: K training sentences drawn with a seed, their gold types renamed by a label map. Never imports ray."""
from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from .gold import resolve_labels


def sample_few_shot(examples: Sequence[Mapping], k: int, seed: int, label_map: Mapping[str, str] | None, only_with_entities: bool = True) -> list[dict]:
    """K training sentences drawn with `random.Random(seed)` from GLiNER examples (inclusive ends), their types
    renamed by `label_map` (unmapped types dropped); every example gets the full label set as `ner_labels`, so the
    other labels train as negatives. `only_with_entities` draws among sentences that keep at least one mention."""
    if k < 1:
        raise ValueError(f"few-shot k must be at least 1, got {k}")
    labels = resolve_labels(label_map, None, {label for example in examples for _, _, label in example["ner"]})
    candidates = []
    for example in examples:
        if label_map is not None:
            ner = [[start, end, label_map[label]] for start, end, label in example["ner"] if label in label_map]
        else:
            ner = [list(span) for span in example["ner"]]
        if ner or not only_with_entities:
            candidates.append({"tokenized_text": list(example["tokenized_text"]), "ner": ner, "ner_labels": labels})
    if len(candidates) < k:
        raise ValueError(f"few-shot k={k} but only {len(candidates)} eligible training sentences")
    return random.Random(seed).sample(candidates, k)
