"""Perturbations over any predictor (``ntkit.tasks.predictors``): variant effects of a VCF and in-silico
saturation mutagenesis, as sharded, resumable jobs with flat memory.

The reference is read in *tiles*, windows on a fixed grid along each contig, and an allele is scored
in the tile where it lies most central (``variants.tile_start``, the rule of NT's zero-shot
scores): the reference prediction of a tile is shared by every allele in it, so a dense VCF or a
mutagenesis costs about one forward per allele. End N runs are dropped from tiles and a tile is cut
to what the predictor can read (interior Ns take a token each in NT): an allele beyond the cut is
skipped as ``n_rich_window``.

Per-sequence predictors (``kind = "sequence"``: a fine-tuned classifier or regressor): the tile is
``window_bp`` long (default: the length the model was trained on), the alternative window is the
tile with the allele applied (filled or trimmed on the right to the tile's length). Per output:
``ref_<o>``, ``alt_<o>``, ``delta_<o>`` = alt - ref; for a classifier also ``logodds_<class>`` =
logit(alt) - logit(ref).

Per-base predictors (``kind = "base"``) compare the predictions of reference and alternative
within ``distance`` bases of the variant. A *stranded* predictor (a splice model) is scored as
SpliceAI scores variants: for every gene whose span holds the variant (one row per allele and
gene, the gene's strand read 5' -> 3'); the others (SegmentNT's elements, NTv3's tracks) once per
allele on the + strand, without genes. An indel's alternative predictions are aligned to the
reference (a deletion: zeros at the deleted positions; an insertion: the maximum over the inserted
bases); substitutions of any length are compared base by base, other complex alleles are skipped
(``complex_indel``). Per probability output (splice sites, elements): the largest gain and loss
(``DS_*``, clipped at 0) and their positions relative to POS (``DP_*``, + strand bases); ``mask=True``
is SpliceAI's ``-M``: a gain at an annotated site of the gene and a loss at an unannotated position
count 0. Per track output (NTv3's and trained tracks; Borzoi's SAD, AlphaGenome's centre-mask
scores): ``SUM_*`` = the alternative's sum over the neighbourhood minus the reference's (each on
its own bases: ``distance`` each side of the allele) and ``LFC_*`` = log2(1 + alt sum) - log2(1 + ref
sum) (sums below 0 read 0).

Windows of per-base predictors: for a local predictor (a splice model) tiles are
``2 * (distance + receptive_field) + 2 * tile_stride_bp`` long, so every allele up to
``tile_stride_bp`` long has its whole neighbourhood and receptive field inside its tile; for an
*exact* predictor (a pure convolution) the alternative is read in the smallest window that holds
them, for the others in the tile, the same window as the reference. A *windowed* predictor reads
tiles of its own window (``window_bp``, default the model's), on a grid fine enough that every
neighbourhood lies inside a tile's trusted centre (``valid``: SegmentNT's window without its
flanks, NTv3's centre crop); the alternative is the tile with the allele applied, cut or filled
with N at its right end to the tile's length. A neighbourhood beyond what a tile predicts (NTv3's
crop at a contig's ends, a contig shorter than the window) is skipped as ``outside_prediction``.

NT's zero-shot scores (the default predictor) are ``ntkit.tasks.variants``'; this module runs them with
the same jobs, options and outputs.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from ntkit.core.sequence import reverse_complement
from ntkit.io.genome import Genome
from ntkit.runtime import engine, jobs
from ntkit.tasks.options import EffectOptions  # noqa: F401  (re-exported)
from ntkit.tasks.predictors import Predictor, ZeroShot, logit
from ntkit.tasks.splice.data import read_transcripts, transcripts_path
from ntkit.tasks.variants import (
    DEFAULT_SCORES,
    SKIP_REASONS,
    Allele,
    _describe,
    check_allele,
    is_vcf,
    iter_records,
    number_a_fields,
    provenance_line,
    score_alleles,
    score_options,
    summary_line,
    tile_sequence,
    with_allele,
    write_vcf_rows,
)

BASE_SKIPS = ("not_in_gene", "complex_indel", "outside_prediction")


# -- genes ---------------------------------------------------------------------------------------------------


class GeneIndex:
    """Transcripts by FASTA contig, for ``hits(contig, pos0)``: the genes whose span holds a base."""

    def __init__(self, transcripts, genome: Genome):
        self.by_contig: dict[str, list] = {}
        for t in transcripts:
            if genome.has(t.chrom):
                self.by_contig.setdefault(genome.resolve(t.chrom), []).append(t)
        for ts in self.by_contig.values():
            ts.sort(key=lambda t: (t.start, t.name))
        self.starts = {c: [t.start for t in ts] for c, ts in self.by_contig.items()}
        self.longest = {c: max(t.end - t.start for t in ts) for c, ts in self.by_contig.items()}
        if not self.by_contig:
            raise ValueError("no transcript lies on a contig of the FASTA (chr20 and 20 are matched; other names are not)")

    def hits(self, contig: str, pos0: int) -> list:
        ts = self.by_contig.get(contig, [])
        lo = bisect.bisect_left(self.starts.get(contig, []), pos0 - self.longest.get(contig, 0))
        return [t for t in ts[lo : bisect.bisect_right(self.starts.get(contig, []), pos0)] if t.start <= pos0 < t.end]


# -- tiles ---------------------------------------------------------------------------------------------------


def _tile(genome: Genome, a: Allele, width: int, stride: int, predictor: Predictor) -> tuple[int, str, str] | None:
    """``variants.tile_sequence`` cut to what ``predictor`` reads (a fixed-window predictor: the
    whole window, end Ns included); None when ``a`` lies beyond the cut."""
    start, ref, full = tile_sequence(genome, a, width, stride, None if predictor.fixed_window else predictor.fit)
    return None if a.pos0 + len(a.ref) > start + len(ref) else (start, ref, full)


def _oriented(seq: str, strand: str) -> str:
    return seq if strand == "+" else reverse_complement(seq)


def _back(p: np.ndarray, strand: str) -> np.ndarray:
    """Per-base predictions of a strand's sequence in + strand order."""
    return p if strand == "+" else p[::-1]


