"""Documents as self-contained HTML: entities highlighted in a colour per label with the label written on each,
per-label entity counts, and the page around them (inline CSS; no scripts, fonts or other external resources).
Never imports ray.

An entity is a mapping with "start" and "end" (character offsets, end exclusive) and "label", optionally "score"
(shown in its tooltip) and "status" (a CSS class: "correct" or "false" for a prediction, "found" or "missed" for a
gold mention).
"""
from __future__ import annotations

import html
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

Entity = Mapping
Document = tuple[str, Sequence[Entity]]  # (text, entities)

STATUS_NAMES = {"correct": "correct", "false": "false positive", "found": "found", "missed": "missed"}
NO_COLOUR = "#e0e0e0"

PAGE_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 72em; padding: 0 1em;
       color: #212121; line-height: 1.5; }
h1, h2, h3 { line-height: 1.2; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
th { background: #f5f5f5; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.pooled td { font-weight: bold; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px; margin-right: 0.4em; vertical-align: middle; }
.document { border: 1px solid #ddd; border-radius: 4px; padding: 0.4em 0.8em; margin: 0.8em 0; }
.document-id { font-size: 0.8em; color: #757575; }
.row { display: flex; gap: 0.8em; align-items: baseline; }
.row-name { flex: 0 0 5.5em; font-size: 0.8em; color: #757575; text-transform: uppercase; }
p.text { margin: 0.3em 0; white-space: pre-wrap; line-height: 2; }
mark.entity { border-radius: 3px; padding: 0.1em 0.2em; color: inherit; }
mark.entity .tag { font-size: 0.65em; font-weight: bold; margin-left: 0.3em; text-transform: uppercase; color: #424242; }
mark.correct, mark.found { box-shadow: inset 0 -2px 0 #2e7d32; }
mark.false { outline: 2px dashed #c62828; }
mark.missed { outline: 2px dotted #c62828; }
svg.curve { border: 1px solid #ddd; background: #fff; margin: 0 1em 1em 0; }
svg.curve text { font-size: 11px; fill: #424242; }
svg.curve .grid { stroke: #eee; }
svg.curve .axis { stroke: #9e9e9e; }
svg.curve .best { stroke: #757575; stroke-dasharray: 4 3; }
svg.curve polyline { fill: none; stroke-width: 2; }
"""


def label_colours(labels: Iterable[str]) -> dict[str, str]:
    """A light background colour per label: hues a golden angle apart, in sorted label order."""
    return {label: f"hsl({index * 137.508 % 360:.0f}, 75%, 82%)" for index, label in enumerate(sorted(set(labels)))}


def render_documents(documents: Sequence[Document], colours: Mapping[str, str] | None = None) -> str:
    """<div class="documents"> with a <div class="document"> per (text, entities), each entity a
    <mark class="entity" data-label data-start data-end> in its label's colour with the label written in it."""
    if colours is None:
        colours = label_colours(entity["label"] for _, entities in documents for entity in entities)
    rendered = "".join(f'<div class="document">{render_text(text, entities, colours)}</div>' for text, entities in documents)
    return f'<div class="documents">{rendered}</div>'


def render_text(text: str, entities: Sequence[Entity], colours: Mapping[str, str]) -> str:
    """The text as <p class="text">, its entities highlighted. Entities that overlap go to another copy of the
    text below (a layer), so each entity is exactly one element."""
    layers = _layers(entities) or [[]]
    return "".join(f'<p class="text">{_highlighted(text, layer, colours)}</p>' for layer in layers)


def label_counts(documents: Sequence[Document]) -> dict[str, int]:
    """Entities per label over the documents, by label."""
    return dict(sorted(Counter(entity["label"] for _, entities in documents for entity in entities).items()))


def render_label_counts(documents: Sequence[Document], colours: Mapping[str, str] | None = None) -> str:
    """A table of the entities per label, each label with its colour."""
    counts = label_counts(documents)
    return render_count_table({"entities": counts}, colours if colours is not None else label_colours(counts))


def render_count_table(columns: Mapping[str, Mapping[str, int]], colours: Mapping[str, str]) -> str:
    """A table with a row per label (with its colour) and a column of counts per entry of `columns`."""
    labels = sorted({label for counts in columns.values() for label in counts})
    header = "<th>label</th>" + "".join(f"<th>{html.escape(name)}</th>" for name in columns)
    rows = []
    for label in labels:
        cells = "".join(f'<td class="number">{counts.get(label, 0)}</td>' for counts in columns.values())
        rows.append(f'<tr><td><span class="swatch" style="background: {_colour(colours, label)}"></span>{html.escape(label)}</td>{cells}</tr>')
    return f'<table class="label-counts"><thead><tr>{header}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def render_page(title: str, body: str) -> str:
    """A complete HTML page: `body` (HTML) under an <h1> of `title`, with the CSS the renderers here use inline."""
    escaped = html.escape(title)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escaped}</title>\n<style>{PAGE_CSS}</style>\n</head>\n"
        f"<body>\n<h1>{escaped}</h1>\n{body}\n</body>\n</html>\n"
    )


def _layers(entities: Sequence[Entity]) -> list[list[Entity]]:
    """Entities in layers of non-overlapping ones: by start (longer first), each into the first layer it fits."""
    layers: list[list[Entity]] = []
    layer_ends: list[int] = []
    for entity in sorted(entities, key=lambda entity: (entity["start"], -entity["end"])):
        free = next((index for index, end in enumerate(layer_ends) if entity["start"] >= end), None)
        if free is None:
            layers.append([])
            layer_ends.append(0)
            free = len(layers) - 1
        layers[free].append(entity)
        layer_ends[free] = entity["end"]
    return layers


def _highlighted(text: str, entities: Sequence[Entity], colours: Mapping[str, str]) -> str:
    """The text with non-overlapping entities, sorted by start, as marks."""
    parts, position = [], 0
    for entity in entities:
        parts.append(html.escape(text[position : entity["start"]]))
        parts.append(_mark(text, entity, colours))
        position = entity["end"]
    parts.append(html.escape(text[position:]))
    return "".join(parts)


def _mark(text: str, entity: Entity, colours: Mapping[str, str]) -> str:
    start, end, label, status = entity["start"], entity["end"], entity["label"], entity.get("status")
    title = label
    if entity.get("score") is not None:
        title += f" {entity['score']:.2f}"
    if status:
        title += f" ({STATUS_NAMES.get(status, status)})"
    classes = f"entity {status}" if status else "entity"
    return (
        f'<mark class="{html.escape(classes)}" data-label="{html.escape(label)}" data-start="{start}" data-end="{end}" '
        f'style="background: {_colour(colours, label)}" title="{html.escape(title)}">'
        f'{html.escape(text[start:end])}<span class="tag">{html.escape(label)}</span></mark>'
    )


def _colour(colours: Mapping[str, str], label: str) -> str:
    return html.escape(colours.get(label, NO_COLOUR))
