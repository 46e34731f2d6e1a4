"""Upstream's computation, step by step, on this library's modules: what the parity tests compare against.

The library runs one path: the factorised span head (gliner/model.py), length-sorted batches, the sigmoid over
each text's logits. Upstream builds every span vector (B, W, K, D), scores it against every label with an einsum,
keeps the texts in input order and applies the sigmoid to the whole batch tensor. Bit-for-bit parity with
upstream's recorded predictions needs exactly that, so it lives here, apart from the library.
"""
from __future__ import annotations

import torch

from gliner import GLiNER
from gliner.decoding import Span, greedy_select
from gliner.inputs import encode_words, to_device
from gliner.model import BiEncoderSpanModel, SpanHead, SpanModel, extract_prompts, extract_words, num_words_of
from gliner.training import span_loss


def span_vectors(head: SpanHead, words: torch.Tensor, span_idx: torch.Tensor) -> torch.Tensor:
    """words (B, W, D), span_idx (B, W*K, 2) -> (B, W, K, D): out_project(ReLU([start ; end])) for every span."""
    def gather(vectors, positions):  # (B, W, D), (B, W*K) -> (B, W*K, D)
        return torch.gather(vectors, 1, positions.unsqueeze(-1).expand(-1, -1, vectors.size(-1)))

    starts = gather(head.project_start(words), span_idx[..., 0])
    ends = gather(head.project_end(words), span_idx[..., 1])
    spans = head.out_project(torch.cat([starts, ends], dim=-1).relu())
    return spans.view(words.size(0), span_idx.size(1) // head.max_width, head.max_width, -1)


def reference_logits(model: SpanModel, inputs: dict, labels_embeds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (B, W, K, C) and the label mask, as upstream computes them: span vectors, then an einsum."""
    tokens = model.encode_text(inputs["input_ids"], inputs["attention_mask"])
    if isinstance(model, BiEncoderSpanModel):
        words = extract_words(tokens, inputs["words_mask"], num_words_of(inputs["text_lengths"]))
        labels = labels_embeds.to(words.dtype).unsqueeze(0).expand(words.size(0), -1, -1)
        labels_mask = torch.ones(labels.shape[:2], dtype=torch.long, device=labels.device)
    else:
        config = model.config
        labels, labels_mask = extract_prompts(tokens, inputs["input_ids"], inputs["attention_mask"], config.class_token_index, config.embed_ent_token)
        words = model.word_vectors(tokens, inputs["words_mask"], inputs["text_lengths"])
    spans = span_vectors(model.span_head, words, inputs["span_idx"] * inputs["span_mask"].unsqueeze(-1))
    return torch.einsum("BLKD,BCD->BLKC", spans, model.prompt_rep_layer(labels)), labels_mask


def reference_batch_loss(model: SpanModel, batch: dict, **loss_options) -> torch.Tensor:
    """gliner.training.batch_loss with upstream's span computation."""
    labels_embeds = None
    if isinstance(model, BiEncoderSpanModel):
        labels_embeds = model.encode_labels(batch["labels_input_ids"], batch["labels_attention_mask"])
    logits, _ = reference_logits(model, batch, labels_embeds)
    logits = logits[..., : batch["labels"].size(-1)].float()
    return span_loss(logits, batch["labels"], batch["label_mask"], batch["span_mask"], **loss_options)


class ReferenceGLiNER(GLiNER):
    """GLiNER predicting as upstream does: input order, reference logits in fp32, the sigmoid over the batch."""

    def _spans_per_chunk(self, prepared, thresholds, flat_ner, multi_label, batch_size=8) -> dict[float, list[list[Span]]]:
        chunks, words_per_text, labels = prepared.chunks, prepared.words_per_text, prepared.labels
        word_lists = [words_per_text[c.text_index].tokens[c.window.start : c.window.end] for c in chunks]
        labels_embeds = self.encode_labels(labels) if self.config.is_bi_encoder else None
        results: dict[float, list[list[Span]]] = {threshold: [] for threshold in thresholds}
        for first in range(0, len(chunks), batch_size):
            batch_words = word_lists[first : first + batch_size]
            inputs = to_device(encode_words(self.tokenizer, batch_words, self.config.max_width, self.preparer.prompt(labels)), self.device)
            probs = torch.sigmoid(reference_logits(self.model, inputs, labels_embeds)[0].float())
            for row, words in enumerate(batch_words):
                for threshold in thresholds:
                    results[threshold].append(greedy_select(candidates_from_probs(probs[row], len(words), labels, threshold), flat_ner, multi_label))
        return results


def as_reference(model: GLiNER) -> ReferenceGLiNER:
    """The same model object, predicting the reference way."""
    model.__class__ = ReferenceGLiNER
    return model


def candidates_from_probs(probs: torch.Tensor, num_words: int, labels: list[str], threshold: float) -> list[Span]:
    """probs (W, K, C) -> spans with probability > threshold inside the text, in (start, width, label) order."""
    starts, offsets, classes = torch.where(probs[:num_words] > threshold)
    keep = starts + offsets < num_words
    starts, offsets, classes = starts[keep], offsets[keep], classes[keep]
    scores = probs[starts, offsets, classes].tolist()
    return [Span(s, s + k, labels[c], p) for s, k, c, p in zip(starts.tolist(), offsets.tolist(), classes.tolist(), scores)]
