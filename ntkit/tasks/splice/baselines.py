"""Classical splice-site baselines: MaxEntScan (published tables) and a fitted PWM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ntkit.core.sequence import base_codes
from ntkit.tasks.splice.data import SpliceWindows

_BGD = {"A": 0.27, "C": 0.23, "G": 0.23, "T": 0.27}


class MaxEntScan:
    """MaxEntScan scores (log2 odds) from the published tables: ``score5`` of a 9-mer donor site
    (3 exonic + 6 intronic bases, GT at 4-5) and ``score3`` of a 23-mer acceptor site (20 intronic
    + 3 exonic, AG at 19-20). Sequences with non-ACGT bases score -inf."""

    CONS5 = ({"A": 0.004, "C": 0.0032, "G": 0.9896, "T": 0.0032}, {"A": 0.0034, "C": 0.0039, "G": 0.0042, "T": 0.9884})
    CONS3 = ({"A": 0.9903, "C": 0.0032, "G": 0.0034, "T": 0.0030}, {"A": 0.0027, "C": 0.0037, "G": 0.9905, "T": 0.0030})

    def __init__(self, score5_matrix: str | Path, score3_matrix: str | Path):
        me5 = pd.read_csv(score5_matrix, sep=r"\s+", header=None, names=["kmer", "p"])
        self.me5 = np.zeros(4**7)
        self.me5[self._hash_many(me5["kmer"].tolist(), 7)] = me5["p"].to_numpy()
        me3 = np.loadtxt(score3_matrix)
        self.me3 = [np.zeros(int(me3[me3[:, 0] == m, 1].max()) + 1) for m in range(9)]
        for m, h, v in me3:
            self.me3[int(m)][int(h)] = v

    @staticmethod
    def _hash_many(kmers: list[str], k: int) -> np.ndarray:
        a = base_codes("".join(kmers)).astype(np.int64).reshape(-1, k)
        return a @ (4 ** np.arange(k - 1, -1, -1))

    @staticmethod
    def _windows(seq: str, k: int) -> np.ndarray:
        codes = base_codes(seq).astype(np.int64)
        return np.lib.stride_tricks.sliding_window_view(codes, k)

    def _cons(self, codes2: np.ndarray, cons) -> np.ndarray:
        c1 = np.array([cons[0][b] / _BGD[b] for b in "ACGT"])
        c2 = np.array([cons[1][b] / _BGD[b] for b in "ACGT"])
        return c1[codes2[:, 0]] * c2[codes2[:, 1]]

    def score5_all(self, seq: str) -> np.ndarray:
        """Score of every 9-mer start: [len - 8]."""
        w = self._windows(seq, 9)
        bad = (w < 0).any(1)
        w = np.where(w < 0, 0, w)
        rest = np.concatenate([w[:, :3], w[:, 5:]], axis=1) @ (4 ** np.arange(6, -1, -1))
        s = np.log2(self._cons(w[:, 3:5], self.CONS5) * self.me5[rest])
        return np.where(bad, -np.inf, s)

    def score3_all(self, seq: str) -> np.ndarray:
        """Score of every 23-mer start: [len - 22]."""
        w = self._windows(seq, 23)
        bad = (w < 0).any(1)
        w = np.where(w < 0, 0, w)
        r = np.concatenate([w[:, :18], w[:, 20:]], axis=1)  # 21-mer without the AG

        def h(a, b):
            return r[:, a:b] @ (4 ** np.arange(b - a - 1, -1, -1))

        m = self.me3
        num = m[0][h(0, 7)] * m[1][h(7, 14)] * m[2][h(14, 21)] * m[3][h(4, 11)] * m[4][h(11, 18)]
        den = m[5][h(4, 7)] * m[6][h(7, 11)] * m[7][h(11, 14)] * m[8][h(14, 18)]
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.log2(self._cons(w[:, 18:20], self.CONS3) * num / den)
        return np.where(bad, -np.inf, s)

    def score5(self, nine: str) -> float:
        return float(self.score5_all(nine)[0])

    def score3(self, twenty_three: str) -> float:
        return float(self.score3_all(twenty_three)[0])

    def site_scores(self, seq: str) -> np.ndarray:
        """[len, 3] per-position scores in label coordinates: acceptor at the first exonic base
        (23-mer = 20 intronic before it + 3 exonic), donor at the last exonic base (9-mer = 3
        exonic ending there + 6 intronic); -inf where the k-mer does not fit."""
        n = len(seq)
        out = np.full((n, 3), -np.inf)
        if n >= 23:
            out[20 : n - 2, 1] = self.score3_all(seq)
        if n >= 9:
            out[2 : n - 6, 2] = self.score5_all(seq)
        return out


class SitePWM:
    """Log-odds position weight matrices of donor (9-mer) and acceptor (23-mer) sites fitted on
    training windows (pseudocount 1, background = base frequencies of the training windows)."""

    SPANS = {1: (20, 3), 2: (2, 7)}  # class -> (bases before the labelled base, bases from it on)

    def fit(self, data: SpliceWindows) -> "SitePWM":
        self.w = {}
        bg = np.ones(4)
        for s in data.sequences:
            c = base_codes(s).astype(np.int64)
            bg += np.bincount(c[c >= 0], minlength=4)
        bg /= bg.sum()
        for cls, (before, after) in self.SPANS.items():
            counts = np.ones((before + after, 4))
            for s, lab in zip(data.sequences, data.labels):
                c = base_codes(s).astype(np.int64)
                for p in np.nonzero(lab == cls)[0]:
                    if p - before >= 0 and p + after <= len(s):
                        k = c[p - before : p + after]
                        ok = k >= 0
                        counts[np.arange(len(k))[ok], k[ok]] += 1
            self.w[cls] = np.log2(counts / counts.sum(1, keepdims=True) / bg)
        return self

    def site_scores(self, seq: str) -> np.ndarray:
        n = len(seq)
        c = base_codes(seq).astype(np.int64)
        out = np.full((n, 3), -np.inf)
        for cls, (before, after) in self.SPANS.items():
            k = before + after
            if n < k:
                continue
            win = np.lib.stride_tricks.sliding_window_view(c, k)
            sc = np.where(win >= 0, self.w[cls][np.arange(k), np.maximum(win, 0)], -np.inf).sum(1)
            out[before : before + len(sc), cls] = sc
        return out
