"""The embedding job end to end: mean last-layer embeddings of N mixed-length chr20 windows
(1-6 kb), ntkit vs transformers ESM on the same weights and sequences, same precision.

    python benchmarks/bench_embed.py [--preset nt-v2-50m] [--n 64] [--batch 8 1] [--dtypes float32 bfloat16]

transformers: the user's loop — batches of ``--batch`` in input order, padded to the longest,
``EsmModel`` (the encoder, no LM head) under ``torch.inference_mode``, SDPA attention, masked mean.
Ratios are against the first ``--batch``; the others are extra reference rows (batch 1: no padding).
ntkit: ``ntkit.tasks.embed.embed`` — length-sorted batches of at most ``--budget`` tokens (default:
``ntkit.runtime.engine.default_batch_tokens``), the same masked mean, output in input order. Both also report their FLOP rate against this
machine's measured matmul peak (model FLOPs: 2 x non-embedding parameters per real token for the
projections + 4 x L x hidden per token for attention scores and values). Each side runs in a
fresh process; peak memory is the RSS rise during a first, cold run; speed is timed on a second.

``--record BP``: the segment means of one long chr20 record (``embed(..., bins=3)``, both strands)
against the way to get them without ``bins``: its per-nucleotide vectors (``pooling="nucleotide"``)
then ``bin_means``, the reference. ntkit sums each window's bases into the segments as the window
comes back, so its memory should not grow with the record; the reference holds L x hidden floats
about three times over (each strand's owned bases, then the merged output). One cold run each, in
fresh processes.

    python benchmarks/bench_embed.py --record 1000000 --preset nt-v2-50m
"""

from __future__ import annotations

import argparse
import json
import time

from common import PeakMemory, fmt_bytes, genome_windows, run_isolated


def sequences(preset: str, n: int, seed: int = 0) -> list[str]:
    import numpy as np

    from ntkit import get_preset

    cfg = get_preset(preset)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1000, min(6000, cfg.max_nucleotides) + 1, size=n)
    return [w[:l] for w, l in zip(genome_windows(n, int(lengths.max()), seed=seed), lengths)]


