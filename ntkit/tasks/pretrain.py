"""Masked-language-model pretraining, from one CPU process to many GPUs (torchrun + DDP/FSDP).

Recipe (NT): 15% of standard tokens selected; of those 80% -> <mask>, 10% -> a random standard
token, 10% unchanged; cross-entropy on the selected positions only. Adam(0.9, 0.999, 1e-8),
linear warm-up ``lr_init -> lr_peak`` then ``lr_peak * sqrt(warmup / step)``; gradients
accumulated to ``tokens_per_step`` tokens per optimizer step over all processes.

Length curriculum (NTv3 trains short windows first, then longer ones): ``length_schedule``
``[[from_step, window_tokens], ...]`` gives each stage its window length; a stage's micro-batch
holds about as many tokens as ``batch_size x window_tokens`` (fewer, longer windows) and its
accumulation keeps ``tokens_per_step``. Without a schedule every step reads ``window_tokens``.

Determinism: window ``i`` and its masking depend only on ``(seed, i)`` (and the stage's length).
Optimizer step ``s`` uses the ``G`` global windows (``G`` = windows per step of its stage) that
follow those of the steps before it, split over processes and micro-batches; the loss is the sum over selected tokens divided by the step's global count of
selected tokens, so 1 process and N processes with the same global batch compute the same
gradient, and a resumed run continues bit-for-bit.

Checkpoints (``out_dir/checkpoints/step_XXXXXXX``) hold the model in HF layout plus the trainer
state: ``trainer_state.safetensors`` (optimizer moments, CPU and CUDA RNG states) and
``trainer_state.json`` (step, optimizer hyper-parameters, scheduler, recipe); no file read on
resume can run code. They are written to a temporary folder and renamed, and
``out_dir/checkpoints/latest`` names the newest complete one. A checkpoint is written only when
the weights are finite and the training loss since the previous one stayed finite and below a
uniform guess plus 2 nats (ln V + 2): a diverging run keeps its last healthy checkpoint. Re-running
into an existing ``out_dir`` resumes only with the same recipe (run-defining fields); otherwise
the differences are reported and nothing is trained.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml

from ntkit.core.fields import check_fields
from ntkit.io.datasets import data_dir
from ntkit.io.genome import Genome, Interval
from ntkit.models import ntv3
from ntkit.models.checkpoint import load, save_checkpoint
from ntkit.models.nt.config import get_preset
from ntkit.models.nt.model import NTModel, build
from ntkit.models.nt.tokenizer import Tokenizer
from ntkit.models.ntv3.model import NTv3Model
from ntkit.recipes import recipe_path
from ntkit.runtime.jobs import check_output
from ntkit.runtime.progress import bar as progress_bar
from ntkit.tasks.pretrain_data import SourceConfig, Window, WindowSampler, tile_windows


class TrainingDiverged(RuntimeError):
    """Loss or gradient became NaN/Inf; the last checkpoint is intact."""


@dataclass
class PretrainConfig:
    model: str = "nt-v2-tiny"  # preset name or HF checkpoint directory
    model_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. {max_tokens: 512}
    sources: list[SourceConfig] = field(default_factory=list)
    valid_regions: list[str] = field(default_factory=list)  # held out of training, "20:55,000,001-63,025,520"
    valid_fasta: str | None = None  # genome of the valid regions (default: first source)
    window_tokens: int = 1000  # tokens per window incl. <cls>; window = (window_tokens - 1) * 6 bp (NTv3: window_tokens bases)
    length_schedule: list[list[int]] = field(default_factory=list)  # [[from_step, window_tokens], ...] from step 0: a length curriculum
    max_n_fraction: float = 0.05
    reverse_complement: bool = True
    mask_prob: float = 0.15
    mask_span: int = 1  # masked tokens come in runs of this many (span masking); 1: independent tokens (BERT/NT)
    batch_size: int = 8  # windows per micro-batch per process
    tokens_per_step: int = 1_000_000  # all processes, after accumulation
    max_steps: int = 100_000
    lr_init: float = 5e-5
    lr_peak: float = 1e-4
    warmup_steps: int = 16_000
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on CUDA with bf16 support, else fp32
    strategy: Literal["ddp", "fsdp"] = "ddp"  # when launched with torchrun
    gradient_checkpointing: bool = False
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    eval_every: int = 1000
    eval_windows: int = 64
    log_every: int = 10
    max_minutes: float | None = None  # stop (with a checkpoint) after this wall time
    seed: int = 0
    out_dir: str = "runs/pretrain"
    device: str = "auto"
    progress: bool = True

    @property
    def window_bp(self) -> int:
        """Bases per window of an NT model (6-mers after <cls>); ``window_bp_for`` any model's tokenizer."""
        return (self.window_tokens - 1) * 6

    def window_bp_for(self, tok, window_tokens: int | None = None) -> int:
        """Bases of a window of ``window_tokens`` (default: the config's) for ``tok``'s tokens."""
        return ((window_tokens or self.window_tokens) - tok.n_special) * tok.kmer

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("batch_size", "tokens_per_step", "max_steps", "window_tokens", "checkpoint_every", "keep_checkpoints",
                     "eval_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"PretrainConfig.{name} must be >= 1, not {getattr(self, name)}")
        sched = self.length_schedule
        if sched and (any(len(e) != 2 or int(e[1]) < 1 for e in sched) or int(sched[0][0]) != 0
                      or any(int(a[0]) >= int(b[0]) for a, b in zip(sched, sched[1:]))):
            raise ValueError(f"PretrainConfig.length_schedule {sched}: [[from_step, window_tokens], ...] with steps rising "
                             "from 0 and window_tokens >= 1, e.g. [[0, 1024], [5000, 8192]]")
        if not 0 < self.mask_prob < 1:
            raise ValueError(f"PretrainConfig.mask_prob must be in (0, 1), not {self.mask_prob}")
        if not 1 <= self.mask_span <= 64:
            raise ValueError(f"PretrainConfig.mask_span must be 1 (independent tokens) to 64, not {self.mask_span}")
        for name in ("lr_init", "lr_peak"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"PretrainConfig.{name}={getattr(self, name)}: Adam learning rates above 1 diverge "
                                 "at once (NT used 1e-4); use a value in (0, 1]")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PretrainConfig":
        d = dict(d)
        d["sources"] = [SourceConfig(**s) for s in d.get("sources", [])]
        if "adam_betas" in d:
            d["adam_betas"] = tuple(d["adam_betas"])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown pretraining options: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides: Any) -> "PretrainConfig":
        """A YAML recipe: a file, or a shipped recipe by name (``ntkit.recipes``: ``tiny-cpu`` ...)."""
        file = recipe_path(path)
        d = yaml.safe_load(file.read_text()) or {}
        base = file.resolve().parent
        env = {"NTKIT_DATA": str(data_dir()), **os.environ}

        def path(v: str) -> str:  # ${VARS} expanded (NTKIT_DATA has a default); relative paths are relative to the file
            v = os.path.expanduser(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), m.group(0)), v))
            return v if os.path.isabs(v) else str((base / v).resolve())

        for s in d.get("sources", []):
            for key in ("fasta", "vcf"):
                if s.get(key):
                    s[key] = path(s[key])
        if d.get("valid_fasta"):
            d["valid_fasta"] = path(d["valid_fasta"])
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(d)


