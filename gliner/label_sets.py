"""Labels as users give them: a list of names, a mapping of each name to the description the model reads instead
(upstream's label descriptions), or one of those per text. Entities are always called by their names."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from .decoding import Span
from .inputs import normalize_labels

# One label set, or one per text.
Labels = Sequence[str] | Mapping[str, str] | Sequence[Sequence[str] | Mapping[str, str]]


@dataclass(frozen=True)
class LabelSet:
    prompts: tuple[str, ...]  # what the model reads: the names, or their descriptions
    names: tuple[str, ...]  # what the entities found are called

    @classmethod
    def of(cls, labels: Sequence[str] | Mapping[str, str], reserved_tokens: Sequence[str] = ()) -> "LabelSet":
        """A ValueError says what is wrong with `labels`; `reserved_tokens` (the model's prompt markers) may not occur
        in what the model reads."""
        if not isinstance(labels, Mapping):
            names = tuple(normalize_labels(labels, reserved_tokens))
            return cls(names, names)
        for name, description in labels.items():
            if not isinstance(name, str) or not isinstance(description, str):
                raise ValueError(f"a label description mapping must map strings to strings, got {name!r}: {description!r}")
        prompts = tuple(normalize_labels(list(labels.values()), reserved_tokens))
        if len(prompts) != len(labels):
            raise ValueError("label descriptions must differ from each other: the model could not tell their labels apart")
        normalize_labels(list(labels))  # the names must be labels too
        return cls(prompts, tuple(labels))

    @property
    def given(self) -> list[str] | dict[str, str]:
        """As a user gives it: the label list, or the mapping of each label to its description."""
        return list(self.names) if self.names == self.prompts else dict(zip(self.names, self.prompts))

    def named(self, spans: list[Span]) -> list[Span]:
        """The spans the model found for the prompts, called by their labels' names."""
        if self.prompts == self.names:
            return spans
        name_of = dict(zip(self.prompts, self.names))
        return [replace(span, label=name_of[span.label]) for span in spans]


def is_per_text(labels: Labels) -> bool:
    """One label set per text (upstream's test): a list whose items are label lists or mappings."""
    return isinstance(labels, (list, tuple)) and any(isinstance(item, (list, tuple, Mapping)) for item in labels)


def label_sets_per_text(labels: Labels, texts: int) -> list[LabelSet]:
    if not is_per_text(labels):
        return [LabelSet.of(labels)] * texts
    if len(labels) != texts:
        raise ValueError(f"per-text labels: {len(labels)} label sets for {texts} texts")
    if not all(isinstance(item, (list, tuple, Mapping)) for item in labels):
        raise ValueError("per-text labels must hold a label list or a label description mapping for every text")
    return [LabelSet.of(item) for item in labels]


def grouped(label_sets: list[LabelSet]) -> dict[LabelSet, list[int]]:
    """The text indices that share each label set, in first-seen order: each group is predicted as one job."""
    groups: dict[LabelSet, list[int]] = {}
    for index, label_set in enumerate(label_sets):
        groups.setdefault(label_set, []).append(index)
    return groups


def stored_label_set(value, reserved_tokens: Sequence[str] = ()) -> LabelSet:
    """A document's own labels as a JSON or Parquet column holds them: a list of labels, or a mapping of each label to
    its description (a JSON object; a Parquet map reads as a list of (label, description) pairs)."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
        value = dict(value)
    if not isinstance(value, (list, tuple, Mapping)):
        raise ValueError(f"labels must be a list of labels or a mapping of label to description, got {type(value).__name__}")
    return LabelSet.of(value, reserved_tokens)