def matmul_peak(dtype, threads: int, device: str = "cpu") -> float:
    """Measured dense-GEMM FLOP/s of this machine (CPU: 2048^2, GPU: 8192^2) in ``dtype``, through
    ``F.linear`` as the model's projections (on a CPU without bf16 units, a bf16 ``a @ b`` takes a
    naive path ~100x slower than the oneDNN kernel behind ``F.linear``)."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    n = 8192 if device.startswith("cuda") else 2048
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    F.linear(a, b)
    sync()
    t = time.perf_counter()
    reps = 20 if device.startswith("cuda") else 5
    for _ in range(reps):
        F.linear(a, b)
    sync()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def model_flops(cfg, lengths) -> float:
    H, F_, L = cfg.hidden_size, cfg.ffn_size, cfg.num_layers
    per_layer = 4 * H * H + (3 if cfg.ffn_activation == "swiglu" else 2) * H * F_
    return sum(2 * per_layer * L * t + 4 * L * H * t * t for t in lengths)


def worker(impl: str, preset: str, dtype_name: str, n: int, batch: int, threads: int, budget: int, device: str) -> dict:
    import numpy as np
    import torch

    import ntkit
    from ntkit import Runtime
    from ntkit.tasks.embed import embed

    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    model = ntkit.build(preset, seed=0, dtype=dtype).eval()  # same weights on every run (seed 0)
    tok = model.tokenizer
    seqs = sequences(preset, n)
    warm = sequences(preset, 2, seed=1)
    if impl == "transformers":
        from hf_reference import hf_copy  # tests/hf_reference.py (common puts tests/ on the path)

        enc_model = hf_copy(model, attn="sdpa", dtype=dtype).esm.eval().to(device)
        del model

        def job(ss):
            out = []
            with torch.inference_mode():
                for i in range(0, len(ss), batch):
                    ids, mask = tok.batch_encode(ss[i : i + batch]).to_torch(device)
                    h = enc_model(input_ids=ids, attention_mask=mask.long()).last_hidden_state.float()
                    keep = (mask & (ids != tok.cls_id)).unsqueeze(-1).float()
                    out.append(((h * keep).sum(1) / keep.sum(1)).cpu().numpy())
            return np.concatenate(out)
    else:
        model.to(device)

        def job(ss):
            return embed(model, ss, runtime=Runtime(batch_tokens=budget or None, device=device))[-1]

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    if device.startswith("cuda"):  # GPU: warm up kernels and autotuning outside the timed runs
        job(warm)
        sync()
    with PeakMemory(device) as pm:  # memory: the first (cold on CPU) run, from the level after loading
        job(seqs)
    t = time.perf_counter()  # speed: a second run
    emb = job(seqs)
    sync()
    dt = time.perf_counter() - t
    lengths = [tok.token_length(len(s)) for s in seqs]
    np.save(f"/tmp/ntkit_bench_embed_{impl}_{dtype_name}.npy", emb)
    return {"impl": impl, "dtype": dtype_name, "tokens_per_s": sum(lengths) / dt, "seconds": dt, "peak_bytes": pm.peak,
            "flops_per_s": model_flops(ntkit.get_preset(preset), lengths) / dt, "peak_flops": matmul_peak(dtype, threads, device)}


def record_worker(impl: str, preset: str, length: int, bins: int, threads: int, device: str) -> dict:
    import numpy as np
    import torch

    import ntkit
    from ntkit.tasks.embed import bin_means, embed

    torch.set_num_threads(threads)
    model = ntkit.build(preset, seed=0).eval().to(device)
    seq = genome_windows(1, length, seed=3)[0]
    t = time.perf_counter()
    with PeakMemory(device) as pm:
        if impl == "bins":
            v = embed(model, [seq], reverse_complement=True, bins=bins)[-1][0]
        else:
            v = bin_means(embed(model, [seq], pooling="nucleotide", reverse_complement=True)[-1][0], bins)
    dt = time.perf_counter() - t
    np.save(f"/tmp/ntkit_bench_embed_record_{impl}.npy", v)
    return {"impl": impl, "seconds": dt, "peak_bytes": pm.peak, "bp_per_s": length / dt}


def record(args) -> None:
    import numpy as np

    from ntkit import get_preset

    cfg = get_preset(args.preset)
    print(f"{args.preset}: the means of {args.bins} segments of one {args.record:,} bp chr20 record, both strands, "
          f"device={args.device}, threads={args.threads} (per-nucleotide floats: {fmt_bytes(args.record * cfg.hidden_size * 4)})")
    print(f"{'impl':<34}{'seconds':>9}{'bp/s':>9}{'peak mem':>11}{'speed x':>9}{'mem x':>7}")
    common = ["--preset", args.preset, "--record", str(args.record), "--bins", str(args.bins), "--threads", str(args.threads), "--device", args.device]
    ref = run_isolated(__file__, [*common, "--impl", "per-nucleotide"])
    ours = run_isolated(__file__, [*common, "--impl", "bins"])
    for r, name in [(ref, "per-nucleotide, then bin_means"), (ours, f"ntkit embed(bins={args.bins})")]:
        print(f"{name:<34}{r['seconds']:>9.1f}{r['bp_per_s']:>9,.0f}{fmt_bytes(r['peak_bytes']):>11}{ref['seconds'] / r['seconds']:>9.2f}"
              f"{r['peak_bytes'] / max(ref['peak_bytes'], 1):>7.2f}")
    a, b = (np.load(f"/tmp/ntkit_bench_embed_record_{i}.npy") for i in ("per-nucleotide", "bins"))
    print(f"max |difference| of the segment means: {np.abs(a - b).max():.2e} (float32 vectors summed in another order)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="nt-v2-50m")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 1], help="transformers batch sizes; ratios against the first")
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (GPU: peak memory from the CUDA allocator)")
    ap.add_argument("--budget", type=int, default=0, help="ntkit's token budget per batch (0: ntkit's default)")
    ap.add_argument("--record", type=int, default=0, help="bp: segment means of one record this long (see the docstring)")
    ap.add_argument("--bins", type=int, default=3, help="with --record: segments")
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--impl")
    ap.add_argument("--dtype")
    args = ap.parse_args()
    if args.worker and args.record:
        print(json.dumps(record_worker(args.impl, args.preset, args.record, args.bins, args.threads, args.device)))
        return
    if args.record:
        record(args)
        return
    if args.worker:
        print(json.dumps(worker(args.impl, args.preset, args.dtype, args.n, args.batch[0], args.threads, args.budget, args.device)))
        return
    import numpy as np

    print(f"{args.preset}: mean embeddings of {args.n} chr20 windows of 1-6 kb, transformers batches {args.batch}, "
          f"ntkit token budget {args.budget or 'default'}, device={args.device}, threads={args.threads}")
    print(f"{'dtype':<10}{'impl':<18}{'tokens/s':>10}{'peak mem':>11}{'speed x':>9}{'mem x':>7}{'FLOP/s':>10}{'of peak':>9}")
    common = ["--preset", args.preset, "--n", str(args.n), "--threads", str(args.threads), "--budget", str(args.budget), "--device", args.device]
    for dtype in args.dtypes:
        refs = [run_isolated(__file__, [*common, "--batch", str(b), "--impl", "transformers", "--dtype", dtype]) for b in args.batch]
        ours = run_isolated(__file__, [*common, "--batch", "1", "--impl", "ntkit", "--dtype", dtype])
        ref = refs[0]
        for r, name in [*zip(refs, [f"transformers b{b}" for b in args.batch]), (ours, "ntkit")]:
            print(f"{dtype:<10}{name:<18}{r['tokens_per_s']:>10,.0f}{fmt_bytes(r['peak_bytes']):>11}{r['tokens_per_s'] / ref['tokens_per_s']:>9.2f}"
                  f"{r['peak_bytes'] / max(ref['peak_bytes'], 1):>7.2f}{r['flops_per_s'] / 1e9:>8.1f} G{100 * r['flops_per_s'] / r['peak_flops']:>8.1f}%")
        a = np.load(f"/tmp/ntkit_bench_embed_transformers_{dtype}.npy")
        b = np.load(f"/tmp/ntkit_bench_embed_ntkit_{dtype}.npy")
        print(f"{'':<10}max |embedding difference| ntkit vs transformers: {np.abs(a - b).max():.2e} (matmul peak {ours['peak_flops'] / 1e9:.0f} GFLOP/s)")
    low = [d for d in args.dtypes if d != "float32"]
    if "float32" in args.dtypes and low:
        ref = np.load("/tmp/ntkit_bench_embed_ntkit_float32.npy")
        for d in low:  # the same weights rounded to d, against fp32
            x = np.load(f"/tmp/ntkit_bench_embed_ntkit_{d}.npy")
            rel = np.linalg.norm(x - ref, axis=1) / np.linalg.norm(ref, axis=1)
            cos = (x * ref).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(ref, axis=1)
            print(f"ntkit {d} vs float32 embeddings: relative L2 error max {rel.max():.2e} (median {np.median(rel):.2e}), min cosine {cos.min():.6f}")


if __name__ == "__main__":
    main()
