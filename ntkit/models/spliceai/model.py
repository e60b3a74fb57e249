"""SpliceAI (Jaganathan et al., Cell 2019): acceptor and donor probabilities per base from the
bases alone, by a stack of dilated residual convolutions; the published model is an ensemble of
five such networks (SpliceAI-10k: 5,000 bases of context each side of every predicted base).

One network (``SpliceAINet``), as the published Keras graph: a 1x1 convolution of the one-hot
bases to ``channels``; a 1x1 convolution of that as the first term of a *skip* sum; residual units
(BatchNorm-ReLU-dilated Conv, twice, plus the unit's input), and after every fourth unit a 1x1
convolution of the running activations added to the skip sum; a 1x1 convolution of the skip sum
to 3 classes (neither, acceptor, donor) and a softmax. Keras pads every convolution ('same') and
crops ``flank`` bases each side at the end; the receptive field is exactly the crop, so the kept
outputs never see the padding. Here the convolutions are unpadded ('valid'): each layer computes
only the positions the output needs (about two thirds of the padded work), with the same values.

``SpliceAI`` averages its networks' probabilities (the ensemble), channels-last as the rest of
ntkit: ``forward(x [B, L, 4]) -> SpliceAIOutput(probabilities [B, L - 2 * flank, 3])``.

Variants change a window in a few bases, and a convolution spreads that change by its reach per
layer: ``SpliceAINet.trace`` keeps a reference window's activations and ``SpliceAINet.patched``
computes an alternative allele's outputs from them, each layer only where the allele changed
something that the outputs need (the idea of fastISM, Nair et al. 2022): a fraction of a full
forward per allele, with the same values up to float rounding.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ntkit.models.checkpoint import CheckpointError, check_tensors
from ntkit.models.nt.model import seeded
from ntkit.runtime.jobs import atomic_output, write_text_atomic

CLASSES = ("neither", "acceptor", "donor")


@dataclass
class SpliceAIConfig:
    """The architecture: ``kernels`` / ``dilations`` of the residual units, ``channels``, a dense
    tap into the skip sum every ``dense_every`` units (and after the last), ``n_models`` networks
    in the ensemble, BatchNorm ``eps`` (Keras' 1e-3)."""

    name: str = "spliceai-10k"
    channels: int = 32
    kernels: tuple[int, ...] = (11,) * 8 + (21,) * 4 + (41,) * 4
    dilations: tuple[int, ...] = (1,) * 4 + (4,) * 4 + (10,) * 4 + (25,) * 4
    dense_every: int = 4
    n_models: int = 5
    eps: float = 1e-3
    model_type: str = field(default="spliceai", init=False)

    def __post_init__(self):
        self.kernels, self.dilations = tuple(int(k) for k in self.kernels), tuple(int(d) for d in self.dilations)
        if len(self.kernels) != len(self.dilations) or not self.kernels:
            raise ValueError(f"{len(self.kernels)} kernels for {len(self.dilations)} dilations")
        if any(k % 2 == 0 or k < 1 for k in self.kernels):
            raise ValueError(f"kernels must be odd (centred convolutions): {self.kernels}")
        if self.channels < 1 or self.n_models < 1 or self.dense_every < 1:
            raise ValueError("channels, n_models and dense_every must be >= 1")

    @property
    def reaches(self) -> list[int]:
        """Bases each side that one convolution of each unit adds to the receptive field."""
        return [d * (k - 1) // 2 for k, d in zip(self.kernels, self.dilations)]

    @property
    def flank(self) -> int:
        """Bases of context each side of a predicted base (SpliceAI-10k: 5,000): the crop."""
        return 2 * sum(self.reaches)

    @property
    def taps(self) -> list[int]:
        """Units after which the running activations join the skip sum (1-based counts)."""
        n = len(self.kernels)
        return [i for i in range(1, n + 1) if i % self.dense_every == 0 or i == n]

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update(kernels=list(self.kernels), dilations=list(self.dilations), flank=self.flank)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SpliceAIConfig":
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = set(d) - known - {"model_type", "flank", "architectures", "torch_dtype"}
        if unknown:
            raise ValueError(f"unknown SpliceAI config fields {sorted(unknown)}")
        return cls(**{k: v for k, v in d.items() if k in known})


PRESETS = {
    "spliceai-10k": SpliceAIConfig(),
    # CPU-sized, for tests and examples: 2 networks, 4 units, 100 bases of context each side.
    "spliceai-tiny": SpliceAIConfig(name="spliceai-tiny", channels=8, kernels=(11, 11, 11, 11), dilations=(1, 1, 4, 4),
                                    dense_every=2, n_models=2),
}


@dataclass
class SpliceAIOutput:
    """``probabilities`` [B, L - 2 * flank, 3] (neither, acceptor, donor) of the bases
    [flank, L - flank) of each input; ``per_model`` [n_models, B, L - 2 * flank, 3] when asked."""

    probabilities: torch.Tensor
    per_model: torch.Tensor | None = None


class ResidualUnit(nn.Module):
    """BatchNorm-ReLU-Conv twice (dilated, unpadded) plus the input, cropped to the output."""

    def __init__(self, channels: int, kernel: int, dilation: int, eps: float):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm1d(channels, eps=eps), nn.BatchNorm1d(channels, eps=eps)
        self.conv1 = nn.Conv1d(channels, channels, kernel, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, kernel, dilation=dilation)
        self.reach = dilation * (kernel - 1) // 2

    def first(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv1(F.relu(self.bn1(h)))

    def second(self, a: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.bn2(a)))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        r = self.reach
        return h[..., 2 * r : h.shape[-1] - 2 * r] + self.second(self.first(h))


class SpliceAINet(nn.Module):
    """One network of the ensemble (see the module docstring); channels-first inside:
    ``forward(x [B, 4, L]) -> logits [B, 3, L - 2 * flank]``."""

    def __init__(self, cfg: SpliceAIConfig):
        super().__init__()
        c = cfg.channels
        self.cfg = cfg
        self.stem = nn.Conv1d(4, c, 1)
        self.skip = nn.Conv1d(c, c, 1)
        self.units = nn.ModuleList(ResidualUnit(c, k, d, cfg.eps) for k, d in zip(cfg.kernels, cfg.dilations))
        self.dense = nn.ModuleList(nn.Conv1d(c, c, 1) for _ in cfg.taps)
        self.out = nn.Conv1d(c, len(CLASSES), 1)
        self.flank = cfg.flank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trace(x, keep=False)[-1]

    def trace(self, x: torch.Tensor, keep: bool = True):
        """``(hs, as_, logits)``: the activations of a reference window for ``patched`` (``hs[i]``
        the input of unit ``i`` and ``hs[-1]`` the last unit's output, ``as_[i]`` unit ``i``'s
        first convolution; each spans the input positions [offset, L - offset) of its layer) and
        the logits. ``keep=False`` keeps nothing but the logits."""
        h = self.stem(x)
        skip, s_off, off = self.skip(h), 0, 0
        hs, as_ = [h] if keep else None, [] if keep else None
        taps = iter(self.dense)
        for i, unit in enumerate(self.units, 1):
            a = unit.first(h)
            h = h[..., 2 * unit.reach : h.shape[-1] - 2 * unit.reach] + unit.second(a)
            off += 2 * unit.reach
            if keep:
                as_.append(a)
                hs.append(h)
            if i in self.cfg.taps:
                cut = off - s_off
                skip = skip[..., cut : skip.shape[-1] - cut] + next(taps)(h)
                s_off = off
        logits = self.out(skip)
        return (hs, as_, logits) if keep else (logits,)

    def patched(self, ref: tuple, tile: torch.Tensor, p: torch.Tensor, dl: torch.Tensor, x_patch: torch.Tensor,
                radius: int) -> torch.Tensor:
        """Logits [B, 3, A + 2 * radius] of alternative windows at the positions [p - radius, p + A +
        radius) of each (alternative) window, computed from a reference ``trace`` (of a batch of
        reference windows ``ref``) and the alleles' bases: ``tile`` [B] which reference window,
        ``p`` [B] where the allele starts in it, ``dl`` [B] its reference length minus ``A``,
        ``x_patch`` [B, 4, A] the alternative bases (A the same for the batch).

        Positions of an alternative window: before ``p`` those of the reference; from ``p + A`` on,
        reference positions ``+ dl``. At each layer the alternative differs from the reference at
        most ``offset`` (its receptive field so far) from the allele, and the outputs need at most
        ``radius + flank - offset``: the layer is computed on the smaller of the two radii around
        the allele, every other value read from the reference."""
        hs, as_, _ = ref
        A, F_ = x_patch.shape[-1], self.flank
        need = lambda off: radius + F_ - off  # noqa: E731  (radius the outputs need at a layer of this offset)
        h = self.stem(x_patch)  # the changed region of the input: the allele's bases (offset 0)
        h_m, off = 0, 0
        skip_parts = [(self.skip, h, 0, 0, 0)]  # (1x1 conv, patch, its radius, offset, index in hs)
        taps = iter(self.dense)
        for i, unit in enumerate(self.units, 1):
            r = unit.reach
            a_m = min(off + r, need(off + r))
            src = _gather(hs[i - 1], off, h, h_m, tile, p, dl, A, a_m + r)
            a = unit.first(src)  # radius a_m
            b_m = min(off + 2 * r, need(off + 2 * r))
            src = _gather(as_[i - 1], off + r, a, a_m, tile, p, dl, A, b_m + r)
            b = unit.second(src)
            h = _gather(hs[i - 1], off, h, h_m, tile, p, dl, A, b_m) + b
            h_m, off = b_m, off + 2 * r
            if i in self.cfg.taps:
                skip_parts.append((next(taps), h, h_m, off, i))
        skip = 0
        for conv, patch, m, o, k in skip_parts:
            skip = skip + conv(_gather(hs[k], o, patch, m, tile, p, dl, A, radius))
        return self.out(skip)


def _gather(ref: torch.Tensor, off: int, patch: torch.Tensor, m: int, tile, p, dl, A: int, radius: int) -> torch.Tensor:
    """Activations [B, C, A + 2 * radius] of alternative windows at [p - radius, p + A + radius):
    ``patch`` [B, C, A + 2 * m] holds them at [p - m, p + A + m); beyond it they are the
    reference layer's ``ref`` [T, C, Lr] (positions from ``off``) of window ``tile``, those after
    the allele shifted by ``dl``."""
    if radius <= m:
        return patch[..., m - radius : m + A + radius]
    e = radius - m
    ar = torch.arange(e, device=p.device)[None, :]
    pos = torch.cat([p[:, None] - radius + ar, p[:, None] + A + m + ar + dl[:, None]], 1) - off  # [B, 2e] reference positions
    chans = torch.arange(ref.shape[1], device=p.device)[None, :, None]
    g = ref[tile[:, None, None], chans, pos[:, None, :]]  # [B, C, 2e]
    return torch.cat([g[..., :e], patch, g[..., e:]], 2)


class SpliceAI(nn.Module):
    """The ensemble (see the module docstring): ``forward(x [B, L, 4])``, one-hot bases in the
    order A, C, G, T (N: all zeros), channels-last."""

    def __init__(self, cfg: SpliceAIConfig | None = None):
        super().__init__()
        self.config = cfg or SpliceAIConfig()
        self.nets = nn.ModuleList(SpliceAINet(self.config) for _ in range(self.config.n_models))
        self.flank = self.config.flank
        self.name_or_path = self.config.name
        self.licence = None  # where the weights come from and their licence (published weights: CC BY-NC 4.0)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def forward(self, x: torch.Tensor, per_model: bool = False) -> SpliceAIOutput:
        if x.shape[1] <= 2 * self.flank:
            raise ValueError(f"inputs of {x.shape[1]} bases: SpliceAI predicts the bases {self.flank} from each end; "
                             f"give more than {2 * self.flank}")
        x = x.transpose(1, 2).to(next(self.parameters()).dtype)
        probs = torch.stack([net(x).softmax(1) for net in self.nets])  # [M, B, 3, N]
        out = probs.mean(0).transpose(1, 2)
        return SpliceAIOutput(out, probs.transpose(2, 3) if per_model else None)

    @torch.no_grad()
    def alternative_probabilities(self, x_ref: torch.Tensor, tile: torch.Tensor, p: torch.Tensor, dl: torch.Tensor,
                                  x_patch: torch.Tensor, radius: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(reference probabilities [T, Lr - 2 * flank, 3] of ``x_ref`` [T, Lr, 4], alternative
        probabilities [B, A + 2 * radius, 3] at [p - radius, p + A + radius) of each allele's
        window): see ``SpliceAINet.patched``; ``x_patch`` [B, A, 4] the alleles' bases."""
        dtype = next(self.parameters()).dtype
        xr, xp = x_ref.transpose(1, 2).to(dtype), x_patch.transpose(1, 2).to(dtype)
        ref_p, alt_p = 0, 0
        for net in self.nets:  # one network at a time: a trace is the memory of this method
            tr = net.trace(xr)
            ref_p = ref_p + tr[-1].softmax(1)
            alt_p = alt_p + net.patched(tr, tile, p, dl, xp, radius).softmax(1)
            del tr
        n = len(self.nets)
        return (ref_p / n).transpose(1, 2), (alt_p / n).transpose(1, 2)


def build(config: SpliceAIConfig | str = "spliceai-10k", seed: int | None = 0, device=None, dtype=None) -> SpliceAI:
    """A SpliceAI architecture with random weights (seeded); published weights: ``load_published``."""
    cfg = dataclasses.replace(PRESETS[config]) if isinstance(config, str) else config
    model = seeded(lambda: SpliceAI(cfg), seed)
    for net in model.nets:  # running statistics of a fresh BatchNorm are 0 / 1: random ones exercise them
        g = torch.Generator().manual_seed(0 if seed is None else seed)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.to(device=device, dtype=dtype).eval()


# -- the HF layout (a SpliceAI-architecture model trained or converted by ntkit) --------------------------------------


def is_spliceai_config(d: dict) -> bool:
    return d.get("model_type") == "spliceai"


def load_folder(directory: Path, config: dict, tensors: dict[str, torch.Tensor], device=None, dtype=None,
                check_finite: bool = True) -> SpliceAI:
    try:
        cfg = SpliceAIConfig.from_dict(config)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{directory / 'config.json'}: {e}") from None
    with torch.device("meta"):
        expected = SpliceAI(cfg).state_dict()
    check_tensors(directory, tensors, expected, lambda k: k, check_finite)
    model = SpliceAI(cfg)
    model.load_state_dict(tensors)
    model.name_or_path = str(directory)
    if (directory / "LICENSE.txt").exists():  # derived from the published weights: their licence travels with them
        model.licence = (directory / "LICENSE.txt").read_text().strip()
    return model.to(device=device, dtype=dtype).eval()


def save_folder(model: SpliceAI, path: str | os.PathLike, tokenizer: bool = True) -> Path:
    """``config.json`` + ``model.safetensors``, atomically per file (no tokenizer: SpliceAI reads one-hot bases)."""
    from safetensors.torch import save_file

    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    with atomic_output(d / "model.safetensors") as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(tmp), metadata={"format": "pt"})
    write_text_atomic(d / "config.json", json.dumps(model.config.to_dict(), indent=2, sort_keys=True) + "\n")
    if model.licence:  # weights derived from the published ones keep their licence beside them
        write_text_atomic(d / "LICENSE.txt", model.licence + "\n")
    return d
