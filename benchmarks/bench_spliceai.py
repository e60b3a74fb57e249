"""SpliceAI variant scores: ntkit against the official ``spliceai`` command line, same VCF, FASTA
and gene table (GRCh37 chr20, ``-A grch37``), in one run, each tool in its own process.

Workloads: the 194 1000 Genomes chr20 indels of ``../shared/data/variants`` (both tools on all of
them), and SNVs at random positions of chr20 genes in a 1 Mb gene-dense region (``--snvs``, seed 0;
the official tool, one variant at a time, runs the first ``--official-snvs`` of them: its rate is
per variant and does not depend on the set's size). Reported: variants/s of each tool and their
ratio, peak resident memory of each process, and the agreement of their ``SpliceAI=`` entries on
the variants both scored (DS within 0.0051, DP equal).

The official tool needs TensorFlow, which ntkit does not: the benchmark builds its own environment
(``benchmarks/.spliceai-env``: ``tensorflow-cpu`` 2.21 + ``tf-keras`` 2.21 standing in for Keras 2,
``pyfaidx``, ``pysam``, ``pandas``, and ``spliceai`` 1.3.1 without its dependencies) unless
``--official-python`` names one. As for the shared golden outputs, Keras is aliased to tf-keras and
NumPy 2's missing ``np.fromstring`` replaced by ``np.frombuffer`` in that process; nothing else
changes. Run on an idle machine (two jobs at once on 2 cores slow each other several-fold):

    python benchmarks/bench_spliceai.py --threads 2
"""

from __future__ import annotations

import argparse
import gzip
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import DATA

HERE = Path(__file__).resolve().parent
GOLDEN = DATA.parent / "reference" / "spliceai_golden"
ENV = HERE / ".spliceai-env"
PACKAGES = ["tensorflow-cpu==2.21.0", "tf-keras==2.21.0", "pyfaidx", "pysam", "pandas"]

# The official tool, as the golden outputs were made: Keras 2 is tf-keras; np.fromstring (gone in
# NumPy 2) is np.frombuffer on the same bytes. Prints its peak RSS (kB) last on stderr.
OFFICIAL = r'''
import resource, sys, types
import numpy as np
import tf_keras, tf_keras.models
sys.modules["keras"], sys.modules["keras.models"] = tf_keras, tf_keras.models
np.fromstring = lambda s, dtype: np.frombuffer(s.encode("latin-1") if isinstance(s, str) else s, dtype)
try:
    import pkg_resources  # noqa: F401
except ImportError:  # setuptools >= 81 has none: the package only needs resource_filename
    import importlib.util, os
    m = types.ModuleType("pkg_resources")
    m.resource_filename = lambda pkg, p: os.path.join(os.path.dirname(importlib.util.find_spec(pkg).origin), p)
    sys.modules["pkg_resources"] = m
from spliceai.__main__ import main
sys.argv = ["spliceai"] + sys.argv[1:]
try:
    main()
finally:
    print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
'''

NTKIT = r'''
import resource, runpy, sys
sys.argv = ["ntkit"] + sys.argv[1:]
try:
    runpy.run_module("ntkit.cli", run_name="__main__")
finally:
    print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
'''


def official_python(given: str | None) -> str:
    if given:
        return given
    py = ENV / "bin" / "python"
    if not py.exists():
        print(f"building {ENV} ({', '.join(PACKAGES)} + spliceai --no-deps): a few minutes, once", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PACKAGES], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "spliceai==1.3.1"], check=True)
    return str(py)


