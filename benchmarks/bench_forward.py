"""Encoder forward throughput and peak memory: ntkit vs transformers ESM, same weights, same inputs.

    python benchmarks/bench_forward.py [--preset nt-v2-50m] [--batch 8] [--batches 3] [--dtypes float32 bfloat16]

Inputs are GRCh37 chr20 windows of mixed length (1-6 kb, so 170-1000 tokens), right-padded per
batch exactly as a user would give them to either model. Both run under ``torch.inference_mode``
with their SDPA attention; tokens/s counts real (non-padding) tokens. Each (implementation, dtype)
runs in a fresh process; peak memory is the RSS rise during a first, cold pass over the batches
(CUDA: allocator peak); speed is timed on a second pass.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from common import PeakMemory, fmt_bytes, genome_windows, run_isolated


def batches(preset: str, batch: int, n: int, seed: int = 0):
    import numpy as np

    from ntkit import get_preset
    from ntkit.models.nt.tokenizer import Tokenizer

    cfg = get_preset(preset)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1000, min(6000, cfg.max_nucleotides) + 1, size=batch * n)
    windows = genome_windows(batch * n, int(lengths.max()), seed=seed)
    seqs = [w[:l] for w, l in zip(windows, lengths)]
    tok = Tokenizer(cfg.tokenizer, max_tokens=cfg.max_tokens)
    return [tok.batch_encode(seqs[i : i + batch]).to_torch() for i in range(0, len(seqs), batch)]


def worker(impl: str, preset: str, dtype_name: str, batch: int, n: int, device: str, threads: int) -> dict:
    import torch

    import ntkit

    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    model = ntkit.build(preset, seed=0, device=device, dtype=dtype).eval()
    if impl == "transformers":
        from hf_reference import hf_copy  # tests/hf_reference.py (common puts tests/ on the path)

        ref = hf_copy(model, attn="sdpa", dtype=dtype).to(device)
        del model
        run = lambda ids, mask: ref(input_ids=ids, attention_mask=mask.long()).logits
    else:
        run = lambda ids, mask: model(ids, mask).logits
    data = [(i.to(device), m.to(device)) for i, m in batches(preset, batch, n + 1)]
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        # Memory: the first (cold) pass over the data, from the level after loading model and
        # inputs, so neither side profits from allocator blocks retained by a warm-up.
        with PeakMemory(device) as pm:
            for ids, mask in data[1:]:
                run(ids, mask)
            sync()
        t = time.perf_counter()  # speed: a second pass
        for ids, mask in data[1:]:
            run(ids, mask)
        sync()
        dt = time.perf_counter() - t
    tokens = int(sum(m.sum() for _, m in data[1:]))
    padded = int(sum(m.numel() for _, m in data[1:]))
    return {"impl": impl, "dtype": dtype_name, "tokens_per_s": tokens / dt, "peak_bytes": pm.peak, "tokens": tokens, "padded": padded, "seconds": dt}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="nt-v2-50m")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--impl")
    ap.add_argument("--dtype")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.impl, args.preset, args.dtype, args.batch, args.batches, args.device, args.threads)))
        return
    common = ["--preset", args.preset, "--batch", str(args.batch), "--batches", str(args.batches), "--device", args.device, "--threads", str(args.threads)]
    print(f"{args.preset}, {args.batches} timed batches of {args.batch} mixed-length chr20 windows, device={args.device}, threads={args.threads}")
    print(f"{'dtype':<10}{'impl':<14}{'tokens/s':>10}{'peak mem':>12}{'speed x':>9}{'mem x':>7}")
    for dtype in args.dtypes:
        ref = run_isolated(__file__, [*common, "--impl", "transformers", "--dtype", dtype])
        ours = run_isolated(__file__, [*common, "--impl", "ntkit", "--dtype", dtype])
        for r in (ref, ours):
            print(f"{dtype:<10}{r['impl']:<14}{r['tokens_per_s']:>10,.0f}{fmt_bytes(r['peak_bytes']):>12}"
                  f"{r['tokens_per_s'] / ref['tokens_per_s']:>9.2f}{r['peak_bytes'] / max(ref['peak_bytes'], 1):>7.2f}")
        print(f"{'':<10}(real tokens {ours['tokens']:,} of {ours['padded']:,} padded positions)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
