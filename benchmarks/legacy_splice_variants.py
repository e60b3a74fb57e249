"""The splice variant scoring that ntkit 0.1 shipped (``ntkit.tasks.splice.variants``, replaced by
``ntkit.tasks.perturb``), kept verbatim apart from imports as the reference of
``bench_splice_variants.py``: two windows of the whole NT context per allele and transcript, every
window and probability array in memory, substitutions only, the best transcript per allele.

Splice variant scores from a trained splice model, as SpliceAI reports them.

For an allele inside a transcript of the table, the model reads the reference and the alternative
sequence around it (``flank`` bases each side, in the transcript's orientation) and compares the
per-base probabilities within ``distance`` bases of the variant: delta scores
``DS_AG`` = max(alt - ref acceptor), ``DS_AL`` = max(ref - alt acceptor), ``DS_DG`` / ``DS_DL`` for
donors, and their positions ``DP_*`` relative to the variant (bases, + strand, as SpliceAI).
Substitutions (SNVs, MNVs) are scored; other alleles keep a skip reason (``indel`` — the
alignment of an indel's probabilities is not implemented — ``not_in_transcript``,
``ref_mismatch``, ``near_contig_end``, ``symbolic_alt``, ...). With several transcripts over an
allele the one with the largest delta score is reported (SpliceAI reports per gene).

The VCF is annotated textually with ``NT_SPLICE=ALT|TRANSCRIPT|DS_AG|DS_AL|DS_DG|DS_DL|DP_AG|DP_AL|DP_DG|DP_DL``
(SpliceAI's layout; one entry per scored ALT) and the table holds one row per ALT.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ntkit.runtime.engine import Runtime
from ntkit.io.genome import Genome
from ntkit.core.sequence import reverse_complement
from ntkit.tasks.splice.data import Transcript
from ntkit.tasks.splice.model import SpliceModel

COLUMNS = ["DS_AG", "DS_AL", "DS_DG", "DS_DL", "DP_AG", "DP_AL", "DP_DG", "DP_DL"]


def _windows(genome: Genome, contig: str, pos0: int, ref: str, alt: str, strand: str, flank: int):
    s, e = pos0 - flank, pos0 + len(ref) + flank
    if s < 0 or e > genome.lengths[contig]:
        return None
    r = genome.fetch(contig, s, e)
    a = r[:flank] + alt + r[flank + len(ref):]
    return (r, a) if strand == "+" else (reverse_complement(r), reverse_complement(a))


def splice_variant_scores(model: SpliceModel, vcf: str | Path, fasta: str | Path | Genome, transcripts: Sequence[Transcript],
                          *, distance: int = 50, flank: int | None = None, device=None, progress: bool = False) -> pd.DataFrame:
    """One row per ALT allele: chrom, pos, ref, alt, status, transcript, the eight SpliceAI scores."""
    from ntkit.tasks.splice.predict import iter_predict_windows
    from ntkit.tasks.variants import check_allele, iter_records

    genome = fasta if isinstance(fasta, Genome) else Genome(fasta)
    T = model.base.config.max_tokens
    fits = lambda n: n // 6 + n % 6 + 1 <= T  # noqa: E731  (N-free tokens of n bases, <cls> included)
    largest = max(f for f in range(0, 3 * T + 1) if fits(2 * f + 1))
    flank = largest if flank is None else flank
    if not distance <= flank <= largest:
        raise ValueError(f"flank must be in [{distance}, {largest}] for this model's context (distance {distance})")
    by_contig: dict[str, list[Transcript]] = {}
    for t in transcripts:
        if genome.has(t.chrom):
            by_contig.setdefault(genome.resolve(t.chrom), []).append(t)
    for ts in by_contig.values():
        ts.sort(key=lambda t: t.start)
    starts = {c: [t.start for t in ts] for c, ts in by_contig.items()}

    rows, jobs = [], []  # jobs: (row index, transcript, ref window, alt window)
    for rec in iter_records(vcf):
        for a in rec:
            check_allele(a, genome, 2 * flank)
            row = {"chrom": a.chrom, "pos": a.pos, "ref": a.ref, "alt": a.alt, "status": a.status, "transcript": None}
            rows.append(row)
            if a.status != "scored":
                continue
            if len(a.ref) != len(a.alt):
                row["status"] = "indel"
                continue
            c = a.contig
            ts = by_contig.get(c, [])
            hits = [t for t in ts[: bisect.bisect_right(starts.get(c, []), a.pos0)] if t.start <= a.pos0 < t.end]
            if not hits:
                row["status"] = "not_in_transcript"
                continue
            for t in hits:
                w = _windows(genome, c, a.pos0, a.ref, a.alt, t.strand, flank)
                if w is None:
                    row["status"] = "near_contig_end"
                    break
                jobs.append((len(rows) - 1, t, a, *w))
    seqs = [s for j in jobs for s in (j[3], j[4])]
    probs = list(iter_predict_windows(model, seqs, runtime=Runtime(device=device, progress=progress)))
    best: dict[int, tuple] = {}
    for k, (ri, t, a, ref_w, _) in enumerate(jobs):
        pr, pa = probs[2 * k], probs[2 * k + 1]
        if t.strand == "-":  # back to + strand coordinates
            pr, pa = pr[::-1], pa[::-1]
        # + strand offsets of the compared bases from the variant's first base
        lo, hi = flank - distance, flank + len(a.ref) + distance
        d = pa[lo:hi] - pr[lo:hi]
        rel = np.arange(lo, hi) - flank
        scores = [d[:, 1].max(), (-d[:, 1]).max(), d[:, 2].max(), (-d[:, 2]).max()]
        pos = [rel[d[:, 1].argmax()], rel[(-d[:, 1]).argmax()], rel[d[:, 2].argmax()], rel[(-d[:, 2]).argmax()]]
        if ri not in best or max(scores) > max(best[ri][1]):
            best[ri] = (t.name, scores, pos)
    for ri, (name, scores, pos) in best.items():
        rows[ri].update(transcript=name, **{c: float(max(v, 0.0)) for c, v in zip(COLUMNS[:4], scores)},
                        **{c: int(v) for c, v in zip(COLUMNS[4:], pos)})
    return pd.DataFrame(rows, columns=["chrom", "pos", "ref", "alt", "status", "transcript"] + COLUMNS)