# -- masking ---------------------------------------------------------------------------------------


def mask_window(ids: np.ndarray, tok: Tokenizer, seed: int, index: int, mask_prob: float = 0.15, eval_mode: bool = False,
                span: int = 1):
    """BERT/NT corruption of one tokenised window, seeded by ``(seed, index)``.

    Returns (corrupted ids, labels) with labels = -100 where not selected. ``eval_mode`` replaces
    every selected token by <mask> (the usual masked-token accuracy protocol). ``span`` > 1: span
    masking with runs of a fixed length. A run starts at each eligible token with probability
    ``mask_prob / span`` and covers it and the next ``span - 1`` tokens (special tokens and <pad>
    inside a run stay unselected), so about ``mask_prob`` of the tokens are selected: a little
    fewer, 1 - (1 - p/span)**span (0.141 for 15% in runs of 6), as runs overlap. The 80/10/10
    choice stays per token. ``span`` = 1 draws the same random numbers as before the option existed.
    """
    rng = np.random.default_rng([seed, index, 1])
    eligible = ids >= 0
    eligible &= ~np.isin(ids, tok.special_ids)
    selected = eligible & (rng.random(ids.shape) < mask_prob / span)
    if span > 1:
        starts = selected
        selected = starts.copy()
        for k in range(1, span):  # run k tokens to the right of each start (along the window's last axis)
            selected[..., k:] |= starts[..., :-k]
        selected &= eligible
    labels = np.where(selected, ids, -100)
    out = ids.copy()
    action = rng.random(ids.shape)
    if eval_mode:
        out[selected] = tok.mask_id
    else:
        out[selected & (action < 0.8)] = tok.mask_id
        rand = selected & (action >= 0.8) & (action < 0.9)
        out[rand] = rng.choice(tok.standard_ids, size=int(rand.sum()))
    return out, labels


def encode_windows(windows: list[Window], tok: Tokenizer, window_tokens: int, seed: int, first_index: int, mask_prob: float, eval_mode: bool = False,
                   span: int = 1):
    batch = tok.batch_encode([w.sequence for w in windows], max_length=window_tokens, padding="max_length", truncation=True)
    ids, labels = zip(*(mask_window(batch.input_ids[i], tok, seed, first_index + i, mask_prob, eval_mode, span) for i in range(len(windows))))
    return torch.as_tensor(np.stack(ids)), torch.as_tensor(np.stack(labels)), torch.as_tensor(batch.attention_mask)


