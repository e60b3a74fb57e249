"""Count-based baselines for masked 6-mer prediction, scored on the same masked tokens as the model.

- ``UnigramKmer``: the 6-mer frequency of the training sequence (ignores context).
- ``MarkovKmer``: an order-``k`` nucleotide Markov chain (default 5) over the bases to the left.
  A masked 6-mer ``x1..x6`` gets ``prod_i P(x_i | previous k bases)``, where the previous bases
  are the visible bases left of the token followed by ``x1..x_{i-1}``; masked or ``N`` bases
  break the context, which then backs off to the shorter history (down to order 0).

Both are fitted on both strands (as the model, trained with reverse-complement augmentation) with
additive smoothing, and return log-probabilities over the 4096 6-mers in tokenizer order
(A, T, C, G; index = base-4 number of the k-mer), so their loss and accuracy compare directly with
the ``kmer_*`` metrics of :func:`ntkit.tasks.pretrain.evaluate_mlm`.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from ntkit.core.sequence import base_codes
from ntkit.models.nt.tokenizer import KMER, NUCLEOTIDES
from ntkit.tasks.pretrain import evaluate_mlm, heldout_regions, mask_window
from ntkit.tasks.pretrain_data import tile_windows, training_sequences

NBASE = 4


def encode_bases(seq: str) -> np.ndarray:
    """uint8 codes in NT's vocabulary order (A, T, C, G -> 0..3); anything else (N, IUPAC, masked) -> 4."""
    codes = base_codes(seq, NUCLEOTIDES)
    return np.where(codes >= 0, codes, NBASE).astype(np.uint8)


def _complement(codes: np.ndarray) -> np.ndarray:
    # A<->T (0<->1), C<->G (2<->3); 4 stays 4.
    return np.array([1, 0, 3, 2, 4], dtype=np.uint8)[codes][::-1]


def kmer_counts(seqs: Iterable[str], k: int, both_strands: bool = True) -> np.ndarray:
    """Sliding k-mer counts (int64 [4**k]) over ACGT-only stretches."""
    counts = np.zeros(NBASE**k, dtype=np.int64)
    pow_ = NBASE ** np.arange(k - 1, -1, -1, dtype=np.int64)
    chunk = 1 << 22
    for seq in seqs:
        codes = encode_bases(seq)
        for c in (codes, _complement(codes)) if both_strands else (codes,):
            for s in range(0, max(len(c) - k + 1, 0), chunk):  # chunks overlap by k-1 bases
                win = np.lib.stride_tricks.sliding_window_view(c[s : s + chunk + k - 1], k)
                ok = (win < NBASE).all(axis=1)
                counts += np.bincount(win[ok].astype(np.int64) @ pow_, minlength=NBASE**k)
    return counts


class UnigramKmer:
    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha
        self.logp: np.ndarray | None = None

    def fit(self, seqs: Iterable[str]) -> "UnigramKmer":
        c = kmer_counts(seqs, KMER).astype(np.float64) + self.alpha
        self.logp = np.log(c / c.sum())
        return self

    def log_probs(self, contexts: list[str]) -> np.ndarray:
        return np.broadcast_to(self.logp, (len(contexts), NBASE**KMER))


class MarkovKmer:
    def __init__(self, order: int = 5, alpha: float = 1.0):
        self.order = order
        self.alpha = alpha
        self._table: dict[str, np.ndarray] = {}

    def fit(self, seqs: Iterable[str]) -> "MarkovKmer":
        seqs = list(seqs)
        # cond[j]: log P(next | j previous bases), shape [4**j, 4], from (j+1)-mer counts.
        self.cond = []
        for j in range(self.order + 1):
            c = kmer_counts(seqs, j + 1).reshape(NBASE**j, NBASE).astype(np.float64) + self.alpha
            self.cond.append(np.log(c / c.sum(axis=1, keepdims=True)))
        self._table.clear()
        return self

    def _kmer_logp(self, context: str) -> np.ndarray:
        """log P over the 4096 6-mers following the ACGT string ``context`` (<= order bases)."""
        if context in self._table:
            return self._table[context]
        ctx = encode_bases(context).astype(np.int64)
        kmers = np.indices((NBASE,) * KMER).reshape(KMER, -1).T  # [4096, 6], row = base-4 digits
        hist = np.concatenate([np.broadcast_to(ctx, (len(kmers), len(ctx))), kmers], axis=1)
        logp = np.zeros(len(kmers))
        for i in range(KMER):
            pos = len(ctx) + i
            j = min(self.order, pos)
            h = hist[:, pos - j : pos]
            idx = h @ (NBASE ** np.arange(j - 1, -1, -1, dtype=np.int64)) if j else np.zeros(len(kmers), dtype=np.int64)
            logp += self.cond[j][idx, hist[:, pos]]
        self._table[context] = logp
        return logp

    def log_probs(self, contexts: list[str]) -> np.ndarray:
        return np.stack([self._kmer_logp(c) for c in contexts]) if contexts else np.zeros((0, NBASE**KMER))


