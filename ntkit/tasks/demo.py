"""``ntkit demo``: the whole pipeline offline on real data, in a few minutes on a CPU.

1. pretrain a shipped recipe (``--recipe``, default ``tiny-cpu``; ``ntv3-small-cpu`` is the one-CPU-hour
   model of BENCHMARKS.md) on GRCh37 chr20 for ``--minutes``;
2. evaluate it on the held-out end of chr20 (a 6-mer model also against the unigram 6-mer and
   order-5 Markov baselines);
3. score the real 1000 Genomes chr20 indels (annotated VCF + table) and write their review page
   (``variants.review.html``: the 20 highest-scoring indels in igv.js, offline once igv.js is
   fetched: ``ntkit data fetch igv-js``);
4. benchmark probing vs the 6-mer baseline and the random-init architecture on NT downstream tasks
   (``--tasks``, ``all`` for every task of the sample; table + plot);
5. write the model card (``pretrain/model/README.md``): data, time, held-out and downstream figures.

Everything is written under ``--out`` (default ``runs/demo``). The data folder is ``--data``, else
``$NTKIT_DATA``, else the demo data shipped with ntkit (``ntkit/demo_data``: chr20 stretches at
their real coordinates; see ``ntkit.io.datasets``); the full files are an ``ntkit data fetch demo`` away.
"""

from __future__ import annotations

import json
from pathlib import Path

from ntkit.io.datasets import data_dir, data_file
from ntkit.models.checkpoint import load
from ntkit.runtime.engine import Runtime
from ntkit.runtime.jobs import write_text_atomic
from ntkit.tasks.baselines import baseline_table, compare_with_baselines
from ntkit.tasks.benchmark import load_tasks, write_report
from ntkit.tasks.embed import check_bins
from ntkit.tasks.modelcard import downstream, heldout_metrics, model_card, write_model_card
from ntkit.tasks.options import DEMO_BINS, DEMO_REVERSE_COMPLEMENT, DEMO_TASKS, DOWNSTREAM_METHODS, ReportOptions
from ntkit.tasks.pretrain import PretrainConfig, pretrain
from ntkit.tasks.report import find_igv_js
from ntkit.tasks.report import write_report as write_review
from ntkit.tasks.variants import score_variants, write_table, write_vcf

FASTA = "genomes/GRCh37_chr20.fa.gz"
VCF = "variants/chr20_indels_1000G.vcf.gz"
TASKS = "tasks/nt_downstream_revised_subsample.tsv"
GENES = "splice/spliceai_annotation_grch37.txt"


