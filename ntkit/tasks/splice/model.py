"""The splice model: a base NT model (frozen, + IA3, or fully trained) and a per-nucleotide head.

Heads (``head=``):

- ``linear`` (NT/SegmentNT's probe): each token's last-layer embedding -> 6 x 3 logits; slot ``k``
  of a 6-mer token is its ``k``-th nucleotide, a single-base token (N, a leftover base) uses slot 0.
- ``segment``: per nucleotide, the embedding of the token covering it (projected to ``channels``)
  plus a learned embedding of its slot in that token, added to a one-hot stem of the bases
  themselves, then SpliceAI's residual units (BatchNorm-ReLU-dilated Conv, twice, plus the skip)
  with growing dilation, and a 1x1 convolution to 3 logits. The convolutions see every base
  (receptive field ``receptive_field`` bp), the NT branch the model's context.
- ``bases``: the ``segment`` head without the NT branch (the base model is not run): the
  "no NT" ablation.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ntkit.core.sequence import one_hot
from ntkit.models.adapters import Adapted
from ntkit.models.heads import SegmentHead
from ntkit.tasks.options import check_head_method  # noqa: F401  (re-exported)
from ntkit.tasks.splice.data import CLASSES

HEADS = ("linear", "segment", "bases")


class SpliceModel(Adapted):
    """Base model + a head (``HEADS``; ``adapters.Adapted``); ``forward`` gives per-nucleotide
    logits [B, N, 3]. ``method``: ``ia3`` (IA3 adapter trained), ``full`` (every weight),
    ``frozen`` (the base fixed, the head alone trains)."""

    def __init__(self, base, method: str = "ia3", attach: bool = True, head: str = "linear", channels: int = 32):
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, not {head!r}")
        if method not in ("ia3", "full", "frozen"):
            raise ValueError(f"method must be ia3, full or frozen, not {method!r}")
        check_head_method(head, method)
        hidden = base.config.hidden_size
        module = nn.Linear(hidden, 6 * len(CLASSES)) if head == "linear" else SegmentHead(hidden if head == "segment" else None, channels)
        super().__init__(base, method, module, attach_adapter=attach, uses_base=head != "bases")
        self.head_kind, self.channels = head, channels

    def forward(self, ids, mask, gather_tok, gather_slot, onehot=None):
        """``gather_tok`` / ``gather_slot`` [B, N]: token and slot of each nucleotide (-1 = none);
        ``onehot`` [B, N, 4] (ACGT; N and padding all zero): the bases, for the convolutional heads."""
        h = None
        if self.head_kind != "bases":
            h = self.base(ids, mask, repr_layers=[-1], return_logits=False).hidden_states[-1]  # the last layer, any family
        if self.head_kind != "linear":
            return self.head(onehot, h, gather_tok, gather_slot)
        z = self.head(h).view(h.shape[0], h.shape[1], 6, len(CLASSES))
        b = torch.arange(ids.shape[0], device=ids.device)[:, None]
        return z[b, gather_tok.clamp(min=0), gather_slot.clamp(min=0)]  # [B, N, 3]


def _encode(tok, seqs: list[str], device):
    """(ids, mask, nucleotide -> token [B, N], slot [B, N], one-hot bases [B, N, 4], TokenBatch)."""
    enc = tok.batch_encode(seqs, truncation=True)
    n2t = enc.nucleotide_to_token()  # [B, N]
    b = np.arange(len(seqs))[:, None]
    slot = np.where(n2t >= 0, np.arange(n2t.shape[1])[None, :] - enc.offsets[b, np.maximum(n2t, 0)], -1)
    onehot = np.zeros((len(seqs), n2t.shape[1], 4), dtype=np.float32)
    for i, s in enumerate(seqs):
        onehot[i, : min(len(s), n2t.shape[1])] = one_hot(s[: n2t.shape[1]])
    ids, mask = enc.to_torch(device)
    return (ids, mask, torch.as_tensor(n2t, device=device), torch.as_tensor(slot, device=device),
            torch.as_tensor(onehot, device=device), enc)