# -- per-sequence predictors ---------------------------------------------------------------------------------


def sequence_columns(predictor: Predictor) -> list[str]:
    cols = [f"{k}_{o}" for o in predictor.outputs for k in ("ref", "alt", "delta")]
    if getattr(predictor, "classification", False):
        cols += [f"logodds_{c}" for c in predictor.classes]
    return cols


def sequence_effects(predictor: Predictor, alleles: list[Allele], genome: Genome, opts: EffectOptions,
                     runtime=None) -> list[dict]:
    """One row per allele (input order): see the module docstring. ``opts`` resolved."""
    rt = engine.as_runtime(runtime).replace(progress=False)
    tiles: dict[tuple, str] = {}
    plan = []
    for a in alleles:
        check_allele(a, genome, opts.window_bp)
        if a.status != "scored":
            continue
        t = _tile(genome, a, opts.window_bp, opts.tile_stride_bp, predictor)
        if t is None:
            a.status = "n_rich_window"
            continue
        start, ref_w, full = t
        a.start = start
        key = (a.contig, start, len(ref_w))
        tiles.setdefault(key, ref_w)
        plan.append((a, key, with_allele(full, start, a, len(ref_w))))
    keys = list(tiles)
    preds = list(predictor.predict([tiles[k] for k in keys] + [p[2] for p in plan], rt))
    ref_of = dict(zip(keys, preds[: len(keys)]))
    got = {a.row: (ref_of[key], alt) for (a, key, _), alt in zip(plan, preds[len(keys):])}
    cols = sequence_columns(predictor)
    rows = []
    for a in alleles:
        row = _allele_row(a, opts)
        if a.row in got:
            ref, alt = got[a.row]
            for k, o in enumerate(predictor.outputs):
                row.update({f"ref_{o}": float(ref[k]), f"alt_{o}": float(alt[k]), f"delta_{o}": float(alt[k] - ref[k])})
            if getattr(predictor, "classification", False):
                lo = logit(alt) - logit(ref)
                row.update({f"logodds_{c}": float(lo[k]) for k, c in enumerate(predictor.classes)})
        else:
            row.update({c: math.nan for c in cols})
        rows.append(row)
    return rows


