"""Training step throughput and peak memory: ntkit's MLM step vs transformers EsmForMaskedLM in a
plain loop, same weights, same masked batches, same optimizer (Adam 0.9/0.999/1e-8), fp32.

    python benchmarks/bench_train.py [--preset nt-v2-small] [--batch 8] [--tokens 512] [--steps 5]

Batches are chr20 windows masked with ntkit's NT recipe (15%: 80/10/10). ntkit computes the LM
head only at the masked positions (``logits_at``); the reference computes it everywhere and
uses labels=-100 elsewhere, as a user of transformers would. Each implementation runs in its own
process; peak memory is the RSS rise over the first two (cold) steps, optimizer state included;
speed is timed over the following steps.
"""

from __future__ import annotations

import argparse
import json
import time

from common import PeakMemory, fmt_bytes, genome_windows, run_isolated


def worker(impl: str, preset: str, batch: int, tokens: int, steps: int, threads: int) -> dict:
    import torch
    import torch.nn.functional as F

    import ntkit
    from ntkit.tasks.pretrain_data import Window
    from ntkit.tasks.pretrain import encode_windows

    torch.set_num_threads(threads)
    cfg = ntkit.get_preset(preset).replace(max_tokens=max(tokens, 64))
    model = ntkit.build(cfg, seed=0)
    tok = model.tokenizer
    wins = genome_windows(batch * (steps + 2), (tokens - 1) * 6, seed=0)
    data = [encode_windows([Window(s, "", "", 0) for s in wins[i : i + batch]], tok, tokens, 0, i, 0.15)
            for i in range(0, len(wins), batch)]
    if impl == "transformers":
        from hf_reference import hf_copy  # tests/hf_reference.py (common puts tests/ on the path)

        net = hf_copy(model, attn="sdpa", dtype=torch.float32).train()
        del model

        def step(ids, labels, mask):
            return net(input_ids=ids, attention_mask=mask.long(), labels=labels).loss
    else:
        net = model.train()

        def step(ids, labels, mask):
            sel = labels >= 0
            return F.cross_entropy(net(ids, mask, logits_at=sel).logits, labels[sel])
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)

    def train(batch_):
        loss = step(*batch_)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    with PeakMemory("cpu") as pm:  # cold: includes the optimizer state's allocation
        first = train(data[0])
        train(data[1])
    t = time.perf_counter()
    for b in data[2:]:
        train(b)
    dt = time.perf_counter() - t
    return {"impl": impl, "tokens_per_s": steps * batch * tokens / dt, "peak_bytes": pm.peak, "first_loss": first}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="nt-v2-small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--impl")
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.impl, args.preset, args.batch, args.tokens, args.steps, args.threads)))
        return
    common = ["--preset", args.preset, "--batch", str(args.batch), "--tokens", str(args.tokens), "--steps", str(args.steps), "--threads", str(args.threads)]
    ref = run_isolated(__file__, [*common, "--impl", "transformers"])
    ours = run_isolated(__file__, [*common, "--impl", "ntkit"])
    print(f"{args.preset}, {args.steps} timed Adam steps of {args.batch} x {args.tokens} tokens, fp32, threads={args.threads}")
    print(f"{'impl':<14}{'tokens/s':>10}{'peak mem':>12}{'speed x':>9}{'mem x':>7}{'loss@1':>9}")
    for r in (ref, ours):
        print(f"{r['impl']:<14}{r['tokens_per_s']:>10,.0f}{fmt_bytes(r['peak_bytes']):>12}{r['tokens_per_s'] / ref['tokens_per_s']:>9.2f}"
              f"{r['peak_bytes'] / max(ref['peak_bytes'], 1):>7.2f}{r['first_loss']:>9.4f}")


if __name__ == "__main__":
    main()
