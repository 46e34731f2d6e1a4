"""The evaluation report as one self-contained HTML page: precision/recall/F1 per dataset and per type, the
threshold sweep as inline SVG curves (their data also as JSON in <script type="application/json"
id="threshold-curves">, exactly as in results.json), and sample documents with gold and predicted entities
highlighted. Never imports ray."""
from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence

from .html_documents import label_colours, label_counts, render_count_table, render_page, render_text

CURVES_ID = "threshold-curves"
CURVE_SERIES = (("precision", "P", "#1565c0"), ("recall", "R", "#ef6c00"), ("f1", "F1", "#2e7d32"))
SVG_WIDTH, SVG_HEIGHT = 420, 260
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 44, 404, 30, 222  # the plot area inside the SVG
TICKS = (0.0, 0.25, 0.5, 0.75, 1.0)


def render_evaluation_report(results: Mapping, documents: Mapping[str, Sequence[Mapping]] | None = None) -> str:
    """The page for the evaluate job's `results` (results.json); `documents`: dataset name -> sample documents as
    `gliner.evaluation.scoring.report_documents` gives them."""
    documents = documents or {}
    colours = label_colours(label for result in results["datasets"] for label in result["labels"])
    sections = [_run_description(results), "<h2>Scores</h2>", _scores_table(results), _sweep_section(results)]
    if len(results["datasets"]) > 1:  # each type's mentions pooled over the datasets that annotate it (micro)
        pooled = {**results["overall"]["micro"], "labels": sorted({label for result in results["datasets"] for label in result["labels"]})}
        sections.append(f"<h3>All datasets pooled: per type</h3>{_type_table(pooled)}")
    for result in results["datasets"]:
        sections.append(f"<h3>{html.escape(result['name'])}: per type</h3>{_type_table(result)}")
    if any(documents.values()):
        sections.append("<h2>Sample documents</h2>" + _documents_key())
        for result in results["datasets"]:
            sections.append(_documents_section(result["name"], documents.get(result["name"], []), colours))
    return render_page(f"Evaluation: {results['name']}", "\n".join(sections))


def curves_data(results: Mapping) -> dict | None:
    """{"overall": pooled curve, "datasets": {name: curve}} from results.json; None without a sweep."""
    if "threshold_curve" not in results["overall"]:
        return None
    return {
        "overall": results["overall"]["threshold_curve"],
        "datasets": {result["name"]: result["threshold_curve"] for result in results["datasets"]},
    }


