"""One token per base: the tokenizer of NTv3 (and of any single-nucleotide model).

Vocabulary (NTv3's ``vocab.json``): ``<unk> <pad> <mask> <cls> <eos> <bos>`` (ids 0-5), then
``A T C G N`` (ids 6-10). No ``<cls>`` or ``<eos>`` is added: token ``t`` is base ``t``.

The length rule: NTv3's U-Net halves the sequence ``num_downsamples`` times, so a model input must
be a multiple of ``2 ** num_downsamples`` bases (128 for the released models). ``batch_encode``
pads every sequence on the right with ``N`` up to that multiple (``N``, not ``<pad>``: the models
were trained on N, never on pad) and then with ``<pad>`` up to the longest row of the batch.
``attention_mask`` is True on the sequence's own bases only, so the N filler is visible as such;
``seq_lengths`` gives the bases to keep when outputs are trimmed. The model delimits each row by its
``<pad>`` tokens and computes it exactly as it would alone (see ``ntkit.models.ntv3``).

Input handling as for the 6-mer tokenizer: lowercase (soft-masked) bases are upper-cased, IUPAC
ambiguity codes become ``N`` (counted in ``n_iupac``), any other character raises ``ValueError``
naming the sequence and position (``unknown="unk"``: an ``<unk>`` token instead).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from ntkit.models.tokenization import IUPAC_AMBIGUOUS, TokenBatch, TokenizerBase
from ntkit.runtime.jobs import write_text_atomic

VOCAB = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>", "A", "T", "C", "G", "N"]
_BAD = 255
_LUT = np.full(256, _BAD, dtype=np.uint8)
for _c in "ATCGN":
    _LUT[ord(_c)] = _LUT[ord(_c.lower())] = VOCAB.index(_c)
_IUPAC = 254
for _c in IUPAC_AMBIGUOUS:
    _LUT[ord(_c)] = _LUT[ord(_c.lower())] = _IUPAC


def padded_length(n: int, multiple: int) -> int:
    """Bases after the N padding of the length rule: ``n`` rounded up to ``multiple`` (at least one block)."""
    return max(multiple, -(-n // multiple) * multiple)


class BaseTokenizer(TokenizerBase):
    """Single-base tokenizer (NTv3). ``multiple``: the length rule's block (``2 ** num_downsamples``);
    ``max_tokens``: the longest input the model takes, padding included (None: no limit)."""

    version = "base"
    kmer = 1  # bases per token
    n_special = 0  # no <cls>
    eos_token = "<eos>"
    unk_id, pad_id, mask_id, cls_id, eos_id, bos_id = range(6)
    n_id = VOCAB.index("N")
    kmer_offset = single_offset = VOCAB.index("A")  # A T C G (the "k-mers" of k = 1), then N

    def __init__(self, multiple: int = 128, max_tokens: int | None = None, unknown: Literal["error", "unk"] = "error"):
        if unknown not in ("error", "unk"):
            raise ValueError(f"unknown must be 'error' or 'unk', not {unknown!r}")
        if multiple < 1:
            raise ValueError(f"multiple must be positive, not {multiple}")
        self.multiple, self.max_tokens, self.unknown = int(multiple), max_tokens, unknown
        self.vocab = list(VOCAB)
        self.token_to_id = {t: i for i, t in enumerate(self.vocab)}
        self.special_ids = list(range(6))

    def __repr__(self) -> str:
        return f"BaseTokenizer(multiple={self.multiple}, max_tokens={self.max_tokens}, unknown={self.unknown!r})"

    @property
    def standard_ids(self) -> np.ndarray:
        """A C G T N: the targets of random replacement in masked-language modelling."""
        return np.arange(6, 11)

    def token_length(self, sequence_length: int) -> int:
        """Model input length for a sequence of ``sequence_length`` bases (the length rule applied)."""
        return padded_length(sequence_length, self.multiple)

    def ids(self, sequence: str | bytes, name: str | int = 0) -> np.ndarray:
        """Token ids of one sequence, no padding (int64)."""
        return self._ids(sequence, name)[0]

    def _ids(self, sequence: str | bytes, name: str | int) -> tuple[np.ndarray, int]:
        """(ids, the number of IUPAC codes turned into N)."""
        raw = sequence.encode("ascii", errors="replace") if isinstance(sequence, str) else bytes(sequence)
        codes = _LUT[np.frombuffer(raw, dtype=np.uint8)]
        bad = codes == _BAD
        if bad.any():
            if self.unknown == "unk":
                codes = np.where(bad, self.unk_id, codes)
            else:
                p = int(np.flatnonzero(bad)[0])
                raise ValueError(f"sequence {name}: invalid character {chr(raw[p])!r} at position {p} "
                                 "(allowed: A C G T N, IUPAC codes R Y S W K M B D H V, any case)")
        iupac = codes == _IUPAC
        return np.where(iupac, self.n_id, codes).astype(np.int64), int(iupac.sum())

    def encode(self, sequence: str, add_cls: bool = False) -> np.ndarray:
        """Ids of one sequence's bases (no padding, no length limit), as ``Tokenizer.encode``."""
        b = self.batch_encode([sequence], max_length=None, add_cls=add_cls)
        return b.input_ids[0, b.attention_mask[0]]

    def batch_encode(self, sequences: Sequence[str | bytes], max_length: int | None = -1, padding: str = "longest",
                     truncation: bool = False, add_cls: bool = False) -> TokenBatch:
        """A right-padded batch (the module docstring's length rule). ``max_length`` (-1: the
        tokenizer's ``max_tokens``, None: no limit) bounds the bases of a sequence; longer ones raise
        ``ValueError`` unless ``truncation=True``, which keeps the first ``max_length`` bases."""
        if add_cls:
            raise ValueError("single-base models take no <cls> token")
        if max_length == -1:
            max_length = self.max_tokens
        rows, n_iupac, n_trunc = [], [], []
        limit = max_length
        for i, s in enumerate(sequences):
            ids, n = self._ids(s, i)
            n_iupac.append(n)
            cut = 0
            if limit is not None and len(ids) > limit:
                if not truncation:
                    raise ValueError(f"sequence {i}: {len(ids)} bases exceed this model's input of {limit} bases "
                                     "(split it, use chunked inference, or pass truncation=True)")
                cut, ids = len(ids) - limit, ids[:limit]
            rows.append(ids)
            n_trunc.append(cut)
        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        padded = np.array([padded_length(n, self.multiple) for n in lengths], dtype=np.int64)
        width = int(padded.max(initial=0))
        if padding == "max_length" and max_length is not None:
            width = max(width, padded_length(limit, self.multiple))
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        offsets = np.full((len(rows), width), -1, dtype=np.int64)
        spans = np.zeros((len(rows), width), dtype=np.int8)
        mask = np.zeros((len(rows), width), dtype=bool)
        for b, (r, p) in enumerate(zip(rows, padded)):
            ids[b, :p] = self.n_id
            ids[b, :len(r)] = r
            offsets[b, :len(r)] = np.arange(len(r))
            spans[b, :len(r)] = 1
            mask[b, :len(r)] = True
        return TokenBatch(input_ids=ids, attention_mask=mask, offsets=offsets, spans=spans, seq_lengths=lengths,
                          n_iupac=np.array(n_iupac, dtype=np.int64), n_truncated=np.array(n_trunc, dtype=np.int64))

    def decode(self, ids, skip_special: bool = True) -> str:
        out = [self.vocab[i] if 0 <= i < len(self.vocab) else "<unk>" for i in np.asarray(ids).tolist()]
        return "".join(t for t in out if not (skip_special and t.startswith("<")))

    # -- Hugging Face layout (NTv3Tokenizer's files) ----------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        write_text_atomic(d / "vocab.json", json.dumps(self.token_to_id, indent=2) + "\n")
        special = {"unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>", "cls_token": "<cls>",
                   "eos_token": "<eos>", "bos_token": "<bos>"}
        write_text_atomic(d / "special_tokens_map.json", json.dumps(special, indent=2) + "\n")
        config = {"tokenizer_class": "NTv3Tokenizer", **special, "model_max_length": self.model_max_length}
        write_text_atomic(d / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")

    @staticmethod
    def check_vocab(directory: str | os.PathLike) -> None:
        """ValueError unless ``directory/vocab.json`` (when present) is this vocabulary."""
        path = Path(directory) / "vocab.json"
        if path.exists():
            vocab = json.loads(path.read_text())
            if {str(k): int(v) for k, v in vocab.items()} != {t: i for i, t in enumerate(VOCAB)}:
                raise ValueError(f"{path} is not the NTv3 vocabulary (expected {VOCAB} as ids 0-10)")