def run(cmd: list[str], threads: int) -> tuple[float, float, str]:
    """(seconds, peak RSS GiB, stderr) of a command in its own process, ``threads`` CPU threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TF_NUM_INTRAOP_THREADS": str(threads),
           "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    t = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed ({p.returncode}):\n{p.stderr[-3000:]}")
    peak = [int(l.split()[1]) for l in p.stderr.splitlines() if l.startswith("PEAK_RSS_KB")]
    return dt, (peak[-1] / 2**20 if peak else float("nan")), p.stderr


def entries(path: Path) -> dict:
    import pysam

    f = pysam.VariantFile(str(path))
    key = "SpliceAI" if "SpliceAI" in f.header.info else "NT_SPLICE"
    out = {}
    for r in f:
        for e in r.info.get(key) or ():
            v = e.split("|")
            out[(r.pos, r.ref, v[0], v[1])] = v[2:]
    return out


def agreement(ours: Path, theirs: Path) -> str:
    a, b = entries(ours), entries(theirs)
    common = [k for k in b if k in a]
    bad = 0
    for k in common:
        x, y = a[k], b[k]
        if y[0] == ".":
            bad += x[0] != "."
        elif max(abs(float(p) - float(q)) for p, q in zip(x[:4], y[:4])) > 0.0051 or x[4:] != y[4:]:
            bad += 1
    return f"{len(common)}/{len(b)} official entries matched by ntkit, {bad} differ"


def snv_vcf(path: Path, fasta: Path, n: int, seed: int = 0) -> Path:
    """``n`` SNVs at random positions of chr20 genes (SpliceAI's GRCh37 table) in a 1 Mb gene-dense region."""
    import pysam

    from ntkit.tasks.splice.data import read_transcripts

    genes = [t for t in read_transcripts("grch37") if t.chrom in ("20", "chr20")]
    lo = 44_000_000  # chr20:44-45 Mb, gene-dense
    spans = [(max(t.start, lo), min(t.end, lo + 1_000_000)) for t in genes if t.end > lo and t.start < lo + 1_000_000]
    pos = np.unique(np.concatenate([np.arange(a, b) for a, b in spans]))
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(pos, size=min(n, len(pos)), replace=False))
    fa = pysam.FastaFile(str(fasta))
    with open(path, "w") as fh:
        fh.write("##fileformat=VCFv4.2\n##contig=<ID=20,length=63025520>\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\n")
        for p in chosen:
            ref = fa.fetch("20", int(p), int(p) + 1).upper()
            if ref not in "ACGT":
                continue
            alt = "ACGT"[("ACGT".index(ref) + 1 + rng.integers(3)) % 4]
            fh.write(f"20\t{p + 1}\t.\t{ref}\t{alt}\t.\t.\t.\n")
    return path


def head_vcf(src: Path, dst: Path, n: int) -> Path:
    with open(src) as fi, open(dst, "w") as fo:
        k = 0
        for line in fi:
            if not line.startswith("#"):
                k += 1
                if k > n:
                    break
            fo.write(line)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--snvs", type=int, default=10_000)
    ap.add_argument("--official-snvs", type=int, default=150, help="SNVs the official tool scores (the first of the set)")
    ap.add_argument("--official-python", help="a Python with tensorflow-cpu, tf-keras, pyfaidx, pysam, pandas and spliceai")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-official", action="store_true", help="ntkit only (a GPU run: the official figures are the CPU run's)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_spliceai_"))
    fasta = tmp / "GRCh37_chr20.fa"  # pyfaidx (the official tool) reads plain FASTA
    with gzip.open(DATA / "genomes" / "GRCh37_chr20.fa.gz", "rb") as fi, open(fasta, "wb") as fo:
        shutil.copyfileobj(fi, fo)
    import pysam

    pysam.faidx(str(fasta))
    indels = tmp / "indels.vcf"
    with gzip.open(DATA / "variants" / "chr20_indels_1000G.vcf.gz", "rt") as fi, open(indels, "w") as fo:
        shutil.copyfileobj(fi, fo)
    snvs = snv_vcf(tmp / "snvs.vcf", fasta, args.snvs)
    n_snvs = sum(1 for l in open(snvs) if not l.startswith("#"))
    py = None if args.skip_official else official_python(args.official_python)
    ntkit_cmd = [sys.executable, "-c", NTKIT, "--quiet", "splice", "score-variants", "--splice-model", "spliceai", "--annotation",
                 "grch37", "--fasta", str(fasta), "--device", args.device]
    print(f"SpliceAI variant scores, GRCh37 chr20, -A grch37, -D 50, {args.threads} CPU threads (ntkit on {args.device})")
    print("| variants | tool | variants scored | seconds | variants/s | peak RSS GiB | ratio |")
    print("|---|---|---|---|---|---|---|")
    for label, vcf, n_all, n_off in (("1000G chr20 indels", indels, 194, 194), (f"{n_snvs:,} chr20 SNVs", snvs, n_snvs, args.official_snvs)):
        off_rate = None
        if py:
            sub = head_vcf(vcf, tmp / f"off_{vcf.name}", n_off)
            dt, peak, _ = run([py, "-c", OFFICIAL, "-I", str(sub), "-O", str(tmp / f"off_{vcf.stem}.out.vcf"), "-R", str(fasta),
                               "-A", "grch37"], args.threads)
            off_rate = n_off / dt
            print(f"| {label} | official spliceai 1.3.1 (TensorFlow {args.threads} threads) | {n_off} | {dt:.1f} | {off_rate:.2f} | "
                  f"{peak:.2f} | 1.00 |", flush=True)
        out = tmp / f"nt_{vcf.stem}.vcf"
        dt, peak, _ = run([*ntkit_cmd, "--vcf", str(vcf), "--out", str(out)], args.threads)
        rate = n_all / dt
        ratio = f"{rate / off_rate:.1f}" if off_rate else "-"
        print(f"| {label} | ntkit | {n_all} | {dt:.1f} | {rate:.2f} | {peak:.2f} | {ratio} |", flush=True)
        if py:
            print(f"  agreement: {agreement(out, tmp / f'off_{vcf.stem}.out.vcf')}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
