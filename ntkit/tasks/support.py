"""Which job runs on which model: one table, the source of the refusals of the command line, of
``ntkit info``'s ``jobs`` and of the documentation's matrix (a test runs every cell).

A model is one of the kinds of ``kind_of`` (a family, and for NTv3 whether it is post-trained);
``SUPPORT[kind][job]`` is ``None`` where the job runs on it, else why not and what to use instead.
Encoder jobs (embed, probe, finetune, predict, benchmark, attention) run on ``model.backbone(species)``:
SegmentNT's NT v2 backbone, a post-trained NTv3 conditioned on ``--species``.
"""

from __future__ import annotations

from ntkit.models import registry

JOBS = ("embed", "probe", "finetune", "predict", "benchmark", "score-variants", "mutagenesis", "attention", "annotate",
        "tracks predict")

KINDS = {  # kind -> how a person names it
    "nt": "an NT v1/v2 model",
    "ntv3-pre": "a pre-trained NTv3 (no track heads)",
    "ntv3-post": "a post-trained NTv3 (species-conditioned, with track heads)",
    "segment_nt": "a SegmentNT model",
    "spliceai": "a SpliceAI model",
}

_ANNOTATE = "annotate needs a SegmentNT model (its elements per base); NTv3's tracks: `ntkit tracks predict`"
_TRACKS = "tracks predict needs a post-trained NTv3 (--species) or a track model of `ntkit tracks train` (--adapter on an NTv3)"
SUPPORT: dict[str, dict[str, str | None]] = {
    "nt": {**dict.fromkeys(JOBS), "annotate": _ANNOTATE, "tracks predict": _TRACKS},
    "ntv3-pre": {**dict.fromkeys(JOBS), "annotate": _ANNOTATE,
                 "tracks predict": "a pre-trained NTv3 has no track heads: train them with `ntkit tracks train` and pass the "
                                   "folder as --adapter, or use a post-trained NTv3"},
    "ntv3-post": {**dict.fromkeys(JOBS), "annotate": _ANNOTATE},
    "segment_nt": {**dict.fromkeys(JOBS), "tracks predict": _TRACKS},
    "spliceai": {**dict.fromkeys(JOBS, "SpliceAI is a convolutional splice-site model, without embeddings, a language-model "
                                       "head or attention: use it in score-variants, mutagenesis and the splice jobs "
                                       "(--splice-model spliceai)"),
                 "score-variants": None, "mutagenesis": None, "annotate": _ANNOTATE, "tracks predict": _TRACKS},
}


def kind_of(model) -> str:
    """The row of ``SUPPORT`` for a model (a conditioned view counts as its model)."""
    raw = getattr(model, "unconditioned", model)
    family = registry.for_model(raw).name
    if family == "ntv3":
        return "ntv3-post" if raw.config.conditions_vocab_size else "ntv3-pre"
    return family


def refusal(model, job: str) -> str | None:
    """None where ``job`` runs on ``model``, else the one-line reason (naming the job and the model's kind)."""
    kind = kind_of(model)
    why = SUPPORT.get(kind, {}).get(job) if job in JOBS else f"unknown job {job!r}"
    return None if why is None else f"ntkit {job} cannot run on {KINDS.get(kind, kind)}: {why}"


def require(model, job: str) -> None:
    """ValueError (the command line's exit 2) where ``job`` does not run on ``model``."""
    why = refusal(model, job)
    if why:
        raise ValueError(why)


def supported_jobs(model) -> dict[str, str]:
    """job -> "yes" or why not (``ntkit info``); a family without a row (one just added) says so."""
    kind = kind_of(model)
    if kind not in SUPPORT:
        return dict.fromkeys(JOBS, f"unknown: the {kind} family has no row in ntkit.tasks.support.SUPPORT yet")
    return {job: "yes" if (why := SUPPORT[kind][job]) is None else f"no: {why}" for job in JOBS}


def markdown_table() -> str:
    """The matrix as the documentation shows it (``docs/models/index.md``; a test keeps them equal)."""
    head = "| model | " + " | ".join(JOBS) + " |\n|---|" + "---|" * len(JOBS) + "\n"
    rows = [f"| {KINDS[k]} | " + " | ".join("yes" if SUPPORT[k][j] is None else "no" for j in JOBS) + " |" for k in KINDS]
    return head + "\n".join(rows) + "\n"
