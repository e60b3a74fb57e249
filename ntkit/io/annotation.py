"""Genome annotations: GTF/GFF, BED and SpliceAI's tables, read by one set of rules.

GTF/GFF (``iter_gtf``): 1-based inclusive coordinates become 0-based half-open; a record's
transcript is its ``transcript_id "..."`` (GTF) or ``Parent=`` (GFF3, a ``transcript:`` prefix
dropped); comment and blank lines are skipped, any other line with fewer than 9 tab-separated
columns is an error naming the file and line. ``transcripts`` groups exons by transcript
(used by the splice-site labels); ``read_annotation`` gives typed intervals per contig (used by
the attention enrichment), with introns derived from each transcript's exons when the file has
none.
"""

from __future__ import annotations

import gzip
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ntkit.io.genome import Interval, contig_aliases

GTF_SUFFIXES = (".gtf", ".gff", ".gff3")
_BIOTYPE = re.compile(r'(?:gene_type|gene_biotype) "([^"]+)"|(?:^|;)\s*(?:gene_type|gene_biotype|biotype)=([^;]+)')
_TRANSCRIPT = (re.compile(r'transcript_id "([^"]+)"'), re.compile(r"Parent=(?:transcript:)?([^;]+)"))


def open_text(path: str | Path):
    path = Path(path)
    return gzip.open(path, "rt") if path.suffix == ".gz" else open(path)


@dataclass(frozen=True)
class GtfRecord:
    contig: str
    feature: str
    start: int  # 0-based
    end: int  # exclusive
    strand: str
    transcript: str | None
    biotype: str | None = None  # gene_type (GENCODE), gene_biotype (Ensembl) or biotype= (GFF3)


def iter_gtf(path: str | Path) -> Iterator[GtfRecord]:
    """Records of a GTF/GFF file (see the module docstring)."""
    with open_text(path) as fh:
        for n, line in enumerate(fh, 1):
            if line.startswith("#") or not line.strip():
                continue
            f = line.rstrip("\n").split("\t")
            if len(f) < 9:
                raise ValueError(f"{path}:{n}: not a GTF/GFF line (9 tab-separated columns): {line[:80]!r}")
            try:
                start, end = int(f[3]) - 1, int(f[4])
            except ValueError:
                raise ValueError(f"{path}:{n}: start/end are not integers: {line[:80]!r}") from None
            m = _TRANSCRIPT[0].search(f[8]) or _TRANSCRIPT[1].search(f[8])
            b = _BIOTYPE.search(f[8])
            yield GtfRecord(f[0], f[2], start, end, f[6], m.group(1) if m else None, (b.group(1) or b.group(2)) if b else None)


def transcripts(path: str | Path) -> dict[str, tuple[str, str, list[tuple[int, int]]]]:
    """transcript -> (contig, strand, its exons sorted, 0-based half-open) of a GTF/GFF."""
    exons: dict[str, list] = defaultdict(list)
    where: dict[str, tuple[str, str]] = {}
    for r in iter_gtf(path):
        if r.feature == "exon" and r.transcript:
            exons[r.transcript].append((r.start, r.end))
            where[r.transcript] = (r.contig, r.strand)
    return {tx: (*where[tx], sorted(ex)) for tx, ex in exons.items()}


class Annotation:
    """Intervals per element type and contig (0-based, half-open), merged."""

    def __init__(self, intervals: dict[str, dict[str, list[tuple[int, int]]]]):
        self.types = sorted(intervals)
        self.iv: dict[str, dict[str, np.ndarray]] = {}
        for t, by_contig in intervals.items():
            self.iv[t] = {}
            for c, ivs in by_contig.items():
                a = np.array(sorted(ivs), dtype=np.int64).reshape(-1, 2)
                merged = []
                for s, e in a:
                    if merged and s <= merged[-1][1]:
                        merged[-1][1] = max(merged[-1][1], e)
                    else:
                        merged.append([s, e])
                self.iv[t][c] = np.array(merged, dtype=np.int64).reshape(-1, 2)

    def _contig(self, t: str, contig: str) -> np.ndarray:
        for a in contig_aliases(contig):
            if a in self.iv[t]:
                return self.iv[t][a]
        return np.zeros((0, 2), dtype=np.int64)

    def mask(self, contig: str, start: int, end: int) -> np.ndarray:
        """bool [n_types, end - start]: bases covered by each type."""
        out = np.zeros((len(self.types), end - start), dtype=bool)
        for k, t in enumerate(self.types):
            iv = self._contig(t, contig)
            lo, hi = np.searchsorted(iv[:, 1], start, side="right"), np.searchsorted(iv[:, 0], end, side="left")
            for s, e in iv[lo:hi]:
                out[k, max(s, start) - start : min(e, end) - start] = True
        return out

    def covered(self, contig: str, start: int, end: int) -> bool:
        return bool(self.mask(contig, start, end).any())


