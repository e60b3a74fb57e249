"""In-silico saturation mutagenesis: every base of a region changed to each of the other three,
scored by any predictor (``ntkit.tasks.perturb``): NT's zero-shot scores by default, a fine-tuned model
(``predictor=SequenceModel``: alt - ref of its outputs) or a per-base model such as a splice model
(SpliceAI's gains and losses per gene, genes from ``transcripts``), SegmentNT's elements or NTv3's tracks.

The SNVs are scored exactly as the same SNVs of a VCF would be (same tiles, same scores), so the
shared forwards do most of the work: NT's tiles give every ``llr_unmasked`` of a tile in one
forward and the ``llr`` of a 6-mer's 18 SNVs in another, and every predictor's reference
prediction of a tile serves all of its SNVs. Reference bases that are N are skipped and counted.

Outputs of ``mutagenesis_to_files`` (folder ``out``): ``mutagenesis.parquet`` (one row per SNV, per
gene for per-base predictors: chrom, 1-based pos, region, ref, alt, scores), one bedGraph per
score (value = mean over the three ALTs at each base, the largest over genes first; 0-based
half-open as bedGraph is; contigs named as the FASTA names them), and ``heatmap.png`` (position x
ALT base per score, the reference base blank, the per-base mean above it) for the first region.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd

from ntkit.io.annotation import read_bed
from ntkit.io.genome import Genome, Interval
from ntkit.io.plotting import figure, save_figure
from ntkit.runtime import engine, jobs
from ntkit.runtime.jobs import atomic_output, chunks, write_parquet
from ntkit.runtime.progress import bar as progress_bar
from ntkit.tasks.options import MUTAGENESIS_SCORES
from ntkit.tasks.perturb import EffectOptions, _meta, base_columns, effects, genes_for, schema
from ntkit.tasks.predictors import Predictor, ZeroShot
from ntkit.tasks.splice.data import transcripts_path
from ntkit.tasks.variants import EFFECT_SIGN, Allele, score_options

DEFAULT_SCORES = MUTAGENESIS_SCORES
TABLE_FIRST = ["chrom", "pos", "region", "ref", "alt", "status", "window_start"]  # then one column per score; status as
# score-variants writes it ("scored", or why not: e.g. outside_prediction at a contig's end)


def regions_from(genome: Genome, regions: Sequence[str] = (), bed: str | Path | None = None) -> list[Interval]:
    """The regions, contigs named as the FASTA names them (``chr20`` given, ``20`` in the FASTA:
    ``20``), each keeping its label (the BED name, or the region as written)."""
    ivs = [Interval.parse(r, genome) for r in regions] + (read_bed(bed) if bed else [])
    if not ivs:
        raise ValueError("no region: give chrom:start-end regions or a BED file")
    out = []
    for iv in ivs:
        n = genome.length(iv.contig)
        if not 0 <= iv.start < iv.end <= n:
            raise ValueError(f"region {iv.label} lies outside contig {iv.contig} (length {n:,})")
        out.append(Interval(genome.resolve(iv.contig), iv.start, iv.end, iv.label))
    if not any(_has_bases(genome, iv) for iv in out):  # before any compute, so nothing is half-written
        raise ValueError(f"the regions ({', '.join(iv.label for iv in out[:3])}{' ...' if len(out) > 3 else ''}) hold only N bases: "
                         "nothing to mutate (an assembly gap or a telomere?)")
    return out


def _has_bases(genome: Genome, iv: Interval, block: int = 1_000_000) -> bool:
    return any(set(genome.fetch(iv.contig, s, min(s + block, iv.end))) - {"N"} for s in range(iv.start, iv.end, block))


def iter_positions(genome: Genome, intervals: Sequence[Interval], block: int = 100_000) -> Iterator[list[Allele]]:
    """Per reference base (N skipped): its three SNVs, rows numbered over all regions (the base's
    number is its ``record``)."""
    row = 0
    for iv in intervals:
        for s in range(iv.start, iv.end, block):
            seq = genome.fetch(iv.contig, s, min(s + block, iv.end))
            for k, ref in enumerate(seq):
                if ref not in "ACGT":
                    continue
                pos = s + k + 1
                alts = [b for b in "ACGT" if b != ref]
                yield [Allele(row + j, iv.contig, pos, iv.label, ref, alt, j + 1, record=row // 3) for j, alt in enumerate(alts)]
                row += 3


def as_predictor(model_or_predictor, *, scores=DEFAULT_SCORES, layers=(-1,), window_tokens=None, tile_stride_bp=None,
                 both_strands=False):
    """A predictor for mutagenesis: the one given, or NT's zero-shot scores of a pretrained model."""
    if isinstance(model_or_predictor, Predictor):
        return model_or_predictor
    return ZeroShot(model_or_predictor, score_options(model_or_predictor, layers, window_tokens, both_strands, False, None, scores,
                                                      tile_stride_bp))