def _allele_row(a: Allele, opts: EffectOptions) -> dict:
    row = {"chrom": a.chrom, "pos": a.pos, "id": a.id, "ref": a.ref, "alt": a.alt, "alt_index": a.alt_index, "status": a.status,
           "window_start": a.start + 1 if a.status == "scored" else None}
    if opts.label_key:
        row["label"] = a.label
    return row


# -- per-base predictors (SpliceAI's scores, track sums) ----------------------------------------------------------


def base_columns(predictor: Predictor) -> list[str]:
    names = gain_loss_names(predictor)
    tracks = [o for k, o in enumerate(predictor.outputs) if not predictor.is_probability(k)]
    return [f"DS_{n}" for n in names] + [f"DP_{n}" for n in names] + [f"{m}_{o}" for o in tracks for m in ("SUM", "LFC")]


def _gain_loss(predictor: Predictor, output: str) -> tuple[str, str]:
    return getattr(predictor, "score_names", {}).get(output, (f"{output}_gain", f"{output}_loss"))


def gain_loss_names(predictor: Predictor) -> list[str]:
    """The gain and loss names of every probability output, in order (SpliceAI's AG, AL, DG, DL for splice models)."""
    return [n for k, o in enumerate(predictor.outputs) if predictor.is_probability(k) for n in _gain_loss(predictor, o)]


def _take(p: np.ndarray, p_start: int, lo: int, hi: int, contig_len: int) -> np.ndarray:
    """Rows of ``p`` (per-base predictions starting at genome position ``p_start``) for positions
    [lo, hi); positions outside the contig read 0 (no sequence there)."""
    out = np.zeros((hi - lo, p.shape[1]), dtype=np.float64)
    a, b = max(lo, 0, p_start), min(hi, contig_len, p_start + len(p))
    if b > a:
        out[a - lo : b - lo] = p[a - p_start : b - p_start]
    return out


def align_alt(y_alt: np.ndarray, ref_len: int, alt_len: int, distance: int) -> np.ndarray:
    """The alternative's predictions on the reference's positions, as SpliceAI aligns them: a
    deletion's deleted bases read 0, an insertion's inserted bases are reduced to their maximum."""
    d = distance
    if ref_len > alt_len:  # deletion (after the shared anchor base)
        return np.concatenate([y_alt[: d + alt_len], np.zeros((ref_len - alt_len, y_alt.shape[1])), y_alt[d + alt_len:]])
    if alt_len > ref_len:  # insertion
        return np.concatenate([y_alt[:d], y_alt[d : d + alt_len].max(0, keepdims=True), y_alt[d + alt_len:]])
    return y_alt


def _covers(predictor: Predictor, start: int, length: int, lo: int, hi: int) -> bool:
    """Whether the outputs of an input of ``length`` bases from ``start`` cover positions [lo, hi)."""
    a, b = predictor.output_span(length)
    return start + a <= lo and hi <= start + b


def _windows(predictor: Predictor, genome: Genome, a: Allele, opts: EffectOptions):
    """(tile start, reference window, alternative window, its start) of a checked allele, or None
    with ``a.status`` set when the predictor cannot see the allele's neighbourhood."""
    D, RF, W, S = opts.distance, predictor.receptive_field, opts.window_bp, opts.tile_stride_bp
    L = genome.lengths[a.contig]
    t = _tile(genome, a, W, S, predictor)
    if t is None:
        a.status = "n_rich_window"
        return None
    start, ref_w, full = t
    if predictor.windowed:  # the tile, the allele applied, at the tile's length (N-filled at a contig's end)
        alt_w, alt_start = with_allele(full, start, a, len(ref_w)), start
        if predictor.fixed_window:
            alt_w += "N" * (len(ref_w) - len(alt_w))
        near = (max(0, a.pos0 - D), min(L, a.pos0 + len(a.ref) + D))
        near_alt = (near[0], min(L + len(a.alt) - len(a.ref), a.pos0 + len(a.alt) + D))
        if len(ref_w) < W and predictor.fixed_window or not (_covers(predictor, start, len(ref_w), *near)
                                                            and _covers(predictor, alt_start, len(alt_w), *near_alt)):
            a.status = "outside_prediction"
            return None
        return start, ref_w, alt_w, alt_start
    if a.pos0 + len(a.ref) + D > start + len(ref_w) and start + len(ref_w) < L:
        a.status = "n_rich_window"
        return None
    if predictor.exact:  # the smallest window holding the neighbourhood and its receptive field
        lo, hi = max(0, a.pos0 - D - RF), min(L, a.pos0 + len(a.ref) + D + RF)
        return start, ref_w, with_allele(genome.fetch(a.contig, lo, hi), lo, a), lo
    # the tile itself, so that reference and alternative are read in the same window
    return start, ref_w, with_allele(full, start, a, len(ref_w) + max(0, len(a.alt) - len(a.ref))), start


