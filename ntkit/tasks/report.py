"""Variant review pages: one self-contained HTML file in which a person looks at each scored allele,
built with the IGV team's ``igv-reports`` (a table of the alleles; click a row and igv.js shows
that locus). Everything is embedded: igv.js itself, the reference sequence around each locus, the
genes, and per-base tracks, so the page opens from a laptop with no network.

What a page holds, for the ``max_loci`` alleles with the largest scores (``ReportOptions``):

- the table: position, alleles, status and every score column of the job (LLRs and distances,
  DS/DP, element gains and losses, track sums, mutagenesis scores), sortable by clicking a header;
- per locus, ``flanking`` bases of sequence, the genes of the job (a transcript table or GTF) and,
  for a per-base predictor, its outputs on the reference and on the alternative allele (aligned
  to the reference's positions, as the scores compare them: ``perturb.allele_predictions``) over
  ``distance`` bases each side, plus any bedGraph tracks given (mutagenesis' per-position scores).

igv.js comes from the npm registry through the catalogue (``ntkit data fetch igv-js``: the
package's tarball, checksummed); igv-reports' template would otherwise load it from a CDN. A page
is about 30 kB per locus (sequence and tracks), plus igv.js' and Tabulator's 2 MB once.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import io
import json
import math
import os
import re
import tarfile
import tempfile
from pathlib import Path
from typing import Iterable

import igv_reports
import numpy as np
import pandas as pd
import yaml
from igv_reports.report import create_report

from ntkit.io.genome import Genome, open_vcf
from ntkit.io.shipped import data_dir
from ntkit.runtime.jobs import atomic_output
from ntkit.tasks.options import EffectOptions, ReportOptions
from ntkit.tasks.perturb import GeneIndex, align_alt, allele_predictions
from ntkit.tasks.predictors import Predictor
from ntkit.tasks.splice.data import read_transcripts
from ntkit.tasks.variants import Allele

IGV_JS = "igv-js"  # the catalogue group: igv.js and Tabulator
IGV_JS_FILE = "igv-js/igv-3.8.10.tgz"  # their destinations under a data folder
TABULATOR_FILE = "igv-js/tabulator-tables-6.3.0.tgz"
IGV_MEMBER = "package/dist/igv.min.js"
TABULATOR_MEMBERS = ("package/dist/js/tabulator.min.js", "package/dist/css/tabulator.min.css")
META_COLUMNS = {"chrom", "id", "record", "pos", "alt_index", "window_start", "label", "start", "end", "region", "index"}
MISSING = ("igv.js is not here: `ntkit data fetch igv-js --dest ~/.cache/ntkit` once (igv.js and Tabulator from the npm "
           "registry, checksummed), or --igv-js FILE; the review page embeds them to open without a network")


def find_igv_js(given: str | os.PathLike | None = None) -> Path:
    """igv.js for an offline page: ``given`` (the npm tarball or ``igv.min.js``), else ``$NTKIT_IGV_JS``,
    else the catalogue's file under ``./ntkit-data``, the data folder (``$NTKIT_DATA``) or ``~/.cache/ntkit``."""
    if given:
        if not Path(given).is_file():
            raise FileNotFoundError(f"{given}: no such file (igv.js: the npm tarball igv-*.tgz or igv.min.js)")
        return Path(given)
    return _find(IGV_JS_FILE, os.environ.get("NTKIT_IGV_JS"))


def find_tabulator(igv_js: Path) -> Path:
    """Tabulator's npm tarball: beside igv.js' file, else where ``find_igv_js`` looks."""
    beside = igv_js.parent / Path(TABULATOR_FILE).name
    return beside if beside.is_file() else _find(TABULATOR_FILE)


def _find(rel: str, first: str | None = None) -> Path:
    for c in (first, Path("ntkit-data") / rel, data_dir() / rel, Path.home() / ".cache" / "ntkit" / rel):
        if c and Path(c).is_file():
            return Path(c)
    raise FileNotFoundError(MISSING)


def _member(path: Path, member: str) -> str:
    try:
        with tarfile.open(path, "r:gz") as tf:
            f = tf.extractfile(member)  # one named member, read into memory: nothing is extracted to disk
            if f is None:
                raise KeyError(member)
            return f.read().decode("utf-8")
    except (tarfile.TarError, KeyError, OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not the npm tarball expected ({type(e).__name__}: {member}); fetch it again with "
                         "`ntkit data fetch igv-js --force`") from None