def track_columns(predictor) -> list[str]:
    """The scores drawn as tracks and heatmaps."""
    if predictor.kind == "lm":
        return list(predictor.outputs)
    if predictor.kind == "base":
        return [c for c in base_columns(predictor) if c.startswith(("DS_", "SUM_"))]
    return [f"delta_{o}" for o in predictor.outputs]


def _table(predictor, rows: list[dict]) -> pd.DataFrame:
    t = pd.DataFrame(rows, columns=schema(predictor, _opts(predictor)).names).rename(columns={"id": "region"})
    return t[[c for c in TABLE_FIRST + [c for c in t.columns if c not in TABLE_FIRST + ["alt_index", "record", "label"]]]]


def _opts(predictor, options=None):
    return (options or EffectOptions()).resolve(predictor)


def mutagenesis(model, fasta: str | Path | Genome, regions: Sequence[str] = (), *, bed=None, transcripts=None, options=None,
                scores=DEFAULT_SCORES, layers=(-1,), window_tokens=None, tile_stride_bp=None, both_strands=False,
                chunk_size: int = 4096, runtime=None) -> pd.DataFrame:
    """The SNV table in memory (small regions; ``mutagenesis_to_files`` for any size). ``model``: a
    pretrained NT (its zero-shot ``scores``) or any ``ntkit.tasks.predictors.Predictor``; ``options``
    (``perturb.EffectOptions``) and ``transcripts`` (genes of a per-base predictor) for the latter."""
    genome = fasta if isinstance(fasta, Genome) else Genome(fasta)
    ivs = regions_from(genome, regions, bed)
    predictor = as_predictor(model, scores=scores, layers=layers, window_tokens=window_tokens, tile_stride_bp=tile_stride_bp,
                             both_strands=both_strands)
    opts = _opts(predictor, options)
    genes = genes_for(predictor, transcripts, genome)
    rt = engine.as_runtime(runtime)
    rows = []
    with progress_bar(unit="base", desc="mutagenesis", enabled=rt.progress) as bar:
        for chunk in chunks(iter_positions(genome, ivs), chunk_size):
            rows += effects(predictor, [a for p in chunk for a in p], genome, opts, genes, rt)
            bar.update(len(chunk))
    return _table(predictor, rows).astype({"window_start": "Int64"})


