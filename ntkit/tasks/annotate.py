"""Per-base annotation of genome regions: bigWig tracks, BED calls, parquet, as one sharded,
resumable job (``ntkit annotate`` for SegmentNT, ``ntkit tracks`` for NTv3 post-trained models).

A per-base region predictor (``ntkit.tasks.predictors``: ``Elements``, ``Tracks``) reads windows of
``window_bp`` bases; ``predictor.output_span(length)`` is the part of a window its outputs cover and
``predictor.valid(window, flank_bp)`` the part the job keeps: NTv3's heads predict the window's
centre crop (``keep_target_center_fraction``), kept whole; SegmentNT predicts every base, and the
job keeps the centre, ``flank_bp`` bases from each end away (bases near a window's ends see
one-sided context).

Tiling: the kept parts of consecutive windows tile each region exactly, ``keep_start`` of window k
is ``region start + k * (stop - start)``; a window's bases outside the contig are N. The last window
of a region is cut to its kept part plus the right flank when the predictor allows
(``fixed_window`` false: SegmentNT), so a region that fits one window with ``flank_bp = 0`` is one
forward over exactly its bases (tested: stitched output equals that pass).

Regions: a BED file, ``contig:start-end`` strings (1-based, inclusive, as samtools) or whole contigs;
they are sorted in the FASTA's contig order and overlapping ones merged (bigWig needs sorted,
non-overlapping entries). Outputs (one folder): ``<prefix>.<channel>.bw`` for each channel (fixed
step 1, float32), ``<prefix>.bed`` with the calls of probability channels (runs of at least
``min_length`` bases with p >= ``threshold``; BED6, name = channel, score = 1000 x the run's
maximum), and on request ``<prefix>.parquet`` (one row per base: contig, pos (0-based), channels).
Memory is flat: windows stream through chunk parts; the merge writes entries window by window.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa

from ntkit.io.genome import Genome
from ntkit.runtime import engine, jobs
from ntkit.tasks.options import MAX_BIGWIGS, AnnotateOptions  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class Window:
    contig: str
    start: int  # window start (may be < 0 or run past the contig: N there)
    end: int
    keep_start: int  # the kept part, genome coordinates
    keep_end: int


def parse_region(text: str, genome: Genome) -> tuple[str, int, int]:
    """``chr1:1,001-2,000`` (1-based inclusive) or ``chr1`` -> (contig, start0, end0)."""
    m = re.fullmatch(r"([^:\s]+)(?::([\d,]+)-([\d,]+))?", text.strip())
    if not m:
        raise ValueError(f"region {text!r}: expected contig or contig:start-end (1-based, inclusive)")
    contig = genome.resolve(m.group(1))
    if m.group(2) is None:
        return contig, 0, genome.lengths[contig]
    a, b = int(m.group(2).replace(",", "")) - 1, int(m.group(3).replace(",", ""))
    if not 0 <= a < b <= genome.lengths[contig]:
        raise ValueError(f"region {text!r} is empty or outside {contig} (length {genome.lengths[contig]:,})")
    return contig, a, b


def read_bed_regions(path: str | Path, genome: Genome) -> list[tuple[str, int, int]]:
    out = []
    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            f = line.rstrip("\n").split("\t")
            try:
                contig, a, b = genome.resolve(f[0]), int(f[1]), int(f[2])
            except (IndexError, ValueError, KeyError) as e:
                raise ValueError(f"{path}:{n}: not a BED line ({e if isinstance(e, KeyError) else 'contig, start, end'})") from None
            if not 0 <= a < b <= genome.lengths[contig]:
                raise ValueError(f"{path}:{n}: {contig}:{a}-{b} is empty or outside the contig (length {genome.lengths[contig]:,})")
            out.append((contig, a, b))
    return out


def normalise_regions(regions: Sequence[tuple[str, int, int]], genome: Genome) -> list[tuple[str, int, int]]:
    """Sorted in the FASTA's contig order, overlapping and touching regions merged."""
    order = {c: i for i, c in enumerate(genome.contigs)}
    out: list[list] = []
    for c, a, b in sorted(regions, key=lambda r: (order[r[0]], r[1], r[2])):
        if out and out[-1][0] == c and a <= out[-1][2]:
            out[-1][2] = max(out[-1][2], b)
        else:
            out.append([c, a, b])
    return [tuple(r) for r in out]


