"""Pretraining data: windows sampled from genomes, haplotypes and weighted multispecies mixtures.

Window ``i`` is a pure function of ``(seed, i)``: any process can draw any window, so a global
sample index is the whole "data position" a resumed or multi-process run needs.

Sources:
- a reference FASTA (bgzip/faidx random access, or plain gzip read into memory);
- a reference + phased VCF: haplotype sequences of chosen samples, the sample's alleles (SNVs,
  MNVs, indels) applied to the reference (1000 Genomes style);
- several sources with weights: a multispecies mixture.

Held-out regions (``chrom:start-end``, 1-based inclusive as in samtools, or a whole contig) are
never overlapped by a training window; validation windows tile them.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ntkit.core.fields import check_fields
from ntkit.core.sequence import reverse_complement
from ntkit.io.genome import Genome, Interval, contig_aliases, open_vcf, vcf_path


@dataclass
class SourceConfig:
    fasta: str
    weight: float = 1.0
    name: str | None = None
    contigs: list[str] | None = None  # restrict sampling to these contigs
    vcf: str | None = None  # phased VCF: sample haplotypes instead of the reference
    samples: list[str] | None = None  # VCF samples to use (default: all)

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.weight > 0:
            raise ValueError(f"source {self.name or self.fasta}: weight must be > 0, not {self.weight}")


@dataclass
class Window:
    sequence: str
    source: str
    contig: str
    start: int
    strand: str = "+"
    haplotype: str | None = None  # "SAMPLE:0" / "SAMPLE:1" for VCF sources


@dataclass
class HaplotypeStats:
    applied: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> count


def apply_variants(ref: str, ref_start: int, variants, stats: HaplotypeStats | None = None) -> str:
    """Apply (pos0, ref, alt) edits to ``ref`` (which starts at ``ref_start``), left to right.

    Skipped, and counted by reason: edits overlapping an earlier edit, edits not fully inside
    ``ref``, and edits whose REF does not match the sequence.
    """
    stats = stats if stats is not None else HaplotypeStats()
    out, cursor = [], ref_start
    for pos, r, a in sorted(variants, key=lambda v: v[0]):
        if pos < cursor:
            stats.skipped["overlaps previous variant" if pos >= ref_start else "starts before window"] += 1
            continue
        if pos + len(r) > ref_start + len(ref):
            stats.skipped["extends past window"] += 1
            continue
        if ref[pos - ref_start : pos - ref_start + len(r)] != r.upper():
            stats.skipped["REF does not match FASTA"] += 1
            continue
        out.append(ref[cursor - ref_start : pos - ref_start])
        out.append(a.upper())
        cursor = pos + len(r)
        stats.applied += 1
    out.append(ref[cursor - ref_start :])
    return "".join(out)


class VariantSource:
    """Phased genotypes of a VCF, fetched per region (tabix/CSI index, or loaded whole if unindexed)."""

    def __init__(self, path: str | Path, samples: list[str] | None = None):
        self.path = vcf_path(path)
        vf = open_vcf(self.path)
        all_samples = list(vf.header.samples)
        self.samples = samples or all_samples
        missing = set(self.samples) - set(all_samples)
        if missing:
            raise ValueError(f"samples not in {self.path}: {sorted(missing)[:5]}")
        if not self.samples:
            raise ValueError(f"{self.path} has no samples: haplotypes need genotypes")
        self.indexed = True
        try:
            vf.fetch(next(iter(vf.header.contigs), "1"))
        except ValueError:  # pysam: "fetch requires an index"
            self.indexed = False
        self.contigs = list(vf.header.contigs)
        self._records: dict[str, list] | None = None
        if not self.indexed:
            warnings.warn(f"{self.path} has no index: loading it into memory (bgzip + tabix it for large files)", stacklevel=2)
            self._records = {}
            for rec in vf.fetch():
                self._records.setdefault(rec.chrom, []).append(self._row(rec))
            self.contigs = list(dict.fromkeys(self.contigs + list(self._records)))
        vf.close()
        self._vf = None
        self.stats = HaplotypeStats()

    def _row(self, rec):
        gts = {}
        for s in self.samples:
            call = rec.samples[s]
            gts[s] = (call.get("GT"), call.phased)
        return rec.start, rec.ref, rec.alts or (), gts

    def _resolve(self, contig: str) -> str | None:
        for a in contig_aliases(contig):
            if a in self.contigs:
                return a
        return None

    def fetch(self, contig: str, start: int, end: int):
        name = self._resolve(contig)
        if name is None:
            return []
        if self._records is not None:
            return [r for r in self._records.get(name, []) if r[0] < end and r[0] + len(r[1]) > start]
        if self._vf is None:
            self._vf = open_vcf(self.path)
        return [self._row(rec) for rec in self._vf.fetch(name, start, end)]

    def haplotype_edits(self, rows, sample: str, hap: int) -> list[tuple[int, str, str]]:
        edits = []
        for pos, ref, alts, gts in rows:
            gt, phased = gts[sample]
            if gt is None or len(gt) <= hap or gt[hap] is None:
                self.stats.skipped["missing genotype"] += 1
                continue
            allele = gt[hap]
            if allele == 0:
                continue
            if len(gt) > 1 and not phased and len(set(gt)) > 1:
                self.stats.skipped["unphased heterozygous"] += 1
                continue
            alt = alts[allele - 1]
            if not re.fullmatch(r"[ACGTNacgtn]+", alt or ""):
                self.stats.skipped["symbolic or empty ALT"] += 1
                continue
            edits.append((pos, ref, alt))
        return edits

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_vf"] = None
        return state


class _Source:
    def __init__(self, cfg: SourceConfig, exclude: list[Interval], min_length: int):
        self.cfg = cfg
        self.genome = Genome(cfg.fasta)
        self.name = cfg.name or Path(cfg.fasta).name
        names = [self.genome.resolve(c) for c in cfg.contigs] if cfg.contigs else self.genome.contigs
        self.contigs = [c for c in names if self.genome.lengths[c] >= min_length]
        if not self.contigs:
            raise ValueError(f"{self.name}: no contig is at least {min_length} bp long")
        lengths = np.array([self.genome.lengths[c] for c in self.contigs], dtype=np.float64)
        self.contig_p = lengths / lengths.sum()
        self.exclude = exclude
        self.variants = VariantSource(cfg.vcf, cfg.samples) if cfg.vcf else None


class WindowSampler:
    """Draws training windows: ``sampler(i)`` is window ``i``, the same in every process."""

    def __init__(
        self,
        sources: list[SourceConfig],
        window_bp: int,
        max_n_fraction: float = 0.05,
        reverse_complement: bool = True,
        exclude: list[Interval] | None = None,
        seed: int = 0,
        max_tries: int = 1000,
    ):
        if not sources:
            raise ValueError("no data sources")
        self.window_bp = window_bp
        self.max_n_fraction = max_n_fraction
        self.reverse_complement = reverse_complement
        self.seed = seed
        self.max_tries = max_tries
        self.sources = [_Source(s, list(exclude or []), window_bp) for s in sources]
        w = np.array([s.weight for s in sources], dtype=np.float64)
        if (w <= 0).any():
            raise ValueError("source weights must be positive")
        self.source_p = w / w.sum()
        self.rejected = Counter()  # reason -> count, for the run log

    def __call__(self, index: int) -> Window:
        rng = np.random.default_rng([self.seed, index])
        for _ in range(self.max_tries):
            src = self.sources[rng.choice(len(self.sources), p=self.source_p)]
            contig = src.contigs[rng.choice(len(src.contigs), p=src.contig_p)]
            length = src.genome.lengths[contig]
            start = int(rng.integers(0, length - self.window_bp + 1))
            end = start + self.window_bp
            if any(iv.overlaps(contig, start, end) for iv in src.exclude):
                self.rejected["held-out region"] += 1
                continue
            hap = None
            if src.variants is not None:
                # Fetch extra reference so deletions still leave a full window.
                margin = min(length - end, max(1000, self.window_bp // 4))
                ref = src.genome.fetch(contig, start, end + margin)
                sample = src.variants.samples[rng.integers(len(src.variants.samples))]
                h = int(rng.integers(2))
                rows = src.variants.fetch(contig, start, end + margin)
                edits = src.variants.haplotype_edits(rows, sample, h)
                seq = apply_variants(ref, start, edits, src.variants.stats)[: self.window_bp]
                hap = f"{sample}:{h}"
            else:
                seq = src.genome.fetch(contig, start, end)
            if len(seq) < self.window_bp:
                self.rejected["haplotype shorter than window (deletions at contig end)"] += 1
                continue
            if seq.count("N") > self.max_n_fraction * len(seq):
                self.rejected["N-rich"] += 1
                continue
            strand = "+"
            if self.reverse_complement and rng.random() < 0.5:
                seq, strand = reverse_complement(seq), "-"
            return Window(seq, src.name, contig, start, strand, hap)
        raise RuntimeError(f"no acceptable window after {self.max_tries} tries (max_n_fraction={self.max_n_fraction}, held-out regions?)")


def tile_windows(genome: Genome, intervals: list[Interval], window_bp: int, max_n_fraction: float = 0.05, limit: int | None = None) -> list[Window]:
    """Non-overlapping windows covering ``intervals`` (validation data), skipping N-rich ones."""
    out = []
    for iv in intervals:
        contig = genome.resolve(iv.contig)
        end = min(iv.end, genome.lengths[contig])
        for s in range(iv.start, end - window_bp + 1, window_bp):
            seq = genome.fetch(contig, s, s + window_bp)
            if seq.count("N") <= max_n_fraction * window_bp:
                out.append(Window(seq, genome.path.name, contig, s))
                if limit is not None and len(out) >= limit:
                    return out
    return out


def training_sequences(sources: list[SourceConfig], held_out: list[Interval]):
    """Yield every training contig of every source with the held-out intervals cut out."""
    for src in sources:
        g = Genome(src.fasta)
        for contig in [g.resolve(c) for c in src.contigs] if src.contigs else g.contigs:
            cuts = sorted((iv.start, iv.end) for iv in held_out if iv.overlaps(contig, 0, g.lengths[contig]))
            pos = 0
            for s, e in cuts + [(g.lengths[contig], g.lengths[contig])]:
                if s > pos:
                    yield g.fetch(contig, pos, s)
                pos = max(pos, e)
