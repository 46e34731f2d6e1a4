"""The bidirectional LSTM over word vectors that uni-encoders apply before the span layer.

Two exact implementations of the same maths: torch's packed LSTM (reference; fast on GPU through cuDNN), and on
CPU a loop that projects every input step in one matrix product first and then runs only the recurrent product
per step, about ten times faster there (differences at float-rounding level).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class WordLSTM(nn.Module):
    def __init__(self, hidden_size: int, num_layers: int = 1):
        super().__init__()
        self.lstm = nn.LSTM(hidden_size, hidden_size // 2, num_layers=num_layers, bidirectional=True, batch_first=True)

    def forward(self, words: torch.Tensor, lengths: torch.Tensor, reference: bool = True) -> torch.Tensor:
        """(B, W, D) -> (B, W, D); each row runs over its true length only, padded outputs are 0."""
        if reference or words.is_cuda or torch.is_grad_enabled():
            return self._packed(words, lengths)
        return self._stepwise(words, lengths.to(words.device))

    def _packed(self, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = pack_padded_sequence(words, lengths.cpu().clamp(min=1), batch_first=True, enforce_sorted=False)
        output, _ = self.lstm(packed)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=words.size(1))
        return output

    def _stepwise(self, words: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        layer_input = words
        for layer in range(self.lstm.num_layers):
            directions = [self._run_direction(layer_input, lengths, layer, suffix) for suffix in ("", "_reverse")]
            layer_input = torch.cat(directions, dim=-1)
        return layer_input

    def _run_direction(self, inputs: torch.Tensor, lengths: torch.Tensor, layer: int, suffix: str) -> torch.Tensor:
        weight_ih = getattr(self.lstm, f"weight_ih_l{layer}{suffix}")
        weight_hh = getattr(self.lstm, f"weight_hh_l{layer}{suffix}")
        bias = getattr(self.lstm, f"bias_ih_l{layer}{suffix}") + getattr(self.lstm, f"bias_hh_l{layer}{suffix}")
        batch, steps, _ = inputs.shape
        hidden_size = weight_hh.size(1)
        input_gates = torch.addmm(bias, inputs.reshape(batch * steps, -1), weight_ih.t()).view(batch, steps, 4 * hidden_size)
        hidden = inputs.new_zeros(batch, hidden_size)
        cell = inputs.new_zeros(batch, hidden_size)
        outputs = inputs.new_zeros(batch, steps, hidden_size)
        order = range(steps) if suffix == "" else range(steps - 1, -1, -1)
        for step in order:
            gates = torch.addmm(input_gates[:, step], hidden, weight_hh.t())
            in_gate, forget_gate, cell_gate, out_gate = gates.chunk(4, dim=1)
            new_cell = torch.sigmoid(forget_gate) * cell + torch.sigmoid(in_gate) * torch.tanh(cell_gate)
            new_hidden = torch.sigmoid(out_gate) * torch.tanh(new_cell)
            # Rows whose text has ended keep a zero state, so the backward pass starts at each row's last word.
            active = (step < lengths).unsqueeze(1)
            cell = torch.where(active, new_cell, cell)
            hidden = torch.where(active, new_hidden, hidden)
            outputs[:, step] = hidden * active
        return outputs