def igv_js_source(path: Path) -> str:
    """The text of igv.min.js: the file itself, or the member of the npm tarball."""
    text = _member(path, IGV_MEMBER) if path.name.endswith((".tgz", ".tar.gz")) else path.read_text()
    if "igv" not in text[:5000] or "createBrowser" not in text:
        raise ValueError(f"{path}: this is not igv.js")
    return _inline(text)


def tabulator_source(path: Path) -> tuple[str, str]:
    """(Tabulator's JavaScript, its CSS) from its npm tarball."""
    js, css = (_member(path, m) for m in TABULATOR_MEMBERS)
    if "Tabulator" not in js:
        raise ValueError(f"{path}: this is not Tabulator")
    return _inline(js), css.replace("</style", "<\\/style")


def _inline(js: str) -> str:
    return js.replace("</script", "<\\/script")  # inlined in a <script> element


# -- the scores ---------------------------------------------------------------------------------------------------


def read_scores(path: str | os.PathLike) -> pd.DataFrame:
    """The rows of a job's table (.tsv/.csv/.parquet) or annotated VCF (``NT_STATUS`` and the
    per-ALT scores, or the ``NT_SPLICE`` / ``NT_EFFECT`` entries: one row per allele and gene)."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith((".tsv", ".tsv.gz")):
        return pd.read_csv(p, sep="\t")
    if name.endswith((".csv", ".csv.gz")):
        return pd.read_csv(p)
    if name.endswith(".parquet"):
        return pd.read_parquet(p)
    return _vcf_rows(p)


def _vcf_rows(path: Path) -> pd.DataFrame:
    f = open_vcf(path)
    info = f.header.info
    if "NT_STATUS" not in info:
        raise ValueError(f"{path}: not a VCF annotated by ntkit (no NT_STATUS in its header); give the job's table or VCF")
    key = next((k for k in ("NT_SPLICE", "NT_EFFECT") if k in info), None)
    fmt = re.search(r"Format: ([^\"]+)", info[key].description or "").group(1).split("|") if key else []
    per_alt = [k for k in info if info[k].number == "A" and k != "NT_STATUS"]
    rows = []
    for rec in f:
        status = rec.info.get("NT_STATUS") or ()
        entries = [e.split("|") for e in (rec.info.get(key) or ())] if key else []
        for j, alt in enumerate(rec.alts or (), 1):
            row = {"chrom": rec.chrom, "pos": rec.pos, "id": rec.id, "ref": rec.ref, "alt": alt, "alt_index": j,
                   "status": status[j - 1] if j <= len(status) else None}
            for k in per_alt:
                v = rec.info.get(k)
                row[k] = v[j - 1] if v is not None and j <= len(v) else None
            mine = [e for e in entries if e[0] == alt]
            rows += [{**row, "gene": e[1] if e[1] != "." else None, **{c: _number(v) for c, v in zip(fmt[2:], e[2:])}}
                     for e in mine] or [row]
    return pd.DataFrame(rows)


def _number(v: str):
    try:
        return float(v)
    except ValueError:
        return None


def score_columns(table: pd.DataFrame) -> list[str]:
    """The numeric columns that are scores (not positions, counts or offsets)."""
    return [c for c in table.columns if c not in META_COLUMNS and not c.startswith("DP_")
            and pd.api.types.is_numeric_dtype(table[c]) and not pd.api.types.is_bool_dtype(table[c])]


def select_loci(table: pd.DataFrame, opts: ReportOptions) -> pd.DataFrame:
    """The rows of the ``max_loci`` alleles (chrom, pos, ref, alt) with the largest score (``rank_by``,
    else the largest |score| of any score column), highest first; an allele's rows stay together."""
    t = table[table["status"].eq("scored")] if "status" in table else table
    if t.empty:
        raise ValueError("no scored allele to show")
    cols = [opts.rank_by] if opts.rank_by else score_columns(t)
    missing = [c for c in cols if c not in t]
    if missing or not cols:
        raise ValueError(f"no score column {missing or ''} to rank by; columns: {', '.join(t.columns)}")
    rank = t[cols].abs().max(axis=1, skipna=True).fillna(-1.0) if not opts.rank_by else t[opts.rank_by].fillna(-math.inf)
    t = t.assign(_rank=rank)
    key = ["chrom", "pos", "ref", "alt"]
    best = t.groupby(key, sort=False)["_rank"].max().sort_values(ascending=False, kind="stable").head(opts.max_loci)
    keep = t.set_index(key).loc[best.index].reset_index()
    return keep.drop(columns="_rank")