def mutagenesis_to_files(model, fasta: str | Path, out: str | Path, regions: Sequence[str] = (), *, bed=None, transcripts=None,
                         options=None, scores=DEFAULT_SCORES, layers=(-1,), window_tokens=None, tile_stride_bp=None,
                         both_strands=False, chunk_size: int = 4096, shard=None, restart: bool = False, runtime=None) -> dict:
    """Saturation mutagenesis of ``regions`` / ``bed`` into the folder ``out`` (see the module
    docstring), as a sharded, resumable job of ``ntkit.runtime.jobs`` (chunks of ``chunk_size`` bases).
    ``model`` as in ``mutagenesis``."""
    out = Path(out)
    genome = Genome(fasta)
    ivs = regions_from(genome, regions, bed)
    predictor = as_predictor(model, scores=scores, layers=layers, window_tokens=window_tokens, tile_stride_bp=tile_stride_bp,
                             both_strands=both_strands)
    opts = _opts(predictor, options)
    genes = genes_for(predictor, transcripts, genome)
    rt = engine.as_runtime(runtime)
    tracks = track_columns(predictor)
    options = {**_meta(predictor, opts), "regions": [[iv.contig, iv.start, iv.end] for iv in ivs], "tracks": tracks,
               "signs": {c: EFFECT_SIGN[c if c.startswith("llr") else c.split("_")[0]] for c in tracks} if predictor.kind == "lm" else None}

    def process(chunk: list[list[Allele]]) -> list[dict]:
        return effects(predictor, [a for p in chunk for a in p], genome, opts, genes, rt)

    total = sum(iv.end - iv.start for iv in ivs)
    seen = 0  # bases with SNVs; every shard reads every position (chunk boundaries depend on the input alone)

    def positions():
        nonlocal seen
        for p in iter_positions(genome, ivs):
            seen += 1
            yield p

    outputs = [out / "mutagenesis.parquet"] + [out / f"{c}.bedgraph" for c in tracks] + [out / "heatmap.png"]
    job = jobs.Job("mutagenesis", outputs, positions(), process, schema(predictor, opts), merge_outputs,
                   input_files={**({"bed": bed} if bed else {}), **({"transcripts": transcripts_path(transcripts)} if transcripts else {})},
                   fingerprints={"fasta": jobs.genome_fingerprint(genome)}, options=options, model=predictor.model,
                   chunk_size=chunk_size, unit="base", desc="mutagenesis", total=total)
    res = jobs.run_job(job, shard=shard, restart=restart, progress=rt.progress)
    return {"n_bases_skipped": total - seen if seen or not res.get("already_done") else 0, **res}


def merge_outputs(store) -> dict:
    """The table, the bedGraph tracks and the heatmap from a complete part store."""
    import pyarrow as pa

    o = store.manifest["options"]
    tracks = o["tracks"]
    full = store.rows_schema()
    drop = {"alt_index", "record", "label"}
    keep = [n for n in ["chrom", "pos", "id", "ref", "alt", "status", "window_start"] + [n for n in full.names if n not in TABLE_FIRST + ["id"]]
            if n not in drop]
    keep = list(dict.fromkeys(keep))
    schema = pa.schema([full.field(n) if n != "id" else pa.field("region", pa.string()) for n in keep])
    table = write_parquet((b.select(keep).rename_columns(schema.names) for b in store.batches()), schema, store.outputs[0])
    out = store.outputs[0].parent
    outputs = [str(table)]
    for col in tracks:
        path = out / f"{col}.bedgraph"
        with atomic_output(path) as tmp, open(tmp, "w") as fh:
            fh.write(f'track type=bedGraph name="ntkit {col}" description="mean over the 3 ALT bases"\n')
            key, vals = None, {}
            for b in store.batches():  # a base's rows are consecutive, possibly across batches
                for c, p, alt, v in zip(*(b.column(x).to_pylist() for x in ("chrom", "pos", "alt", col))):
                    if (c, p) != key:
                        _bedgraph_line(fh, key, vals)
                        key, vals = (c, p), {}
                    v = math.nan if v is None else v
                    prev = vals.get(alt, math.nan)
                    vals[alt] = v if math.isnan(prev) else prev if math.isnan(v) else max(prev, v)  # several genes: the largest
            _bedgraph_line(fh, key, vals)
        outputs.append(str(path))
    chrom, start, end = o["regions"][0]
    outputs.append(str(plot_heatmap(table, out / "heatmap.png", tracks, chrom, start, end, o.get("signs"))))
    from collections import Counter

    n, bases, status = 0, 0, Counter()
    for b in store.batches():  # one pass: rows, statuses and the bases of each batch
        n += b.num_rows
        status.update(b.column("status").to_pylist())
        bases += len(set(zip(b.column("chrom").to_pylist(), b.column("pos").to_pylist())))
    per_gene = " x their genes" if o.get("info_id", "NT_SPLICE") == "NT_SPLICE" else ""  # splice models: a row per gene
    skipped = {k: v for k, v in sorted(status.items()) if k != "scored"}
    note = f"; {sum(skipped.values()):,} of them not scored ({', '.join(f'{k}: {v:,}' for k, v in skipped.items())}: NA scores)" if skipped else ""
    return {"outputs": outputs, "snvs": n, "skipped": skipped,
            "summary": (f"{n:,} SNVs scored ({bases:,} bases x 3 ALTs)" if o["kind"] != "base"
                        else f"{n:,} rows: SNVs of {bases:,} bases x 3 ALTs{per_gene}") + note}


