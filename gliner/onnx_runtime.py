"""The forward stage in ONNX Runtime: a graph written by gliner/onnx_export.py behind GLiNER's prepare and decode
stages (`GLiNER.from_pretrained(dir, onnx_file="model.onnx")` or `gliner.use_onnx(path)`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .inputs import enumerate_spans


class OnnxForward:
    """(B, W, K, C) logits from an ONNX Runtime session on the CPU, for the batches GLiNER prepares."""

    def __init__(self, onnx_path: str | Path, threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.path = Path(onnx_path)
        self.session = onnxruntime.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.takes_label_tokens = "labels_input_ids" in {graph_input.name for graph_input in self.session.get_inputs()}

    def __call__(self, inputs: dict[str, torch.Tensor], label_tokens: dict[str, torch.Tensor], max_width: int) -> torch.Tensor:
        text_lengths = inputs["text_lengths"].cpu()
        span_idx, span_mask = enumerate_spans(text_lengths, max_width)
        feeds = {name: _numpy(inputs[name]) for name in ("input_ids", "attention_mask", "words_mask")}
        feeds.update(text_lengths=_numpy(text_lengths.view(-1, 1)), span_idx=_numpy(span_idx), span_mask=_numpy(span_mask))
        if self.takes_label_tokens:
            feeds.update({name: _numpy(tensor) for name, tensor in label_tokens.items()})
        (logits,) = self.session.run(["logits"], feeds)
        return torch.from_numpy(logits)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    array = tensor.cpu().numpy()
    return array if array.dtype == np.bool_ else array.astype(np.int64, copy=False)