# -- the page -----------------------------------------------------------------------------------------------------


def write_report(scores, fasta: str | os.PathLike, out: str | os.PathLike, *, predictor: Predictor | None = None,
                 transcripts=None, tracks: Iterable[str | os.PathLike] = (), options: ReportOptions | None = None,
                 igv_js: str | os.PathLike | None = None, effect_options: EffectOptions | None = None, notes: str = "",
                 runtime=None) -> dict:
    """A review page of ``scores`` (a job's table or VCF, or a DataFrame of its rows) into ``out``
    (see the module docstring). ``predictor``: its REF and ALT per-base outputs are drawn (the
    predictor the job scored with); ``transcripts``: the genes drawn (and, for a splice model,
    those it scores); ``tracks``: bedGraph files embedded as they are. Returns {loci, bytes,
    bytes_per_locus, output}."""
    opts = options or ReportOptions()
    igv_path = find_igv_js(igv_js)  # before any work: the one missing piece has a one-line fix
    igv_text, tab = igv_js_source(igv_path), tabulator_source(find_tabulator(igv_path))
    table = scores if isinstance(scores, pd.DataFrame) else read_scores(scores)
    loci = select_loci(table, opts)
    genome = Genome(fasta)
    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="ntkit_report_") as tmp:
        tmp = Path(tmp)
        sites, info = _sites_vcf(loci, genome, tmp / "sites.vcf")
        config = []
        transcripts_list = read_transcripts(transcripts) if transcripts else []
        if transcripts_list:
            config.append({"name": "genes", "url": str(_genes_bed(transcripts_list, loci, genome, opts.flanking, tmp / "genes.bed")),
                           "format": "bed", "type": "annotation", "displayMode": "EXPANDED"})
        if predictor is not None and predictor.kind == "base":
            config += _prediction_tracks(predictor, loci, genome, transcripts_list, opts, effect_options, tmp, runtime)
        for t in tracks:
            config.append({"name": Path(t).name.removesuffix(".bedgraph"), "url": str(Path(t).resolve()), "format": "bedgraph",
                           "type": "wig"})
        config.insert(0, {"name": "variants", "url": str(sites), "format": "vcf", "type": "variant", "displayMode": "EXPANDED"})
        (tmp / "tracks.json").write_text(json.dumps(config))
        template = _template(igv_text, tab, opts.title, notes, tmp / "template.html")
        filters = _filter_config(loci, info, tmp / "filters.yaml")
        args = _igv_args(sites=str(sites), fasta=str(Path(genome.path).resolve()) if hasattr(genome, "path") else str(fasta),
                         track_config=[str(tmp / "tracks.json")], info_columns=info, template=str(template),
                         tabulator=True, filter_config=str(filters),
                         output=str(tmp / "page.html"), flanking=opts.flanking, title=opts.title,
                         window=min(opts.flanking, 2 * opts.distance + 1))  # the view: the drawn predictions
        with contextlib.redirect_stdout(io.StringIO()):  # igv-reports prints a line per locus
            create_report(args)
        page = (tmp / "page.html").read_text()
        with atomic_output(out) as t:
            Path(t).write_text(page)
    n = loci[["chrom", "pos", "ref", "alt"]].drop_duplicates().shape[0]
    size = out.stat().st_size
    libraries = len(igv_text) + len(tab[0]) + len(tab[1])  # igv.js and Tabulator, once per page
    return {"loci": n, "bytes": size, "bytes_per_locus": (size - libraries) / max(n, 1), "output": str(out)}


