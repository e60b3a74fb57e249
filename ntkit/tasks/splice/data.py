"""Transcripts, labelled windows and chromosome splits (transcript orientation, SpliceAI labels)."""

from __future__ import annotations

import gzip
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ntkit.core.sequence import reverse_complement
from ntkit.io.annotation import GTF_SUFFIXES, transcripts
from ntkit.io.genome import Genome
from ntkit.models.spliceai.keras import ANNOTATIONS, annotation_file
from ntkit.runtime.jobs import atomic_output

CLASSES = ("none", "acceptor", "donor")
CONTEXT = 255  # label of a context base: seen by the model, not labelled (not trained on, not scored)
SPLICEAI_TEST_CHROMS = ("chr1", "chr3", "chr5", "chr7", "chr9")


@dataclass
class Transcript:
    name: str
    chrom: str
    strand: str
    start: int  # 0-based, half-open transcript span
    end: int
    acceptors: list[int] = field(default_factory=list)  # 0-based genome positions of the labelled base
    donors: list[int] = field(default_factory=list)
    boundaries: list[int] = field(default_factory=list)  # 0-based first and last base of every exon listed (SpliceAI's -M)
    order: int = 0  # position in its file (SpliceAI lists a variant's genes in file order)


def transcripts_path(path: str | Path) -> Path:
    """A transcript file, or SpliceAI's gene table of that name (``grch37`` / ``grch38``, its ``-A``:
    the installed ``spliceai`` package's)."""
    if str(path) in ANNOTATIONS and not Path(path).exists():
        return annotation_file(str(path))
    return Path(path)


def read_transcripts(path: str | Path, chroms: Sequence[str] | None = None, skip_paralogs: bool = False) -> list[Transcript]:
    """Transcripts of SpliceAI's canonical table (``NAME PARALOG CHROM STRAND TX_START TX_END
    EXON_ENDS EXON_STARTS``, 1-based, comma-separated exon lists), of SpliceAI's gene tables
    (``grch37`` / ``grch38``: the installed package's, or such a file) or of a GTF/GFF. A malformed line
    is a file:line error; a file with no transcript at all is an error too (a truncated or wrong
    file must not read as "no transcripts here")."""
    path = transcripts_path(path)
    keep = None if not chroms else {c.removeprefix("chr") for c in chroms}
    opener = gzip.open if path.suffix == ".gz" else open
    name = path.name.lower().removesuffix(".gz")
    out: list[Transcript] = []
    n_read = 0
    if name.endswith(GTF_SUFFIXES):
        for tx, (chrom, strand, ex) in transcripts(path).items():
            n_read += 1
            if keep is not None and chrom.removeprefix("chr") not in keep:
                continue
            ends = [e - 1 for _, e in ex[:-1]]  # last base of each exon but the last
            starts = [s for s, _ in ex[1:]]  # first base of each exon but the first
            t = Transcript(tx, chrom, strand, ex[0][0], ex[-1][1], order=n_read)
            t.donors, t.acceptors = (ends, starts) if strand == "+" else (starts, ends)
            t.boundaries = sorted({b for s, e in ex for b in (s, e - 1)})
            out.append(t)
    elif _is_gene_table(path, opener):
        out, n_read = _read_gene_table(path, opener, keep)
    else:
        with opener(path, "rt") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.startswith("#") or not line.strip():
                    continue
                f = line.rstrip("\r\n").split("\t")
                where = f"{path}:{lineno}"
                if len(f) < 8:
                    raise ValueError(f"{where}: {len(f)} tab-separated columns, SpliceAI's transcript table has 8 (NAME PARALOG "
                                     "CHROM STRAND TX_START TX_END EXON_ENDS EXON_STARTS); or give a GTF/GFF")
                chrom, strand = f[2], f[3]
                if strand not in ("+", "-"):
                    raise ValueError(f"{where}: strand {strand!r} is not + or -")
                try:
                    start, end = int(f[4]), int(f[5])
                    ends = [int(x) - 1 for x in f[6].strip(",").split(",") if x]  # 1-based last exon base -> 0-based
                    starts = [int(x) - 1 for x in f[7].strip(",").split(",") if x]  # 1-based first exon base -> 0-based
                except ValueError:
                    raise ValueError(f"{where}: a coordinate is not an integer: {line.strip()[:80]!r}") from None
                if end < start or len(ends) != len(starts):
                    raise ValueError(f"{where}: transcript end before start, or {len(ends)} exon ends for {len(starts)} exon starts")
                n_read += 1
                if keep is not None and chrom.removeprefix("chr") not in keep:
                    continue
                if skip_paralogs and f[1] == "1":
                    continue
                t = Transcript(f[0], chrom, strand, start - 1, end, order=n_read)
                t.donors, t.acceptors = (ends, starts) if strand == "+" else (starts, ends)
                t.boundaries = sorted(set(ends + starts))
                out.append(t)
    if n_read == 0:
        raise ValueError(f"{path}: no transcripts (an empty or truncated file, or not a transcript table / GTF)")
    return out


