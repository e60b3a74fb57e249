"""Variant scoring throughput: ``ntkit.variants.score_variants`` (batched, reference windows and
masked windows shared between the ALTs of a site, length-bucketed) vs a naive loop that scores
one allele at a time with the same model, windows and scores (masked LLR where defined + last-
layer embedding L2). Both timings include reading the VCF and the FASTA.

    python benchmarks/bench_variants.py [--model runs/tiny-cpu/model] [--window-tokens 512]

Inputs: the 194 real 1000 Genomes chr20 indels, and 100 chr20 SNV sites with all three ALTs each
(multi-allelic records; REF from the FASTA) written to a temporary VCF.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import DATA, PeakMemory, fmt_bytes  # noqa: E402


def naive(model, vcf, genome, window_tokens):
    import torch

    from ntkit.variants import place_windows, read_alleles

    alleles, _ = read_alleles(vcf)
    place_windows(alleles, genome, (window_tokens - 1) * 6)
    tok = model.tokenizer
    L = model.config.num_layers
    out = []
    with torch.inference_mode():
        for a in alleles:
            if a.status != "scored":
                continue
            r = model(torch.as_tensor(tok.encode(a.ref_window))[None], repr_layers=[L], return_logits=False).hidden_states[L][0, 1:].mean(0)
            v = model(torch.as_tensor(tok.encode(a.alt_window))[None], repr_layers=[L], return_logits=False).hidden_states[L][0, 1:].mean(0)
            llr = float("nan")
            if a.same_length:
                enc = tok([a.ref_window])
                rel = a.pos0 - a.start
                t = torch.as_tensor((enc.offsets[0] < rel + len(a.ref)) & (enc.offsets[0] + enc.spans[0] > rel))
                ids = torch.as_tensor(enc.input_ids).clone()  # as_tensor shares memory with the numpy ids
                ids[0, t] = tok.mask_id
                logp = torch.log_softmax(model(ids).logits[0, t], -1)
                alt_ids = torch.as_tensor(tok([a.alt_window]).input_ids[0])[t]
                llr = float((logp.gather(1, alt_ids[:, None]) - logp.gather(1, torch.as_tensor(enc.input_ids[0])[t][:, None])).sum())
            out.append((float((r - v).norm()), llr))
    return out


def snv_vcf(genome, n: int, path: Path, seed: int = 0) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    L = genome.length("20")
    while len(rows) < n:
        p = int(rng.integers(100_000, L - 100_000))
        ref = genome.fetch("20", p, p + 1)
        if ref in "ACGT":
            rows.append((p + 1, ref, ",".join(b for b in "ACGT" if b != ref)))
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=20>", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    lines += [f"20\t{p}\t.\t{r}\t{a}\t.\t.\t." for p, r, a in sorted(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="nt-v2-tiny")
    ap.add_argument("--window-tokens", type=int, default=512)
    ap.add_argument("--batch-size", type=int, help="default: score_variants' default")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import numpy as np
    import torch

    import ntkit
    from ntkit.genome import Genome
    from ntkit.variants import score_variants

    torch.set_num_threads(args.threads)
    model = ntkit.load(args.model).eval()
    genome = Genome(DATA / "genomes/GRCh37_chr20.fa.gz")
    tmp = Path(tempfile.mkdtemp())
    inputs = {"1000G indels": DATA / "variants/chr20_indels_1000G.vcf.gz", "SNV sites x 3 ALTs": snv_vcf(genome, 100, tmp / "snv.vcf")}
    print(f"{args.model} ({model.num_parameters():,} parameters), windows of {args.window_tokens} tokens, threads={args.threads}")
    print(f"{'input':<20}{'alleles':>8}{'impl':>22}{'variants/s':>11}{'peak mem':>11}{'speed x':>9}")
    for name, vcf in inputs.items():
        score_variants(model, vcf, genome, window_tokens=args.window_tokens, progress=False)  # warm-up (and plain-gzip copy)
        with PeakMemory("cpu") as pm_naive:
            t = time.perf_counter()
            ref = naive(model, vcf, genome, args.window_tokens)
            t_naive = time.perf_counter() - t
        with PeakMemory("cpu") as pm:
            t = time.perf_counter()
            s = score_variants(model, vcf, genome, window_tokens=args.window_tokens, batch_size=args.batch_size, progress=False)
            t_ours = time.perf_counter() - t
        sc = s.table[s.table.status == "scored"]
        n = len(sc)
        d_l2 = np.max(np.abs(np.array([r[0] for r in ref]) - sc["l2_-1"].to_numpy()))
        llr = np.array([r[1] for r in ref])
        ok = np.isfinite(llr)
        d_llr = np.max(np.abs(llr[ok] - sc["llr"].to_numpy()[ok])) if ok.any() else 0.0
        print(f"{name:<20}{n:>8}{'naive one-by-one':>22}{n / t_naive:>11.2f}{fmt_bytes(pm_naive.peak):>11}{1.0:>9.2f}")
        print(f"{'':<20}{'':>8}{'ntkit score_variants':>22}{n / t_ours:>11.2f}{fmt_bytes(pm.peak):>11}{t_naive / t_ours:>9.2f}"
              f"   (max diff: L2 {d_l2:.1e}, LLR {d_llr:.1e})")


if __name__ == "__main__":
    main()
