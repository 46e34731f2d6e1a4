"""Export a GLiNER checkpoint to ONNX, with upstream's inputs and outputs, for ONNX Runtime, upstream `gliner`
(load_onnx_model=True) and gline-rs / fast-gliner.

    python -m gliner.onnx_export --model DIR_OR_HUB_ID --output DIR [--quantize] [--opset 19]

The output directory is a whole checkpoint (gliner_config.json, weights, tokenizer files) with model.onnx beside
it, and model_quantized.onnx (dynamic int8 weights) with --quantize. No Ray: it runs wherever the model loads.

The graph (shapes as in model.py; N = W*K spans, in start-then-width order as gliner.inputs.enumerate_spans):
    input_ids, attention_mask, words_mask (B, T) int64; text_lengths (B, 1) int64;
    span_idx (B, N, 2) int64; span_mask (B, N) bool;
    a bi-encoder adds labels_input_ids, labels_attention_mask (C, L) int64: the labels' own tokens.
    -> logits (B, W, K, C), -inf where span_mask is false.
model.py's forward sizes tensors from host integers (W, C) and loops over the K widths; a traced graph would bake
those in. Here every size comes from a tensor: words and label vectors are picked by one-hot matrix products (exact:
each output sums a single term), and spans are gathered from span_idx.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from .api import GLiNER
from .inputs import encode_labels_for_bi_encoder, encode_words
from .model import BiEncoderSpanModel, SpanHead, SpanModel, UniEncoderSpanModel

ONNX_FILE = "model.onnx"
QUANTIZED_ONNX_FILE = "model_quantized.onnx"
TEXT_INPUTS = ("input_ids", "attention_mask", "words_mask", "text_lengths", "span_idx", "span_mask")
LABEL_INPUTS = ("labels_input_ids", "labels_attention_mask")
DYNAMIC_AXES = {
    "input_ids": {0: "batch", 1: "tokens"},
    "attention_mask": {0: "batch", 1: "tokens"},
    "words_mask": {0: "batch", 1: "tokens"},
    "text_lengths": {0: "batch"},
    "span_idx": {0: "batch", 1: "spans"},
    "span_mask": {0: "batch", 1: "spans"},
    "labels_input_ids": {0: "labels", 1: "label_tokens"},
    "labels_attention_mask": {0: "labels", 1: "label_tokens"},
    "logits": {0: "batch", 1: "words", 3: "labels"},
}


# ---------------------------------------------------------------------------------------------------- graph
def pick_rows(tokens: torch.Tensor, slot_of_token: torch.Tensor, num_slots: torch.Tensor) -> torch.Tensor:
    """tokens (B, T, D), slot_of_token (B, T) 1-based or 0 -> (B, S, D): row s is the token whose slot is s + 1, or
    zeros. num_slots S is a 0-d tensor, so the graph keeps it symbolic."""
    slots = torch.arange(1, num_slots + 1, device=tokens.device)  # (S,)
    one_hot = (slot_of_token.unsqueeze(1) == slots.view(1, -1, 1)).to(tokens.dtype)  # (B, S, T)
    return one_hot @ tokens


def prompt_vectors(model: UniEncoderSpanModel, tokens: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T, D) -> (B, C, D): each <<ENT>>'s vector (or the next token's), as model.extract_prompts picks them."""
    is_class_token = (input_ids == model.config.class_token_index) & (attention_mask > 0)
    ranks = torch.where(is_class_token, is_class_token.long().cumsum(-1), 0)
    sources = tokens if model.config.embed_ent_token else torch.cat([tokens[:, 1:], tokens[:, -1:]], dim=1)
    return pick_rows(sources, ranks, is_class_token.long().sum(-1).max())


def span_logits(head: SpanHead, words: torch.Tensor, labels: torch.Tensor, span_idx: torch.Tensor, span_mask: torch.Tensor) -> torch.Tensor:
    """words (B, W, D), labels (B, C, D) after prompt_rep_layer -> (B, W, K, C): SpanHead's factorised score, per span
    of span_idx instead of per width."""
    span_idx = span_idx * span_mask.unsqueeze(-1).to(span_idx.dtype)  # upstream's callers leave spans past the end unmasked
    side = head.label_side(labels)
    starts, ends = head.project_start(words).relu(), head.project_end(words).relu()  # (B, W, D)
    width = starts.size(-1)
    if head.span_mode == "markerV0":
        first = head.out_project[0]
        start_terms = starts @ first.weight[:, :width].t()  # (B, W, 4D)
        end_terms = ends @ first.weight[:, width:].t() + first.bias
        hidden = (gather_words(start_terms, span_idx[..., 0]) + gather_words(end_terms, span_idx[..., 1])).relu()  # (B, N, 4D)
        scores = hidden @ side.vectors.transpose(1, 2) + side.bias.unsqueeze(1)  # (B, N, C)
    else:
        start_scores = starts @ side.vectors[..., :width].transpose(1, 2)  # (B, W, C)
        end_scores = ends @ side.vectors[..., width:].transpose(1, 2) + side.bias.unsqueeze(1)
        scores = gather_words(start_scores, span_idx[..., 0]) + gather_words(end_scores, span_idx[..., 1])
    scores = scores.masked_fill(~span_mask.unsqueeze(-1), float("-inf"))
    return scores.view(scores.size(0), -1, head.max_width, scores.size(-1))


