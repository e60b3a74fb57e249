#!/usr/bin/env python
"""Build ntkit's shipped demo data (``ntkit/demo_data``) from the full public files.

    python scripts/build_demo_data.py --src ../shared/data [--out ntkit/demo_data]

``--src`` is a data folder with the layout ``ntkit data fetch demo`` writes (or ``../shared/data``).
The result is deterministic: the same inputs give the same sequences, records and rows (the
tests rebuild it and compare). What is kept, and why, is in ``DATA_README`` below, which becomes
the folder's README.md.

Coordinates stay the published ones: the chr20 FASTA holds contig ``20`` at its full GRCh37
length, real bases in the shipped stretches and ``N`` elsewhere (bgzip + faidx, so random access
costs nothing and the ~57 Mb of ``N`` compress to a few kB), and VCF positions and annotation rows
are copied unchanged.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import sys
from pathlib import Path

# 1-based inclusive, as samtools writes regions. Chosen for: the 60 kb after chr20's telomeric
# N block (the GoNL SNV sites), 6 Mb of gene-dense 20q11 (~100 SpliceAI canonical genes, 1000
# Genomes indels, the README's mutagenesis and attention regions), and the first Mb of the
# ``tiny-cpu`` recipe's held-out end (so its validation windows exist).
STRETCHES = [("20", 60_001, 120_000), ("20", 30_000_001, 36_000_000), ("20", 55_000_001, 56_000_000)]
ENHANCER_ROWS_PER_CLASS = 500  # split 80/20 into train and test, stratified
SEED = 0
# Named regions for the README's mutagenesis example: 150 bp upstream of three transcripts of the
# shipped canonical table (+ strand: before TX_START; - strand: after TX_END).
EXAMPLE_GENES = ("ID1", "BCL2L1", "DNMT3B")

DATA_README = """\
# ntkit demo data (shipped with the package)

A small, real subset of public data, enough for `ntkit demo`, the README's examples and the tests
on a machine with nothing else. Regenerate it with `python scripts/build_demo_data.py --src DIR`
from the full files (`ntkit data fetch demo --dest DIR` downloads them); get the full files for
real work the same way.

Coordinates are the published GRCh37 ones. `genomes/GRCh37_chr20.fa.gz` is contig `20` at its full
length (63,025,520 bp) with the real sequence in these stretches and `N` everywhere else:

{stretches}

So VCF positions, BED/annotation rows and regions such as `20:31,000,001-31,006,000` mean what they
mean on the full chromosome; a variant or window outside the stretches reads `N` (scored variants
there are skipped as `n_rich_window`, pretraining windows there are rejected as N-rich).

| file | what | source | licence |
|---|---|---|---|
| genomes/GRCh37_chr20.fa.gz (+ .fai, .gzi) | GRCh37 chr20, the stretches above, `N` elsewhere; bgzip + faidx | Debian `vt-examples` 0.57721+ds-3 (`ref/20.fa.gz`) | reference genome: public domain; packaging MIT |
| variants/chr20_indels_1000G.vcf.gz (+ .tbi) | the {n_indels} 1000 Genomes indels of `vt`'s example inside the stretches, bgzip + tabix | Debian `vt-examples` (`normalize/01_IN.vcf.gz`) | 1000 Genomes: public; MIT |
| variants/chr20_gonl_sites.vcf.gz (+ .tbi) | the 7 GoNL chr20 SNV sites, bgzip + tabix | Debian `python-pyvcf-examples` (`gonl.chr20.release4.gtc.vcf.gz`) | GoNL release 4 sites; PyVCF MIT |
| splice/spliceai_canonical_dataset_hg19.txt | the {n_tx} rows of SpliceAI's canonical-transcript table whose transcript lies inside a stretch | SpliceAI training recipe (`canonical_dataset.txt`) | SpliceAI: PolyForm / GPL-3 code, table derived from GENCODE (public) |
| splice/spliceai_annotation_grch37.txt | the {n_ann} rows of SpliceAI's GRCh37 gene table inside a stretch | PyPI `spliceai` 1.3.1 (`spliceai/annotations/grch37.txt`) | GENCODE-derived; spliceai package GPL-3 |
| tasks/nt_downstream_revised_subsample.tsv.gz | all {n_nt} rows of the stratified subsample of the NT revised downstream tasks (18 tasks; columns sequence, name, label, task) | InstaDeepAI/nucleotide_transformer_downstream_tasks_revised (Hugging Face) | CC BY-NC-SA 4.0 (the NT downstream tasks) |
| tasks/human_enhancers_cohn_{{train,test}}.tsv.gz | {n_enh} rows ({per_class} per class, seed {seed}) of the human enhancer vs non-enhancer set (columns seq, label), split 80/20 stratified | Genomic Benchmarks `human_enhancers_cohn`, test split | Apache-2.0 |
| examples/seqs.fa | the first 20 sequences of the enhancer test rows, as FASTA (ids enh_test_0 ...) | as above | Apache-2.0 |
| examples/regions.bed | 150 bp upstream of {genes}, named after the genes (BED, 0-based) | from the canonical table above | as above |

