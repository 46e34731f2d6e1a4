"""A bi-encoder's label vectors, computed once and reused: for a label set of thousands (an ontology's types) every
model copy would otherwise encode all of them again. Stored as safetensors: one (C, D) fp32 tensor, the labels in
order and the fingerprint of the model that encoded them in its metadata.

    python -m gliner.label_vectors --model DIR --labels-file labels.txt --output labels.safetensors
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import torch

ENCODE_BATCH = 256  # labels per forward of the label encoder


def encode_all(model, labels: Sequence[str], batch_size: int = ENCODE_BATCH) -> torch.Tensor:
    """(C, D) fp32 vectors of `labels` on the CPU, encoded `batch_size` at a time (as encode_labels encodes them)."""
    parts = [model.encode_labels(list(labels[start:start + batch_size])).float().cpu() for start in range(0, len(labels), batch_size)]
    return torch.cat(parts)


def save(path: str | Path, labels: Sequence[str], vectors: torch.Tensor, model_fingerprint: str) -> Path:
    from safetensors.torch import save_file

    if vectors.shape[0] != len(labels):
        raise ValueError(f"{vectors.shape[0]} vectors for {len(labels)} labels")
    save_file({"vectors": vectors.float().contiguous()}, str(path), metadata={"labels": json.dumps(list(labels)), "model": model_fingerprint})
    return Path(path)


def load(path: str | Path, model_fingerprint: str | None = None) -> dict[str, torch.Tensor]:
    """{label: (D,) vector}; with `model_fingerprint`, a file another model encoded is refused."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as stored:
        metadata, vectors = stored.metadata(), stored.get_tensor("vectors")
    if model_fingerprint is not None and metadata.get("model") != model_fingerprint:
        raise ValueError(f"{path} holds label vectors of another model ({metadata.get('model')}), not of {model_fingerprint}")
    return dict(zip(json.loads(metadata["labels"]), vectors))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a bi-encoder checkpoint directory")
    parser.add_argument("--labels-file", required=True, help="one label (or the description the model reads) per line")
    parser.add_argument("--output", required=True)
    args = parser.parse_args(argv)
    from .api import GLiNER
    from .model_path import model_fingerprint

    labels = [line.strip() for line in Path(args.labels_file).read_text(encoding="utf-8").splitlines() if line.strip()]
    model = GLiNER.from_pretrained(args.model)
    save(args.output, labels, encode_all(model, labels), model_fingerprint(args.model))
    print(f"{len(labels)} label vectors -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
