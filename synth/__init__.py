"""Synthetic-data logic: corpus readers and quality filters, near-duplicate removal, teacher prompts and JSON
schema, LLM output parsing and span alignment, SFT examples for the distilled annotator. No Ray in the pure logic."""
