"""SNV scoring throughput: ``ntkit`` (shared forwards through the engine) vs the naive loop that
scores one allele at a time (one forward per score and allele, batch 1), same model, same tiles,
same scores (checked equal on the alleles the naive loop scored).

    python benchmarks/bench_variants.py [--model nt-v2-tiny] [--window-tokens 128] [--naive-max 300]
    python benchmarks/bench_variants.py --model ntv3-8m-pre --window-tokens 8192 --snvs 2000 --naive-max 100   # NTv3

Inputs, GRCh37 chr20:
- an SNV VCF at 1000 Genomes density (one SNV per 35 bp on average, Poisson positions, random ALT),
  scored with ``score_variants``;
- saturation mutagenesis of 6 kb (18,000 SNVs), scored with ``ntkit.tasks.mutagenesis.mutagenesis``.
Per score mode (``llr`` masked marginal, ``llr_unmasked`` wild-type marginal, ``embedding``, and
``llr+embedding``, the CLI's default: three forwards per allele in the naive loop) the
naive loop costs the same per allele whatever the input, so it is timed on a random subset of
``--naive-max`` alleles; ntkit on the whole input. Both sides include reading the inputs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import DATA, PeakMemory, fmt_bytes, snv_vcf


def naive(model, genome, alleles, window_bp: int, stride: int, mode: str) -> list[float]:
    """One allele at a time: its tile (``allele_windows``), one forward per score (two for the
    embedding distance: reference and alternative window)."""
    import torch

    from ntkit.tasks.variants import allele_windows

    tok = model.tokenizer
    dev = next(model.parameters()).device
    T = lambda x: torch.as_tensor(x, device=dev)  # noqa: E731
    out = []
    with torch.inference_mode():
        for a in alleles:
            start, ref_w, alt_w = allele_windows(a, genome, window_bp, stride, tok=tok)
            r_ids, a_ids = tok.encode(ref_w), tok.encode(alt_w)
            if mode == "embedding":
                key = model.resolve_layer(-1)  # NT: num_layers; NTv3: -1 (per base, no <cls>)
                h = [model(T(x)[None], repr_layers=[-1], return_logits=False).hidden_states[key][0, tok.n_special:].mean(0)
                     for x in (r_ids, a_ids)]
                out.append(float((h[0] - h[1]).norm()))
                continue
            enc = tok.batch_encode([ref_w])
            rel = a.pos0 - start
            t = (enc.spans[0] > 0) & (enc.offsets[0] < rel + len(a.ref)) & (enc.offsets[0] + enc.spans[0] > rel)
            ids = T(r_ids)[None].clone()
            if mode == "llr":
                ids[0, T(t)] = tok.mask_id
            logp = torch.log_softmax(model(ids).logits[0, T(t)].float(), -1)
            ar = torch.arange(int(t.sum()), device=dev)
            out.append(float((logp[ar, T(a_ids[t])] - logp[ar, T(r_ids[t])]).sum()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="nt-v2-tiny")
    ap.add_argument("--window-tokens", type=int, default=128)
    ap.add_argument("--snvs", type=int, default=6000, help="SNVs in the 1000G-density VCF")
    ap.add_argument("--naive-max", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    import numpy as np
    import torch

    import ntkit
    from ntkit.io.genome import Genome
    from ntkit.tasks.mutagenesis import mutagenesis
    from ntkit.tasks.variants import ScoreOptions, check_allele, iter_records, score_variants

    torch.set_num_threads(args.threads)
    model = ntkit.load(args.model).to(args.device).eval()
    fasta = DATA / "genomes/GRCh37_chr20.fa.gz"
    genome = Genome(fasta)
    tmp = Path(tempfile.mkdtemp())
    vcf = snv_vcf(genome, tmp / "snv.vcf", args.snvs, every_bp=35, start=30_000_000)
    opts = ScoreOptions(("llr",), (-1,), args.window_tokens).resolve(model)
    w, stride = opts.window_bp, opts.tile_stride_bp
    region = "20:31,000,001-31,006,000"
    print(f"{args.model} ({model.num_parameters():,} parameters), tiles of {args.window_tokens} tokens ({w} bp, stride {stride} bp), "
          f"threads={args.threads}, device={args.device}")
    print(f"{'input':<34}{'score':<14}{'naive var/s':>12}{'ntkit var/s':>12}{'speed x':>9}{'peak mem ntkit':>16}{'max |diff|':>12}")
    rng = np.random.default_rng(0)
    for name in ("SNVs at 1000G density (1/35 bp)", "mutagenesis of 6 kb"):
        for mode in ("llr_unmasked", "llr", "embedding", "llr+embedding"):
            col = "l2_-1" if mode == "embedding" else mode.split("+")[0]
            with PeakMemory(args.device) as pm:
                t0 = time.perf_counter()
                if name.startswith("SNV"):
                    table = score_variants(model, vcf, fasta, window_tokens=args.window_tokens, scores=mode.split("+")).table
                else:
                    table = mutagenesis(model, fasta, [region], scores=mode.split("+"), window_tokens=args.window_tokens)
                t_ours = (time.perf_counter() - t0) / len(table)
            if name.startswith("SNV"):
                alleles = [a for rec in iter_records(vcf) for a in rec]
            else:
                from ntkit.io.genome import Interval
                from ntkit.tasks.mutagenesis import iter_positions

                alleles = [a for p in iter_positions(genome, [Interval.parse(region)]) for a in p]
            pick = np.sort(rng.choice(len(alleles), min(args.naive_max, len(alleles)), replace=False))
            sub = [alleles[i] for i in pick]
            for a in sub:
                check_allele(a, genome, w)
            t0 = time.perf_counter()
            ref = [naive(model, genome, sub, w, stride, m) for m in mode.split("+")][0]  # both timed: the default CLI scores
            t_naive = (time.perf_counter() - t0) / len(sub)
            diff = np.nanmax(np.abs(np.array(ref) - table[col].to_numpy()[pick]))
            print(f"{name:<34}{mode:<14}{1 / t_naive:>12.1f}{1 / t_ours:>12.1f}{t_naive / t_ours:>9.1f}{fmt_bytes(pm.peak):>16}{diff:>12.1e}")


if __name__ == "__main__":
    main()