def _sites_vcf(loci: pd.DataFrame, genome: Genome, path: Path) -> tuple[Path, list[str]]:
    """The selected alleles as the VCF igv-reports reads (its table): one record per allele, its
    rows' scores as INFO (several genes: comma-joined, in the rows' order)."""
    cols = [c for c in loci.columns if c not in ("chrom", "pos", "ref", "alt", "id", "record", "alt_index", "window_start")]
    info_ids = {c: re.sub(r"[^A-Za-z0-9_.]", "_", c) for c in cols}
    contigs = {genome.resolve(c) if genome.has(c) else c: None for c in loci["chrom"].astype(str)}
    head = ["##fileformat=VCFv4.2"] + [f"##contig=<ID={c},length={genome.lengths[c]}>" for c in contigs if c in genome.lengths]
    head += [f'##INFO=<ID={info_ids[c]},Number=.,Type=String,Description="ntkit: {html.escape(c)}">' for c in cols]
    lines = []
    for (chrom, pos, ref, alt), rows in loci.groupby(["chrom", "pos", "ref", "alt"], sort=False):
        contig = genome.resolve(str(chrom)) if genome.has(str(chrom)) else str(chrom)
        vals = []
        for c in cols:
            v = [_fmt(x) for x in rows[c].tolist()]
            v = [x for x in v if x != ""]
            if v:
                vals.append(f"{info_ids[c]}={','.join(dict.fromkeys(v)) if c in ('status',) else ','.join(v)}")
        ident = str(rows["id"].iloc[0]) if "id" in rows and pd.notna(rows["id"].iloc[0]) else "."
        lines.append((contig, int(pos), f"{contig}\t{int(pos)}\t{ident}\t{ref}\t{alt}\t.\t.\t{';'.join(vals) or '.'}"))
    order = {c: i for i, c in enumerate(genome.lengths)}
    lines.sort(key=lambda x: (order.get(x[0], 1 << 30), x[1]))
    path.write_text("\n".join(head + ["#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"] + [l for *_, l in lines]) + "\n")
    return path, [info_ids[c] for c in cols]


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    if isinstance(x, (float, np.floating)):
        return f"{x:.4g}"
    return re.sub(r"[;,=\s]", "_", str(x))


def _genes_bed(transcripts, loci: pd.DataFrame, genome: Genome, flanking: int, path: Path) -> Path:
    """BED12 of the transcripts that overlap a locus' window (exons: each exon's first and last base)."""
    wins = [(genome.resolve(str(c)) if genome.has(str(c)) else str(c), int(p) - flanking, int(p) + flanking)
            for c, p in loci[["chrom", "pos"]].drop_duplicates().itertuples(index=False)]
    lines = []
    for t in transcripts:
        contig = genome.resolve(t.chrom) if genome.has(t.chrom) else t.chrom
        if not any(c == contig and t.start < hi and lo < t.end for c, lo, hi in wins):
            continue
        b = sorted(t.boundaries)
        exons = [(b[i], b[i + 1] + 1) for i in range(0, len(b) - 1, 2)] or [(t.start, t.end)]
        sizes = ",".join(str(e - s) for s, e in exons)
        starts = ",".join(str(s - t.start) for s, _ in exons)
        lines.append(f"{contig}\t{t.start}\t{t.end}\t{t.name}\t0\t{t.strand}\t{t.start}\t{t.end}\t0\t{len(exons)}\t{sizes}\t{starts}")
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    return path


def _prediction_tracks(predictor, loci: pd.DataFrame, genome: Genome, transcripts, opts: ReportOptions, effect_options, tmp: Path,
                       runtime) -> list[dict]:
    """bedGraph tracks of the predictor's REF and ALT outputs over ``distance`` bases each side of
    each selected allele (the ALT on the reference's positions: a deletion's bases read 0, an
    insertion's bases their maximum, as the scores compare them)."""
    eo = EffectOptions(distance=opts.distance, tile_stride_bp=(effect_options.tile_stride_bp if effect_options else None))
    eo = eo.resolve(predictor)
    genes = GeneIndex(transcripts, genome) if predictor.stranded and transcripts else None
    if predictor.stranded and genes is None:
        return []
    alleles = [Allele(i, str(r.chrom), int(r.pos), ".", str(r.ref), str(r.alt), 1)
               for i, r in enumerate(loci[["chrom", "pos", "ref", "alt"]].drop_duplicates().itertuples(index=False))]
    values: dict[tuple[str, str], dict] = {}
    for a, gs, y_ref, y_alt in allele_predictions(predictor, alleles, genome, genes, eo, runtime):
        y_alt = align_alt(y_alt, len(a.ref), len(a.alt), eo.distance)
        start = a.pos0 - eo.distance
        for k, o in enumerate(predictor.outputs):
            for tag, y in (("REF", y_ref), ("ALT", y_alt)):
                d = values.setdefault((o, tag), {})
                for j, v in enumerate(y[:, k]):
                    p = start + j
                    if 0 <= p < genome.lengths[a.contig]:
                        d[(a.contig, p)] = float(v)
    config = []
    colours = {"REF": "rgb(90,90,90)", "ALT": "rgb(200,40,40)"}
    for (o, tag), d in values.items():
        path = tmp / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', o)}.{tag}.bedgraph"
        with open(path, "w") as fh:
            for (c, p), v in sorted(d.items()):
                fh.write(f"{c}\t{p}\t{p + 1}\t{v:.4g}\n")
        config.append({"name": f"{o} {tag}", "url": str(path), "format": "bedgraph", "type": "wig", "color": colours[tag],
                       "height": 40, **({"min": 0, "max": 1} if predictor.is_probability(predictor.outputs.index(o)) else {})})
    return config