# -- schedule ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """Steps ``[start, next stage's start)`` of a run: their window length and batching."""

    start: int  # steps done before the stage
    window_tokens: int
    batch_size: int  # windows per micro-batch per process
    accum: int  # micro-batches per process per optimizer step
    G: int  # windows per optimizer step, all processes
    first_window: int  # global index of the stage's first window


def stages(cfg: PretrainConfig, world: int) -> list[Stage]:
    """The run's stages (one without ``length_schedule``): a stage's micro-batch holds about
    ``batch_size x window_tokens`` tokens, its accumulation ``tokens_per_step`` over ``world`` processes."""
    out: list[Stage] = []
    for start, wt in cfg.length_schedule or [[0, cfg.window_tokens]]:
        start, wt = int(start), int(wt)
        b = max(1, cfg.batch_size * cfg.window_tokens // wt)
        accum = max(1, round(cfg.tokens_per_step / (b * wt * world)))
        first = out[-1].first_window + (start - out[-1].start) * out[-1].G if out else 0
        out.append(Stage(start, wt, b, accum, b * accum * world, first))
    return out


def stage_at(run_stages: list[Stage], step: int) -> Stage:
    """The stage of the step after ``step`` steps are done."""
    return [st for st in run_stages if st.start <= step][-1]


def windows_before(run_stages: list[Stage], step: int) -> int:
    st = stage_at(run_stages, step)
    return st.first_window + (step - st.start) * st.G


def tokens_before(run_stages: list[Stage], step: int) -> int:
    """Tokens of the windows of the first ``step`` steps."""
    total = 0
    for k, st in enumerate(run_stages):
        end = min(step, run_stages[k + 1].start if k + 1 < len(run_stages) else step)
        total += max(0, end - st.start) * st.G * st.window_tokens
    return total


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """NT: linear warm-up from lr_init to lr_peak, then inverse square-root decay."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr_init + (cfg.lr_peak - cfg.lr_init) * step / cfg.warmup_steps
    return cfg.lr_peak * math.sqrt(max(cfg.warmup_steps, 1) / max(step, 1))


# -- distributed -------------------------------------------------------------------------------------


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, x: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            # NCCL reduces GPU tensors only; gloo CPU ones.
            dev = torch.device("cuda", self.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
            y = x.to(dev)
            dist.all_reduce(y)
            x = y.to(x.device)
        return x

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def init_distributed(device: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def teardown_distributed(in_step: bool = True) -> None:
    """Leave the process group in step: every rank reaches a barrier, then destroys it, so no rank
    exits while a peer's gloo/NCCL threads still talk to it (an abort at exit otherwise).
    ``in_step=False`` after an error on this rank alone: no barrier (it would wait for peers that
    will never come), only the destruction."""
    if not dist.is_initialized():
        return
    try:
        if in_step:
            dist.barrier()
    finally:
        dist.destroy_process_group()


def wrap_model(model: NTModel, strategy: str, d: Dist, device: torch.device):
    if d.world == 1:
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in getattr(model, "layers", None) or model.transformer_blocks:  # NT's blocks; NTv3's transformer
            fully_shard(block)
        fully_shard(model)
        return model
    raise ValueError(f"strategy must be 'ddp' or 'fsdp', not {strategy!r}")


def _full_state(model, optimizer=None):
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    msd = get_model_state_dict(model, options=opts)
    osd = get_optimizer_state_dict(model, optimizer, options=opts) if optimizer is not None else None
    return msd, osd


# -- evaluation ---------------------------------------------------------------------------------------


def heldout_regions(cfg: PretrainConfig) -> tuple[Genome, list[Interval]]:
    """The genome of the recipe's held-out regions (``valid_fasta``, else the first source's) and the regions."""
    genome = Genome(cfg.valid_fasta or cfg.sources[0].fasta)
    return genome, [Interval.parse(r, genome) for r in cfg.valid_regions]


@torch.no_grad()
def evaluate_mlm(model, windows: list[Window], tok: Tokenizer, window_tokens: int, seed: int = 1234, mask_prob: float = 0.15,
                 batch_size: int = 8, device=None, dtype=None) -> dict[str, float]:
    """Masked-token loss, accuracy and perplexity (selected tokens all set to <mask>).

    ``kmer_*`` metrics are over positions whose true token is a 6-mer, with the prediction
    restricted to the 4096 6-mers: the terms on which the k-mer baselines are compared (NTv3's
    single-base tokens: positions of A, C, G, T, the prediction restricted to those 4).
    """
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    k0, nk = tok.kmer_offset, 4 ** tok.kmer
    tot = {"n": 0, "loss": 0.0, "correct": 0, "kn": 0, "kloss": 0.0, "kcorrect": 0}
    for i in range(0, len(windows), batch_size):
        ids, labels, mask = encode_windows(windows[i : i + batch_size], tok, window_tokens, seed, i, mask_prob, eval_mode=True)
        sel = labels >= 0
        with torch.autocast(device_type=torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(ids.to(device), mask.to(device), logits_at=sel.to(device)).logits.float()
        y = labels[sel].to(device)
        tot["n"] += len(y)
        tot["loss"] += F.cross_entropy(logits, y, reduction="sum").item()
        tot["correct"] += (logits.argmax(-1) == y).sum().item()
        is_kmer = (y >= k0) & (y < k0 + nk)
        kl = logits[is_kmer, k0 : k0 + nk]
        ky = y[is_kmer] - k0
        tot["kn"] += len(ky)
        tot["kloss"] += F.cross_entropy(kl, ky, reduction="sum").item()
        tot["kcorrect"] += (kl.argmax(-1) == ky).sum().item()
    model.train(was_training)
    n, kn = max(tot["n"], 1), max(tot["kn"], 1)
    return {
        "loss": tot["loss"] / n, "accuracy": tot["correct"] / n, "perplexity": math.exp(tot["loss"] / n), "n_masked": tot["n"],
        "kmer_loss": tot["kloss"] / kn, "kmer_accuracy": tot["kcorrect"] / kn, "kmer_perplexity": math.exp(tot["kloss"] / kn), "n_kmer": tot["kn"],
    }


# -- checkpoints -----------------------------------------------------------------------------------------


STATE_JSON, STATE_TENSORS = "trainer_state.json", "trainer_state.safetensors"
LEGACY_STATE = "trainer_state.pt"  # read with weights_only=True only


def _last_good(out_dir) -> str:
    last = latest_checkpoint(out_dir)
    if last is None:
        return "No healthy checkpoint was written yet: start again with a lower learning rate (lr_peak) or more warm-up."
    return f"The last healthy checkpoint is {last}: rerun to resume from it, with a lower learning rate."


def _has_state(p: Path) -> bool:
    return (p / STATE_JSON).exists() and (p / STATE_TENSORS).exists() or (p / LEGACY_STATE).exists()


def latest_checkpoint(out_dir: str | os.PathLike) -> Path | None:
    ckdir = Path(out_dir) / "checkpoints"
    pointer = ckdir / "latest"
    if pointer.exists():
        p = ckdir / pointer.read_text().strip()
        if p.parent == ckdir and _has_state(p):
            return p
    done = sorted(p for p in ckdir.glob("step_*") if p.is_dir() and _has_state(p))
    return done[-1] if done else None


def save_trainer_state(directory: Path, state: dict) -> None:
    """``state``: step, optimizer (a full optimizer state dict keyed by parameter name), scheduler,
    config, extra. Tensors to safetensors, the rest to JSON; RNG states of CPU and every GPU."""
    from safetensors.torch import save_file

    tensors, scalars = {}, {}
    for name, st in state["optimizer"]["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optimizer/{name}/{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(name, {})[k] = v
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, r in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = r
    meta = {"format": 1, "step": state["step"], "optimizer_param_groups": state["optimizer"]["param_groups"],
            "optimizer_scalars": scalars, "scheduler": state["scheduler"], "config": state["config"], "extra": state.get("extra", {})}
    save_file(tensors, str(directory / STATE_TENSORS))
    (directory / STATE_JSON).write_text(json.dumps(meta, indent=1))


def load_trainer_state(directory: Path) -> dict:
    """The dict ``save_trainer_state`` wrote, RNG states under ``rng`` (``torch``, ``cuda``: list)."""
    directory = Path(directory)
    if not (directory / STATE_JSON).exists() and (directory / LEGACY_STATE).exists():
        import pickle

        try:
            old = torch.load(directory / LEGACY_STATE, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
            raise ValueError(f"{directory / LEGACY_STATE}: not a trainer state that can be read safely (weights_only load refused "
                             f"it: {type(e).__name__}); delete {directory} to resume from the checkpoint before") from None
        return {"step": old["step"], "optimizer": old["optimizer"], "scheduler": old["scheduler"], "config": old.get("config", {}),
                "rng": {"torch": old["torch_rng"], "cuda": []}, "extra": {"windows_seen": old.get("windows_seen")}}
    from safetensors.torch import load_file

    try:
        meta = json.loads((directory / STATE_JSON).read_text())
        tensors = load_file(str(directory / STATE_TENSORS))
    except Exception as e:  # OSError, JSONDecodeError, safetensors' SafetensorError
        raise ValueError(f"{directory}: unreadable trainer state ({e}); delete this checkpoint folder to resume from the one before") from e
    state: dict = {name: dict(v) for name, v in meta["optimizer_scalars"].items()}
    for key, v in tensors.items():
        kind, _, rest = key.partition("/")
        if kind == "optimizer":
            name, _, k = rest.rpartition("/")
            state.setdefault(name, {})[k] = v
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["optimizer_param_groups"]]
    cuda = [tensors[f"rng/cuda/{i}"] for i in range(sum(k.startswith("rng/cuda/") for k in tensors))]
    return {"step": meta["step"], "optimizer": {"state": state, "param_groups": groups}, "scheduler": meta["scheduler"],
            "config": meta["config"], "rng": {"torch": tensors["rng/torch"], "cuda": cuda}, "extra": meta["extra"]}


def _write_checkpoint(out_dir: Path, step: int, model_sd, optim_sd, sched_sd, cfg: PretrainConfig, model_cfg, extra: dict, keep: int) -> Path:
    ckdir = out_dir / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    final = ckdir / f"step_{step:07d}"
    tmp = ckdir / f".step_{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        save_checkpoint(model_from_state_dict(model_cfg, model_sd), tmp)
        save_trainer_state(tmp, {"step": step, "optimizer": optim_sd, "scheduler": sched_sd, "config": _jsonable(asdict(cfg)), "extra": extra})
    except Exception as e:  # a full disk shows as OSError or safetensors' own error
        shutil.rmtree(tmp, ignore_errors=True)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else " ".join(str(e).split())[:120] or type(e).__name__
        raise OSError(f"writing checkpoint step {step} into {ckdir} failed ({reason}): free space or choose another --out-dir; "
                      f"{'the checkpoint before is intact' if latest_checkpoint(out_dir) else 'no checkpoint was written yet'}") from None
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer_tmp = ckdir / ".latest.tmp"
    pointer_tmp.write_text(final.name + "\n")
    os.replace(pointer_tmp, ckdir / "latest")
    for old in sorted(p for p in ckdir.glob("step_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _jsonable(x):
    return json.loads(json.dumps(x))


# Fields that change what a run computes: resuming with another value would silently mix two runs.
RUN_FIELDS = ("model", "model_overrides", "sources", "valid_regions", "valid_fasta", "window_tokens", "length_schedule", "max_n_fraction",
              "reverse_complement", "mask_prob", "mask_span", "batch_size", "tokens_per_step", "lr_init", "lr_peak", "warmup_steps",
              "adam_betas", "adam_eps", "weight_decay", "grad_clip", "precision", "seed")


def resume_differences(saved: dict, cfg: PretrainConfig) -> list[str]:
    """``field: saved -> now`` for the run-defining fields that differ from the checkpoint's recipe."""
    now = _jsonable(asdict(cfg))
    return [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in RUN_FIELDS if k in saved and saved.get(k) != now.get(k)]


