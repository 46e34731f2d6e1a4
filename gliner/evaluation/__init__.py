"""Evaluation and reports: gold corpora (IOB, GLiNER JSONL, PubTator) through label maps, strict and relaxed span
scores, threshold sweeps, few-shot sampling, Markdown and HTML reports. Imports the model package, never Ray."""