def base_effects(predictor: Predictor, alleles: list[Allele], genome: Genome, genes: GeneIndex | None, opts: EffectOptions,
                 runtime=None) -> list[dict]:
    """Rows per allele and gene of a stranded predictor, per allele of the others (input order; a
    skipped allele: one row with its status). See the module docstring. ``opts`` resolved."""
    if predictor.stranded and genes is None:
        raise ValueError("a stranded per-base predictor (a splice model) scores variants inside genes: give transcripts")
    D = opts.distance
    hits_of: dict[int, list] = {}
    pairs = allele_predictions(predictor, alleles, genome, genes, opts, runtime, hits_of=hits_of)
    per_allele: dict[int, list[dict]] = {}
    for a, gs, y_ref, y_alt in pairs:
        sums = y_ref.sum(0), y_alt.sum(0)  # track outputs: each allele's own bases
        delta = align_alt(y_alt, len(a.ref), len(a.alt), D) - y_ref
        if predictor.stranded:  # SpliceAI compares the 2D + 1 bases from POS - D to POS + D (a deletion's end beyond: not)
            delta = delta[: 2 * D + 1]
        rel = np.arange(len(delta)) - D  # bases from POS, + strand
        for g in gs:
            per_allele.setdefault(a.row, []).append(_score_row(predictor, a, g, delta, rel, sums, opts))
    cols = base_columns(predictor)
    rows = []
    for a in alleles:
        if a.row in per_allele:
            rows.extend(sorted(per_allele[a.row], key=lambda r: r.pop("_order")))
        elif a.status == "complex_indel" and predictor.stranded:  # one row per gene, as SpliceAI's '.' entries
            rows.extend({"record": a.record, **_allele_row(a, opts), "gene": g.name, "strand": g.strand, **{c: None for c in cols}}
                        for g in sorted(hits_of[a.row], key=lambda g: g.order))
        else:
            rows.append({"record": a.record, **_allele_row(a, opts), "gene": None, "strand": None, **{c: None for c in cols}})
    return rows


def allele_predictions(predictor: Predictor, alleles: list[Allele], genome: Genome, genes: GeneIndex | None, opts: EffectOptions,
                       runtime=None, hits_of: dict | None = None) -> Iterator[tuple]:
    """(allele, its genes, reference predictions [2D + len(REF), C], alternative predictions [2D +
    len(ALT), C]) over each scorable allele's neighbourhood (+ strand order; ``opts`` resolved):
    what ``base_effects`` scores and a review page draws. Alleles that cannot be scored get their
    ``status``; ``hits_of`` (allele row -> genes) is filled for the caller."""
    rt = engine.as_runtime(runtime).replace(progress=False)
    D = opts.distance
    flanked = bool(getattr(predictor, "flank", 0)) and not predictor.windowed
    hits_of = {} if hits_of is None else hits_of
    todo = []
    for a in alleles:
        check_allele(a, genome, 2 * opts.tile_stride_bp if not flanked else math.inf)
        if a.status != "scored":
            continue
        hits = genes.hits(a.contig, a.pos0) if predictor.stranded else [None]
        if not hits:
            a.status = "not_in_gene"
            continue
        hits_of[a.row] = hits
        if predictor.stranded and len(a.ref) > 2 * D:  # SpliceAI: a reference longer than the neighbourhood is not scored
            a.status = "too_long"
        elif len(a.ref) > 1 and len(a.alt) > 1 and (predictor.stranded or len(a.ref) != len(a.alt)):
            a.status = "complex_indel"  # SpliceAI writes '.' scores for these (an MNV too); others score MNVs base by base
        else:
            todo.append(a)
    yield from (_flanked_pairs if flanked else _tiled_pairs)(predictor, todo, genome, hits_of, opts, rt)


