"""``ntkit score-variants``: VCF + FASTA -> annotated VCF / tables (sharded, resumable), for NT's
zero-shot scores or any predictor (``--adapter``, ``--splice-model``, a SegmentNT model's elements,
NTv3's tracks with ``--species``, a track model with ``--track-model``)."""

from __future__ import annotations

from typing import Sequence

from ntkit.cli.common import FORCE_HELP, MODEL_HELP, add_job_args, add_runtime_args, positive_int, report_job, runtime
from ntkit.cli.report import add_report_args
from ntkit.cli.report import write as write_report


def add_score_args(s, default: Sequence[str]) -> None:
    """What NT's zero-shot scores are and in which windows (``ScoreOptions``): shared by
    score-variants and mutagenesis."""
    from ntkit.tasks.options import SCORES

    s.add_argument("--scores", nargs="+", choices=SCORES, default=list(default),
                   help="NT zero-shot: llr: masked marginal; llr_unmasked: wild-type marginal; embedding: L1/L2/cosine/dot distances "
                   "(the score for indels). score-variants defaults to llr + embedding; mutagenesis to the two marginals, which "
                   "share forwards across a region's SNVs (docs: Variant effects and scores)")
    s.add_argument("--layers", type=int, nargs="+", default=[-1], help="NT zero-shot: layers of the embedding distances")
    s.add_argument("--window-tokens", type=positive_int(), help="NT zero-shot: tile length in tokens (default: the model's context)")
    s.add_argument("--tile-stride-bp", type=positive_int(),
                   help="tile grid step (default: a quarter of the window; NT zero-shot: a multiple of 6; per-base predictors: 128)")
    s.add_argument("--both-strands", action="store_true", help="NT zero-shot: average every score over the tile and its reverse complement")


def add_gain_loss_args(s) -> None:
    """--distance and --mask: where a per-base predictor's gains and losses are sought (SpliceAI's -D, -M)."""
    from ntkit.tasks.options import EffectOptions as E

    s.add_argument("--distance", type=int, default=E.distance, help="per-base predictors: bases each side of a variant where "
                   "gains and losses are sought")
    s.add_argument("--mask", action="store_true", help="per-base predictors: SpliceAI's -M: gains at annotated sites and losses "
                   "at unannotated positions count 0")


def add_predictor_args(s) -> None:
    """Which predictor scores the perturbations (default: NT's zero-shot scores of --model)."""
    s.add_argument("--adapter", help="a fine-tuned model (folder of `ntkit finetune`, on --model): alt - ref of its outputs, "
                   "log-odds for classifiers")
    s.add_argument("--splice-model", help="a splice model: `spliceai` (SpliceAI's published ensemble, from `pip install --no-deps "
                   "spliceai`; weights CC BY-NC 4.0), a folder of its .h5 files, or a folder of `ntkit splice train` (on --model): "
                   "SpliceAI's gains and losses per gene within --distance (needs --transcripts)")
    s.add_argument("--transcripts", "--annotation", dest="transcripts", help="genes of a splice model: grch37 / grch38 (SpliceAI's "
                   "own gene tables, its -A), a SpliceAI transcript table or a GTF/GFF")
    s.add_argument("--species", help="a post-trained NTv3 (--model): alt - ref of its tracks' sums and its elements' gains and "
                   "losses within --distance, heads of this species")
    s.add_argument("--track-model", help="a track model (folder of `ntkit tracks train`, on --model): as --species")
    s.add_argument("--outputs", nargs="+", help="only these outputs of the predictor (tracks, elements, classes), e.g. of the "
                   "thousands of tracks of a post-trained NTv3 (`ntkit info MODEL --tracks SPECIES` lists them)")
    add_gain_loss_args(s)
    s.add_argument("--window-bp", type=positive_int(), help="--adapter: bases per window (default: the median training length); "
                   "SegmentNT and NTv3 tracks: the window the model reads (default: its own)")
    s.add_argument("--force", action="store_true", help=FORCE_HELP)


