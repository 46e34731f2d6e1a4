"""The span models: uni-encoder (labels in the prompt) and bi-encoder (labels encoded apart), upstream's key tree."""
from __future__ import annotations

import torch
from torch import nn

from .config import GLiNERConfig
from .encoder import Backbone, BiEncoder, TokenEncoder, build_hf_config
from .span_rep import SpanRepLayer, projection_mlp
from .span_scorer import LabelSide, label_side, score_all_spans
from .word_lstm import WordLSTM


class SpanModel(nn.Module):
    """What both variants share: span layer, label projection and the dot-product score."""

    def __init__(self, config: GLiNERConfig):
        super().__init__()
        self.config = config
        self.span_rep_layer = SpanRepLayer(config.span_mode, config.hidden_size, config.max_width, config.dropout)
        self.prompt_rep_layer = projection_mlp(config.hidden_size, config.hidden_size, config.dropout)

    def score(self, words, span_idx, span_mask, prompts: torch.Tensor, reference: bool = True) -> torch.Tensor:
        """words (B, W, D), label vectors (B, C, D) before prompt_rep_layer -> logits (B, W, K, C).

        reference: upstream's computation, span vectors and all. Otherwise the exact factorised form
        (span_scorer.py); spans past the end of a row then hold arbitrary values, as padding does in the reference.
        """
        if reference:
            span_rep = self.span_rep_layer(words, span_idx * span_mask.unsqueeze(-1))
            return torch.einsum("BLKD,BCD->BLKC", span_rep, self.prompt_rep_layer(prompts))
        return self.score_with_label_side(words, self.label_side(prompts))

    def label_side(self, prompts: torch.Tensor) -> LabelSide:
        """The per-label factors spans are scored against; cacheable for a fixed label set (bi-encoders)."""
        return label_side(self.span_rep_layer.span_rep_layer, self.prompt_rep_layer(prompts))

    def score_with_label_side(self, words: torch.Tensor, labels: LabelSide) -> torch.Tensor:
        return score_all_spans(self.span_rep_layer.span_rep_layer, words, labels)


class UniEncoderSpanModel(SpanModel):
    def __init__(self, config: GLiNERConfig, token_rep_layer: TokenEncoder):
        super().__init__(config)
        self.token_rep_layer = token_rep_layer
        if config.num_rnn_layers > 0:
            self.rnn = WordLSTM(config.hidden_size, config.num_rnn_layers)

    def forward(self, input_ids, attention_mask, words_mask, text_lengths, span_idx, span_mask, reference: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, W, K, C) and the mask (B, C) of the label slots each row really has."""
        token_embeds = self.token_rep_layer(input_ids, attention_mask)
        prompts, prompts_mask = extract_prompts(token_embeds, input_ids, attention_mask, self.config.class_token_index, self.config.embed_ent_token)
        words = self.word_vectors(token_embeds, words_mask, text_lengths, span_idx.size(1) // self.config.max_width)
        return self.score(words, span_idx, span_mask, prompts, reference), prompts_mask

    def word_vectors(self, token_embeds, words_mask, text_lengths, num_words: int) -> torch.Tensor:
        words = extract_words(token_embeds, words_mask, num_words)
        if hasattr(self, "rnn"):
            words = self.rnn(words, text_lengths)
        return words


class BiEncoderSpanModel(SpanModel):
    """No LSTM: upstream bi-encoders carry trained `rnn.*` weights but never use them."""

    def __init__(self, config: GLiNERConfig, token_rep_layer: BiEncoder):
        super().__init__(config)
        self.token_rep_layer = token_rep_layer

    def encode_labels(self, labels_input_ids: torch.Tensor, labels_attention_mask: torch.Tensor) -> torch.Tensor:
        """(C, D) pooled label vectors, before `prompt_rep_layer` (what upstream's `encode_labels` returns)."""
        return self.token_rep_layer.encode_labels(labels_input_ids, labels_attention_mask)

    def forward(self, input_ids, attention_mask, words_mask, text_lengths, span_idx, span_mask, labels_embeds=None,
                reference: bool = True, cached_label_side: LabelSide | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """labels_embeds: (C, D) from encode_labels; or, fast path only, the cached `label_side` of them."""
        token_embeds = self.token_rep_layer.encode_text(input_ids, attention_mask)
        words = extract_words(token_embeds, words_mask, span_idx.size(1) // self.config.max_width)
        if cached_label_side is not None and not reference:
            batch = words.size(0)
            expanded = LabelSide(cached_label_side.vectors.expand(batch, -1, -1), cached_label_side.bias.expand(batch, -1))
            prompts_mask = torch.ones(batch, expanded.bias.size(-1), dtype=torch.long, device=words.device)
            return self.score_with_label_side(words, expanded), prompts_mask
        prompts = labels_embeds.to(words.dtype).unsqueeze(0).expand(words.size(0), -1, -1)
        prompts_mask = torch.ones(prompts.shape[:2], dtype=torch.long, device=prompts.device)
        return self.score(words, span_idx, span_mask, prompts, reference), prompts_mask


def extract_words(token_embeds: torch.Tensor, words_mask: torch.Tensor, num_words: int) -> torch.Tensor:
    """(B, W, D): each word's first-subword vector; words that got no subword stay zero."""
    words = token_embeds.new_zeros(token_embeds.size(0), num_words, token_embeds.size(-1))
    rows, positions = torch.where((words_mask > 0) & (words_mask <= num_words))
    words[rows, words_mask[rows, positions] - 1] = token_embeds[rows, positions]
    return words


def extract_prompts(token_embeds, input_ids, attention_mask, class_token_index: int, embed_ent_token: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, D) vectors at each `<<ENT>>` (or the token after it) in order, and their mask."""
    is_class_token = input_ids.eq(class_token_index) & attention_mask.gt(0)
    counts = is_class_token.sum(-1)
    num_slots = int(counts.max()) if counts.numel() else 0
    slots = torch.arange(num_slots, device=input_ids.device).expand(input_ids.size(0), -1)
    prompts_mask = (slots < counts.unsqueeze(-1)).long()
    rows, positions = torch.where(is_class_token)
    if not embed_ent_token:
        positions = positions + 1
    prompts = token_embeds.new_zeros(input_ids.size(0), num_slots, token_embeds.size(-1))
    slot_rows, slot_index = torch.where(prompts_mask.bool())
    prompts[slot_rows, slot_index] = token_embeds[rows, positions]
    return prompts, prompts_mask


def build_model(config: GLiNERConfig, backbone_path: str | None = None, labels_backbone_path: str | None = None) -> SpanModel:
    """A model with random heads; backbones random too unless pretrained paths (dirs or hub ids) are given."""
    text_config = build_hf_config(config.encoder_config, backbone_path or config.model_name, config.vocab_size)
    bert_layer = Backbone(text_config, backbone_path, config.attn_implementation)
    if not config.is_bi_encoder:
        return UniEncoderSpanModel(config, TokenEncoder(bert_layer, config.hidden_size))
    label_config = build_hf_config(config.labels_encoder_config, labels_backbone_path or config.labels_encoder)
    labels_encoder = Backbone(label_config, labels_backbone_path)
    return BiEncoderSpanModel(config, BiEncoder(bert_layer, labels_encoder, config.hidden_size))