def render_curve_svg(curve: Mapping, title: str) -> str:
    """Precision, recall and F1 against the threshold (both axes 0..1) as an inline SVG; a dashed line marks the
    best F1, and each point's values are in its tooltip."""
    parts = [f'<svg class="curve" width="{SVG_WIDTH}" height="{SVG_HEIGHT}" viewBox="0 0 {SVG_WIDTH} {SVG_HEIGHT}" role="img" '
             f'aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>']
    parts.append(f'<text x="{PLOT_LEFT}" y="14">{html.escape(title)}</text>')
    for tick in TICKS:
        parts.append(f'<line class="grid" x1="{_x(tick)}" y1="{PLOT_TOP}" x2="{_x(tick)}" y2="{PLOT_BOTTOM}"/>'
                     f'<line class="grid" x1="{PLOT_LEFT}" y1="{_y(tick)}" x2="{PLOT_RIGHT}" y2="{_y(tick)}"/>'
                     f'<text x="{_x(tick)}" y="{PLOT_BOTTOM + 14}" text-anchor="middle">{tick:g}</text>'
                     f'<text x="{PLOT_LEFT - 6}" y="{_y(tick) + 4}" text-anchor="end">{tick:g}</text>')
    parts.append(f'<line class="axis" x1="{PLOT_LEFT}" y1="{PLOT_BOTTOM}" x2="{PLOT_RIGHT}" y2="{PLOT_BOTTOM}"/>'
                 f'<line class="axis" x1="{PLOT_LEFT}" y1="{PLOT_TOP}" x2="{PLOT_LEFT}" y2="{PLOT_BOTTOM}"/>'
                 f'<text x="{(PLOT_LEFT + PLOT_RIGHT) / 2}" y="{SVG_HEIGHT - 6}" text-anchor="middle">threshold</text>')
    best = curve.get("best")
    if best is not None:
        parts.append(f'<line class="best" x1="{_x(best["threshold"])}" y1="{PLOT_TOP}" x2="{_x(best["threshold"])}" y2="{PLOT_BOTTOM}"/>'
                     f'<text x="{PLOT_RIGHT}" y="14" text-anchor="end">best F1 {_percent(best["f1"])} at {best["threshold"]:g}</text>')
    for index, (key, name, colour) in enumerate(CURVE_SERIES):
        points = " ".join(f"{_x(point['threshold'])},{_y(point[key])}" for point in curve["points"])
        parts.append(f'<polyline class="{key}" stroke="{colour}" points="{points}"/>')
        parts.extend(f'<circle cx="{_x(point["threshold"])}" cy="{_y(point[key])}" r="2.5" fill="{colour}"><title>{_point_title(point)}</title></circle>'
                     for point in curve["points"])
        legend_x = PLOT_LEFT + 8 + 34 * index
        parts.append(f'<text x="{legend_x}" y="{PLOT_TOP + 14}" style="fill: {colour}">{name}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _x(threshold: float) -> float:
    return round(PLOT_LEFT + threshold * (PLOT_RIGHT - PLOT_LEFT), 1)


def _y(score: float) -> float:
    return round(PLOT_BOTTOM - score * (PLOT_BOTTOM - PLOT_TOP), 1)


def _point_title(point: Mapping) -> str:
    return (f"threshold {point['threshold']:g}: P {_percent(point['precision'])}, R {_percent(point['recall'])}, "
            f"F1 {_percent(point['f1'])} (tp {point['tp']}, fp {point['fp']}, fn {point['fn']})")


def _run_description(results: Mapping) -> str:
    few_shot = results.get("few_shot")
    items = [f"model <code>{html.escape(str(results['model']))}</code>"]
    if few_shot:
        items.append(f"few-shot k={few_shot['k']}, seed={few_shot['seed']}, steps={few_shot['steps']} from "
                     f"<code>{html.escape(str(results['base_model']))}</code>")
    items.append(f"threshold {results['threshold']:g}, flat_ner {str(results['flat_ner']).lower()}")
    return f"<p>{'; '.join(items)}. Scores in %: strict = exact span and label; relaxed = overlapping span, same label.</p>"


def _scores_table(results: Mapping) -> str:
    header = ("<tr><th>dataset</th><th>documents</th><th>gold</th><th>predicted</th><th>strict P</th><th>strict R</th>"
              "<th>strict F1</th><th>relaxed P</th><th>relaxed R</th><th>relaxed F1</th><th>best F1 (threshold)</th></tr>")
    rows = []
    for result in results["datasets"]:
        counts = [result["documents"], result["gold_mentions"], result["predicted_mentions"]]
        rows.append(_score_row(result["name"], counts, result["strict"], result["relaxed"], result.get("threshold_curve")))
    overall = results["overall"]
    if len(results["datasets"]) > 1:
        micro = overall["micro"]
        predicted = sum(result["predicted_mentions"] for result in results["datasets"])
        counts = [overall["documents"], overall["gold_mentions"], predicted]
        rows.append(_score_row("all (micro, pooled)", counts, micro["strict"], micro["relaxed"], overall.get("threshold_curve"), pooled=True))
        rows.append(_score_row("all (macro over datasets)", ["", "", ""], overall["macro"]["strict"], overall["macro"]["relaxed"], None, pooled=True))
    return f'<table class="scores"><thead>{header}</thead><tbody>{"".join(rows)}</tbody></table>'


def _score_row(name: str, counts: list, strict: Mapping, relaxed: Mapping, curve: Mapping | None, pooled: bool = False) -> str:
    cells = [f"<td>{html.escape(name)}</td>"] + [f'<td class="number">{count}</td>' for count in counts]
    cells += [f'<td class="number">{_percent(scores[key])}</td>' for scores in (strict, relaxed) for key in ("precision", "recall", "f1")]
    best = curve.get("best") if curve else None
    cells.append(f'<td class="number">{_percent(best["f1"])} ({best["threshold"]:g})</td>' if best else "<td></td>")
    row_class = ' class="pooled"' if pooled else ""
    return f"<tr{row_class}>{''.join(cells)}</tr>"


def _sweep_section(results: Mapping) -> str:
    curves = curves_data(results)
    if curves is None:
        return ""
    svgs = []
    if len(curves["datasets"]) > 1:
        svgs.append(render_curve_svg(curves["overall"], "all datasets (micro, pooled)"))
    svgs += [render_curve_svg(curve, name) for name, curve in curves["datasets"].items()]
    # "<" written as \u003c keeps "</script>" in a dataset name from ending the element; the JSON is unchanged.
    data = json.dumps(curves).replace("<", "\\u003c")
    return ("<h2>Threshold sweep</h2><p>Strict micro scores at each threshold, all decoded from one prediction pass "
            "(each equals an evaluation run at that threshold).</p>"
            f'<div class="curves">{"".join(svgs)}</div>\n<script type="application/json" id="{CURVES_ID}">{data}</script>')


def _type_table(result: Mapping) -> str:
    header = ("<tr><th>type</th><th>gold</th><th>predicted</th><th>strict P</th><th>strict R</th><th>strict F1</th>"
              "<th>relaxed P</th><th>relaxed R</th><th>relaxed F1</th></tr>")
    strict_types, relaxed_types = result["strict"]["per_type"], result["relaxed"]["per_type"]
    empty = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "support": 0}
    rows = []
    for label in sorted(set(strict_types) | set(result["labels"])):
        strict, relaxed = strict_types.get(label, empty), relaxed_types.get(label, empty)
        cells = [f"<td>{html.escape(label)}</td>", f'<td class="number">{strict["support"]}</td>', f'<td class="number">{strict["tp"] + strict["fp"]}</td>']
        cells += [f'<td class="number">{_percent(scores[key])}</td>' for scores in (strict, relaxed) for key in ("precision", "recall", "f1")]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="types"><thead>{header}</thead><tbody>{"".join(rows)}</tbody></table>'


