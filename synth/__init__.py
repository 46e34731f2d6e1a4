"""Synthetic-data steps: quality filters, near-duplicate removal and source balancing of passages, teacher prompts
and their JSON schema, LLM output parsing and span alignment, conversion to training examples, SFT pairs and the
LoRA student. Reads corpora through `corpus`; no Ray in the pure logic."""
