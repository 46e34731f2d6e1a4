"""GLiNER's span models in one file: a uni-encoder (labels written into the prompt) and a bi-encoder (labels
encoded by a second backbone).

Shapes: B texts, T subword tokens, W words (the longest text), K = max_width span widths, C labels,
H the backbone's width, D the model's width (config.hidden_size).

One prediction, uni-encoder:
    "<<ENT>> disease <<ENT>> gene <<SEP>> BRCA1 causes breast cancer"  -> input_ids (B, T)
    backbone (+ projection H -> D)                                      -> tokens (B, T, D)
    each word's first subword, then a BiLSTM over the words            -> words (B, W, D)
    each label's <<ENT>> vector, then prompt_rep_layer                  -> labels (B, C, D)
    span (s, s + k) for label c:  out_project(ReLU([start(s) ; end(s + k)])) . label_c
                                                                        -> logits (B, W, K, C)
The span head computes that score in an exact factorised form (SpanHead), never building a (B, W, K, D) tensor.
The bi-encoder has no LSTM and takes its label vectors from the label backbone, mean-pooled per label.

Module names are this file's own; checkpoints keep upstream's key tree through UPSTREAM_PREFIXES.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from transformers import AutoConfig, AutoModel, PretrainedConfig

from .config import GLiNERConfig

# The forward's inputs, all made by gliner.inputs.encode_words (which also makes span_idx/span_mask for the loss).
MODEL_INPUTS = ("input_ids", "attention_mask", "words_mask", "text_lengths")

# Our module name -> upstream's checkpoint key prefix. Everything else (rnn.lstm, prompt_rep_layer) is named alike.
UPSTREAM_PREFIXES = {
    "backbone.": "token_rep_layer.bert_layer.model.",
    "projection.": "token_rep_layer.projection.",
    "labels_backbone.": "token_rep_layer.labels_encoder.model.",
    "labels_projection.": "token_rep_layer.labels_projection.",
    "span_head.": "span_rep_layer.span_rep_layer.",
}


def upstream_key(name: str) -> str:
    for ours, theirs in UPSTREAM_PREFIXES.items():
        if name.startswith(ours):
            return theirs + name[len(ours):]
    return name


def our_key(key: str) -> str:
    for ours, theirs in UPSTREAM_PREFIXES.items():
        if key.startswith(theirs):
            return ours + key[len(theirs):]
    return key


def is_encoder_parameter(name: str) -> bool:
    """Backbones and their projections: what upstream groups under `token_rep_layer` (its encoder learning rate)."""
    return upstream_key(name).startswith("token_rep_layer.")


# ---------------------------------------------------------------------------------------------------- backbone
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


def load_backbone(hf_config: PretrainedConfig, pretrained_path: str | None = None, attn_implementation: str | None = None) -> nn.Module:
    """A Hugging Face encoder: pretrained weights from a dir or hub id, else random."""
    if attn_implementation is not None:
        hf_config._attn_implementation = attn_implementation
    if pretrained_path is not None:
        return AutoModel.from_pretrained(pretrained_path, config=hf_config)
    return AutoModel.from_config(hf_config)


# Attention kernels the backbones may use on a GPU: not cuDNN's, which torch prefers for bf16 on Hopper GPUs and
# which builds an execution plan for every new (batch, length) shape. Batches padded to their longest text bring new
# shapes for hours; on an H200 a bf16 training pass over unseen shapes ran at 513 ms/step with it, 72 without.
GPU_ATTENTION_KERNELS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def attention_kernels(device: torch.device):
    return sdpa_kernel(GPU_ATTENTION_KERNELS) if device.type == "cuda" else contextlib.nullcontext()


def run_backbone(backbone: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) -> (B, T, H): the encoder's last hidden states."""
    with attention_kernels(input_ids.device):
        return backbone(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)[0]


def projection_mlp(in_size: int, out_size: int, dropout: float, expansion: int = 4) -> nn.Sequential:
    """Linear -> ReLU -> Dropout -> Linear, the two-layer block upstream uses everywhere (keys `.0` and `.3`)."""
    inner = out_size * expansion
    return nn.Sequential(nn.Linear(in_size, inner), nn.ReLU(), nn.Dropout(dropout), nn.Linear(inner, out_size))


