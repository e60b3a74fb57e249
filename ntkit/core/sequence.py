"""Sequence utilities every module shares: the reverse complement and base codes.

Two base orders are in use and both are spelled out at the call: ``"ATCG"``, the order of NT's
vocabulary (the k-mer baselines index 6-mers the way the tokenizer does), and ``"ACGT"``, the
order of SpliceAI's one-hot encoding and MaxEntScan's tables.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def reverse_complement(seq: str) -> str:
    """Reverse complement; lowercase (soft-masked) bases stay lowercase, other letters stay as they are."""
    return seq.translate(_COMPLEMENT)[::-1]


@lru_cache(maxsize=None)
def _lut(order: str) -> np.ndarray:
    lut = np.full(256, -1, dtype=np.int8)
    for i, b in enumerate(order):
        lut[ord(b)] = lut[ord(b.lower())] = i
    return lut


def base_codes(seq: str, order: str = "ACGT") -> np.ndarray:
    """int8 code of every base: its index in ``order`` (either case), -1 for anything else (N, IUPAC)."""
    return _lut(order)[np.frombuffer(seq.encode("ascii", errors="replace"), dtype=np.uint8)]


def one_hot(seq: str, order: str = "ACGT") -> np.ndarray:
    """float32 [len, 4]; non-ACGT bases are all-zero rows."""
    codes = base_codes(seq, order)
    out = np.zeros((len(codes), len(order)), dtype=np.float32)
    ok = codes >= 0
    out[np.nonzero(ok)[0], codes[ok]] = 1.0
    return out
