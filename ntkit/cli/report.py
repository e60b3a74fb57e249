"""``ntkit report``: a review page of a scored job (self-contained HTML, igv-reports + igv.js), and
``--report PAGE.html`` on score-variants, splice score-variants and mutagenesis."""

from __future__ import annotations

from ntkit.cli.common import MODEL_HELP, add_runtime_args, positive_int, runtime


def add_report_args(s, standalone: bool = False) -> None:
    """The options of a review page (``ReportOptions``); ``--report`` on the commands that score."""
    from ntkit.tasks.options import ReportOptions as R

    if not standalone:
        s.add_argument("--report", metavar="PAGE.html", help="also a review page of the highest-scoring loci: one self-contained "
                       "HTML file (igv.js embedded; `ntkit data fetch igv-js` once)")
    s.add_argument("--max-loci", type=positive_int(), default=R.max_loci, help="loci in the page, highest scores first "
                   "(each adds sequence and tracks: about 10-60 kB)")
    s.add_argument("--report-flanking", dest="flanking", type=positive_int(), default=R.flanking,
                   help="bases of sequence and tracks around each locus")
    s.add_argument("--rank-by", help="the score column that orders the loci (default: each allele's largest |score|)")
    s.add_argument("--igv-js", help="igv.js (the npm tarball or igv.min.js; default: `ntkit data fetch igv-js`'s file)")


def register(sub) -> None:
    from ntkit.cli.variants import add_predictor_args

    s = sub.add_parser("report", help="a review page of scored variants: table + igv.js per locus, one HTML file that opens offline")
    s.add_argument("scores", help="a job's table (.tsv/.csv/.parquet) or VCF (its .parts folder is read)")
    s.add_argument("--fasta", required=True, help="the reference FASTA the job read")
    s.add_argument("--out", required=True, help="the page (.html)")
    s.add_argument("--model", help=MODEL_HELP + " (with a predictor option: its REF and ALT outputs are drawn)")
    s.add_argument("--tracks", nargs="*", default=[], help="bedGraph tracks to embed (e.g. mutagenesis' per-position scores)")
    add_predictor_args(s)
    add_report_args(s, standalone=True)
    add_runtime_args(s)
    s.set_defaults(func=run)


def options(args):
    from ntkit.tasks.options import ReportOptions

    return ReportOptions(max_loci=args.max_loci, flanking=args.flanking, rank_by=args.rank_by)


def write(args, scores, fasta, out, predictor=None, transcripts=None, tracks=(), runtime_=None) -> None:
    """The page of a job just done (``--report``) or of ``ntkit report``; prints what it wrote."""
    from ntkit.tasks.report import write_report

    licence = getattr(getattr(predictor, "model", None), "licence", None)
    res = write_report(scores, fasta, out, predictor=predictor, transcripts=transcripts, tracks=tracks, options=options(args),
                       igv_js=args.igv_js, notes=f"weights: {licence}" if licence else "", runtime=runtime_)
    print(f"wrote {res['output']}: {res['loci']} loci, {res['bytes'] / 1e6:.1f} MB (about {res['bytes_per_locus'] / 1e3:.0f} kB "
          "per locus beside igv.js and Tabulator)")


def run(args) -> int:
    from ntkit.cli.variants import load_predictor, model_for

    model_path = model_for(args) if (args.model or args.splice_model or args.adapter) else None
    model, rt = runtime(args, model_path)
    predictor = load_predictor(args, model) if (model is not None or args.splice_model) else None
    write(args, args.scores, args.fasta, args.out, predictor=predictor, transcripts=args.transcripts, tracks=args.tracks,
          runtime_=rt)
    return 0
