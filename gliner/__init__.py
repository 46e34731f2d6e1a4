"""GLiNER: checkpoint-compatible uni- and bi-encoder span models for zero-shot NER. Never imports ray."""
from .api import GLiNER
from .config import GLiNERConfig

__all__ = ["GLiNER", "GLiNERConfig"]