def _score_row(predictor: Predictor, a: Allele, g, delta: np.ndarray, rel: np.ndarray, sums, opts: EffectOptions) -> dict:
    """One row of scores: per probability output the largest gain and loss and their offsets, per
    track output the change of its sum. Masking (``opts.mask``) is SpliceAI's ``-M``: the exon
    boundary nearest to POS is the annotated site; a gain found there, or a loss found anywhere
    else, counts 0 (the offsets stay those of the largest change)."""
    row = {"record": a.record, **_allele_row(a, opts), "gene": g.name if g else None, "strand": g.strand if g else None,
           "_order": g.order if g else 0}
    nearest = _nearest_boundary(g, a.pos0) if opts.mask and g is not None else None
    for c, o in enumerate(predictor.outputs):
        if not predictor.is_probability(c):
            r, t = (float(x[c]) for x in sums)
            row.update({f"SUM_{o}": t - r, f"LFC_{o}": math.log2(1 + max(t, 0.0)) - math.log2(1 + max(r, 0.0))})
            continue
        gain, loss = delta[:, c], -delta[:, c]
        ig, il = int(gain.argmax()), int(loss.argmax())  # with no change anywhere: the first base, DP = -distance (SpliceAI)
        vg, vl = float(gain[ig]), float(loss[il])
        if nearest is not None:
            vg, vl = (0.0 if rel[ig] == nearest else vg), (0.0 if rel[il] != nearest else vl)
        gn, ln = _gain_loss(predictor, o)
        # clamped at 0 and never -0.0 (SpliceAI's largest change is never negative but for float noise)
        row.update({f"DS_{gn}": vg if vg > 0 else 0.0, f"DS_{ln}": vl if vl > 0 else 0.0, f"DP_{gn}": int(rel[ig]), f"DP_{ln}": int(rel[il])})
    return row


def _nearest_boundary(gene, pos0: int) -> int:
    """Offset from POS of the gene's exon boundary (an exon's first or last base) nearest to it; a
    tie goes to the upstream (+ strand) one, as SpliceAI's ``min(..., key=abs)`` over sorted positions."""
    bounds = sorted(set(gene.boundaries or (gene.acceptors + gene.donors + [gene.start, gene.end - 1])))
    return min((b - pos0 for b in bounds), key=abs)


def _tiled_pairs(predictor: Predictor, todo: list[Allele], genome: Genome, hits_of: dict, opts: EffectOptions, rt):
    """(allele, genes, reference and alternative predictions over the allele's neighbourhood, +
    strand) from shared reference tiles and each allele's alternative window."""
    D = opts.distance
    tiles: dict[tuple, str] = {}  # (contig, start, length, strand) -> sequence read by the predictor
    plan = []  # (allele, genes, strand, ref key, alt sequence, alt window start)
    for a in todo:
        w = _windows(predictor, genome, a, opts)
        if w is None:  # status set: the predictor cannot see the neighbourhood
            continue
        start, ref_w, alt_w, alt_start = w
        a.start = start
        hits = hits_of[a.row]
        for strand in sorted({g.strand for g in hits}) if predictor.stranded else ["+"]:
            key = (a.contig, start, len(ref_w), strand)
            tiles.setdefault(key, _oriented(ref_w, strand))
            plan.append((a, [g for g in hits if g is None or g.strand == strand], strand, key, _oriented(alt_w, strand), alt_start))
    keys = list(tiles)
    # The reference tiles first (shared by their alleles, kept), then each allele's alternative,
    # used as it streams in and dropped: memory holds the tiles, not a chunk's alternatives.
    stream = predictor.predict(itertools.chain((tiles[k] for k in keys), (p[4] for p in plan)), rt)
    ref_of = {k: _back(p, k[3]) for k, p in zip(keys, itertools.islice(stream, len(keys)))}
    for (a, gs, strand, key, alt_w, alt_start), p_alt in zip(plan, stream):
        L = genome.lengths[a.contig]
        # predictions cover output_span of their input: NTv3's centre crop, all of it otherwise
        y_ref = _take(ref_of[key], key[1] + predictor.output_span(key[2])[0], a.pos0 - D, a.pos0 + len(a.ref) + D, L)
        y_alt = _take(_back(p_alt, strand), alt_start + predictor.output_span(len(alt_w))[0], a.pos0 - D,
                      a.pos0 + len(a.alt) + D, L + len(a.alt) - len(a.ref))
        yield a, gs, y_ref, y_alt


