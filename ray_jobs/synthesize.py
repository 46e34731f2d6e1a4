"""Annotate the rest of the corpus with the distilled annotator: the annotate job's stages with another model.

    python -m ray_jobs.synthesize --config configs/synthesize/openbiollm_8b.yaml [key=value ...]
    python -m ray_jobs.synthesize --documents DIR --model DISTILL_OUT/merged --exclude-annotated TEACHER_OUT --output DIR

Documents the teacher already annotated (doc_ids in TEACHER_OUT/annotations) are skipped, so teacher and student
outputs together cover the corpus once. The model is the distill job's merged checkpoint, which vLLM loads like any
causal LM. Everything else (engine settings, schema, resumability, error rows) is the annotate job's.
"""
from __future__ import annotations

import sys

from .annotate import AnnotateConfig, parse_args, print_summary, run  # noqa: F401 (run: the pipeline's entry point)
from .runtime.job_command import job_main


def synthesize_config(config: AnnotateConfig) -> AnnotateConfig:
    if not config.exclude_annotated:
        raise ValueError("synthesize needs the teacher's output to skip: --exclude-annotated TEACHER_OUTPUT (or exclude_annotated=[...])")
    return config.model_copy(update={"model_label": config.model_label or f"distilled:{config.model}"})


def parse_synthesize_args(argv: list[str] | None = None) -> tuple[AnnotateConfig, str | None]:
    config, address = parse_args(argv)
    return synthesize_config(config), address


def main(argv: list[str] | None = None) -> int:
    return job_main(argv, parse_synthesize_args, run, print_summary)


if __name__ == "__main__":
    sys.exit(main())
