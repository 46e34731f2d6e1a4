"""The bidirectional LSTM over word vectors that uni-encoders apply before the span layer."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class WordLSTM(nn.Module):
    def __init__(self, hidden_size: int, num_layers: int = 1):
        super().__init__()
        self.lstm = nn.LSTM(hidden_size, hidden_size // 2, num_layers=num_layers, bidirectional=True, batch_first=True)

    def forward(self, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, W, D) -> (B, W, D) in the input's dtype, packed by each row's true length: padding never reaches
        either direction and the backward pass starts at each row's last word; padded outputs are 0.

        Runs in its weights' dtype (fp32 unless the whole model was cast) with autocast off: cuDNN's LSTM under
        autocast runs in fp16 whatever dtype autocast was given, and a recurrence over hundreds of words accumulates
        half-precision rounding. `lengths` best stays on the host (packing reads it there; on a GPU it costs a sync)."""
        if words.is_cuda:
            self.lstm.flatten_parameters()  # weights re-pointed by an optimizer wrapper are no longer one cuDNN buffer
        weights_dtype = self.lstm.weight_ih_l0.dtype
        packed = pack_padded_sequence(words.to(weights_dtype), lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
        with torch.autocast(device_type=words.device.type, enabled=False):
            output, _ = self.lstm(packed)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=words.size(1))
        return output.to(words.dtype)
