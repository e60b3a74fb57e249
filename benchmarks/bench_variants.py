"""Variant scoring throughput: ``ntkit.variants.score_variants`` (batched, shared reference
windows, length-bucketed) vs a naive loop that scores one allele at a time with the same model,
windows and scores (masked LLR + last-layer embedding distances).

    python benchmarks/bench_variants.py [--model nt-v2-tiny] [--window-tokens 1000] [--limit 194]

Data: the 194 real 1000 Genomes chr20 indels (plus their SNV-like sites: none) against GRCh37 chr20.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import DATA, PeakMemory, fmt_bytes  # noqa: E402


def naive(model, alleles, window_tokens):
    import torch

    tok = model.tokenizer
    L = model.config.num_layers
    out = []
    with torch.inference_mode():
        for a in alleles:
            r = model(torch.as_tensor(tok.encode(a.ref_window))[None], repr_layers=[L], return_logits=False).hidden_states[L][0, 1:].mean(0)
            v = model(torch.as_tensor(tok.encode(a.alt_window))[None], repr_layers=[L], return_logits=False).hidden_states[L][0, 1:].mean(0)
            row = {"l2": float((r - v).norm())}
            if a.same_length:
                enc = tok([a.ref_window])
                rel = a.pos0 - a.start
                t = (enc.offsets[0] < rel + len(a.ref)) & (enc.offsets[0] + enc.spans[0] > rel)
                ids = torch.as_tensor(enc.input_ids)
                ids[0, torch.as_tensor(t)] = tok.mask_id
                model(ids)  # masked forward for the LLR
            out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="nt-v2-tiny")
    ap.add_argument("--window-tokens", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    import ntkit
    from ntkit.genome import Genome
    from ntkit.variants import place_windows, read_alleles, score_variants

    torch.set_num_threads(args.threads)
    model = ntkit.load(args.model).eval()
    vcf = DATA / "variants/chr20_indels_1000G.vcf.gz"
    genome = Genome(DATA / "genomes/GRCh37_chr20.fa.gz")
    alleles, _ = read_alleles(vcf)
    place_windows(alleles, genome, (args.window_tokens - 1) * 6)
    alleles = [a for a in alleles if a.status == "scored"]
    with PeakMemory("cpu") as pm_naive:
        t = time.perf_counter()
        ref = naive(model, alleles, args.window_tokens)
        t_naive = time.perf_counter() - t
    with PeakMemory("cpu") as pm:
        t = time.perf_counter()
        s = score_variants(model, vcf, genome, window_tokens=args.window_tokens, batch_size=args.batch_size, progress=False)
        t_ours = time.perf_counter() - t
    diff = max(abs(x["l2"] - y) for x, y in zip(ref, s.table[s.table.status == "scored"]["l2_-1"]))
    n = len(alleles)
    print(f"{args.model}, {n} alleles, windows of {args.window_tokens} tokens, threads={args.threads}")
    print(f"{'impl':<22}{'variants/s':>11}{'peak mem':>12}{'speed x':>9}")
    print(f"{'naive one-by-one':<22}{n / t_naive:>11.2f}{fmt_bytes(pm_naive.peak):>12}{1.0:>9.2f}")
    print(f"{'ntkit score_variants':<22}{n / t_ours:>11.2f}{fmt_bytes(pm.peak):>12}{t_naive / t_ours:>9.2f}")
    print(f"max |L2 difference| between the two: {diff:.2e}")


if __name__ == "__main__":
    main()
