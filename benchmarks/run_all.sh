#!/usr/bin/env bash
# The speed and memory benchmarks of BENCHMARKS.md, each printing its ratios against transformers
# (or a naive loop) measured in the same script. About 45 minutes on 2 CPU cores.
#   bash benchmarks/run_all.sh            # CPU, the figures of BENCHMARKS.md
#   DEVICE=cuda bash benchmarks/run_all.sh  # GPU section: bf16 and fp32, larger inputs
set -euo pipefail
cd "$(dirname "$0")"
DEVICE=${DEVICE:-cpu}
if [[ $DEVICE == cpu ]]; then
    python bench_tokenizer.py
    python bench_tokenizer.py --mixed
    python bench_forward.py --batch 4 --batches 2 --dtypes float32 bfloat16
    python bench_embed.py --n 32 --batch 8 1 --dtypes float32
    python bench_embed.py --n 8 --batch 8 --dtypes float32 bfloat16
    python bench_embed.py --record 1000000       # segment means of a 1 Mb record: flat memory (~6 min)
    python bench_train.py
    python bench_variants.py
    python bench_scale.py
    python bench_spliceai.py --threads 2      # ~30 min, and once a TensorFlow env for the official tool
    python spliceai_chr20.py --threads 2
else
    python bench_forward.py --device "$DEVICE" --batch 16 --batches 5 --dtypes float32 bfloat16
    python bench_embed.py --device "$DEVICE" --n 512 --batch 32 8 --dtypes float32 bfloat16 --threads 8
    python bench_embed.py --device "$DEVICE" --record 1000000 --threads 8   # the reference needs ~6 GB of host memory per Mb
    python bench_variants.py --device "$DEVICE" --window-tokens 1000 --snvs 20000
    python bench_spliceai.py --device "$DEVICE" --skip-official
fi
