"""Tokenizer throughput: ntkit vs transformers.EsmTokenizer with the NT vocabulary, same inputs.

    python benchmarks/bench_tokenizer.py [--n 2000] [--length 6000]

Checks that both produce identical ids, then reports sequences/s, Mbp/s and the speed ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from common import genome_windows

from ntkit.tokenizer import Tokenizer


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
    ap.add_argument("--hf-n", type=int, default=200, help="sequences given to EsmTokenizer (it is slow)")
    args = ap.parse_args()

    from transformers import EsmTokenizer

    seqs = genome_windows(args.n, args.length)
    tok = Tokenizer("v2")
    with tempfile.TemporaryDirectory() as d:
        tok.save_pretrained(d)
        hf = EsmTokenizer.from_pretrained(d)

    sub = seqs[: args.hf_n]
    ref = hf(sub, padding=True, return_tensors="np")["input_ids"]
    assert np.array_equal(tok.batch_encode(sub, max_length=None).input_ids, ref), "ids differ"

    t_hf = best_of(lambda: hf(sub, padding=True, return_tensors="np"), 2) / len(sub)
    t_nt = best_of(lambda: tok.batch_encode(seqs, max_length=None), 3) / len(seqs)
    bp = args.length
    print(f"inputs: {len(seqs)} x {bp} bp windows of GRCh37 chr20 (EsmTokenizer timed on {len(sub)}); ids identical")
    print(f"{'tokenizer':<22}{'seq/s':>12}{'Mbp/s':>10}")
    print(f"{'transformers Esm':<22}{1 / t_hf:>12,.0f}{bp / t_hf / 1e6:>10.2f}")
    print(f"{'ntkit (NumPy)':<22}{1 / t_nt:>12,.0f}{bp / t_nt / 1e6:>10.2f}")
    print(f"speed ratio ntkit / transformers: {t_hf / t_nt:.1f}x")


if __name__ == "__main__":
    main()
