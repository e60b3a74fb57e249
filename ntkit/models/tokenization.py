"""What every tokenizer of ntkit shares: the array batch (``TokenBatch``: ids, mask, and each
token's bases) and one protocol. Calling a tokenizer is transformers' call (a ``BatchEncoding`` of
``input_ids`` / ``attention_mask``, ``padding``, ``truncation``, ``max_length``,
``return_tensors``); ``batch_encode`` is ntkit's array API (a ``TokenBatch`` with each token's
nucleotide offsets and spans). The special tokens and ``model_max_length`` carry transformers'
names in every family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from transformers import BatchEncoding

IUPAC_AMBIGUOUS = "RYSWKMBDHV"


VERY_LARGE_INTEGER = int(1e30)  # transformers' model_max_length of a tokenizer without a limit


@dataclass
class TokenBatch:
    """A right-padded batch.

    ``offsets[b, t]`` is the 0-based nucleotide start of token ``t`` in sequence ``b`` and
    ``spans[b, t]`` its length in bases (6 for a 6-mer, 1 for a single base or ``N``); both are
    -1 / 0 for ``<cls>`` and padding. ``n_iupac[b]`` counts ambiguity codes turned into ``N``.
    """

    input_ids: np.ndarray  # int64 [B, L]
    attention_mask: np.ndarray  # bool [B, L]
    offsets: np.ndarray  # int64 [B, L]
    spans: np.ndarray  # int8 [B, L]
    seq_lengths: np.ndarray  # int64 [B], nucleotides covered by the kept tokens
    n_iupac: np.ndarray  # int64 [B]
    n_truncated: np.ndarray  # int64 [B], nucleotides dropped by truncation

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def nucleotide_to_token(self) -> np.ndarray:
        """int64 [B, max_seq_len]: the token index covering each nucleotide (-1 beyond the sequence)."""
        n = int(self.seq_lengths.max(initial=0))
        out = np.full((len(self), n), -1, dtype=np.int64)
        b, t = np.nonzero(self.spans > 0)
        span = self.spans[b, t].astype(np.int64)
        rows = np.repeat(b, span)
        cols = np.repeat(self.offsets[b, t], span) + ranks(span)
        out[rows, cols] = np.repeat(t, span)
        return out

    def to_torch(self, device=None):
        return (
            torch.as_tensor(self.input_ids, device=device),
            torch.as_tensor(self.attention_mask, device=device),
        )


def ranks(counts: np.ndarray) -> np.ndarray:
    """[0..c0-1, 0..c1-1, ...] for run lengths ``counts``."""
    total = int(counts.sum())
    starts = np.cumsum(counts) - counts
    return np.arange(total, dtype=np.int64) - np.repeat(starts, counts)


class TokenizerBase:
    """transformers' side of every ntkit tokenizer. A subclass has ``vocab`` (list of tokens),
    ``token_to_id``, ``pad_id`` / ``unk_id`` / ``mask_id`` / ``cls_id``, ``n_special`` (tokens before
    the sequence: 1 for ``<cls>``, 0 for single-base models), ``max_tokens`` and
    ``batch_encode(sequences, max_length=, truncation=, add_cls=) -> TokenBatch``."""

    pad_token, unk_token, mask_token, cls_token = "<pad>", "<unk>", "<mask>", "<cls>"
    padding_side = "right"
    model_input_names = ["input_ids", "attention_mask"]

    def __call__(self, text: str | Sequence[str], *, padding: bool | str = False, truncation: bool | None = None,
                 max_length: int | None = None, return_tensors: str | None = None, add_special_tokens: bool = True,
                 return_attention_mask: bool = True) -> BatchEncoding:
        """transformers' tokenizer call, with the hub tokenizer's results for the same arguments: a
        ``BatchEncoding`` of ``input_ids`` and ``attention_mask`` (lists, or ``return_tensors`` "pt" /
        "np"; one string: one row). ``padding`` True / "longest" / "max_length"; ``truncation``
        (True, or unset with a ``max_length``) keeps ``max_length`` tokens, special tokens included
        (default ``model_max_length``: the model's context). A single-base model's rows are its
        bases (its length rule's N filler is the model's business). ``batch_encode`` gives arrays
        with nucleotide offsets and spans."""
        single = isinstance(text, str)
        seqs = [text] if single else list(text)
        if truncation is None:
            truncation = max_length is not None  # as transformers: a max_length alone truncates
        limit = (max_length if max_length is not None else self.model_max_length) if truncation else None
        b = self.batch_encode(seqs, max_length=limit, truncation=bool(truncation), add_cls=add_special_tokens and self.n_special > 0)
        rows = [b.input_ids[i, b.attention_mask[i]].tolist() for i in range(len(seqs))]
        width = None
        if padding is True or padding == "longest":
            width = max(map(len, rows), default=0)
        elif padding == "max_length":
            width = max_length if max_length is not None else self.model_max_length
        elif padding not in (False, None, "do_not_pad"):
            raise ValueError(f"padding must be True, 'longest', 'max_length' or False, not {padding!r}")
        masks = [[1] * len(r) + [0] * max(0, (width or 0) - len(r)) for r in rows]
        if width is not None:
            rows = [r + [self.pad_id] * (width - len(r)) for r in rows]
        data = {"input_ids": rows[0] if single else rows}
        if return_attention_mask:
            data["attention_mask"] = masks[0] if single else masks
        return BatchEncoding(data, tensor_type=return_tensors, prepend_batch_axis=single and return_tensors is not None)

    def __len__(self) -> int:
        return len(self.vocab)

    @property
    def pad_token_id(self) -> int:
        return self.pad_id

    @property
    def unk_token_id(self) -> int:
        return self.unk_id

    @property
    def mask_token_id(self) -> int:
        return self.mask_id

    @property
    def cls_token_id(self) -> int:
        return self.cls_id

    @property
    def model_max_length(self) -> int:
        """Tokens per input, special tokens included: ``max_tokens``, or no limit (transformers' huge number)."""
        return self.max_tokens or VERY_LARGE_INTEGER

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.token_to_id)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]):
        if isinstance(tokens, str):
            return self.token_to_id.get(tokens, self.unk_id)
        return [self.token_to_id.get(t, self.unk_id) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]):
        if isinstance(ids, (int, np.integer)):
            return self.vocab[int(ids)]
        return [self.vocab[int(i)] for i in ids]
