"""NTv3 forward speed and peak memory: ntkit vs InstaDeep's HF remote code on the same weights.

    python benchmarks/bench_ntv3.py [--lengths 8192 32768 131072] [--dtypes float32 bfloat16]

The model is NTv3_8M_pre's architecture (the released config.json in ../shared/reference/ntv3_hf;
random weights, identical in both: the reference's state dict is saved and loaded by ntkit). Inputs
are GRCh37 chr20 windows (random sequence without the data), batch 1, one forward per length:
``ref.core(input_ids)`` against ``ntkit(ids)``, both under ``torch.inference_mode`` (bf16: the
reference's own compute-dtype switches set to bfloat16 in its config, ntkit under autocast).
Each (implementation, dtype, length) runs in a fresh process; peak memory is the RSS rise during a
cold forward and during the forward after the timed ones ("warm": a job's steady state, without the
one-off set-up of oneDNN's kernels; CUDA: allocator peaks), speed the best of ``--repeats`` warm forwards. ``--rounds N``
runs both implementations N times, alternating which goes first, and reports medians and each
round's speed ratio (on a shared machine the speed of either alone drifts by tens of percent).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import PeakMemory, fmt_bytes, genome_windows, run_isolated

REF = Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "ntv3_hf"
BF16_KEYS = ("stem_compute_dtype", "down_convolution_compute_dtype", "transformer_qkvo_compute_dtype",
             "transformer_ffn_compute_dtype", "up_convolution_compute_dtype")


def reference_model(dtype_name: str):
    sys.path.insert(0, str(REF))
    from configuration_ntv3_pretrained import Ntv3PreTrainedConfig
    from modeling_ntv3_pretrained import NTv3PreTrained
    import torch

    d = json.loads((REF / "hf_files_NTv3_8M_pre" / "config.json").read_text())
    d = {k: v for k, v in d.items() if k not in ("architectures", "auto_map", "model_type", "transformers_version", "torch_dtype")}
    if dtype_name == "bfloat16":
        d.update({k: "bfloat16" for k in BF16_KEYS})
    torch.manual_seed(0)
    return NTv3PreTrained(Ntv3PreTrainedConfig(**d)).eval()


def worker(impl: str, dtype_name: str, length: int, repeats: int, device: str, threads: int) -> dict:
    import torch

    import ntkit

    torch.set_num_threads(threads)
    ref = reference_model(dtype_name)
    from ntkit.models.ntv3.tokenizer import BaseTokenizer

    ids = BaseTokenizer(128).batch_encode(genome_windows(1, length, seed=0)).to_torch()[0].to(device)
    if impl == "reference":
        model = ref.to(device)
        run = lambda: model.core(input_ids=ids)["logits"]  # noqa: E731
    else:
        with tempfile.TemporaryDirectory() as d:
            ref.save_pretrained(d)
            del ref
            model = ntkit.load(d, device=device)
        auto = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=dtype_name == "bfloat16")

        def run():
            with auto:
                return model(ids).logits
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.inference_mode():
        with PeakMemory(device) as pm:
            run()
            sync()
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            run()
            sync()
            best = min(best, time.perf_counter() - t)
        with PeakMemory(device) as warm:  # a job's steady state: one-off set-up (oneDNN kernels, caches) done
            run()
            sync()
    return {"impl": impl, "dtype": dtype_name, "length": length, "bases_per_s": length / best, "peak_bytes": pm.peak,
            "warm_peak_bytes": warm.peak, "seconds": best}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", type=int, nargs="+", default=[8192, 32768, 131072])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=1, help="runs of each implementation; the table gives medians")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("--impl")
    ap.add_argument("--dtype")
    ap.add_argument("--length", type=int)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.impl, args.dtype, args.length, args.repeats, args.device, args.threads)))
        return
    if not REF.is_dir():
        sys.exit(f"reference code not found at {REF}")
    common = ["--repeats", str(args.repeats), "--device", args.device, "--threads", str(args.threads)]
    print(f"NTv3_8M_pre architecture, batch 1, device={args.device}, threads={args.threads}, best of {args.repeats}, "
          f"{args.rounds} round(s) of both implementations in alternating order")
    print(f"{'dtype':<10}{'length':>9} {'impl':<11}{'bases/s':>11}{'peak cold':>12}{'peak warm':>12}{'speed x':>9}"
          f"{'mem x':>7}{'warm x':>8}   speed x per round")
    for dtype in args.dtypes:
        for length in args.lengths:
            runs = {"reference": [], "ntkit": []}
            for r in range(args.rounds):  # alternate who goes first: a slow spell of the machine hits both
                for impl in (("reference", "ntkit") if r % 2 == 0 else ("ntkit", "reference")):
                    runs[impl].append(run_isolated(__file__, [*common, "--impl", impl, "--dtype", dtype, "--length", str(length)]))
            speed = [n["bases_per_s"] / f["bases_per_s"] for f, n in zip(runs["reference"], runs["ntkit"])]
            for impl, rows in runs.items():
                bps = statistics.median(x["bases_per_s"] for x in rows)
                peak = statistics.median(x["peak_bytes"] for x in rows)
                ref_peak = statistics.median(x["peak_bytes"] for x in runs["reference"])
                warm = statistics.median(x["warm_peak_bytes"] for x in rows)
                ref_warm = statistics.median(x["warm_peak_bytes"] for x in runs["reference"])
                ratio = statistics.median(speed) if impl == "ntkit" else 1.0
                spread = " ".join(f"{v:.2f}" for v in speed) if impl == "ntkit" else ""
                print(f"{dtype:<10}{length:>9,} {impl:<11}{bps:>11,.0f}{fmt_bytes(peak):>12}{fmt_bytes(warm):>12}{ratio:>9.2f}"
                      f"{peak / max(ref_peak, 1):>7.2f}{warm / max(ref_warm, 1):>8.2f}   {spread}")
            sys.stdout.flush()

if __name__ == "__main__":
    main()
