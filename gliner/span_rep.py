"""Span representations from start and end word vectors (`markerV0` and `marker`), keyed as upstream."""
from __future__ import annotations

import torch
from torch import nn



def projection_mlp(in_size: int, out_size: int, dropout: float, expansion: int = 4) -> nn.Sequential:
    """Linear -> ReLU -> Dropout -> Linear, the two-layer block upstream uses everywhere (keys `.0` and `.3`)."""
    inner = out_size * expansion
    return nn.Sequential(nn.Linear(in_size, inner), nn.ReLU(), nn.Dropout(dropout), nn.Linear(inner, out_size))


class SpanMarker(nn.Module):
    """`markerV0` (4x MLPs, two-layer output) or `marker` (2x MLPs, single linear output)."""

    def __init__(self, span_mode: str, hidden_size: int, max_width: int, dropout: float):
        super().__init__()
        self.max_width = max_width
        expansion = 4 if span_mode == "markerV0" else 2
        self.project_start = projection_mlp(hidden_size, hidden_size, dropout, expansion)
        self.project_end = projection_mlp(hidden_size, hidden_size, dropout, expansion)
        if span_mode == "markerV0":
            self.out_project = projection_mlp(2 * hidden_size, hidden_size, dropout)
        else:
            self.out_project = nn.Linear(2 * hidden_size, hidden_size)

    def forward(self, words: torch.Tensor, span_idx: torch.Tensor) -> torch.Tensor:
        """words (B, W, D), span_idx (B, W*K, 2) -> (B, W, K, D)."""
        batch_size, _, width = words.shape
        starts = _gather_words(self.project_start(words), span_idx[..., 0])
        ends = _gather_words(self.project_end(words), span_idx[..., 1])
        spans = self.out_project(torch.cat([starts, ends], dim=-1).relu())
        return spans.view(batch_size, span_idx.size(1) // self.max_width, self.max_width, width)


class SpanRepLayer(nn.Module):
    """Holder that reproduces upstream's `span_rep_layer.span_rep_layer.*` key prefix."""

    def __init__(self, span_mode: str, hidden_size: int, max_width: int, dropout: float):
        super().__init__()
        self.span_rep_layer = SpanMarker(span_mode, hidden_size, max_width, dropout)

    def forward(self, words: torch.Tensor, span_idx: torch.Tensor) -> torch.Tensor:
        return self.span_rep_layer(words, span_idx)


def _gather_words(words: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    return torch.gather(words, 1, indices.unsqueeze(-1).expand(-1, -1, words.size(-1)))
