"""The splice model: a base NT model (+ IA3) and a per-nucleotide head."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .data import CLASSES


class SpliceModel(nn.Module):
    """Base model (+ optional IA3) + a token -> 6 x 3 head; ``forward`` gives per-nucleotide logits."""

    def __init__(self, base, method: str = "ia3", attach: bool = True):
        super().__init__()
        from .. import adapters

        self.base = base
        self.method = method
        self.head = nn.Linear(base.config.hidden_size, 6 * len(CLASSES))
        for p in base.parameters():
            p.requires_grad_(method == "full")
        if attach and method == "ia3":
            adapters.attach(base, "ia3")

    def forward(self, ids, mask, gather_tok, gather_slot):
        """``gather_tok`` / ``gather_slot`` [B, N]: token and slot of each nucleotide (-1 = none)."""
        L = self.base.config.num_layers
        h = self.base(ids, mask, repr_layers=[L], return_logits=False).hidden_states[L]
        z = self.head(h).view(h.shape[0], h.shape[1], 6, len(CLASSES))
        b = torch.arange(ids.shape[0], device=ids.device)[:, None]
        return z[b, gather_tok.clamp(min=0), gather_slot.clamp(min=0)]  # [B, N, 3]

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def _encode(tok, seqs: list[str], device):
    enc = tok.batch_encode(seqs, truncation=True)
    n2t = enc.nucleotide_to_token()  # [B, N]
    b = np.arange(len(seqs))[:, None]
    slot = np.where(n2t >= 0, np.arange(n2t.shape[1])[None, :] - enc.offsets[b, np.maximum(n2t, 0)], -1)
    ids, mask = enc.to_torch(device)
    return ids, mask, torch.as_tensor(n2t, device=device), torch.as_tensor(slot, device=device), enc
