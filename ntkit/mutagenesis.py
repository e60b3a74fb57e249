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


def read_bed(path: str | Path) -> list[Interval]:
    """Intervals of a BED file (0-based half-open; ``track``/``browser``/``#`` lines skipped)."""
    out = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            f = line.rstrip("\n").split("\t")
            try:
                out.append(Interval(f[0], int(f[1]), int(f[2])))
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{n}: not a BED line (chrom, start, end): {line.strip()[:60]!r}") from None
    return out


def regions_from(genome: Genome, regions: Sequence[str] = (), bed: str | Path | None = None) -> list[Interval]:
    ivs = [Interval.parse(r, genome) for r in regions] + (read_bed(bed) if bed else [])
    if not ivs:
        raise ValueError("no region: give chrom:start-end regions or a BED file")
    for iv in ivs:
        n = genome.length(iv.contig)
        if not 0 <= iv.start < iv.end <= n:
            raise ValueError(f"region {iv.contig}:{iv.start + 1}-{iv.end} lies outside the contig (length {n:,})")
    return ivs


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
                yield [Allele(row + j, iv.contig, pos, ".", ref, alt, j + 1) for j, alt in enumerate(alts)]
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
    return pd.DataFrame(rows, columns=opts.schema().names).drop(columns=["id", "alt_index", "status"])


def mutagenesis_to_files(model, fasta: str | Path, out: str | Path, regions: Sequence[str] = (), *, bed=None,
                         scores=("llr", "llr_unmasked"), layers=(-1,), window_tokens=None, tile_stride_bp=None,
                         both_strands=False, chunk_size: int = 4096, shard=None, restart: bool = False, batch_tokens=None,
                         device=None, dtype=None, progress: bool = True) -> dict:
    """Saturation mutagenesis of ``regions`` / ``bed`` into the folder ``out`` (see the module
    docstring), as a sharded, resumable job of ``ntkit.jobs`` (chunks of ``chunk_size`` bases)."""
    from . import jobs

    out = Path(out)
    table = jobs.check_output(out / "mutagenesis.parquet", [fasta, bed])
    genome = Genome(fasta)
    ivs = regions_from(genome, regions, bed)
    opts = score_options(model, layers, window_tokens, both_strands, False, None, scores, tile_stride_bp)
    shard = shard if isinstance(shard, jobs.Shard) else jobs.Shard.parse(shard)
    manifest = {"job": "mutagenesis", "inputs": {"fasta": jobs.genome_fingerprint(genome)},
                "regions": [[iv.contig, iv.start, iv.end] for iv in ivs], "outputs": [str(table.resolve())],
                "out_dir": str(out.resolve()), "chunk_size": chunk_size, "model": jobs.model_fingerprint(model),
                "options": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(opts).items()}}
    store = jobs.PartStore(table, manifest, shard, restart)

    def process(chunk: list[list[Allele]]) -> list[dict]:
        return score_alleles(model, [a for p in chunk for a in p], genome, opts, batch_tokens=batch_tokens, device=device, dtype=dtype)

    total = sum(iv.end - iv.start for iv in ivs)
    seen = 0  # bases with SNVs; every shard reads every position (chunk boundaries depend on the input alone)

    def positions():
        nonlocal seen
        for p in iter_positions(genome, ivs):
            seen += 1
            yield p

    n_chunks = jobs.run_chunks(store, positions(), chunk_size, process, opts.schema(), progress=progress,
                               desc="mutagenesis", unit="base", total=total)
    res = jobs.finish(store, merge_outputs)
    return {"shard": str(shard), "chunks": n_chunks, "n_bases_skipped": total - seen, **res}


def merge_outputs(store) -> dict:
    """The table, the bedGraph tracks and the heatmap from a complete part store."""
    import pyarrow as pa

    from .jobs import atomic_output, write_parquet

    m = store.manifest
    o = m["options"]
    opts = ScoreOptions(tuple(o["scores"]), tuple(o["layers"]), o["window_tokens"], o["tile_stride_bp"], o["both_strands"], None)
    cols = opts.columns()
    keep = ["chrom", "pos", "ref", "alt", "window_start"] + cols
    schema = pa.schema([opts.schema().field(c) for c in keep])
    table = write_parquet((b.select(keep) for b in store.batches()), schema, m["outputs"][0])
    out = Path(m["out_dir"])
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
    chrom, start, end = m["regions"][0]
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