Checksums of every file: `SHA256SUMS`. Not shipped (fetch them): other chromosomes and genomes,
the whole 1000 Genomes panels, the full NT downstream tasks, MaxEntScan's tables.
"""


def region_text(stretches) -> str:
    return "\n".join(f"- `{c}:{s:,}-{e:,}` ({(e - s + 1) / 1e6:.2f} Mb)" for c, s, e in stretches)


def inside(chrom: str, start1: int, end1: int) -> bool:
    """[start1, end1] (1-based inclusive) lies in a shipped stretch (``chr20`` and ``20`` alike)."""
    chrom = chrom.removeprefix("chr")
    return any(chrom == c and s <= start1 and end1 <= e for c, s, e in STRETCHES)


def build_fasta(src: Path, dst: Path) -> None:
    import pysam

    fa = pysam.FastaFile(str(src))
    (name,) = [c for c in fa.references if c == "20"]
    length = fa.get_reference_length(name)
    width = int(Path(str(src) + ".fai").read_text().split()[3]) if Path(str(src) + ".fai").exists() else 60
    plain = dst.with_suffix("")  # .fa, compressed below
    with open(plain, "w") as out:
        out.write(f">{name}\n")
        pos = 0  # 0-based
        line = []
        for c, s, e in sorted(STRETCHES, key=lambda x: x[1]):
            line.append("N" * (s - 1 - pos))
            line.append(fa.fetch(name, s - 1, e))
            pos = e
        line.append("N" * (length - pos))
        seq = "".join(line)
        assert len(seq) == length
        for i in range(0, length, width):
            out.write(seq[i : i + width] + "\n")
    for p in (dst, Path(str(dst) + ".fai"), Path(str(dst) + ".gzi")):
        p.unlink(missing_ok=True)
    pysam.tabix_compress(str(plain), str(dst), force=True)
    plain.unlink()
    pysam.faidx(str(dst))


def build_vcf(src: Path, dst: Path) -> int:
    import pysam

    n = 0
    plain = dst.with_suffix("")
    with gzip.open(src, "rt") as f, open(plain, "w") as out:
        for line in f:
            if line.startswith("#"):
                out.write(line)
                continue
            chrom, pos, _, ref = line.split("\t", 4)[:4]
            if inside(chrom, int(pos), int(pos) + len(ref) - 1):
                out.write(line)
                n += 1
    for p in (dst, Path(str(dst) + ".tbi")):
        p.unlink(missing_ok=True)
    pysam.tabix_index(str(plain), preset="vcf", force=True)  # bgzips to plain + .gz and indexes
    os.replace(str(plain) + ".gz", dst)
    os.replace(str(plain) + ".gz.tbi", str(dst) + ".tbi")
    return n


def build_rows(src: Path, dst: Path, chrom_col: int, start_col: int, end_col: int, one_based_start: bool) -> int:
    """Rows of a tab-separated table whose [start, end] lies in a stretch (header lines kept)."""
    n = 0
    with open(src) as f, open(dst, "w") as out:
        for line in f:
            if line.startswith("#"):
                out.write(line)
                continue
            c = line.rstrip("\n").split("\t")
            start = int(c[start_col]) + (0 if one_based_start else 1)
            if inside(c[chrom_col], start, int(c[end_col])):
                out.write(line)
                n += 1
    return n


def write_gzip(text: str, dst: Path) -> None:
    # mtime 0 and no file name: the same text gives the same bytes.
    with open(dst, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(text.encode())


def build_tables(src: Path, out: Path) -> tuple[int, int]:
    import pandas as pd
    from sklearn.model_selection import train_test_split

    nt = (src / "tasks" / "nt_downstream_revised_subsample.tsv").read_text()
    write_gzip(nt, out / "tasks" / "nt_downstream_revised_subsample.tsv.gz")
    enh = pd.read_csv(src / "tasks" / "human_enhancers_cohn.tsv", sep="\t")
    sample = (enh.groupby("label", group_keys=False).sample(ENHANCER_ROWS_PER_CLASS, random_state=SEED)
              .sort_index())  # file order kept
    train, test = train_test_split(sample, test_size=0.2, random_state=SEED, stratify=sample["label"])
    for name, part in (("train", train.sort_index()), ("test", test.sort_index())):
        write_gzip(part.to_csv(sep="\t", index=False), out / "tasks" / f"human_enhancers_cohn_{name}.tsv.gz")
    first = test.sort_index().head(20)
    (out / "examples" / "seqs.fa").write_text("".join(f">enh_test_{i}\n{s}\n" for i, s in enumerate(first["seq"])))
    return nt.count("\n") - 1, len(sample)


def build_regions(canonical: Path, out: Path) -> None:
    """``examples/regions.bed``: 150 bp upstream of each of ``EXAMPLE_GENES``."""
    rows = {}
    for line in canonical.read_text().splitlines():
        f = line.split("\t")
        if f[0] in EXAMPLE_GENES:
            start1, end = int(f[4]), int(f[5])  # 1-based first base, last base
            rows[f[0]] = (f[2].removeprefix("chr"), start1 - 1 - 150, start1 - 1) if f[3] == "+" else (f[2].removeprefix("chr"), end, end + 150)
    missing = set(EXAMPLE_GENES) - set(rows)
    if missing:
        raise SystemExit(f"genes not in the shipped table: {sorted(missing)}")
    (out / "examples" / "regions.bed").write_text("".join(f"{c}\t{s}\t{e}\t{g}\n" for g, (c, s, e) in ((g, rows[g]) for g in EXAMPLE_GENES)))


def sha256sums(out: Path) -> str:
    lines = []
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name not in ("SHA256SUMS",):
            lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(out).as_posix()}")
    return "\n".join(lines) + "\n"


def build(src: Path, out: Path) -> dict:
    tmp = out.with_name(out.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    for sub in ("genomes", "variants", "splice", "tasks", "examples"):
        (tmp / sub).mkdir(parents=True)
    build_fasta(src / "genomes" / "GRCh37_chr20.fa.gz", tmp / "genomes" / "GRCh37_chr20.fa.gz")
    n_indels = build_vcf(src / "variants" / "chr20_indels_1000G.vcf.gz", tmp / "variants" / "chr20_indels_1000G.vcf.gz")
    build_vcf(src / "variants" / "chr20_gonl_sites.vcf.gz", tmp / "variants" / "chr20_gonl_sites.vcf.gz")
    # canonical table: NAME PARALOG CHROM STRAND TX_START(1-based) TX_END ...; gene table: #NAME CHROM STRAND TX_START(0-based) TX_END ...
    n_tx = build_rows(src / "splice" / "spliceai_canonical_dataset_hg19.txt", tmp / "splice" / "spliceai_canonical_dataset_hg19.txt",
                      2, 4, 5, one_based_start=True)
    n_ann = build_rows(src / "splice" / "spliceai_annotation_grch37.txt", tmp / "splice" / "spliceai_annotation_grch37.txt",
                       1, 3, 4, one_based_start=False)
    n_nt, n_enh = build_tables(src, tmp)
    build_regions(tmp / "splice" / "spliceai_canonical_dataset_hg19.txt", tmp)
    (tmp / "README.md").write_text(DATA_README.format(stretches=region_text(STRETCHES), n_indels=n_indels, n_tx=n_tx, n_ann=n_ann,
                                                      n_nt=n_nt, n_enh=n_enh, per_class=ENHANCER_ROWS_PER_CLASS, seed=SEED,
                                                      genes=", ".join(EXAMPLE_GENES)))
    (tmp / "SHA256SUMS").write_text(sha256sums(tmp))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return {"indels": n_indels, "transcripts": n_tx, "genes": n_ann, "nt_rows": n_nt, "enhancer_rows": n_enh, "bytes": size}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", required=True, help="full data folder (ntkit data fetch demo --dest DIR, or ../shared/data)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "ntkit" / "demo_data"))
    args = p.parse_args(argv)
    src = Path(args.src)
    if not (src / "genomes" / "GRCh37_chr20.fa.gz").exists():
        print(f"build_demo_data: {src} lacks genomes/GRCh37_chr20.fa.gz (ntkit data fetch demo --dest {src})", file=sys.stderr)
        return 2
    print(build(src, Path(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