# ---------------------------------------------------------------------------------------------------- words
def extract_words(tokens: torch.Tensor, words_mask: torch.Tensor, num_words: int) -> torch.Tensor:
    """tokens (B, T, D) -> words (B, W, D): each word's first-subword vector; a word with no subword stays zero.
    words_mask[b, t] is k when subword t starts text word k (1-based), else 0. A scatter into W + 1 slots, slot 0
    taking every other subword and then dropped: no data-dependent shape, so no device-to-host sync."""
    slots = torch.where(words_mask <= num_words, words_mask, 0)  # (B, T)
    words = tokens.new_zeros(tokens.size(0), num_words + 1, tokens.size(-1))
    words.scatter_(1, slots.unsqueeze(-1).expand(-1, -1, tokens.size(-1)), tokens)
    return words[:, 1:].contiguous()  # the layout of a (B, W, D) tensor: its kernels, and so its bits, downstream


def extract_prompts(tokens, input_ids, attention_mask, class_token_index: int, embed_ent_token: bool,
                    num_slots: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """tokens (B, T, D) -> label vectors (B, C, D) at each `<<ENT>>` (or the token after it), in order, and the
    mask (B, C) of the label slots each row really has. `num_slots` (C, when the host knows it) spares the one
    device-to-host sync: the vectors are scattered into C + 1 slots, slot 0 taking every other token."""
    is_class_token = input_ids.eq(class_token_index) & attention_mask.gt(0)  # (B, T)
    counts = is_class_token.sum(-1)  # (B,)
    if num_slots is None:
        num_slots = int(counts.max()) if counts.numel() else 0
    prompts_mask = (torch.arange(num_slots, device=input_ids.device) < counts.unsqueeze(-1)).long()  # (B, C)
    slots = torch.where(is_class_token, is_class_token.cumsum(-1), 0)  # (B, T): the 1-based slot of each <<ENT>>
    sources = tokens if embed_ent_token else torch.cat([tokens[:, 1:], tokens[:, -1:]], dim=1)  # the token after it
    prompts = tokens.new_zeros(input_ids.size(0), num_slots + 1, tokens.size(-1))
    slots = torch.where(slots <= num_slots, slots, 0)
    prompts.scatter_(1, slots.unsqueeze(-1).expand(-1, -1, tokens.size(-1)), sources)
    return prompts[:, 1:].contiguous(), prompts_mask


def num_words_of(text_lengths: torch.Tensor) -> int:
    """W: the longest text's word count (at least 1). text_lengths lives on the host, so this costs no sync."""
    return max(int(text_lengths.max()), 1) if text_lengths.numel() else 1


class WordLSTM(nn.Module):
    """The bidirectional LSTM uni-encoders run over word vectors: (B, W, D) -> (B, W, D), D/2 per direction."""

    def __init__(self, hidden_size: int, num_layers: int = 1):
        super().__init__()
        self.lstm = nn.LSTM(hidden_size, hidden_size // 2, num_layers=num_layers, bidirectional=True, batch_first=True)

    def forward(self, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Packed by each row's true length: padding never reaches either direction, and padded outputs are 0.

        Runs in its weights' dtype with autocast off: cuDNN's LSTM under autocast runs in fp16 whatever dtype
        autocast was given, and a recurrence over hundreds of words accumulates half-precision rounding."""
        if words.is_cuda:
            self.lstm.flatten_parameters()  # weights re-pointed by an optimizer wrapper are no longer one cuDNN buffer
        packed = pack_padded_sequence(words.to(self.lstm.weight_ih_l0.dtype), lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
        with torch.autocast(device_type=words.device.type, enabled=False):
            output, _ = self.lstm(packed)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=words.size(1))
        return output.to(words.dtype)


# ---------------------------------------------------------------------------------------------------- span head
@dataclass
class LabelSide:
    """What the labels contribute to every span score: vectors (B, C, 4D) for markerV0 or (B, C, 2D) for marker,
    and a bias (B, C). Fixed for a fixed label set, so a bi-encoder can compute it once."""

    vectors: torch.Tensor
    bias: torch.Tensor


class SpanHead(nn.Module):
    """Scores every span of up to K words against every label.

    markerV0 (upstream's default): out_project is Linear(2D, 4D) -> ReLU -> Linear(4D, D), and a span's score is
        out_project(ReLU([S_s ; E_e])) . p_c   with S = project_start(words), E = project_end(words).
    The ReLU acts element-wise on the concatenation, so the first layer splits into per-word terms,
        W1 ReLU([S_s ; E_e]) + b1 = A_s + B_e,   A = ReLU(S) W1[:, :D]^T,   B = ReLU(E) W1[:, D:]^T + b1,
    and the last layer folds into the labels:  score = ReLU(A_s + B_e) . q_c + beta_c,  q_c = W2^T p_c,  beta_c = b2 . p_c.
    That is 4D*C multiply-adds per span instead of 12*D^2, and equals the span-vector computation up to rounding.
    marker: out_project is a single Linear(2D, D), so a score separates into a start term plus an end term.
    """

    def __init__(self, span_mode: str, hidden_size: int, max_width: int, dropout: float):
        super().__init__()
        self.span_mode, self.max_width = span_mode, max_width
        expansion = 4 if span_mode == "markerV0" else 2
        self.project_start = projection_mlp(hidden_size, hidden_size, dropout, expansion)
        self.project_end = projection_mlp(hidden_size, hidden_size, dropout, expansion)
        if span_mode == "markerV0":
            self.out_project = projection_mlp(2 * hidden_size, hidden_size, dropout)
        else:
            self.out_project = nn.Linear(2 * hidden_size, hidden_size)

    @property
    def last_layer(self) -> nn.Linear:
        return self.out_project[3] if self.span_mode == "markerV0" else self.out_project

    def label_side(self, labels: torch.Tensor) -> LabelSide:
        """labels (B, C, D), after prompt_rep_layer -> the per-label factors q (B, C, 4D or 2D) and beta (B, C)."""
        last = self.last_layer
        labels = labels.to(last.weight.dtype)  # the label side, and so the logits, run in the last layer's dtype
        return LabelSide(vectors=labels @ last.weight, bias=labels @ last.bias)

    def forward(self, words: torch.Tensor, labels: LabelSide) -> torch.Tensor:
        """words (B, W, D) -> logits (B, W, K, C); spans running past the last word get -inf."""
        batch, num_words, _ = words.shape
        logits = labels.bias.new_full((batch, num_words, self.max_width, labels.bias.size(-1)), float("-inf"))
        starts = self.project_start(words).relu()  # (B, W, D)
        ends = self.project_end(words).relu()  # (B, W, D)
        if self.span_mode == "markerV0":
            self._fill_two_layer(starts, ends, labels, logits)
        else:
            self._fill_one_layer(starts, ends, labels, logits)
        return logits

    def _fill_two_layer(self, starts, ends, labels: LabelSide, logits: torch.Tensor) -> None:
        first, width, num_words = self.out_project[0], starts.size(-1), starts.size(1)
        start_terms = starts @ first.weight[:, :width].t()  # A (B, W, 4D)
        end_terms = torch.addmm(first.bias, ends.flatten(0, 1), first.weight[:, width:].t()).view(*ends.shape[:2], -1)  # B (B, W, 4D)
        label_vectors_t = labels.vectors.transpose(1, 2)  # (B, 4D, C)
        for offset in range(min(self.max_width, num_words)):  # span (s, s + offset) for every start s at once
            hidden = self.out_project[2]((start_terms[:, : num_words - offset] + end_terms[:, offset:]).relu())  # dropout
            logits[:, : num_words - offset, offset] = torch.baddbmm(labels.bias.unsqueeze(1), hidden.to(label_vectors_t.dtype), label_vectors_t)

    def _fill_one_layer(self, starts, ends, labels: LabelSide, logits: torch.Tensor) -> None:
        width, num_words = starts.size(-1), starts.size(1)
        starts, ends = starts.to(labels.vectors.dtype), ends.to(labels.vectors.dtype)
        start_scores = starts @ labels.vectors[..., :width].transpose(1, 2)  # (B, W, C)
        end_scores = ends @ labels.vectors[..., width:].transpose(1, 2) + labels.bias.unsqueeze(1)  # (B, W, C)
        for offset in range(min(self.max_width, num_words)):
            logits[:, : num_words - offset, offset] = start_scores[:, : num_words - offset] + end_scores[:, offset:]


# ---------------------------------------------------------------------------------------------------- models
class SpanModel(nn.Module):
    """What both variants share: the text backbone (+ projection), the span head and the label projection."""

    def __init__(self, config: GLiNERConfig, backbone: nn.Module):
        super().__init__()
        self.config = config
        self.backbone = backbone
        if backbone.config.hidden_size != config.hidden_size:
            self.projection = nn.Linear(backbone.config.hidden_size, config.hidden_size)
        self.span_head = SpanHead(config.span_mode, config.hidden_size, config.max_width, config.dropout)
        self.prompt_rep_layer = projection_mlp(config.hidden_size, config.hidden_size, config.dropout)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, T, D)."""
        tokens = run_backbone(self.backbone, input_ids, attention_mask)  # (B, T, H)
        return self.projection(tokens) if hasattr(self, "projection") else tokens

    def score(self, words: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """words (B, W, D), labels (B, C, D) before prompt_rep_layer -> logits (B, W, K, C)."""
        return self.span_head(words, self.span_head.label_side(self.prompt_rep_layer(labels)))


class UniEncoderSpanModel(SpanModel):
    def __init__(self, config: GLiNERConfig, backbone: nn.Module):
        super().__init__(config, backbone)
        if config.num_rnn_layers > 0:
            self.rnn = WordLSTM(config.hidden_size, config.num_rnn_layers)

    def forward(self, input_ids, attention_mask, words_mask, text_lengths, prompt_lengths=None, num_words: int | None = None,
                num_labels: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, W, K, C) and the mask (B, C) of the label slots each row really has. prompt_lengths (B,), on
        the host: each row's number of labels, when the caller knows it (then the forward never waits for the device).
        num_words (W) and num_labels (C), when given, fix the output's size (a training batch padded to a bucket's
        shape): the forward then reads no tensor's values to size a tensor, so a compiled step does not break there."""
        tokens = self.encode_text(input_ids, attention_mask)  # (B, T, D)
        if num_labels is None and prompt_lengths is not None and prompt_lengths.numel():
            num_labels = int(prompt_lengths.max())
        labels, labels_mask = extract_prompts(tokens, input_ids, attention_mask, self.config.class_token_index, self.config.embed_ent_token, num_labels)
        words = self.word_vectors(tokens, words_mask, text_lengths, num_words)
        return self.score(words, labels), labels_mask

    def word_vectors(self, tokens, words_mask, text_lengths, num_words: int | None = None) -> torch.Tensor:
        """tokens (B, T, D) -> words (B, W, D), through the LSTM when the model has one."""
        words = extract_words(tokens, words_mask, num_words or num_words_of(text_lengths))
        return self.rnn(words, text_lengths) if hasattr(self, "rnn") else words


class BiEncoderSpanModel(SpanModel):
    """No LSTM: upstream bi-encoders carry trained `rnn.*` weights but never use them."""

    def __init__(self, config: GLiNERConfig, backbone: nn.Module, labels_backbone: nn.Module):
        super().__init__(config, backbone)
        self.labels_backbone = labels_backbone
        if labels_backbone.config.hidden_size != config.hidden_size:
            self.labels_projection = nn.Linear(labels_backbone.config.hidden_size, config.hidden_size)

    def encode_labels(self, labels_input_ids: torch.Tensor, labels_attention_mask: torch.Tensor) -> torch.Tensor:
        """(C, L) label tokens -> (C, D) label vectors: the masked mean over every non-pad token, [CLS] and [SEP]
        included, before prompt_rep_layer (what upstream's `encode_labels` returns)."""
        tokens = run_backbone(self.labels_backbone, labels_input_ids, labels_attention_mask)  # (C, L, H)
        if hasattr(self, "labels_projection"):
            tokens = self.labels_projection(tokens)  # (C, L, D)
        weights = labels_attention_mask.unsqueeze(-1).to(tokens.dtype)
        return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

    def forward(self, input_ids, attention_mask, words_mask, text_lengths, labels_embeds, num_words: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """labels_embeds (C, D) from encode_labels -> logits (B, W, K, C) and an all-ones label mask (B, C)."""
        tokens = self.encode_text(input_ids, attention_mask)
        words = extract_words(tokens, words_mask, num_words or num_words_of(text_lengths))  # (B, W, D)
        labels = labels_embeds.to(words.dtype).unsqueeze(0).expand(words.size(0), -1, -1)  # (B, C, D)
        labels_mask = torch.ones(labels.shape[:2], dtype=torch.long, device=labels.device)
        return self.score(words, labels), labels_mask


def build_model(config: GLiNERConfig, backbone_path: str | None = None, labels_backbone_path: str | None = None) -> SpanModel:
    """A model with random heads; backbones random too unless pretrained paths (dirs or hub ids) are given."""
    text_config = build_hf_config(config.encoder_config, backbone_path or config.model_name, config.vocab_size)
    backbone = load_backbone(text_config, backbone_path, config.attn_implementation)
    if not config.is_bi_encoder:
        return UniEncoderSpanModel(config, backbone)
    labels_config = build_hf_config(config.labels_encoder_config, labels_backbone_path or config.labels_encoder)
    return BiEncoderSpanModel(config, backbone, load_backbone(labels_config, labels_backbone_path))
