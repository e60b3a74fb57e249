"""Tokenizer throughput: ntkit vs transformers.EsmTokenizer with the NT vocabulary, same inputs.

    python benchmarks/bench_tokenizer.py [--n 2000] [--length 6000] [--mixed]

Equal-length windows by default; ``--mixed``: lengths drawn from 1 bp to ``--length`` and 1% of
the windows with a run of N (the tokenizer's general path). Checks that both produce identical
ids, then reports sequences/s, Mbp/s and the speed ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from common import genome_windows

from ntkit.models.nt.tokenizer import Tokenizer


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--length", type=int, default=6000)
    ap.add_argument("--mixed", action="store_true", help="mixed lengths and some N runs")
    ap.add_argument("--hf-n", type=int, default=200, help="sequences given to EsmTokenizer (it is slow)")
    args = ap.parse_args()

    from transformers import EsmTokenizer

    seqs = genome_windows(args.n, args.length)
    if args.mixed:
        rng = np.random.default_rng(0)
        seqs = [w[: int(n)] for w, n in zip(seqs, rng.integers(1, args.length + 1, size=len(seqs)))]
        for i in rng.choice(len(seqs), size=max(1, len(seqs) // 100), replace=False):
            a = len(seqs[i]) // 3
            seqs[i] = seqs[i][:a] + "N" * 7 + seqs[i][a + 7 :]
        sub = [seqs[i] for i in sorted(rng.permutation(len(seqs))[: args.hf_n])]  # EsmTokenizer's sample, N windows included
    else:
        sub = seqs[: args.hf_n]
    tok = Tokenizer("v2")
    with tempfile.TemporaryDirectory() as d:
        tok.save_pretrained(d)
        hf = EsmTokenizer.from_pretrained(d)

    ref = hf(sub, padding=True, return_tensors="np")["input_ids"]
    assert np.array_equal(tok.batch_encode(sub, max_length=None).input_ids, ref), "ids differ"

    t_hf = best_of(lambda: hf(sub, padding=True, return_tensors="np"), 2) / len(sub)
    t_nt = best_of(lambda: tok.batch_encode(seqs, max_length=None), 3) / len(seqs)
    bp_hf = sum(map(len, sub)) / len(sub)
    bp_nt = sum(map(len, seqs)) / len(seqs)
    kind = f"1-{args.length} bp windows, 1% with N" if args.mixed else f"{args.length} bp windows"
    print(f"inputs: {len(seqs)} {kind} of GRCh37 chr20 (EsmTokenizer timed on {len(sub)}); ids identical")
    print(f"{'tokenizer':<22}{'seq/s':>12}{'Mbp/s':>10}")
    print(f"{'transformers Esm':<22}{1 / t_hf:>12,.0f}{bp_hf / t_hf / 1e6:>10.2f}")
    print(f"{'ntkit (NumPy)':<22}{1 / t_nt:>12,.0f}{bp_nt / t_nt / 1e6:>10.2f}")
    print(f"speed ratio ntkit / transformers (bp/s): {(bp_nt / t_nt) / (bp_hf / t_hf):.1f}x")


if __name__ == "__main__":
    main()
