"""Evaluation results as Markdown: a summary table over datasets and a per-type table for each. Never imports ray."""
from __future__ import annotations

from collections.abc import Mapping


def format_markdown(results: Mapping) -> str:
    """A summary table (one row per dataset, then the pooled micro and the macro over datasets) and a per-type
    table for each dataset. Scores in percent."""
    lines = []
    header = "| dataset | documents | gold mentions | strict P | strict R | strict F1 | relaxed F1 | macro F1 |"
    lines += [header, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for result in results["datasets"]:
        strict, relaxed = result["strict"], result["relaxed"]
        lines.append(
            f"| {result['name']} | {result['documents']} | {result['gold_mentions']} | {_pct(strict['precision'])} | "
            f"{_pct(strict['recall'])} | {_pct(strict['f1'])} | {_pct(relaxed['f1'])} | {_pct(strict['macro_f1'])} |"
        )
    overall = results.get("overall")
    if overall and len(results["datasets"]) > 1:
        micro_s, micro_r = overall["micro"]["strict"], overall["micro"]["relaxed"]
        lines.append(
            f"| **all (micro, pooled)** | {overall['documents']} | {overall['gold_mentions']} | {_pct(micro_s['precision'])} | "
            f"{_pct(micro_s['recall'])} | {_pct(micro_s['f1'])} | {_pct(micro_r['f1'])} | |"
        )
        macro_s, macro_r = overall["macro"]["strict"], overall["macro"]["relaxed"]
        lines.append(
            f"| **all (macro over datasets)** | | | {_pct(macro_s['precision'])} | {_pct(macro_s['recall'])} | "
            f"{_pct(macro_s['f1'])} | {_pct(macro_r['f1'])} | |"
        )
    lines.append("")
    lines.append("Scores in %. strict: exact span and label; relaxed: overlapping span with the same label (one-to-one); "
                 "macro F1: mean over the dataset's types (strict).")
    lines += _sweep_lines(results)
    for result in results["datasets"]:
        lines += ["", f"### {result['name']}", ""]
        lines.append(f"{result['path']} ({result['format']}, {result['documents']} {result['unit']}s); labels: {', '.join(result['labels'])}")
        if result["ignored_gold_mentions"]:
            ignored = ", ".join(f"{gold_type} {count}" for gold_type, count in result["ignored_gold_mentions"].items())
            lines.append(f"ignored gold mentions (type not in the label map): {ignored}")
        lines += ["", "| type | gold | predicted | strict P | strict R | strict F1 | relaxed P | relaxed R | relaxed F1 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        strict_types, relaxed_types = result["strict"]["per_type"], result["relaxed"]["per_type"]
        for label in sorted(set(strict_types) | set(result["labels"])):
            s = strict_types.get(label) or {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "support": 0}
            r = relaxed_types.get(label) or {"precision": 0.0, "recall": 0.0, "f1": 0.0}
            lines.append(
                f"| {label} | {s['support']} | {s['tp'] + s['fp']} | {_pct(s['precision'])} | {_pct(s['recall'])} | {_pct(s['f1'])} | "
                f"{_pct(r['precision'])} | {_pct(r['recall'])} | {_pct(r['f1'])} |"
            )
    return "\n".join(lines) + "\n"


def _sweep_lines(results: Mapping) -> list[str]:
    """A table of each dataset's best strict F1 over the threshold sweep (nothing without a sweep)."""
    curves = [(result["name"], result["threshold_curve"]) for result in results["datasets"] if "threshold_curve" in result]
    if not curves:
        return []
    if len(results["datasets"]) > 1 and "threshold_curve" in results.get("overall", {}):
        curves.append(("**all (micro, pooled)**", results["overall"]["threshold_curve"]))
    thresholds = [point["threshold"] for point in curves[0][1]["points"]]
    lines = ["", f"Threshold sweep ({thresholds[0]:g} to {thresholds[-1]:g}, {len(thresholds)} thresholds, strict micro): the best F1.", "",
             "| dataset | best threshold | P | R | F1 |", "|---|---:|---:|---:|---:|"]
    for name, curve in curves:
        best = curve["best"]
        lines.append(f"| {name} | {best['threshold']:g} | {_pct(best['precision'])} | {_pct(best['recall'])} | {_pct(best['f1'])} |")
    return lines


def summary_table(results: Mapping) -> str:
    """Only the first table of `format_markdown`."""
    text = format_markdown(results)
    return text.split("\n\n", 1)[0] + "\n"


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"
