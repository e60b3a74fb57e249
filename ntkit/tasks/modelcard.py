"""What a pretraining run made, measured and written down: the held-out masked-LM figures, the
downstream table against 6-mer counts and the same architecture at random initialisation, and a
model card (``README.md`` in Hugging Face's format) beside the weights.

``ntkit demo --recipe ntv3-small-cpu --minutes 60 --tasks all`` and ``benchmarks/bench_cpu_recipe.py``
(the ablation table of BENCHMARKS.md) both measure through these functions, so the card a user gets
carries the figures the benchmark reports, computed the same way.
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import asdict
from pathlib import Path

import torch
import yaml

from ntkit.models import registry
from ntkit.runtime.jobs import write_text_atomic
from ntkit.tasks.benchmark import Task, markdown_table, run_benchmark, summarise
from ntkit.tasks.options import DEMO_BINS, DEMO_REVERSE_COMPLEMENT, DOWNSTREAM_METHODS
from ntkit.tasks.pretrain import PretrainConfig, evaluate_mlm, heldout_regions
from ntkit.tasks.pretrain_data import tile_windows


def heldout_metrics(model, cfg: PretrainConfig, n_windows: int = 64, seed: int = 1234) -> dict:
    """Masked-token loss / accuracy / perplexity on ``n_windows`` windows of the recipe's held-out
    regions at its final length (every selected token -> <mask>, the masking seeded by ``seed``:
    every model of a comparison is scored on the same positions). The figures are over the standard
    tokens with the prediction restricted to them (``evaluate_mlm``'s ``kmer_*``): perplexity over
    the 4 bases for NTv3, over the 4,096 6-mers for NT (as the count baselines are scored);
    ``bits_per_base`` puts both on one scale (a 6-mer's loss spread over its 6 bases)."""
    if not cfg.valid_regions:
        raise ValueError("the recipe has no valid_regions: nothing held out to score")
    genome, held_out = heldout_regions(cfg)
    tok = model.tokenizer
    windows = tile_windows(genome, held_out, cfg.window_bp_for(tok), cfg.max_n_fraction, limit=n_windows)
    res = evaluate_mlm(model, windows, tok, cfg.window_tokens, seed=seed)
    return {"windows": len(windows), "window_bp": cfg.window_bp_for(tok), "masked": res["n_kmer"], "loss": res["kmer_loss"],
            "accuracy": res["kmer_accuracy"], "perplexity": res["kmer_perplexity"],
            "bits_per_base": res["kmer_loss"] / tok.kmer / math.log(2)}


def downstream(model, tasks: list[Task], methods=DOWNSTREAM_METHODS, folds: int = 5, seed: int = 0, finetune_epochs: int = 10,
               reverse_complement: bool = DEMO_REVERSE_COMPLEMENT, bins: int = DEMO_BINS, phases: int = 1, runtime=None,
               features: dict | None = None) -> dict:
    """The downstream benchmark of ``model`` (``ntkit.tasks.benchmark``): per-fold results, the
    per-task summary, its markdown table and the mean MCC of each method over the tasks.
    ``reverse_complement``: frozen features of both strands; ``bins``: the probes read the means of
    that many equal segments of each sequence (``embed``); ``phases``: a 6-mer model's embeddings
    averaged over that many frames (``embed``); ``features``: a cache kept between
    calls with several ``seed``s (``run_benchmark``)."""
    results = run_benchmark(tasks, model, methods=list(methods), n_folds=folds, seed=seed, finetune_epochs=finetune_epochs,
                            reverse_complement=reverse_complement, bins=bins, phases=phases, runtime=runtime, features=features)
    summary = summarise(results)
    means = summary.groupby("method", sort=False)["mcc_mean"].mean().to_dict()
    return {"results": results, "summary": summary, "table": markdown_table(summary, results), "mean_mcc": means,
            "reverse_complement": reverse_complement, "bins": bins, "phases": phases}


def model_card(model, cfg: PretrainConfig, trained: dict, heldout: dict | None = None, bench: dict | None = None,
               command: str | None = None, extra: dict[str, dict] | None = None) -> str:
    """The card's text: front matter, what the model is, its data, its training time, its figures;
    ``extra``: further ``downstream`` results by table name, each its own section."""
    mc = model.config
    family = registry.for_model(model).name  # "nt" or "ntv3"
    tok = model.tokenizer
    per_token = "base" if tok.kmer == 1 else "6-mer"
    minutes = float(trained.get("elapsed_s") or 0) / 60
    sources = "; ".join(f"{s.name or Path(s.fasta).name} (`{Path(s.fasta).name}`{', haplotypes of ' + Path(s.vcf).name if s.vcf else ''})"
                        for s in cfg.sources)
    lines = [
        "---",
        "library_name: ntkit",
        "license: apache-2.0",
        "tags: [dna, genomics, masked-language-model, nucleotide-transformer" + (", ntv3]" if family == "ntv3" else "]"),
        "---",
        "",
        f"# {mc.name} ({model.num_parameters():,} parameters), pretrained for {minutes:.0f} min",
        "",
        f"A DNA masked language model ({family}, one {per_token} per token) pretrained by ntkit on a CPU.",
        "Load it with `ntkit.load(\"<this folder>\")`; every `ntkit` job takes this folder as `--model`.",
        "",
        "## Training",
        "",
        f"- Data: {sources}; held out: {', '.join(cfg.valid_regions) or 'nothing'}.",
        f"- Time: {minutes:.1f} min, {int(trained.get('step') or 0):,} optimizer steps, {int(trained.get('tokens') or 0):,} tokens read "
        f"({cfg.tokens_per_step:,} per step), masking {cfg.mask_prob:.0%} (80/10/10)"
        + (f" in runs of {cfg.mask_span} tokens" if cfg.mask_span > 1 else "") + ".",
        f"- Length: {cfg.window_tokens} tokens per window" + (f", curriculum {cfg.length_schedule} ([from step, tokens])" if cfg.length_schedule else "")
        + f"; learning rate {cfg.lr_init:g} -> {cfg.lr_peak:g} over {cfg.warmup_steps} steps, then 1/sqrt(step); seed {cfg.seed}.",
        f"- Machine: {platform.machine()} {os.cpu_count()} CPU(s), torch {torch.__version__} with {torch.get_num_threads()} threads, {cfg.precision}.",
    ]
    if command:
        lines.append(f"- Command: `{command}`")
    if heldout:
        lines += ["", "## Held-out masked-LM figures", "",
                  f"{heldout['windows']} windows of {heldout['window_bp']:,} bp from the held-out regions, {heldout['masked']:,} masked "
                  f"tokens (all set to `<mask>`): loss {heldout['loss']:.4f} nats, accuracy {heldout['accuracy']:.4f}, perplexity "
                  f"{heldout['perplexity']:.3f} per {per_token}, {heldout['bits_per_base']:.3f} bits per base."]
    if bench:
        m = bench["mean_mcc"]
        vs = "; ".join(f"{k} {v:.3f}" for k, v in m.items())
        lines += ["", "## Downstream (frozen embeddings)", "",
                  f"Mean MCC over the tasks: {vs}. `kmer`: 6-mer counts + logistic regression; `probe`: logistic regression on this "
                  f"model's {_pooling(bench)}; `random-probe`: the same on this architecture at random initialisation. "
                  + _strands(bench) + "Cross-validation folds as in the table (mean ± 2 SD over folds).", "", bench["table"]]
    for name, other in (extra or {}).items():
        vs = "; ".join(f"{k} {v:.3f}" for k, v in other["mean_mcc"].items())
        lines += ["", f"## Downstream: {name} (frozen embeddings)", "", f"Mean MCC: {vs}. The same methods on `{name}`.", "",
                  other["table"]]
    lines += ["", "## Recipe", "", "```yaml", _yaml(asdict(cfg)), "```", "",
              "## Limits", "",
              f"A small model trained for {minutes:.0f} minutes on the sequence above: a starting point for probing and "
              "fine-tuning on similar sequence, not a replacement for the published Nucleotide Transformer checkpoints. Its "
              "held-out figures are on the recipe's held-out regions only; the downstream figures on the tasks in the table.", ""]
    return "\n".join(lines)


def _pooling(bench: dict) -> str:
    n = int(bench.get("bins", 1))
    frames = f" (each strand read in {bench['phases']} 6-mer frames, averaged)" if int(bench.get("phases", 1)) > 1 else ""
    return ("mean embeddings" if n == 1 else f"mean embeddings over {n} equal segments of each sequence, concatenated") + frames


def _strands(bench: dict) -> str:
    if bench.get("reverse_complement"):
        tuned = any(m in bench.get("mean_mcc", {}) for m in ("ia3", "random-ia3", "lora", "full"))
        each = ("each base's vector is the mean of the two strands' at that position" if int(bench.get("bins", 1)) > 1
                else "each sequence's embedding is the mean of its own and its reverse complement's")
        tuning = "; fine-tuning trains on a random strand of each sequence and predicts the mean over both" if tuned else ""
        return f"Both strands: {each}, the 6-mers are counted on both strands{tuning}. "
    return "The forward strand only. "


def _yaml(d: dict) -> str:
    keep = {k: v for k, v in d.items() if k not in ("progress", "device")}
    return yaml.safe_dump(keep, sort_keys=False).rstrip()


def write_model_card(model_dir: str | Path, text: str) -> Path:
    path = Path(model_dir) / "README.md"
    write_text_atomic(path, text)
    return path