def _documents_key() -> str:
    return ('<p>Each document twice: its predictions (<mark class="correct">correct</mark>, '
            '<mark class="false">false positive</mark>) and its gold mentions '
            '(<mark class="found">found</mark>, <mark class="missed">missed</mark>), strict matching.</p>')


def _documents_section(name: str, documents: Sequence[Mapping], colours: Mapping[str, str]) -> str:
    if not documents:
        return ""
    counts = render_count_table({
        "gold": label_counts([(document["text"], document["gold"]) for document in documents]),
        "predicted": label_counts([(document["text"], document["predicted"]) for document in documents]),
    }, colours)
    rendered = "".join(_compared_document(name, document, colours) for document in documents)
    return f"<h3>{html.escape(name)}: the first {len(documents)} documents</h3>{counts}{rendered}"


def _compared_document(name: str, document: Mapping, colours: Mapping[str, str]) -> str:
    """A document's text twice: predictions marked correct or false, gold mentions marked found or missed."""
    gold = {_key(entity) for entity in document["gold"]}
    predicted = {_key(entity) for entity in document["predicted"]}
    marked_predicted = [{**entity, "status": "correct" if _key(entity) in gold else "false"} for entity in document["predicted"]]
    marked_gold = [{**entity, "status": "found" if _key(entity) in predicted else "missed"} for entity in document["gold"]]
    text = document["text"]
    return (f'<div class="document" data-dataset="{html.escape(name)}" data-id="{html.escape(str(document["id"]))}">'
            f'<div class="document-id">{html.escape(name)}, document {html.escape(str(document["id"]))}</div>'
            f'<div class="row"><span class="row-name">predicted</span><div>{render_text(text, marked_predicted, colours)}</div></div>'
            f'<div class="row"><span class="row-name">gold</span><div>{render_text(text, marked_gold, colours)}</div></div></div>')


def _key(entity: Mapping) -> tuple:
    return entity["start"], entity["end"], entity["label"]


def _percent(value: float) -> str:
    return f"{100 * value:.2f}"
