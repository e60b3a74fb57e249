"""``ntkit attention``: attention enrichment over annotated elements, per layer and head."""

from __future__ import annotations

from pathlib import Path

from ntkit.cli.common import MODEL_HELP, add_runtime_args, add_species_arg, runtime


def register(sub) -> None:
    s = sub.add_parser("attention", help="attention enrichment over annotated elements, per layer and head")
    s.add_argument("--model", required=True, help=MODEL_HELP)
    s.add_argument("--fasta", required=True, help="reference genome")
    s.add_argument("--annotation", required=True, help="BED, GTF/GFF or SpliceAI gene table")
    s.add_argument("--regions", nargs="+", required=True, help="chrom:start-end (1-based) or whole contigs to tile")
    s.add_argument("--types", nargs="+", help="element types to test (default: all in the annotation)")
    s.add_argument("--bed-type", help="element type for every BED interval (default: the name column)")
    s.add_argument("--window-tokens", type=int, help="default: the model's context (NTv3: 8,192 bases)")
    s.add_argument("--max-windows", type=int, default=200, help="windows tiled from the regions, at most")
    s.add_argument("--all-windows", action="store_true", help="also windows without any element")
    s.add_argument("--layers", type=int, nargs="+", help="blocks to test (default: all)")
    s.add_argument("--alpha", type=float, default=0.05, help="FDR level")
    s.add_argument("--out", default="runs/attention", help="folder: attention_enrichment.csv and .png")
    add_species_arg(s)
    add_runtime_args(s)
    s.set_defaults(func=run)


def run(args) -> int:
    from ntkit.io.annotation import read_annotation
    from ntkit.io.genome import Genome
    from ntkit.runtime.jobs import atomic_output, check_output
    from ntkit.tasks.attention import attention_enrichment, plot_heatmaps, region_windows

    out = Path(args.out)
    check_output(out / "attention_enrichment.csv", [args.fasta, args.annotation])
    model, rt = runtime(args, args.model)
    model = model.backbone(args.species)  # SegmentNT: its NT v2 backbone; a post-trained NTv3: conditioned
    genome = Genome(args.fasta)
    ann = read_annotation(args.annotation, args.types, args.bed_type)
    tok = model.tokenizer
    T = args.window_tokens or min(getattr(model, "default_window", None) or model.config.max_tokens, model.config.max_tokens)
    window_bp = (T - tok.n_special) * tok.kmer  # NT: 6-mers after <cls>; NTv3: one base per token
    windows = region_windows(genome, args.regions, window_bp, ann, args.max_windows, require_element=not args.all_windows)
    if not windows:
        raise ValueError("no window: regions too short, N-rich or without elements")
    table = attention_enrichment(model, windows, ann, layers=args.layers, alpha=args.alpha, runtime=rt)
    with atomic_output(out / "attention_enrichment.csv") as tmp:
        table.to_csv(tmp, index=False)
    plot_heatmaps(table, out / "attention_enrichment.png")
    top = table.sort_values("enrichment", ascending=False).groupby("element").head(3)
    print(f"{len(windows)} windows of {window_bp} bp; {int(table['significant'].sum())} of {len(table)} (layer, head, element) "
          f"enriched at FDR {args.alpha}")
    print(top[["element", "layer", "head", "attention_share", "coverage", "enrichment", "q_value"]].to_string(index=False))
    print(f"wrote {out / 'attention_enrichment.csv'}, {out / 'attention_enrichment.png'}")
    return 0
