"""The precision a job's model predicts in (tag, evaluate): one config section shared by both jobs."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .job_config import Section


class InferencePrecision(Section):
    """precision: "fp32" (exact), or a reduced mode that checks itself against fp32 first on CPUs (gliner/precision.py).
    compile (bf16 only): compile the model for inference; on CPUs 15-100 s per actor for 1.0-1.1x eager bf16 with MiniLM
    backbones and 1.5x at the DeBERTa-base shape, so it pays for a batch job of thousands of documents, not a handful."""

    precision: Literal["fp32", "bf16", "fp16", "int8"] = "fp32"
    min_agreement: float = Field(0.99, ge=0.0, le=1.0)  # a reduced CPU precision agreeing less with fp32 is refused
    compile: bool = False

    @model_validator(mode="after")
    def _compile_needs_bf16(self) -> "InferencePrecision":
        if self.compile and self.precision != "bf16":
            raise ValueError(f"compile: true is for precision bf16, got precision {self.precision}")
        return self