def healthy(worst_loss: float, vocab_size: int) -> str | None:
    """None when the training loss allows a checkpoint; else why not (the weights are checked
    for finiteness by ``maybe_checkpoint``, over every rank's shard)."""
    if not math.isfinite(worst_loss):
        return f"the training loss became {worst_loss}"
    if worst_loss > math.log(vocab_size) + 2:
        return f"the training loss reached {worst_loss:.3g}, worse than a uniform guess (ln {vocab_size} = {math.log(vocab_size):.2f}) by over 2 nats"
    return None


# -- training ---------------------------------------------------------------------------------------------


def _pick_device(name: str, d: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        torch.cuda.set_device(d.local_rank)
        return torch.device("cuda", d.local_rank)
    return torch.device(name)


class _Log:
    FIELDS = ["step", "lr", "loss", "accuracy", "tokens", "tokens_per_s", "grad_norm", "valid_loss", "valid_accuracy", "valid_perplexity", "elapsed_s", "window_tokens"]

    def __init__(self, path: Path, enabled: bool):
        self.enabled = enabled
        self.path = path
        self.tb = None
        if enabled:
            new = not path.exists()
            self.fh = open(path, "a", newline="")
            self.w = csv.DictWriter(self.fh, fieldnames=self.FIELDS)
            if new:
                self.w.writeheader()
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(path.parent / "tensorboard"))
            except Exception:  # tensorboard is optional
                self.tb = None

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        self.w.writerow({k: row.get(k, "") for k in self.FIELDS})
        self.fh.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, row["step"])

    def close(self) -> None:
        if self.enabled:
            self.fh.close()
            if self.tb is not None:
                self.tb.close()