def iter_bed(path: str | Path) -> Iterator[tuple[str, int, int, str | None, int]]:
    """(chrom, start, end, name or None, line number) per BED record (0-based half-open);
    ``track``/``browser``/``#`` and blank lines skipped; anything else malformed is a file:line error."""
    with open_text(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            f = line.rstrip("\r\n").split("\t")
            if len(f) < 3:
                raise ValueError(f"{path}:{n}: not a BED line (chrom, start, end tab-separated): {line.strip()[:60]!r}")
            try:
                start, end = int(f[1]), int(f[2])
            except ValueError:
                raise ValueError(f"{path}:{n}: start/end are not integers: {line.strip()[:60]!r}") from None
            if start < 0 or end < start:
                raise ValueError(f"{path}:{n}: end {end} before start {start} (BED is 0-based, half-open: start < end)")
            yield f[0], start, end, (f[3] if len(f) > 3 and f[3] not in ("", ".") else None), n


def element_bed(path: str | Path, element: str, genome=None) -> dict[str, list[tuple[int, int]]]:
    """contig -> [(start, end)] of one element type's BED file (``--bed NAME=FILE``), checked as a
    training target: a file without records is an error (training on it would learn "never"), and
    with ``genome`` (a ``Genome``) a record past its contig's end is an error naming the line (a BED
    of another assembly would otherwise be clipped silently), as is a file none of whose contigs is
    in the FASTA (``chr20`` and ``20`` match). Records on contigs the FASTA lacks are skipped."""
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    n = 0
    for chrom, s, e, _, line in iter_bed(path):
        n += 1
        if genome is not None:
            if not genome.has(chrom):
                continue
            size = genome.length(chrom)
            if e > size:
                raise ValueError(f"{path}:{line}: {chrom}:{s}-{e} ends past the end of {chrom} ({size:,} bases in {genome.path.name}): "
                                 "a BED of another assembly? fix or remove the line")
        out[chrom].append((s, e))
    if n == 0:
        raise ValueError(f"{path}: no BED records for element {element!r} (an empty file): give the element's intervals")
    if not out:
        raise ValueError(f"{path}: none of its contigs is in {genome.path.name} (element {element!r}; the FASTA has "
                         f"{', '.join(genome.contigs[:8])}{'...' if len(genome.contigs) > 8 else ''}): a BED of another assembly?")
    return dict(out)


def read_bed(path: str | Path) -> list:
    """``Interval``s of a BED file, names from its 4th column."""
    return [Interval(c, s, e, name) for c, s, e, name, _ in iter_bed(path)]


def _introns(exons_by_tx: dict) -> dict[str, list]:
    out = defaultdict(list)
    for (contig, _tx), ex in exons_by_tx.items():
        ex = sorted(ex)
        for (s1, e1), (s2, e2) in zip(ex, ex[1:]):
            if s2 > e1:
                out[contig].append((e1, s2))
    return out


def read_annotation(path: str | Path, types: Sequence[str] | None = None, bed_type: str | None = None) -> Annotation:
    """BED (type = name column, or ``bed_type``), GTF/GFF (type = feature column; ``intron`` is
    derived from the exons of each transcript when absent), or SpliceAI's gene table
    (``#NAME CHROM STRAND TX_START TX_END EXON_START EXON_END``: exon and intron)."""
    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    iv: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    with open_text(path) as fh:
        first = fh.readline()
        fh.seek(0)
        if first.startswith("#NAME") and "EXON_START" in first:
            for line in fh:
                if line.startswith("#") or not line.strip():
                    continue
                f = line.rstrip("\n").split("\t")
                chrom = f[1]
                starts = [int(x) for x in f[5].strip(",").split(",") if x]
                ends = [int(x) for x in f[6].strip(",").split(",") if x]
                ex = sorted(zip(starts, ends))
                for s, e in ex:
                    iv["exon"][chrom].append((s, e))
                for (s1, e1), (s2, e2) in zip(ex, ex[1:]):
                    if s2 > e1:
                        iv["intron"][chrom].append((e1, s2))
        elif name.endswith(GTF_SUFFIXES):
            exons = defaultdict(list)
            for r in iter_gtf(path):
                iv[r.feature][r.contig].append((r.start, r.end))
                if r.feature == "exon" and r.transcript:
                    exons[(r.contig, r.transcript)].append((r.start, r.end))
            if "intron" not in iv and exons:
                for c, ivs in _introns(exons).items():
                    iv["intron"][c].extend(ivs)
        elif name.endswith(".bed"):
            for chrom, s, e, bed_name, _ in iter_bed(path):
                iv[bed_type or bed_name or path.name.split(".")[0]][chrom].append((s, e))
        else:
            raise ValueError(f"{path}: annotation must be BED, GTF/GFF or SpliceAI's gene table")
    if types:
        missing = set(types) - set(iv)
        if missing:
            raise ValueError(f"element types not in {path}: {sorted(missing)} (have {sorted(iv)[:20]})")
        iv = {t: iv[t] for t in types}
    if not iv:
        raise ValueError(f"{path}: no intervals")
    return Annotation(dict(iv))