GENE_TABLE_HEADER = ["#NAME", "CHROM", "STRAND", "TX_START", "TX_END", "EXON_START", "EXON_END"]


def _is_gene_table(path: Path, opener) -> bool:
    with opener(path, "rt") as fh:
        return fh.readline().rstrip("\r\n").split("\t")[:7] == GENE_TABLE_HEADER


def _read_gene_table(path: Path, opener, keep) -> tuple[list[Transcript], int]:
    """SpliceAI's gene tables (``spliceai/annotations/grch37.txt``, ``-A`` of its tool): a header
    ``#NAME CHROM STRAND TX_START TX_END EXON_START EXON_END``; TX_START and EXON_START 0-based,
    TX_END and EXON_END 1-based ends (UCSC's convention), exon lists comma-terminated."""
    out, n = [], 0
    with opener(path, "rt") as fh:
        next(fh)
        for lineno, line in enumerate(fh, 2):
            if not line.strip():
                continue
            f = line.rstrip("\r\n").split("\t")
            where = f"{path}:{lineno}"
            if len(f) < 7 or f[2] not in ("+", "-"):
                raise ValueError(f"{where}: not a line of SpliceAI's gene table ({' '.join(GENE_TABLE_HEADER)})")
            try:
                start, end = int(f[3]), int(f[4])
                firsts = [int(x) for x in f[5].split(",") if x]  # 0-based first base of each exon
                lasts = [int(x) - 1 for x in f[6].split(",") if x]  # 1-based end -> 0-based last base
            except ValueError:
                raise ValueError(f"{where}: a coordinate is not an integer: {line.strip()[:80]!r}") from None
            if end < start or len(firsts) != len(lasts):
                raise ValueError(f"{where}: transcript end before start, or {len(firsts)} exon starts for {len(lasts)} exon ends")
            n += 1
            if keep is not None and f[1].removeprefix("chr") not in keep:
                continue
            t = Transcript(f[0], f[1], f[2], start, end, order=n)
            ends, starts = sorted(lasts)[:-1], sorted(firsts)[1:]  # splice sites: inner exon ends
            t.donors, t.acceptors = (ends, starts) if f[2] == "+" else (starts, ends)
            t.boundaries = sorted(set(firsts) | set(lasts))
            out.append(t)
    return out, n


# -- dataset ---------------------------------------------------------------------------------------------------