def _flanked_pairs(predictor: Predictor, todo: list[Allele], genome: Genome, hits_of: dict, opts: EffectOptions, rt):
    """As ``_tiled_pairs`` for a predictor that crops ``flank`` bases each side (SpliceAI), as
    SpliceAI's own tool reads a variant: every predicted base sees its whole receptive field, N
    beyond a contig's ends and, for a gene, outside the gene's span. The reference tile of grid
    step S predicts the bases [t0, t0 + S + 4D) (t0 = S * floor(POS0 / S) - D: the neighbourhood of
    any allele of it up to 2D bases long) from the input [t0 - flank, t0 + S + 4D + flank); alleles
    of the same tile, strand and gene span share it, and the predictor computes each allele on it
    (``OneHotModel.alternatives``)."""
    D, F, S = opts.distance, predictor.flank, opts.tile_stride_bp
    To = S + 4 * D
    tiles: dict[tuple, int] = {}
    seqs: list[str] = []
    plan = []  # (allele, genes, strand, tile index)
    specs = []  # (tile index, allele start in the oriented tile, ref length, oriented alt bases)
    for a in todo:
        t0 = (a.pos0 // S) * S - D
        lo, hi = t0 - F, t0 + To + F
        a.start = t0
        groups: dict[tuple, list] = {}
        for g in hits_of[a.row]:
            span = None if g is None else (max(g.start, lo), min(g.end, hi))
            groups.setdefault((g.strand if g else "+", None if span == (lo, hi) else span), []).append(g)
        for (strand, span), gs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or (0, 0))):
            key = (a.contig, t0, strand, span)
            if key not in tiles:
                seq = genome.fetch_padded(a.contig, lo, hi)
                if span is not None:  # SpliceAI's padding: N outside the gene
                    a0, b0 = max(span[0] - lo, 0), max(min(span[1] - lo, len(seq)), 0)
                    seq = "N" * a0 + seq[a0:b0] + "N" * (len(seq) - b0) if a0 < b0 else "N" * len(seq)
                tiles[key] = len(seqs)
                seqs.append(_oriented(seq, strand))
            p = a.pos0 - lo
            if strand == "-":
                p = (hi - lo) - p - len(a.ref)
            specs.append((tiles[key], p, len(a.ref), _oriented(a.alt, strand)))
            plan.append((a, gs, strand, tiles[key]))
    refs, alts = predictor.alternatives(seqs, specs, D, rt)
    for (a, gs, strand, t), y_alt in zip(plan, alts):
        ref = _back(refs[t], strand)
        y_ref = ref[a.pos0 - D - a.start : a.pos0 + len(a.ref) + D - a.start].astype(np.float64)
        yield a, gs, y_ref, _back(y_alt, strand).astype(np.float64)


# -- schemas -------------------------------------------------------------------------------------------------


def schema(predictor: Predictor, opts: EffectOptions) -> pa.Schema:
    if predictor.kind == "lm":
        return predictor.score_options.schema()
    f = [("record", pa.int64())] if predictor.kind == "base" else []
    f += [("chrom", pa.string()), ("pos", pa.int64()), ("id", pa.string()), ("ref", pa.string()), ("alt", pa.string()),
         ("alt_index", pa.int64()), ("status", pa.string()), ("window_start", pa.int64())]
    f += [("label", pa.float64())] if opts.label_key else []
    if predictor.kind == "base":
        f += [("gene", pa.string()), ("strand", pa.string())]
        f += [(c, pa.int64() if c.startswith("DP_") else pa.float64()) for c in base_columns(predictor)]
    else:
        f += [(c, pa.float64()) for c in sequence_columns(predictor)]
    return pa.schema(f)


def effects(predictor: Predictor, alleles: list[Allele], genome: Genome, opts: EffectOptions, genes: GeneIndex | None = None,
            runtime=None) -> list[dict]:
    """The rows of ``alleles`` for any predictor (``opts`` resolved)."""
    if predictor.kind == "lm":
        return score_alleles(predictor.model, alleles, genome, predictor.score_options, runtime=runtime)
    if predictor.kind == "base":
        return base_effects(predictor, alleles, genome, genes, opts, runtime)
    return sequence_effects(predictor, alleles, genome, opts, runtime)


