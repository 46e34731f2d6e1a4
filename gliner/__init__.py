"""GLiNER: checkpoint-compatible uni- and bi-encoder span models for zero-shot NER. Never imports ray.

`GLiNER` and `GLiNERConfig` are imported on first use, so light modules (`gliner.evaluation.pubtator`, `gliner.evaluation.iob`, ...)
load without torch and transformers: Ray workers that only split words or read corpora start seconds faster.
"""
from __future__ import annotations

__all__ = ["GLiNER", "GLiNERConfig"]


def __getattr__(name: str):
    if name == "GLiNER":
        from .api import GLiNER

        return GLiNER
    if name == "GLiNERConfig":
        from .config import GLiNERConfig

        return GLiNERConfig
    raise AttributeError(f"module 'gliner' has no attribute {name!r}")