@dataclass
class _Run:
    """What the steps of one training run share (built by ``_setup``)."""

    cfg: PretrainConfig
    d: Dist
    device: torch.device
    model: NTModel  # the unwrapped model (its config, its parameters under DDP/FSDP)
    net: torch.nn.Module  # what runs forward/backward: the model, or its DDP/FSDP wrapping
    optimizer: torch.optim.Optimizer
    scheduler: Any
    tok: Tokenizer
    samplers: dict[int, WindowSampler]  # by window tokens (one per stage length)
    valid: list
    stages: list[Stage]
    use_bf16: bool
    resume: Path | None
    step: int = 0
    worst: float = -math.inf  # highest training loss since the last checkpoint
    micro: list = field(default_factory=list)  # this step's micro-batches (the checkpoint probe reads the first)
    t_start: float = field(default_factory=time.time)


def pretrain(cfg: PretrainConfig, on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run (or resume) pretraining; returns the final metrics. Rank 0 writes all files.
    ``on_step(step)`` is called after every optimizer step and its checkpoint."""
    run = _setup(cfg)
    log = _Log(Path(cfg.out_dir) / "log.csv", run.d.main)
    show = run.d.main and cfg.progress
    if cfg.max_minutes is not None:  # a time budget: the bar counts seconds (its ETA would otherwise be for max_steps)
        bar = progress_bar(total=round(cfg.max_minutes * 60), unit="s", desc="pretrain", enabled=show,
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total} s of the time budget{postfix}")
    else:
        bar = progress_bar(total=cfg.max_steps, initial=run.step, unit="step", desc="pretrain", enabled=show)
    last: dict = {}
    try:
        while run.step < cfg.max_steps:
            last = train_step(run)  # one optimizer step over G windows, accumulated over micro-batches and processes
            last.update(maybe_evaluate(run))  # held-out MLM loss every eval_every steps
            if run.step % cfg.log_every == 0 or "valid_loss" in last or run.step == cfg.max_steps:
                log.write(last)
            _show(bar, last, cfg)
            out_of_time = cfg.max_minutes is not None and (time.time() - run.t_start) / 60 > cfg.max_minutes
            maybe_checkpoint(run, force=out_of_time)  # every checkpoint_every steps, at the end, when time is up
            if on_step is not None:
                on_step(run.step)
            if out_of_time:
                if run.d.main:
                    print(f"pretrain: time budget of {cfg.max_minutes} min reached at step {run.step}", flush=True)
                break
    finally:
        bar.close()
        log.close()
    _save_final(run)
    return {**last, "step": run.step, "out_dir": str(cfg.out_dir)}


def _setup(cfg: PretrainConfig) -> _Run:
    """Processes, the model (fresh or resumed), optimizer and schedule, the data."""
    d = init_distributed("cuda" if cfg.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    device = _pick_device(cfg.device, d)
    out_dir = Path(cfg.out_dir)

    check_output(out_dir / "log.csv")  # writable, before any compute (every rank: none waits for a failed one)
    if d.main:  # a checkpoint a killed or full-disk run left half-written: never resumed from, removed
        for stale in (out_dir / "checkpoints").glob(".step_*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
    d.barrier()

    resume = latest_checkpoint(out_dir)
    state = None
    if resume is not None:
        state = load_trainer_state(resume)
        diffs = resume_differences(state["config"], cfg)
        if diffs:
            raise ValueError(f"{out_dir} holds a run with another recipe ({'; '.join(diffs)}); "
                             "give another --out-dir, or the same recipe to resume it")
        model = load(resume)
    else:
        model = load(cfg.model, seed=cfg.seed) if Path(cfg.model).exists() else _fresh(cfg)
    for wt in {cfg.window_tokens} | {int(e[1]) for e in cfg.length_schedule}:
        if wt > model.config.max_tokens:
            raise ValueError(f"window_tokens={wt} exceeds the model context ({model.config.max_tokens})")
    model.gradient_checkpointing = cfg.gradient_checkpointing
    model = model.to(device).train()
    use_bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported())
    net = wrap_model(model, cfg.strategy, d, device)
    optimizer = torch.optim.Adam(param_groups(net, cfg.weight_decay), lr=cfg.lr_peak, betas=cfg.adam_betas, eps=cfg.adam_eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, cfg) / cfg.lr_peak)
    start_step = 0
    if state is not None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(net, optimizer, state["optimizer"], options=StateDictOptions(full_state_dict=True))
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        if torch.cuda.is_available() and len(state["rng"]["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        start_step = state["step"]

    mc = model.config
    tok = model.tokenizer  # NT's 6-mers or NTv3's single bases (single-base masking)
    first, valid_iv = heldout_regions(cfg)
    run_stages = stages(cfg, d.world)
    samplers = {}
    for st in run_stages:
        if st.window_tokens not in samplers:
            samplers[st.window_tokens] = WindowSampler(cfg.sources, cfg.window_bp_for(tok, st.window_tokens), cfg.max_n_fraction,
                                                       cfg.reverse_complement, exclude=valid_iv, seed=cfg.seed)
    # held-out windows at the final length (window_tokens)
    valid = tile_windows(first, valid_iv, cfg.window_bp_for(tok), cfg.max_n_fraction, limit=cfg.eval_windows) if valid_iv else []
    if d.main:
        steps = [f"{'from step ' + str(st.start) + ': ' if cfg.length_schedule else ''}{st.G} windows x {st.window_tokens} tokens = "
                 f"{st.G * st.window_tokens:,} tokens/step (accumulation {st.accum})" for st in run_stages]
        print(f"pretrain: {mc.name} ({model.num_parameters():,} params) on {device}, world={d.world} ({cfg.strategy}), "
              + "; ".join(steps) + f", precision={'bf16' if use_bf16 else 'fp32'}, "
              f"{'resuming from ' + str(resume) if resume else 'from scratch'}", flush=True)
    return _Run(cfg, d, device, model, net, optimizer, scheduler, tok, samplers, valid, run_stages, use_bf16, resume, step=start_step)


def param_groups(net: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only (projections, embeddings), never on LayerNorm weights and
    biases, as nanoGPT's ``configure_optimizers`` does."""
    params = [p for p in net.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def train_step(run: _Run) -> dict[str, float]:
    """Step ``run.step + 1``: windows ``[step * G, (step + 1) * G)``, this process's share in
    micro-batches; the loss is the sum over masked tokens divided by the step's global count of
    masked tokens (so any number of processes computes the same gradient). Raises
    ``TrainingDiverged`` before the update when the loss or the gradient is not finite."""
    cfg, d, device = run.cfg, run.d, run.device
    t0 = time.time()
    st = stage_at(run.stages, run.step)
    base = windows_before(run.stages, run.step)
    sampler = run.samplers[st.window_tokens]
    run.micro = []
    for m in range(st.accum):
        first_idx = base + (m * d.world + d.rank) * st.batch_size
        windows = [sampler(first_idx + j) for j in range(st.batch_size)]
        run.micro.append(encode_windows(windows, run.tok, st.window_tokens, cfg.seed, first_idx, cfg.mask_prob, span=cfg.mask_span))
    n_sel = max(d.all_sum(torch.tensor(float(sum(int((lab >= 0).sum()) for _, lab, _ in run.micro)))).item(), 1.0)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    for m, (ids, labels, mask) in enumerate(run.micro):
        ids, labels, mask = ids.to(device), labels.to(device), mask.to(device)
        sel = labels >= 0
        # DDP: all-reduce gradients on the last micro-batch only.
        sync = run.net.no_sync() if (d.world > 1 and cfg.strategy == "ddp" and m < st.accum - 1) else contextlib.nullcontext()
        with sync, torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=run.use_bf16):
            logits = run.net(ids, mask, logits_at=sel).logits
            ce = F.cross_entropy(logits.float(), labels[sel], reduction="sum")
            # DDP/FSDP average gradients over processes; x world makes it a global sum / n_sel.
            (ce * d.world / n_sel).backward()
        loss_sum += ce.detach()
        correct += (logits.detach().argmax(-1) == labels[sel]).sum()
    params = run.net.parameters()
    if cfg.grad_clip and cfg.grad_clip > 0:
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    else:
        grad_norm = torch.sqrt(sum(p.grad.float().square().sum() for p in params if p.grad is not None))
    grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
    stats = d.all_sum(torch.stack([loss_sum.float(), correct.float()]).cpu())
    loss = stats[0].item() / n_sel
    if not (math.isfinite(loss) and math.isfinite(grad_norm)):
        raise TrainingDiverged(f"step {run.step + 1}: loss={loss} grad_norm={grad_norm}; stopped before the update. "
                               + _last_good(cfg.out_dir))
    run.worst = max(run.worst, loss)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    run.step += 1
    step_tokens = st.G * st.window_tokens
    return {"step": run.step, "lr": run.scheduler.get_last_lr()[0], "loss": loss, "accuracy": stats[1].item() / n_sel,
            "window_tokens": st.window_tokens, "tokens": tokens_before(run.stages, run.step), "tokens_per_s": step_tokens / (time.time() - t0), "grad_norm": grad_norm,
            "elapsed_s": time.time() - run.t_start}


def maybe_evaluate(run: _Run) -> dict[str, float]:
    """Masked-token loss on the held-out windows every ``eval_every`` steps and at the last step."""
    cfg = run.cfg
    if not run.valid or not (run.step % cfg.eval_every == 0 or run.step == cfg.max_steps):
        return {}
    sharded = cfg.strategy == "fsdp" and run.d.world > 1  # FSDP: every rank evaluates through the sharded module, fp32
    ev = evaluate_mlm(run.net if sharded else run.model, run.valid, run.tok, cfg.window_tokens, device=run.device,
                      dtype=torch.bfloat16 if run.use_bf16 and not sharded else None)
    return {"valid_loss": ev["loss"], "valid_accuracy": ev["accuracy"], "valid_perplexity": ev["perplexity"]}


def maybe_checkpoint(run: _Run, force: bool = False) -> Path | None:
    """A checkpoint every ``checkpoint_every`` steps, at the last step and when ``force``d, if the
    run is healthy (``healthy``): the weights about to be saved were updated after the last
    measured loss, so they are measured too, on this step's first micro-batch in eval mode (no
    dropout, no RNG drawn). Raises ``TrainingDiverged`` instead of writing a diverged checkpoint."""
    cfg, d, device = run.cfg, run.d, run.device
    if not (force or run.step % cfg.checkpoint_every == 0 or run.step == cfg.max_steps):
        return None
    ids, labels, mask = (t.to(device) for t in run.micro[0])
    sel = labels >= 0
    run.net.eval()
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=run.use_bf16):
        ce = F.cross_entropy(run.net(ids, mask, logits_at=sel).logits.float(), labels[sel], reduction="sum")
    run.net.train()
    probe = d.all_sum(torch.stack([ce.detach().float().cpu(), torch.tensor(float(sel.sum()))]))
    local_bad = sum(int(not torch.isfinite(p.to_local() if hasattr(p, "to_local") else p).all()) for p in run.net.parameters())
    now = probe[0].item() / max(probe[1].item(), 1.0)
    reason = healthy(now if not math.isfinite(now) else max(run.worst, now), run.model.config.vocab_size)
    if reason is None and d.all_sum(torch.tensor(float(local_bad))).item() > 0:
        reason = "non-finite weights"
    if reason is not None:
        raise TrainingDiverged(f"step {run.step}: {reason}; checkpoint not written. " + _last_good(cfg.out_dir))
    run.worst = -math.inf
    msd, osd = _full_state(run.net, run.optimizer)  # collective under FSDP: every rank, after the shared verdict
    path = None
    if d.main:
        path = _write_checkpoint(Path(cfg.out_dir), run.step, msd, osd, run.scheduler.state_dict(), cfg, run.model.config,
                                 {"windows_seen": windows_before(run.stages, run.step)}, cfg.keep_checkpoints)
    d.barrier()
    return path