@dataclass
class SpliceWindows:
    """Windows in transcript orientation: ``sequences[i]`` with ``labels[i]`` (uint8 per base) taken
    from ``chrom[i]`` at genome ``start[i]`` (0-based, + strand coordinates) on ``strand[i]``."""

    sequences: list[str]
    labels: list[np.ndarray]
    chrom: list[str]
    start: list[int]
    strand: list[str]
    transcript: list[str]
    skipped: Counter = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.sequences)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lengths = np.array([len(l) for l in self.labels], dtype=np.int64)
        flat = np.concatenate(self.labels).astype(np.uint8) if self.labels else np.zeros(0, np.uint8)

        with atomic_output(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, sequences=np.array(self.sequences), labels=flat, label_lengths=lengths, chrom=np.array(self.chrom),
                            start=np.array(self.start), strand=np.array(self.strand), transcript=np.array(self.transcript),
                            skipped=json.dumps(dict(self.skipped)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SpliceWindows":
        z = np.load(path, allow_pickle=False)
        labels = np.split(z["labels"], np.cumsum(z["label_lengths"])[:-1]) if len(z["label_lengths"]) else []
        return cls([str(x) for x in z["sequences"]], labels, [str(x) for x in z["chrom"]], [int(s) for s in z["start"]], [str(x) for x in z["strand"]],
                   [str(x) for x in z["transcript"]], Counter(json.loads(str(z["skipped"]))))

    def counts(self) -> dict[str, int]:
        y = np.concatenate(self.labels) if self.labels else np.zeros(0, int)
        c = np.bincount(y[y != CONTEXT], minlength=3)
        return {k: int(v) for k, v in zip(CLASSES, c)}


def build_windows(genome: Genome, transcripts: Sequence[Transcript], window_bp: int, flank: int = 0,
                  max_windows: int | None = None, max_n_fraction: float = 0.1, min_sites: int = 0,
                  context: int = 0) -> SpliceWindows:
    """Tile each transcript (plus ``flank`` bp each side) with non-overlapping ``window_bp`` windows.
    Overlapping transcripts label each other's sites too (all sites of the table are labelled).
    ``min_sites`` > 0 keeps only windows with at least that many sites (for training budgets;
    evaluate on all windows). ``context`` bp of sequence on each side of a window (as SpliceAI's
    flanks; fewer at contig ends) are part of its sequence with the label ``CONTEXT``: the model
    sees them, nothing is trained on or scored there."""
    label_at: dict[tuple, dict[int, int]] = defaultdict(dict)
    for t in transcripts:
        d = label_at[(t.chrom, t.strand)]
        for p in t.acceptors:
            d[p] = 1
        for p in t.donors:
            d[p] = 2
    # (chrom, strand) -> sorted site positions and their classes
    sites = {k: (np.array(sorted(d), dtype=np.int64), np.array([d[p] for p in sorted(d)], dtype=np.uint8)) for k, d in label_at.items()}
    out = SpliceWindows([], [], [], [], [], [])
    for t in transcripts:
        try:
            contig = genome.resolve(t.chrom)
        except KeyError:
            out.skipped["chromosome not in FASTA"] += 1
            continue
        L = genome.lengths[contig]
        lo, hi = max(0, t.start - flank), min(L, t.end + flank)
        if t.end > L:
            out.skipped["transcript beyond the FASTA's end"] += 1
            continue
        pos, cls = sites[(t.chrom, t.strand)]
        for s in range(lo, hi, window_bp):
            e = min(s + window_bp, L)
            if e - s < window_bp // 4:
                continue
            seq = genome.fetch(contig, s, e)
            if seq.count("N") > max_n_fraction * len(seq):
                out.skipped["N-rich window"] += 1
                continue
            lab = np.zeros(e - s, dtype=np.uint8)
            i, j = np.searchsorted(pos, [s, e])
            lab[pos[i:j] - s] = cls[i:j]
            if (lab > 0).sum() < min_sites:
                out.skipped[f"fewer than {min_sites} sites"] += 1
                continue
            cs, ce = max(0, s - context), min(L, e + context)
            if context:
                seq = genome.fetch(contig, cs, s) + seq + genome.fetch(contig, e, ce)
                lab = np.concatenate([np.full(s - cs, CONTEXT, np.uint8), lab, np.full(ce - e, CONTEXT, np.uint8)])
            if t.strand == "-":
                seq, lab = reverse_complement(seq), lab[::-1].copy()
            out.sequences.append(seq)
            out.labels.append(lab)
            out.chrom.append(contig)  # the FASTA's name: genome tracks name contigs as the reference does
            out.start.append(cs)
            out.strand.append(t.strand)
            out.transcript.append(t.name)
            if max_windows and len(out) >= max_windows:
                return out
    return out


def split_by_chromosome(transcripts: Sequence[Transcript], test_chroms: Sequence[str] = SPLICEAI_TEST_CHROMS):
    test = {c.removeprefix("chr") for c in test_chroms}
    tr = [t for t in transcripts if t.chrom.removeprefix("chr") not in test]
    te = [t for t in transcripts if t.chrom.removeprefix("chr") in test]
    return tr, te
