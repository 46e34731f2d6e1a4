"""Transformer backbones and the token/label encoders that wrap them (upstream's `token_rep_layer`)."""
from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig



def build_hf_config(embedded: dict | None, source: str, vocab_size: int = -1) -> PretrainedConfig:
    """The backbone's HF config: the one embedded in gliner_config.json, else read from `source` (dir or hub id)."""
    if embedded is not None:
        values = dict(embedded)
        model_type = values.pop("model_type", "deberta-v2")
        return AutoConfig.for_model(model_type, **values)
    hf_config = AutoConfig.from_pretrained(source)
    if vocab_size != -1:
        hf_config.vocab_size = vocab_size
    return hf_config


class Backbone(nn.Module):
    """A Hugging Face encoder held at `.model`, so state-dict keys match upstream (`bert_layer.model.*`)."""

    def __init__(self, hf_config: PretrainedConfig, pretrained_path: str | None = None, attn_implementation: str | None = None):
        super().__init__()
        if attn_implementation is not None:
            hf_config._attn_implementation = attn_implementation
        if pretrained_path is not None:
            self.model = AutoModel.from_pretrained(pretrained_path, config=hf_config)
        else:
            self.model = AutoModel.from_config(hf_config)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)[0]


class TokenEncoder(nn.Module):
    """Text backbone plus an optional linear projection to the model width (upstream `Encoder`)."""

    def __init__(self, bert_layer: Backbone, hidden_size: int):
        super().__init__()
        self.bert_layer = bert_layer
        if bert_layer.hidden_size != hidden_size:
            self.projection = nn.Linear(bert_layer.hidden_size, hidden_size)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        token_embeds = self.bert_layer(input_ids, attention_mask)
        if hasattr(self, "projection"):
            token_embeds = self.projection(token_embeds)
        return token_embeds

    forward = encode_text


class BiEncoder(TokenEncoder):
    """Text backbone and a separate label backbone whose outputs are mean-pooled per label (upstream `BiEncoder`)."""

    def __init__(self, bert_layer: Backbone, labels_encoder: Backbone, hidden_size: int):
        super().__init__(bert_layer, hidden_size)
        self.labels_encoder = labels_encoder
        if labels_encoder.hidden_size != hidden_size:
            self.labels_projection = nn.Linear(labels_encoder.hidden_size, hidden_size)

    def encode_labels(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(C, D): masked mean over every non-pad token of each label, [CLS] and [SEP] included."""
        label_token_embeds = self.labels_encoder(input_ids, attention_mask)
        if hasattr(self, "labels_projection"):
            label_token_embeds = self.labels_projection(label_token_embeds)
        weights = attention_mask.unsqueeze(-1).to(label_token_embeds.dtype)
        return (label_token_embeds * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