def _template(igv_text: str, tabulator: tuple[str, str], title: str, notes: str, path: Path) -> Path:
    """igv-reports' Tabulator template with igv.js and Tabulator inlined (its CDN lines replaced),
    igv.js' list of hosted genomes off (a request to igv.org otherwise) and a header line."""
    src = Path(igv_reports.__file__).parent / "templates" / "variant_template_tabulator.html"
    out, done = [], set()
    for line in src.read_text().splitlines(keepends=True):
        t = line.strip()
        if t.startswith("<script") and "src=" in t and "igv" in t:
            out.append("<script type=\"text/javascript\">\n" + igv_text + "\n</script>\n")
            done.add("igv")
        elif t.startswith("<script") and "src=" in t and "tabulator" in t:
            out.append("<script type=\"text/javascript\">\n" + tabulator[0] + "\n</script>\n")
            done.add("tabulator")
        elif t.startswith("<link") and "tabulator" in t and ".css" in t:
            out.append("<style type=\"text/css\">\n" + tabulator[1] + "\n</style>\n")
            done.add("css")
        elif "showChromosomeWidget:" in t:
            out += [line[: len(line) - len(line.lstrip())] + "loadDefaultGenomes: false,\n", line]
            done.add("offline")
        elif t.startswith("<body>"):
            out.append(line + f'<div id="ntkit-header"><b>{html.escape(title)}</b> {html.escape(notes)}</div>\n')
        elif re.search(r"<(script|link)[^>]*(src|href)=\"https?://", line):  # anything else it would load
            raise ValueError(f"{src}: the page would still load {t[:80]} (igv-reports changed its template)")
        else:
            out.append(line)
    if done != {"igv", "tabulator", "css", "offline"}:
        raise ValueError(f"{src}: not every CDN line or browser option found to adapt (igv-reports changed its template)")
    path.write_text("".join(out))
    return path


def _filter_config(loci: pd.DataFrame, info: list[str], path: Path) -> Path:
    """The table's columns for igv-reports' Tabulator: scores sort as numbers and filter as 'at
    least' (a column with several genes' values per allele sorts and filters as text)."""
    cols = {}
    for c in score_columns(loci) + [c for c in loci.columns if c.startswith("DP_")]:
        per_allele = loci.groupby(["chrom", "pos", "ref", "alt"], sort=False)[c].nunique(dropna=True)
        if (per_allele <= 1).all():
            cols[re.sub(r"[^A-Za-z0-9_.]", "_", c)] = {"type": "number", "sorter": "number", "headerFilter": "number",
                                                       "headerFilterFunc": ">=", "headerFilterPlaceholder": "at least"}
    cols["POSITION"] = {"type": "number", "sorter": "number"}
    path.write_text(yaml.safe_dump({"columns": cols}))
    return path


def _igv_args(**kw) -> argparse.Namespace:
    """The options of igv-reports' ``create_report`` (its command line's, with their defaults)."""
    defaults = dict(sites=None, fasta=None, fasta_=None, twobit=None, genome=None, type=None, ideogram=None, tracks=None,
                    track_config=None, roi=None, sort=None, template=None, output="igvjs_viewer.html", info_columns=None,
                    info_columns_prefixes=None, sampleinfo=None, samples=None, sample_columns=None, flanking=1000, window=None,
                    standalone=False, title=None, header=None, footer=None, sequence=None, begin=None, end=None, zero_based=None,
                    idlink=None, exclude_flags=1536, no_embed=False, subsample=None, maxlen=10000, translate_sequence_track=False,
                    tabulator=False, filter_config=None, merge_overlaps=False)
    return argparse.Namespace(**{**defaults, **kw})