# -- VCF files -----------------------------------------------------------------------------------------------


def vcf_fields(kind: str, columns: Sequence[str], info_id: str = "NT_SPLICE"):
    """(header lines, fields(rows of one record, number of ALTs) -> INFO strings) of an annotated
    VCF: ``NT_STATUS`` per ALT, plus one Number=A field per score (zero-shot and per-sequence
    predictors) or, for per-base predictors, ``info_id`` entries in SpliceAI's layout (``NT_SPLICE``
    for splice models, ``NT_EFFECT`` for the others, whose GENE is '.'), one per allele and gene."""
    if kind != "base":
        return number_a_fields(columns, _describe if kind == "lm" else None)
    status = ('##INFO=<ID=NT_STATUS,Number=A,Type=String,Description="ntkit: \'scored\' or why the allele was skipped ('
              + ", ".join(SKIP_REASONS + BASE_SKIPS) + ')">\n')
    fmt = "ALLELE|GENE|" + "|".join(columns)
    header = [status, f'##INFO=<ID={info_id},Number=.,Type=String,Description="ntkit per-base predictor effects within the distance '
                      '(DS/DP: largest gain and loss and their offsets; SUM/LFC: change of a track\'s sum, log2 fold change), one '
                      f'entry per allele and gene, SpliceAI\'s layout. Format: {fmt}">\n']

    def value(c: str, v) -> str:
        return str(int(v)) if c.startswith("DP_") else f"{v:.2f}" if c.startswith("DS_") else f"{v:.4g}"

    def fields(rows: list[dict], n_alts: int) -> list[str]:
        status_of = {r["alt_index"]: r["status"] for r in rows}
        out = ["NT_STATUS=" + ",".join(status_of.get(k, "no_alt") for k in range(1, n_alts + 1))]
        # scored alleles, and (as SpliceAI) '.' scores for a gene's allele with REF and ALT both longer than a base
        entries = [f"{r['alt']}|{r['gene'] or '.'}|" + "|".join(value(c, r[c]) if r["status"] == "scored" else "." for c in columns)
                   for r in rows if r["status"] == "scored" or r["status"] == "complex_indel" and r.get("gene")]
        return out + ([f"{info_id}=" + ",".join(entries)] if entries else [])

    return header, fields


def _meta(predictor: Predictor, opts: EffectOptions) -> dict:
    """What a job's manifest records of the predictor and options (and what its merge needs)."""
    if predictor.kind == "lm":
        o = {k: list(v) if isinstance(v, tuple) else v for k, v in vars(predictor.score_options).items()}
        return {"kind": "lm", "predictor": predictor.describe(), **o, "columns": list(predictor.outputs)}
    return {"kind": predictor.kind, "predictor": predictor.describe(), **vars(opts),
            "columns": base_columns(predictor) if predictor.kind == "base" else sequence_columns(predictor),
            "info_id": "NT_SPLICE" if predictor.stranded else "NT_EFFECT"}


# -- jobs ----------------------------------------------------------------------------------------------------


def variant_effects_to_files(predictor: Predictor, vcf: str | Path, fasta: str | Path, outputs: Sequence[str | Path], *,
                             transcripts=None, options: EffectOptions | None = None, chunk_size: int = 4096, shard=None,
                             restart: bool = False, runtime=None) -> dict:
    """Effects of every ALT allele of ``vcf`` under ``predictor`` into ``outputs`` (an annotated
    VCF and/or tables), a job of ``ntkit.runtime.jobs`` (sharded, resumable, merged when complete).
    ``transcripts`` (a SpliceAI table or GTF): the genes of a splice model."""
    rt = engine.as_runtime(runtime)
    genome = Genome(fasta)
    transcripts = transcripts_path(transcripts) if transcripts else None
    opts = (options or EffectOptions()).resolve(predictor)
    genes = genes_for(predictor, transcripts, genome)
    sch = schema(predictor, opts)

    def process(chunk: list[list[Allele]]) -> list[dict]:
        return effects(predictor, [a for rec in chunk for a in rec], genome, opts, genes, rt)

    meta = {**_meta(predictor, opts), "vcf": str(Path(vcf).resolve())}
    job = jobs.Job("variant-effects", outputs, iter_records(vcf, opts.label_key), process, sch, merge_variant_effects,
                   input_files={"vcf": vcf, **({"transcripts": transcripts} if transcripts else {})},
                   fingerprints={"fasta": jobs.genome_fingerprint(genome)}, options=meta, model=predictor.model,
                   chunk_size=chunk_size, unit="record", desc="variant effects")
    return jobs.run_job(job, shard=shard, restart=restart, progress=rt.progress)