def plan_windows(contig: str, start: int, end: int, window: int, keep: tuple[int, int], fixed: bool) -> Iterator[Window]:
    """Windows whose kept parts tile [start, end) (module docstring)."""
    s, e = keep
    step = e - s
    if step <= 0:
        raise ValueError(f"a window of {window} bases keeps nothing ({keep})")
    k0 = start
    while k0 < end:
        k1 = min(k0 + step, end)
        w0 = k0 - s
        w1 = w0 + window if fixed else min(w0 + window, k1 + (window - e))
        yield Window(contig, w0, w1, k0, k1)
        k0 = k1


def window_sequence(genome: Genome, w: Window) -> str:
    return genome.fetch_padded(w.contig, w.start, w.end)


def schema() -> pa.Schema:
    return pa.schema([("contig", pa.string()), ("start", pa.int64()), ("end", pa.int64()), ("values", pa.binary())])


def annotate_to_files(predictor, fasta: str | Path, out_dir: str | Path, *, regions: Sequence[str] = (),
                      bed: str | Path | None = None, prefix: str = "annotation", opts: AnnotateOptions | None = None,
                      shard=None, restart: bool = False, runtime: engine.Runtime | None = None) -> dict:
    """Annotate the regions (all contigs when none are given) of ``fasta`` with ``predictor``:
    see the module docstring for the outputs in ``out_dir``. Returns the job summary."""
    opts = opts or AnnotateOptions()
    rt = engine.as_runtime(runtime)
    genome = Genome(fasta)
    window = predictor.window(opts.window_bp)
    keep = predictor.valid(window, opts.flank_bp)
    names = list(predictor.outputs)
    channels = list(opts.channels) if opts.channels else names
    unknown = [c for c in channels if c not in names]
    if unknown:
        raise ValueError(f"unknown channel(s) {unknown[:5]}; this predictor has {names[:20]}{'...' if len(names) > 20 else ''}")
    if len(channels) > MAX_BIGWIGS and not opts.channels:
        raise ValueError(f"{len(channels)} channels: name the ones to write with --channels (at most {MAX_BIGWIGS} without)")
    idx = [names.index(c) for c in channels]
    probs = [predictor.is_probability(i) for i in idx]
    spans = [parse_region(r, genome) for r in regions]
    if bed is not None:
        spans += read_bed_regions(bed, genome)
    if not spans:
        spans = [(c, 0, genome.lengths[c]) for c in genome.contigs]
    spans = normalise_regions(spans, genome)
    out_dir = Path(out_dir)
    files = [out_dir / f"{prefix}.{_safe(c)}.bw" for c in channels]
    if any(probs):
        files.append(out_dir / f"{prefix}.bed")
    if opts.parquet:
        files.append(out_dir / f"{prefix}.parquet")
    fixed = predictor.fixed_window

    def items() -> Iterator[Window]:
        for c, a, b in spans:
            yield from plan_windows(c, a, b, window, keep, fixed)

    def process(chunk: list[Window]) -> Iterator[dict]:
        seqs = [window_sequence(genome, w) for w in chunk]
        for w, y in zip(chunk, predictor.predict(seqs, runtime=rt.replace(progress=False))):
            first = w.keep_start - w.start - predictor.output_span(w.end - w.start)[0]  # y covers output_span of the window
            v = np.ascontiguousarray(y[first:first + (w.keep_end - w.keep_start), idx], dtype=np.float32)
            yield {"contig": w.contig, "start": w.keep_start, "end": w.keep_end, "values": v.tobytes()}

    meta = {"channels": channels, "probabilities": probs, "contigs": [(c, genome.lengths[c]) for c in genome.contigs],
            "threshold": opts.threshold, "min_length": opts.min_length, "parquet": opts.parquet, "prefix": prefix}
    options = {"window_bp": window, "keep": list(keep), "flank_bp": opts.flank_bp, "regions": [list(s) for s in spans],
               "predictor": predictor.describe(), **meta}
    job = jobs.Job("annotate", files, items(), process, schema(), merge_outputs,
                   input_files={"fasta": fasta} | ({"bed": bed} if bed else {}), options=options, model=predictor.model,
                   chunk_size=opts.windows_per_chunk, row_group=1, unit="window", desc="annotating", rows_per_item=1,
                   total=sum(-(-(b - a) // (keep[1] - keep[0])) for _, a, b in spans))
    return jobs.run_job(job, shard=shard, restart=restart, progress=rt.progress)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)


META = ("channels", "probabilities", "contigs", "threshold", "min_length", "parquet", "prefix")


def merge_outputs(store) -> dict:
    """The outputs of an annotation job from its verified parts, as its manifest describes them
    (the job's own merge and ``ntkit merge`` after a sharded run are this one call)."""
    opts = store.manifest.get("options")
    if not isinstance(opts, dict) or any(k not in opts for k in META):
        raise ValueError(f"{store.dir / 'manifest.json'}: not an annotation job's manifest (options lack {list(META)}); "
                         "rerun the job with --restart")
    meta = {k: opts[k] for k in META}
    want = ({f"{meta['prefix']}.{_safe(c)}.bw" for c in meta["channels"]} | ({f"{meta['prefix']}.bed"} if any(meta["probabilities"]) else set())
            | ({f"{meta['prefix']}.parquet"} if meta["parquet"] else set()))
    if not want <= {o.name for o in store.outputs}:
        raise ValueError(f"{store.dir / 'manifest.json'}: its outputs do not hold every channel's bigWig (an edited manifest); "
                         "rerun the job with --restart")
    return merge_annotation(store, meta)


def merge_annotation(store, meta: dict) -> dict:
    """The outputs from the verified parts, window by window (flat memory)."""
    import pyBigWig

    channels, probs = meta["channels"], meta["probabilities"]
    outs = {o.name: o for o in store.outputs}
    prefix = meta["prefix"]
    calls = _Calls(channels, probs, meta["threshold"], meta["min_length"], store.outputs[0].parent)
    n_bases = 0
    with contextlib.ExitStack() as stack:
        bws = []
        for c in channels:
            tmp = stack.enter_context(jobs.atomic_output(outs[f"{prefix}.{_safe(c)}.bw"]))
            bw = pyBigWig.open(str(tmp), "w")
            bw.addHeader([(str(k), int(n)) for k, n in meta["contigs"]], maxZooms=10)
            stack.callback(bw.close)
            bws.append(bw)
        table = None
        if meta["parquet"]:
            import pyarrow.parquet as pq

            tmp = stack.enter_context(jobs.atomic_output(outs[f"{prefix}.parquet"]))
            sch = pa.schema([("contig", pa.string()), ("pos", pa.int64())] + [(c, pa.float32()) for c in channels])
            table = stack.enter_context(pq.ParquetWriter(str(tmp), sch))
        for batch in store.batches():
            for contig, start, end, blob in zip(*(batch.column(k).to_pylist() for k in ("contig", "start", "end", "values"))):
                v = np.frombuffer(blob, dtype=np.float32).reshape(end - start, len(channels))
                n_bases += end - start
                for j, bw in enumerate(bws):
                    bw.addEntries(contig, start, values=v[:, j].astype(np.float64).tolist(), span=1, step=1)
                calls.add(contig, start, v)
                if table is not None:
                    cols = {"contig": pa.array([contig] * (end - start)), "pos": pa.array(np.arange(start, end))}
                    cols.update({c: pa.array(v[:, j]) for j, c in enumerate(channels)})
                    table.write_table(pa.table(cols, schema=table.schema))
        # Closing the bigWigs (the callbacks) writes their index and zoom levels before the renames.
    n_calls = calls.finish(outs[f"{prefix}.bed"] if any(probs) else None)
    return {"outputs": [str(o) for o in store.outputs], "bases": n_bases, "calls": n_calls,
            "summary": f"{n_bases:,} bases annotated, {len(channels)} channel(s), {n_calls:,} call(s)"}


class _Calls:
    """Runs of p >= threshold per probability channel, carried across contiguous windows. Closed
    runs go to one temporary file per channel (each in genome order); ``finish`` merges them into
    the sorted BED: memory does not grow with the genome."""

    def __init__(self, channels, probs, threshold: float, min_length: int, folder: Path):
        import os
        import tempfile

        self.cols = [j for j, p in enumerate(probs) if p]
        self.channels, self.threshold, self.min_length = channels, threshold, min_length
        self.open: dict[int, list] = {}  # channel -> [contig, start, end, max p]
        self.order: dict[str, int] = {}
        # named as jobs' temporaries, so a killed merge's leftovers are swept by the next run
        self._dir = tempfile.TemporaryDirectory(dir=folder, prefix=f".tmp-{jobs.HOST}-{os.getpid()}-calls-")
        self.files = {j: open(Path(self._dir.name) / f"{j}.tsv", "w") for j in self.cols}
        self.n = 0

    def add(self, contig: str, start: int, v: np.ndarray) -> None:
        self.order.setdefault(contig, len(self.order))
        for j in self.cols:
            on = v[:, j] >= self.threshold
            edges = np.flatnonzero(np.diff(np.concatenate(([0], on.view(np.int8), [0]))))  # run boundaries in this window
            runs = list(zip(edges[::2].tolist(), edges[1::2].tolist()))
            cur = self.open.pop(j, None)
            if cur is not None and not (cur[0] == contig and cur[2] == start and runs and runs[0][0] == 0):
                self._close(j, cur)
                cur = None
            for a, b in runs:
                peak = float(v[a:b, j].max())
                if cur is not None and a == 0:
                    cur[2], cur[3] = start + b, max(cur[3], peak)
                else:
                    if cur is not None:
                        self._close(j, cur)
                    cur = [contig, start + a, start + b, peak]
                if b < len(on):
                    self._close(j, cur)
                    cur = None
            if cur is not None:
                self.open[j] = cur

    def _close(self, j: int, run: list) -> None:
        if run[2] - run[1] >= self.min_length:
            self.files[j].write(f"{self.order[run[0]]}\t{run[0]}\t{run[1]}\t{run[2]}\t{self.channels[j]}\t"
                                f"{int(round(1000 * min(run[3], 1.0)))}\n")
            self.n += 1

    def finish(self, bed: Path | None) -> int:
        """Close the open runs and write ``bed`` (sorted by contig order, start, end, name); the number of calls."""
        import heapq

        for j, run in list(self.open.items()):
            self._close(j, run)
        self.open.clear()
        for f in self.files.values():
            f.close()
        try:
            if bed is not None:
                def rows(j):
                    with open(Path(self._dir.name) / f"{j}.tsv") as fh:
                        for line in fh:
                            k, c, a, b, name, score = line.rstrip("\n").split("\t")
                            yield int(k), int(a), int(b), name, c, score

                with jobs.atomic_output(bed) as tmp, open(tmp, "w") as out:
                    for _, a, b, name, c, score in heapq.merge(*(rows(j) for j in self.cols)):
                        out.write(f"{c}\t{a}\t{b}\t{name}\t{score}\t.\n")
        finally:
            self._dir.cleanup()
        return self.n
