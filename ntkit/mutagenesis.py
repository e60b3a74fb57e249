"""In-silico saturation mutagenesis: every base of a region changed to each of the other three.

The SNVs are scored exactly as ``ntkit.variants`` scores a VCF (same tiles, same scores; the
default here is the two marginals, ``llr`` and ``llr_unmasked``), so the shared forwards do most
of the work: one forward per tile gives every ``llr_unmasked`` of the tile, one forward per 6-mer
gives the ``llr`` of its 18 SNVs. Reference bases that are N are skipped and counted.

Outputs of ``mutagenesis_to_files`` (folder ``out``): ``mutagenesis.parquet`` (one row per SNV:
chrom, 1-based pos, ref, alt, scores), one bedGraph per score (value = mean over the three ALTs
at each base; 0-based half-open as bedGraph is), and ``heatmap.png`` (position x ALT base per
score, the reference base blank, the per-base mean above it) for the first region.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .data import Interval
from .genome import Genome
from .variants import EFFECT_SIGN, Allele, ScoreOptions, score_options, score_alleles

TABLE_FIRST = ["chrom", "pos", "region", "ref", "alt", "window_start"]  # then one column per score


def regions_from(genome: Genome, regions: Sequence[str] = (), bed: str | Path | None = None) -> list[Interval]:
    """The regions, contigs named as the FASTA names them (``chr20`` given, ``20`` in the FASTA:
    ``20``), each keeping its label (the BED name, or the region as written)."""
    from .annotation import read_bed

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
    """Per reference base (N skipped): its three SNVs, rows numbered over all regions."""
    row = 0
    for iv in intervals:
        for s in range(iv.start, iv.end, block):
            seq = genome.fetch(iv.contig, s, min(s + block, iv.end))
            for k, ref in enumerate(seq):
                if ref not in "ACGT":
                    continue
                pos = s + k + 1
                alts = [b for b in "ACGT" if b != ref]
                yield [Allele(row + j, iv.contig, pos, iv.label, ref, alt, j + 1) for j, alt in enumerate(alts)]
                row += 3


def mutagenesis(model, fasta: str | Path | Genome, regions: Sequence[str] = (), *, bed=None, scores=("llr", "llr_unmasked"),
                layers=(-1,), window_tokens=None, tile_stride_bp=None, both_strands=False, chunk_size: int = 4096,
                batch_tokens=None, device=None, dtype=None, progress: bool = False) -> pd.DataFrame:
    """The SNV table in memory (small regions; ``mutagenesis_to_files`` for any size)."""
    from .jobs import chunks

    genome = fasta if isinstance(fasta, Genome) else Genome(fasta)
    ivs = regions_from(genome, regions, bed)
    opts = score_options(model, layers, window_tokens, both_strands, False, None, scores, tile_stride_bp)
    rows = []
    with tqdm(unit="base", desc="mutagenesis", disable=not progress, dynamic_ncols=True) as bar:
        for chunk in chunks(iter_positions(genome, ivs), chunk_size):
            rows += score_alleles(model, [a for p in chunk for a in p], genome, opts, batch_tokens=batch_tokens,
                                  device=device, dtype=dtype)
            bar.update(len(chunk))
    t = pd.DataFrame(rows, columns=opts.schema().names).rename(columns={"id": "region"})
    return t[TABLE_FIRST + opts.columns()].astype({"window_start": "Int64"})


def mutagenesis_to_files(model, fasta: str | Path, out: str | Path, regions: Sequence[str] = (), *, bed=None,
                         scores=("llr", "llr_unmasked"), layers=(-1,), window_tokens=None, tile_stride_bp=None,
                         both_strands=False, chunk_size: int = 4096, shard=None, restart: bool = False, batch_tokens=None,
                         device=None, dtype=None, progress: bool = True) -> dict:
    """Saturation mutagenesis of ``regions`` / ``bed`` into the folder ``out`` (see the module
    docstring), as a sharded, resumable job of ``ntkit.jobs`` (chunks of ``chunk_size`` bases)."""
    from . import jobs

    out = Path(out)
    genome = Genome(fasta)
    ivs = regions_from(genome, regions, bed)
    opts = score_options(model, layers, window_tokens, both_strands, False, None, scores, tile_stride_bp)
    options = {**{k: list(v) if isinstance(v, tuple) else v for k, v in vars(opts).items()},
               "regions": [[iv.contig, iv.start, iv.end] for iv in ivs]}

    def process(chunk: list[list[Allele]]) -> list[dict]:
        return score_alleles(model, [a for p in chunk for a in p], genome, opts, batch_tokens=batch_tokens, device=device, dtype=dtype)

    total = sum(iv.end - iv.start for iv in ivs)
    seen = 0  # bases with SNVs; every shard reads every position (chunk boundaries depend on the input alone)

    def positions():
        nonlocal seen
        for p in iter_positions(genome, ivs):
            seen += 1
            yield p

    outputs = [out / "mutagenesis.parquet"] + [out / f"{c}.bedgraph" for c in opts.columns()] + [out / "heatmap.png"]
    job = jobs.Job("mutagenesis", outputs, positions(), process, opts.schema(), merge_outputs,
                   input_files={"bed": bed} if bed else {}, fingerprints={"fasta": jobs.genome_fingerprint(genome)},
                   options=options, model=model, chunk_size=chunk_size, unit="base", desc="mutagenesis", total=total)
    res = jobs.run_job(job, shard=shard, restart=restart, progress=progress)
    return {"n_bases_skipped": total - seen if seen or not res.get("already_done") else 0, **res}


def merge_outputs(store) -> dict:
    """The table, the bedGraph tracks and the heatmap from a complete part store."""
    import pyarrow as pa

    from .jobs import atomic_output, write_parquet

    o = store.manifest["options"]
    opts = ScoreOptions(tuple(o["scores"]), tuple(o["layers"]), o["window_tokens"], o["tile_stride_bp"], o["both_strands"], None)
    cols = opts.columns()
    keep = ["chrom", "pos", "id", "ref", "alt", "window_start"] + cols  # id: the region's label
    schema = pa.schema([opts.schema().field(c) for c in keep]).set(2, pa.field("region", pa.string()))
    table = write_parquet((b.select(keep).rename_columns(schema.names) for b in store.batches()), schema, store.outputs[0])
    out = store.outputs[0].parent
    outputs = [str(table)]
    for col in cols:
        path = out / f"{col}.bedgraph"
        with atomic_output(path) as tmp, open(tmp, "w") as fh:
            fh.write(f'track type=bedGraph name="ntkit {col}" description="mean over the 3 ALT bases"\n')
            key, vals = None, []
            for b in store.batches():  # a base's 3 rows are consecutive, possibly across batches
                for c, p, v in zip(*(b.column(x).to_pylist() for x in ("chrom", "pos", col))):
                    if (c, p) != key:
                        _bedgraph_line(fh, key, vals)
                        key, vals = (c, p), []
                    vals.append(math.nan if v is None else v)
            _bedgraph_line(fh, key, vals)
        outputs.append(str(path))
    chrom, start, end = o["regions"][0]
    outputs.append(str(plot_heatmap(table, out / "heatmap.png", cols, chrom, start, end)))
    n = sum(b.num_rows for b in store.batches())
    return {"outputs": outputs, "snvs": n, "summary": f"{n:,} SNVs scored ({n // 3:,} bases x 3 ALTs)"}


def _bedgraph_line(fh, key, vals) -> None:
    v = float(np.mean(vals)) if vals else math.nan
    if key is not None and math.isfinite(v):
        fh.write(f"{key[0]}\t{key[1] - 1}\t{key[1]}\t{v:.6g}\n")


def plot_heatmap(table: str | Path, path: str | Path, columns: Sequence[str], chrom: str, start: int, end: int,
                 max_bases: int = 20_000) -> Path:
    """Position x ALT base heatmap per score for ``chrom:start-end`` (its first ``max_bases``
    bases), oriented by ``EFFECT_SIGN`` so that red = more damaging, reference base blank."""
    import matplotlib
    import pyarrow.parquet as pq

    from .plotting import figure, save_figure

    end = min(end, start + max_bases)
    t = pq.read_table(table, columns=["chrom", "pos", "ref", "alt"] + list(columns),
                      filters=[("chrom", "=", chrom), ("pos", ">", start), ("pos", "<=", end)]).to_pandas()
    n = end - start
    fig = figure(figsize=(min(4 + n / 60, 40), 2.6 * len(columns)))
    axes = fig.subplots(2 * len(columns), 1, squeeze=False,
                        gridspec_kw={"height_ratios": [1, 2] * len(columns)}, sharex=True)
    x = np.arange(start + 1, end + 1)
    images = []
    for k, col in enumerate(columns):
        sign = EFFECT_SIGN[col if col.startswith("llr") else col.split("_")[0]]
        grid = np.full((4, n), np.nan)
        rows = t["alt"].map("ACGT".index).to_numpy()
        grid[rows, t["pos"].to_numpy() - start - 1] = -sign * t[col].to_numpy()  # damaging = negative after orientation
        mean_ax, ax = axes[2 * k, 0], axes[2 * k + 1, 0]
        finite = np.isfinite(grid)
        mean = np.where(finite, grid, 0).sum(0) / np.where(finite.any(0), finite.sum(0), np.nan)  # N bases: a gap
        mean_ax.plot(x, mean, lw=0.7, color="black")
        mean_ax.set_ylabel("mean")
        mean_ax.set_title(f"{col}, oriented: below 0 (red) = predicted damaging; grey = reference base", fontsize=9)
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