def gather_words(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (B, W, E), index (B, N) -> (B, N, E)."""
    return torch.gather(values, 1, index.unsqueeze(-1).expand(-1, -1, values.size(-1)))


class UniEncoderGraph(nn.Module):
    def __init__(self, model: UniEncoderSpanModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, words_mask, text_lengths, span_idx, span_mask):
        model = self.model
        lengths = text_lengths.view(-1)
        tokens = model.encode_text(input_ids, attention_mask)  # (B, T, D)
        words = pick_rows(tokens, words_mask, lengths.max().clamp(min=1))  # (B, W, D)
        if hasattr(model, "rnn"):
            words = model.rnn(words, lengths)
        labels = model.prompt_rep_layer(prompt_vectors(model, tokens, input_ids, attention_mask))
        return span_logits(model.span_head, words, labels, span_idx, span_mask)


class BiEncoderGraph(nn.Module):
    def __init__(self, model: BiEncoderSpanModel):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, words_mask, text_lengths, span_idx, span_mask, labels_input_ids, labels_attention_mask):
        model = self.model
        tokens = model.encode_text(input_ids, attention_mask)
        words = pick_rows(tokens, words_mask, text_lengths.max().clamp(min=1))
        labels = model.encode_labels(labels_input_ids, labels_attention_mask)  # (C, D)
        labels = model.prompt_rep_layer(labels.unsqueeze(0).expand(words.size(0), -1, -1))
        return span_logits(model.span_head, words, labels, span_idx, span_mask)


def export_graph(model: SpanModel) -> nn.Module:
    return BiEncoderGraph(model) if isinstance(model, BiEncoderSpanModel) else UniEncoderGraph(model)


def graph_inputs(gliner: GLiNER, word_lists: list[list[str]], labels: list[str]) -> dict[str, torch.Tensor]:
    """The graph's inputs for word lists and labels, built by this library's own input code."""
    encoded = encode_words(gliner.tokenizer, word_lists, gliner.config.max_width, gliner.preparer.prompt(labels))
    inputs = {name: encoded[name] for name in TEXT_INPUTS}
    inputs["text_lengths"] = inputs["text_lengths"].view(-1, 1)
    if gliner.config.is_bi_encoder:
        label_tokens = encode_labels_for_bi_encoder(gliner.labels_tokenizer, labels)
        inputs["labels_input_ids"], inputs["labels_attention_mask"] = label_tokens["input_ids"], label_tokens["attention_mask"]
    return inputs


# ---------------------------------------------------------------------------------------------------- export
def export_onnx(model_id: str | Path, output_dir: str | Path, opset: int = 19, quantize: bool = False) -> Path:
    """Write the checkpoint and its ONNX graph(s) to output_dir; returns the path of model.onnx."""
    output_dir = Path(output_dir)
    gliner = GLiNER.from_pretrained(model_id, attn_implementation="eager")  # sdpa's mask handling traces into constants
    gliner.save_pretrained(output_dir)
    graph = export_graph(gliner.model).eval()
    # Two texts of different lengths and two labels: no size in the example equals another, so none is mistaken for
    # a constant when traced.
    example = graph_inputs(gliner, [["Aspirin", "eases", "migraine", "in", "adults", "."], ["BRCA1", "mutations"]], ["chemical", "disease"])
    names = list(example)
    onnx_path = output_dir / ONNX_FILE
    with torch.no_grad():
        torch.onnx.export(
            graph, tuple(example.values()), str(onnx_path), dynamo=False, opset_version=opset, input_names=names,
            output_names=["logits"], dynamic_axes={name: DYNAMIC_AXES[name] for name in [*names, "logits"]},
            do_constant_folding=True,
        )
    if quantize:
        quantize_int8(onnx_path, output_dir / QUANTIZED_ONNX_FILE)
    return onnx_path


def quantize_int8(onnx_path: Path, quantized_path: Path) -> None:
    """Dynamic int8 quantization of the weights of MatMul and Gemm nodes (activations quantized at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(onnx_path), str(quantized_path), weight_type=QuantType.QInt8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gliner.onnx_export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="checkpoint directory or hub id")
    parser.add_argument("--output", required=True, help="directory to write (checkpoint + model.onnx)")
    parser.add_argument("--opset", type=int, default=19)
    parser.add_argument("--quantize", action="store_true", help="also write model_quantized.onnx (int8 weights)")
    args = parser.parse_args(argv)
    path = export_onnx(args.model, args.output, args.opset, args.quantize)
    print(f"wrote {path}" + (f" and {path.with_name(QUANTIZED_ONNX_FILE)}" if args.quantize else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