def load_predictor(args, model):
    """The predictor the options name, or None for NT's zero-shot scores."""
    from ntkit.tasks.predictors import load_predictor as load

    return load(model, adapter=args.adapter, splice_model=args.splice_model, track_model=args.track_model, species=args.species,
                outputs=args.outputs, force=args.force)


def effect_options(args):
    from ntkit.tasks.perturb import EffectOptions

    return EffectOptions(window_bp=args.window_bp, tile_stride_bp=args.tile_stride_bp, distance=args.distance, mask=args.mask,
                         label_key=getattr(args, "label_key", None))


def model_for(args) -> str | None:
    """--model, unless the adapter folder holds its own fully fine-tuned base."""
    from pathlib import Path

    from ntkit.tasks.finetune import holds_base
    from ntkit.tasks.predictors import is_spliceai

    if args.splice_model and is_spliceai(args.splice_model):  # SpliceAI reads the bases: no base model
        return None
    if args.adapter and (Path(args.adapter) / "base").is_dir() and holds_base(args.adapter):
        return None
    if not args.model:
        raise ValueError("--model is needed (the base model; a fully fine-tuned --adapter brings its own)")
    return args.model


def table_of(outputs) -> str:
    """What a review page reads of a job: its table output, else its first output (whose parts it reads)."""
    return next((o for o in outputs if not o.lower().endswith((".vcf", ".vcf.gz", ".bcf"))), outputs[0])


def register(sub) -> None:
    from ntkit.tasks.options import DEFAULT_SCORES

    s = sub.add_parser("score-variants", help="variant effects: VCF + FASTA -> annotated VCF / table (NT zero-shot, a "
                       "fine-tuned or splice model, SegmentNT's elements, NTv3's tracks)")
    s.add_argument("--vcf", required=True, help="VCF/BCF (sorted; bgzip + tabix for random access); multi-allelic records are split")
    s.add_argument("--fasta", required=True, help="reference FASTA (bgzip + faidx, or plain); chr20 and 20 are the same contig")
    s.add_argument("--model", help=MODEL_HELP)
    s.add_argument("--out", required=True, nargs="+", help="output files: .vcf/.vcf.gz (annotated), .tsv/.csv/.parquet (table)")
    add_score_args(s, default=DEFAULT_SCORES)
    s.add_argument("--unmasked-llr", action="store_true", help="also the wild-type marginal (same as adding llr_unmasked to --scores)")
    s.add_argument("--label-key", help="INFO key holding a 0/1 label (or a Flag): report AUROC/AUPRC")
    add_predictor_args(s)
    add_job_args(s, "records")
    add_report_args(s)
    add_runtime_args(s)
    s.set_defaults(func=run)


def run(args) -> int:
    from ntkit.tasks.perturb import score_variants_to_files, variant_effects_to_files
    from ntkit.tasks.variants import evaluate_table, is_vcf

    model, rt = runtime(args, model_for(args))
    predictor = load_predictor(args, model)
    if predictor is None:
        res = score_variants_to_files(model, args.vcf, args.fasta, args.out, layers=args.layers, window_tokens=args.window_tokens,
                                      both_strands=args.both_strands, unmasked_llr=args.unmasked_llr, label_key=args.label_key,
                                      scores=args.scores, tile_stride_bp=args.tile_stride_bp, chunk_size=args.chunk_size,
                                      shard=args.shard, restart=args.restart, runtime=rt)
    else:
        res = variant_effects_to_files(predictor, args.vcf, args.fasta, args.out, transcripts=args.transcripts,
                                       options=effect_options(args), chunk_size=args.chunk_size, shard=args.shard,
                                       restart=args.restart, runtime=rt)
    if not report_job(res, args.out[0]):
        return 0
    print(res["summary"])
    for o in res["outputs"]:
        print(f"wrote {o}")
    if args.report:
        write_report(args, table_of(args.out), args.fasta, args.report, predictor=predictor, transcripts=args.transcripts, runtime_=rt)
    if args.label_key and predictor is None:
        table = next((o for o in res["outputs"] if not is_vcf(o)), None)
        if table:
            print(evaluate_table(table).to_string(index=False))
    return 0