def _show(bar, last: dict, cfg: PretrainConfig) -> None:
    post = dict(loss=f"{last['loss']:.3f}", tok_s=f"{last['tokens_per_s']:,.0f}")
    if cfg.max_minutes is not None:  # seconds of the budget on the bar, steps beside it
        bar.n = min(round(last["elapsed_s"]), bar.total)
        post = {"step": f"{last['step']}/{cfg.max_steps}", **post}
    else:
        bar.update(1)
    bar.set_postfix(post)


def _save_final(run: _Run) -> None:
    """The trained model in HF layout (``out_dir/model``) and what the data sources skipped."""
    msd, _ = _full_state(run.net)
    if run.d.main:
        out = Path(run.cfg.out_dir) / "model"
        save_checkpoint(model_from_state_dict(run.model.config, msd), out)
        rejected = sum((sp.rejected for sp in run.samplers.values()), Counter())
        if rejected:
            print(f"pretrain: windows rejected while sampling: {dict(rejected)}", flush=True)
        for k, s in enumerate(next(iter(run.samplers.values())).sources):  # each stage's sampler reads the sources: its counts add up
            per_stage = [sp.sources[k].variants.stats for sp in run.samplers.values() if sp.sources[k].variants is not None]
            applied, skipped = sum(st.applied for st in per_stage), sum((st.skipped for st in per_stage), Counter())
            if applied or skipped:
                print(f"pretrain: {s.name} haplotypes: {applied} variants applied, skipped {dict(skipped)}", flush=True)
        print(f"pretrain: done at step {run.step}; model in {out}", flush=True)
    run.d.barrier()


def _fresh(cfg: PretrainConfig):
    import dataclasses

    if cfg.model in ntv3.PRESETS:
        return ntv3.build(dataclasses.replace(ntv3.PRESETS[cfg.model], **cfg.model_overrides), seed=cfg.seed)
    mc = get_preset(cfg.model).replace(**cfg.model_overrides) if cfg.model_overrides else get_preset(cfg.model)
    return build(mc, seed=cfg.seed)


def model_from_state_dict(config, state_dict: dict):
    """A model of ``config``'s family holding ``state_dict`` (NT, or NTv3)."""
    if getattr(config, "family", "nt") == "ntv3":
        return NTv3Model.from_state_dict(config, state_dict)
    return NTModel.from_state_dict(config, state_dict)