def run(out: Path, data: Path | None = None, minutes: float = 3.0, tasks=DEMO_TASKS, seed: int = 0, recipe: str = "tiny-cpu",
        folds: int = 5, methods=DOWNSTREAM_METHODS, command: str | None = None, extra_tasks=(),
        reverse_complement: bool = DEMO_REVERSE_COMPLEMENT, bins: int = DEMO_BINS) -> dict:
    """The demo; ``tasks`` None (or ``["all"]``): every task of the sample table. ``extra_tasks``:
    further task tables (a path, or a name under the data folder such as
    ``tasks/human_enhancers_cohn.tsv``), probed with the same frozen methods and reported apart,
    in the benchmark folder and the model card: a task of thousands of sequences resolves margins
    that the sample's small folds cannot. ``reverse_complement``: the frozen features read both strands;
    ``bins``: the probes read the means of that many segments of each sequence
    (``ntkit.tasks.benchmark.run_benchmark``)."""
    import pandas as pd

    check_bins(bins)  # before any compute, as the files below
    data = data_dir(data)
    fasta, vcf, task_table = data_file(data, FASTA), data_file(data, VCF), data_file(data, TASKS)  # all found before any compute
    # the tables are read (and a task name checked) before pretraining, not after it
    all_tasks = load_tasks(task_table, None if not tasks or list(tasks) == ["all"] else list(tasks))
    extra_tables = {Path(f).name.split(".")[0]: load_tasks(Path(f) if Path(f).exists() else data_file(data, f)) for f in extra_tasks}
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"data": str(data), "recipe": recipe}

    print(f"== 1/5 pretraining for {minutes} min (recipe {recipe} on {fasta})", flush=True)
    cfg = PretrainConfig.from_yaml(recipe)  # a shipped recipe (ntkit/recipes) or a YAML file
    cfg.sources[0].fasta = str(fasta)
    cfg.out_dir, cfg.max_minutes, cfg.seed = str(out / "pretrain"), minutes, seed
    summary["pretrain"] = trained = pretrain(cfg)
    model_dir = out / "pretrain" / "model"
    model = load(model_dir)

    print("== 2/5 held-out masked-token figures", flush=True)
    held = heldout_metrics(model, cfg, n_windows=64)
    summary["heldout"] = held
    print(f"held-out: {held['windows']} windows, loss {held['loss']:.4f}, accuracy {held['accuracy']:.4f}, perplexity "
          f"{held['perplexity']:.3f}, {held['bits_per_base']:.3f} bits per base", flush=True)
    if model.tokenizer.kmer == 6:  # the count baselines predict masked 6-mers
        res = compare_with_baselines(model, cfg, n_windows=64)
        table = baseline_table(res)
        print(table, flush=True)
        write_text_atomic(out / "mlm_vs_baselines.md", table + "\n")
        summary["mlm"] = {k: v for k, v in res.items()}

    print("== 3/5 zero-shot scores of the chr20 1000 Genomes indels", flush=True)
    scores = score_variants(model, vcf, fasta, layers=[-1], runtime=Runtime(progress=True))
    write_vcf(scores, vcf, out / "variants.scored.vcf.gz")
    write_table(scores, out / "variants.scores.tsv")
    print(scores.summary(), flush=True)
    summary["variants"] = scores.summary()
    try:
        find_igv_js()
    except FileNotFoundError as e:
        print(f"no review page: {e}", flush=True)
    else:
        genes = data / GENES if (data / GENES).exists() else None  # genes drawn when the data folder has SpliceAI's table
        page = write_review(out / "variants.scores.tsv", fasta, out / "variants.review.html", transcripts=genes,
                            options=ReportOptions(max_loci=20, title="ntkit demo: chr20 1000 Genomes indels"))
        print(f"wrote {page['output']} ({page['loci']} indels, {page['bytes'] / 1e6:.1f} MB)", flush=True)
        summary["review_page"] = page["output"]

    print(f"== 4/5 downstream benchmark ({len(all_tasks)} tasks: {', '.join(t.name for t in all_tasks)}; {folds}-fold CV)", flush=True)
    bench = downstream(model, all_tasks, methods=methods, folds=folds, seed=seed, reverse_complement=reverse_complement, bins=bins,
                       runtime=Runtime(progress=True))
    paths = write_report(bench["results"], out / "benchmark")
    print(paths["table"].read_text(), flush=True)
    summary["benchmark"] = pd.read_csv(paths["summary"]).to_dict(orient="records")
    summary["mean_mcc"] = bench["mean_mcc"]
    summary["reverse_complement"], summary["bins"] = reverse_complement, bins
    extra = {}
    frozen = [m for m in methods if m in DOWNSTREAM_METHODS] or list(DOWNSTREAM_METHODS)  # no fine-tuning on the large tables
    for name, table_tasks in extra_tables.items():
        extra_bench = extra[name] = downstream(model, table_tasks, methods=frozen, folds=folds, seed=seed,
                                              reverse_complement=reverse_complement, bins=bins, runtime=Runtime(progress=True))
        print(write_report(extra_bench["results"], out / f"benchmark_{name}")["table"].read_text(), flush=True)
        summary.setdefault("extra_mean_mcc", {})[name] = extra_bench["mean_mcc"]

    print("== 5/5 model card", flush=True)
    card = write_model_card(model_dir, model_card(model, cfg, trained, held, bench, command=command, extra=extra))
    print(f"wrote {card}", flush=True)

    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=str))
    print(f"demo done: model in {model_dir}; outputs in {out}", flush=True)
    return summary