def visible_left_contexts(masked_seq: str, starts: Iterable[int], order: int) -> list[str]:
    """For each token start, the <= ``order`` ACGT bases immediately to its left (stopping at a
    masked/N base). ``masked_seq`` has masked bases replaced by any non-ACGT character."""
    out = []
    for s in starts:
        left = masked_seq[max(0, s - order) : s]
        cut = max(left.rfind(ch) for ch in "N?")
        out.append(left[cut + 1 :])
    return out


def evaluate_baselines(baselines: dict[str, object], windows, tok, window_tokens: int, seed: int = 1234,
                       mask_prob: float = 0.15, order: int = 5) -> dict[str, dict[str, float]]:
    """Masked 6-mer loss / accuracy / perplexity of each baseline on exactly the positions that
    :func:`ntkit.tasks.pretrain.evaluate_mlm` scores with the same ``seed`` (its ``kmer_*`` metrics)."""
    k0 = tok.kmer_offset
    tot = {name: [0.0, 0, 0] for name in baselines}  # loss, correct, n
    bs = 8
    for i in range(0, len(windows), bs):
        chunk = windows[i : i + bs]
        # Tokenised once; masking as in encode_windows (window index i + b), for the offsets too.
        enc = tok.batch_encode([w.sequence for w in chunk], max_length=window_tokens, padding="max_length", truncation=True)
        labels = np.stack([mask_window(enc.input_ids[b], tok, seed, i + b, mask_prob, eval_mode=True)[1] for b in range(len(chunk))])
        for b, w in enumerate(chunk):
            seq = np.frombuffer(w.sequence.upper().encode("ascii"), dtype=np.uint8).copy()
            masked_tok = np.nonzero(labels[b] >= 0)[0]
            for t in masked_tok:  # hide every masked token's bases from the context
                o, sp = enc.offsets[b, t], enc.spans[b, t]
                seq[o : o + sp] = ord("?")
            visible = seq.tobytes().decode("ascii")
            y = labels[b, masked_tok]
            is_kmer = (y >= k0) & (y < k0 + NBASE**KMER)
            t_k = masked_tok[is_kmer]
            y_k = y[is_kmer] - k0
            contexts = visible_left_contexts(visible, enc.offsets[b, t_k], order)
            for name, model in baselines.items():
                lp = model.log_probs(contexts)
                lp = lp - np.logaddexp.reduce(lp, axis=1, keepdims=True) if len(lp) else lp
                tot[name][0] += -lp[np.arange(len(y_k)), y_k].sum()
                tot[name][1] += int((lp.argmax(1) == y_k).sum())
                tot[name][2] += len(y_k)
    out = {}
    for name, (loss, correct, n) in tot.items():
        n = max(n, 1)
        out[name] = {"kmer_loss": loss / n, "kmer_accuracy": correct / n, "kmer_perplexity": math.exp(loss / n), "n_kmer": n}
    return out


def compare_with_baselines(model, cfg, n_windows: int = 256, seed: int = 1234) -> dict[str, dict[str, float]]:
    """Masked 6-mer metrics of ``model`` and of the unigram / order-5 Markov baselines on the
    held-out regions of pretraining recipe ``cfg``; baselines fitted on its training sequence."""
    genome, held_out = heldout_regions(cfg)
    if not held_out:
        raise ValueError("the recipe has no valid_regions to evaluate on")
    windows = tile_windows(genome, held_out, cfg.window_bp, cfg.max_n_fraction, limit=n_windows)
    tok = model.tokenizer
    res = {"model": evaluate_mlm(model, windows, tok, cfg.window_tokens, seed=seed)}
    seqs = list(training_sequences(cfg.sources, held_out))
    baselines = {"unigram 6-mer": UnigramKmer().fit(seqs), "order-5 Markov": MarkovKmer(order=5).fit(seqs)}
    res.update(evaluate_baselines(baselines, windows, tok, cfg.window_tokens, seed=seed))
    res["_meta"] = {"windows": len(windows), "window_bp": cfg.window_bp, "regions": list(cfg.valid_regions),
                    "training_bp": sum(len(s) for s in seqs)}
    return res


def baseline_table(res: dict) -> str:
    rows = ["| predictor | masked 6-mer accuracy | perplexity (over 4096 6-mers) | loss (nats) |", "|---|---|---|---|"]
    for name, r in res.items():
        if not name.startswith("_"):
            rows.append(f"| {name} | {r['kmer_accuracy']:.4f} | {r['kmer_perplexity']:.1f} | {r['kmer_loss']:.4f} |")
    return "\n".join(rows)
