"""Per-nucleotide heads that several tasks put on a base model: SpliceAI's residual units
(BatchNorm-ReLU-dilated Conv, twice, plus the skip) over a one-hot stem of the bases, with NT's
token embeddings brought to the bases they cover when the head reads a model (``SegmentHead``:
the splice model's ``segment`` / ``bases`` heads, ``segmentation.BasesSegmenter``)."""

from __future__ import annotations

import torch
import torch.nn as nn

# (kernel, dilation) of the residual units: SpliceAI-80nt's 4 x (11, 1), then wider.
UNITS = ((11, 1),) * 4 + ((11, 4),) * 4 + ((21, 10),) * 2


class ResidualUnit(nn.Module):
    def __init__(self, channels: int, kernel: int, dilation: int):
        super().__init__()
        pad = dilation * (kernel - 1) // 2  # 'same' length
        self.body = nn.Sequential(
            nn.BatchNorm1d(channels), nn.ReLU(), nn.Conv1d(channels, channels, kernel, dilation=dilation, padding=pad),
            nn.BatchNorm1d(channels), nn.ReLU(), nn.Conv1d(channels, channels, kernel, dilation=dilation, padding=pad),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class SegmentHead(nn.Module):
    """Per-nucleotide logits [B, N, n_out] (default 3: the splice classes) from the bases (and NT's
    token embeddings when ``hidden``); ``segmentation.BasesSegmenter`` uses it with 2 per element."""

    def __init__(self, hidden: int | None, channels: int = 32, units=UNITS, n_out: int = 3):
        super().__init__()
        self.stem = nn.Conv1d(4, channels, 1)
        self.token = nn.Linear(hidden, channels) if hidden else None
        self.slot = nn.Embedding(6, channels) if hidden else None
        self.units = nn.Sequential(*(ResidualUnit(channels, k, d) for k, d in units))
        self.out = nn.Conv1d(channels, n_out, 1)
        self.receptive_field = 1 + sum(2 * d * (k - 1) for k, d in units)

    def forward(self, onehot: torch.Tensor, h: torch.Tensor | None, gather_tok, gather_slot) -> torch.Tensor:
        x = self.stem(onehot.transpose(1, 2))  # [B, C, N]
        if self.token is not None:
            b = torch.arange(h.shape[0], device=h.device)[:, None]
            per_base = self.token(h[b, gather_tok.clamp(min=0)]) + self.slot(gather_slot.clamp(min=0))  # [B, N, C]
            per_base = per_base * (gather_tok >= 0).unsqueeze(-1).to(per_base.dtype)  # no token (padding, truncated): 0
            x = x + per_base.transpose(1, 2).to(x.dtype)
        return self.out(self.units(x)).transpose(1, 2)  # [B, N, n_out]