def _bedgraph_line(fh, key, vals: dict) -> None:
    finite = [v for v in vals.values() if math.isfinite(v)]
    if key is not None and finite:
        fh.write(f"{key[0]}\t{key[1] - 1}\t{key[1]}\t{float(np.mean(finite)):.6g}\n")


def plot_heatmap(table: str | Path, path: str | Path, columns: Sequence[str], chrom: str, start: int, end: int,
                 signs: dict | None = None, max_bases: int = 20_000) -> Path:
    """Position x ALT base heatmap per score for ``chrom:start-end`` (its first ``max_bases``
    bases), the reference base blank. With ``signs`` (NT's ``EFFECT_SIGN``) each score is oriented
    so that red = more damaging; without, values are drawn as they are (several genes: the largest)."""
    import matplotlib
    import pyarrow.parquet as pq

    end = min(end, start + max_bases)
    t = pq.read_table(table, columns=["chrom", "pos", "ref", "alt"] + list(columns),
                      filters=[("chrom", "=", chrom), ("pos", ">", start), ("pos", "<=", end)]).to_pandas()
    t = t.groupby(["pos", "alt"], as_index=False)[list(columns)].max()  # one value per SNV (per-gene rows: the largest)
    n = end - start
    fig = figure(figsize=(min(4 + n / 60, 40), 2.6 * len(columns)))
    axes = fig.subplots(2 * len(columns), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [1, 2] * len(columns)}, sharex=True)
    x = np.arange(start + 1, end + 1)
    images = []
    for k, col in enumerate(columns):
        sign = -signs[col] if signs else 1  # oriented: damaging = negative
        grid = np.full((4, n), np.nan)
        rows = t["alt"].map("ACGT".index).to_numpy()
        grid[rows, t["pos"].to_numpy() - start - 1] = sign * t[col].to_numpy(dtype=float)
        mean_ax, ax = axes[2 * k, 0], axes[2 * k + 1, 0]
        finite = np.isfinite(grid)
        mean = np.where(finite, grid, 0).sum(0) / np.where(finite.any(0), finite.sum(0), np.nan)  # N bases: a gap
        mean_ax.plot(x, mean, lw=0.7, color="black")
        mean_ax.set_ylabel("mean")
        mean_ax.set_title(f"{col}, oriented: below 0 (red) = predicted damaging; grey = reference base" if signs else
                          f"{col} (alt - ref); grey = reference base", fontsize=9)
        lim = np.nanmax(np.abs(grid)) if np.isfinite(grid).any() else 1.0
        cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="lightgrey")  # the reference base
        im = ax.imshow(grid, aspect="auto", cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest",
                       extent=(start + 0.5, end + 0.5, 3.5, -0.5))
        ax.set_yticks(range(4), list("ACGT"))
        ax.set_ylabel("ALT")
        images.append((ax, im))
    axes[-1, 0].set_xlabel(f"{chrom} position (1-based)")
    axes[-1, 0].ticklabel_format(axis="x", useOffset=False, style="plain")
    fig.subplots_adjust(hspace=0.5, left=0.06, right=0.9, top=0.93, bottom=0.1)
    for ax, im in images:
        box = ax.get_position()
        fig.colorbar(im, cax=fig.add_axes((0.91, box.y0, 0.008, box.height)))
    return save_figure(fig, path, tight=False)