def genes_for(predictor: Predictor, transcripts, genome: Genome) -> GeneIndex | None:
    """The genes of a stranded per-base predictor (needed), None for the others (refused if given)."""
    stranded = predictor.kind == "base" and predictor.stranded
    if stranded and not transcripts:
        raise ValueError("a splice model scores variants inside genes: give --transcripts (SpliceAI's table or a GTF)")
    if transcripts and not stranded:
        raise ValueError("--transcripts gives the genes of a splice model; this predictor reads both strands without genes")
    return GeneIndex(read_transcripts(transcripts), genome) if transcripts else None


def merge_variant_effects(store) -> dict:
    """The outputs of a complete ``variant-effects`` job: annotated VCFs and tables."""
    o = store.manifest["options"]
    vcf = o["vcf"]
    if any(is_vcf(out) for out in store.outputs) and jobs.file_checksum(vcf) != store.manifest["inputs"]["vcf"]:
        raise ValueError(f"{vcf} changed since the job read it: rerun with --restart")
    sch = store.rows_schema()
    status, contigs, last = Counter(), {}, None
    for b in store.batches():
        d = b.to_pydict()
        keys = zip(d["record"], d["alt_index"]) if "record" in d else range(len(d["status"]))
        for key, c, s in zip(keys, d["chrom"], d["status"]):
            if key != last:  # an allele's rows (one per gene) count once
                status[s] += 1
            last = key
            contigs[c] = None
    header, fields = vcf_fields(o["kind"], o["columns"], o.get("info_id", "NT_SPLICE"))
    for out in store.outputs:
        if is_vcf(out):
            write_vcf_rows(_rows(store.batches()), vcf, out, contigs=contigs, header=header, fields=fields,
                           provenance=provenance_line(store.manifest.get("about", {}), store.manifest.get("model")))
        else:
            jobs.write_table_file(store.batches(), sch, out)
    n = sum(status.values())
    skipped = Counter({k: v for k, v in status.items() if k != "scored"})
    return {"alleles": n, "scored": status.get("scored", 0), "skipped": dict(skipped), "outputs": [str(p) for p in store.outputs],
            "summary": summary_line(n, status.get("scored", 0), skipped)}


def _rows(batches: Iterable[pa.RecordBatch]) -> Iterator[dict]:
    for b in batches:
        yield from b.to_pylist()


def score_variants_to_files(
    model,
    vcf: str | Path,
    fasta: str | Path,
    outputs: Sequence[str | Path],
    *,
    layers: Sequence[int] = (-1,),
    window_tokens: int | None = None,
    both_strands: bool = False,
    unmasked_llr: bool = False,
    label_key: str | None = None,
    scores: Sequence[str] = DEFAULT_SCORES,
    tile_stride_bp: int | None = None,
    chunk_size: int = 4096,
    shard=None,
    restart: bool = False,
    runtime: engine.Runtime | None = None,
) -> dict:
    """Score ``vcf`` into ``outputs`` (``.vcf``/``.vcf.gz``: annotated copy, bgzipped and tabix-
    indexed; ``.tsv``/``.csv``/``.parquet``: the table) as a job of ``ntkit.runtime.jobs``: chunk parts
    beside the first output, this ``shard``'s chunks only, finished chunks skipped, the outputs
    joined once every chunk is done. Returns a summary dict (``merged``: whether the outputs were
    written by this call)."""
    opts = score_options(model, layers, window_tokens, both_strands, unmasked_llr, label_key, scores, tile_stride_bp)
    return variant_effects_to_files(ZeroShot(model, opts), vcf, fasta, outputs, options=EffectOptions(label_key=label_key),
                                    chunk_size=chunk_size, shard=shard, restart=restart, runtime=runtime)
