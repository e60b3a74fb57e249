"""Benchmark helpers: peak-memory measurement, fresh-process runs, shared inputs.

CPU peak memory is the rise of the process's resident set over its level just before the timed
work (after returning freed heap pages to the OS with ``malloc_trim``), sampled every millisecond by a thread (torch's CPU allocator has no peak counter). On CUDA,
``torch.cuda.max_memory_allocated`` is used instead. Every measured configuration runs in its own
subprocess so that one run's freed-but-retained memory cannot hide another's peak.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

DATA = Path(os.environ.get("NTKIT_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()
# The transformers reference model (tests/hf_reference.py) is a test and benchmark tool, not shipped.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def release_free_memory() -> None:
    """Give freed heap pages back to the OS (glibc ``malloc_trim``), so that the RSS baseline is
    live data only and neither side of a comparison reuses memory the other freed earlier."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """``with PeakMemory(device) as pm: ...``; then ``pm.peak`` is bytes above the starting level."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.peak = 0

    def __enter__(self):
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        release_free_memory()
        self._base = rss_bytes()
        self._max = self._base
        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self._max = max(self._max, rss_bytes())
                time.sleep(0.001)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._max, rss_bytes()) - self._base


def run_isolated(script: str, args: list[str]) -> dict:
    """Run ``python script --worker args...`` and parse the JSON line it prints last."""
    out = subprocess.run([sys.executable, script, "--worker", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def genome_windows(n: int, length: int, seed: int = 0) -> list[str]:
    """``n`` windows of ``length`` bp from GRCh37 chr20 (shared data) with < 1% N, or random ACGT without it."""
    import numpy as np

    rng = np.random.default_rng(seed)
    fa = DATA / "genomes" / "GRCh37_chr20.fa.gz"
    if not fa.exists():
        print(f"note: {fa} not found, using random sequence", file=sys.stderr)
        return ["".join(rng.choice(list("ACGT"), size=length)) for _ in range(n)]
    from ntkit.io.genome import Genome

    g = Genome(fa)
    total = g.length("20")
    out = []
    while len(out) < n:
        s = int(rng.integers(0, total - length))
        w = g.fetch("20", s, s + length)
        if w.count("N") < 0.01 * length:
            out.append(w)
    return out


def fmt_bytes(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def snv_vcf(genome, path: Path, n: int, every_bp: int = 35, start: int = 30_000_000, contig: str = "20", seed: int = 0) -> Path:
    """``n`` SNVs on ``contig`` from ``start`` (0-based), one per ``every_bp`` bases on average
    (Poisson positions: the density of a 1000 Genomes chromosome VCF is about 1/35 bp), REF from
    the FASTA (N skipped), one random ALT; an uncompressed VCF written line by line."""
    import numpy as np

    rng = np.random.default_rng(seed)
    block = 1_000_000
    with open(path, "w") as f:
        f.write(f"##fileformat=VCFv4.2\n##contig=<ID={contig},length={genome.length(contig)}>\n"
                "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        pos, written, cache_at, cache = start, 0, -1, ""
        while written < n:
            pos += int(rng.geometric(1 / every_bp))
            if pos >= genome.length(contig):
                raise ValueError(f"{contig} ends before {n} SNVs at 1/{every_bp} bp from {start}")
            if not cache_at <= pos < cache_at + len(cache):
                cache_at, cache = pos, genome.fetch(contig, pos, min(pos + block, genome.length(contig)))
            ref = cache[pos - cache_at]
            if ref not in "ACGT":
                continue
            f.write(f"{contig}\t{pos + 1}\t.\t{ref}\t{rng.choice([b for b in 'ACGT' if b != ref])}\t.\t.\t.\n")
            written += 1
    return path
