"""Checkpoint folders in the Hugging Face layout, for every model family: ``config.json`` + weights
(``model.safetensors`` / ``pytorch_model.bin``, single or sharded with an ``*.index.json``) + the
tokenizer's files; Hugging Face hub names through the local cache; presets by name.

``load`` / ``load_checkpoint`` / ``save_checkpoint`` find the family of a folder, a preset or a
model in ``ntkit.models.registry``; each family reads and writes its own layout (``ntkit.models.nt``:
ESM's names, ``ntkit.models.ntv3``: ``core.*``, ...). Shared here: reading weight files (no pickle
beyond ``torch.load(weights_only=True)``; a shard index cannot name files outside its folder),
checking tensors against the model a config implies, and the mark of a preset's random weights
(``RANDOM_INIT``): a folder written from one warns at every load.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from safetensors.torch import load_file

from ntkit.models import registry
from ntkit.runtime.jobs import write_text_atomic

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
RANDOM_INIT = "ntkit_random_init.json"  # in a folder written from a preset's random weights (`ntkit convert --random-init`)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, corrupt, truncated or not a model ntkit knows."""


# -- files -----------------------------------------------------------------------------------------


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # safetensors, pickle and zip errors all mean the same thing here
        raise CheckpointError(f"cannot read {path}: corrupt or truncated file ({type(e).__name__}: {e})") from e


def read_tensors(directory: Path) -> dict[str, torch.Tensor]:
    for name in WEIGHT_FILES:
        path = directory / name
        if not path.exists():
            continue
        if name.endswith(".index.json"):
            try:
                weight_map = json.loads(path.read_text())["weight_map"]
            except Exception as e:
                raise CheckpointError(f"cannot parse shard index {path}: {e}") from e
            tensors: dict[str, torch.Tensor] = {}
            root = directory.resolve()
            shards = sorted(set(weight_map.values()), key=str)
            for shard in shards:
                # An index names files of its own folder; anything else (../, /abs, a link out) is refused.
                if not isinstance(shard, str) or Path(shard).is_absolute() or root not in (root / shard).resolve().parents:
                    raise CheckpointError(f"{path}: shard {shard!r} lies outside the checkpoint folder; refusing to read it")
            for shard in shards:
                tensors.update(_read_weight_file(directory / shard))
            missing = set(weight_map) - set(tensors)
            if missing:
                raise CheckpointError(f"{len(missing)} tensor(s) listed in {path.name} are missing from its shards, e.g. {sorted(missing)[:3]}")
            return tensors
        return _read_weight_file(path)
    raise CheckpointError(f"no weights in {directory} (looked for {', '.join(WEIGHT_FILES)})")


def check_tensors(directory: Path, native: dict, expected: dict, hf_name, check_finite: bool = True,
                  unexpected: str | None = "this model") -> None:
    """The loaded tensors against the model's state dict: none missing, (with ``unexpected``, a
    description of the model) none extra, shapes as the config implies, finite values. Errors name
    the folder and the tensor under its HF name (``hf_name``)."""
    missing = sorted(set(expected) - set(native))
    if missing:
        raise CheckpointError(f"{directory}: {len(missing)} tensor(s) missing, e.g. {[hf_name(m) for m in missing[:5]]}")
    extra = sorted(set(native) - set(expected)) if unexpected else []
    if extra:
        raise CheckpointError(f"{directory}: {len(extra)} tensor(s) not part of {unexpected}, e.g. {[hf_name(m) for m in extra[:5]]}")
    for k, v in native.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(f"{directory}: {hf_name(k)} has shape {tuple(v.shape)}, config implies {tuple(expected[k].shape)}")
        if check_finite and v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{directory}: {hf_name(k)} contains NaN or Inf values")


def load_checkpoint(path: str | os.PathLike, device=None, dtype: torch.dtype | None = None, check_finite: bool = True):
    """A checkpoint folder of any registered family, in eval mode (as transformers' ``from_pretrained``).
    A folder that holds a preset's random weights (``RANDOM_INIT``) loads with a warning, every
    time: it is not a trained model."""
    directory = Path(path)
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a checkpoint directory")
    cfg_path = directory / "config.json"
    try:
        config = json.loads(cfg_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{cfg_path} not found") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {e}") from e
    if not isinstance(config, dict):
        raise CheckpointError(f"{cfg_path}: not a JSON object")
    try:
        family = registry.for_config(config, str(cfg_path))
    except ValueError as e:
        raise CheckpointError(str(e)) from None
    model = family.load_folder(directory, config, read_tensors(directory), device=device, dtype=dtype, check_finite=check_finite)
    marker = directory / RANDOM_INIT
    if marker.exists():
        try:
            model.random_init = json.loads(marker.read_text())
        except ValueError:
            model.random_init = {"preset": "?"}
        warnings.warn(f"{path}: random weights of preset {model.random_init.get('preset', '?')} (written by `ntkit convert "
                      "--random-init`), not a trained model: its outputs mean nothing biologically", stacklevel=2)
    return model.eval()


def save_checkpoint(model, path: str | os.PathLike, safe_serialization: bool = True, tokenizer: bool = True, *,
                    extra_tensors: dict[str, torch.Tensor] | None = None, extra_config: dict | None = None) -> Path:
    """Write a model's folder in its family's HF layout: ``config.json``, weights and (by default)
    the tokenizer files. ``extra_tensors`` (a task head's, ``classifier.*``: ignored when the folder
    loads as a plain model) join the weights; ``extra_config`` the config (``ntkit.hf``'s task
    settings); families that cannot hold them refuse them.

    Each file is written under a temporary name and renamed, so an interrupted save never leaves a
    half-written file behind under the final name.
    """
    model = getattr(model, "unconditioned", model)  # a conditioned view (NTv3's backbone(species)) saves its model
    family = registry.for_model(model)
    directory = Path(family.save_folder(model, Path(path), safe_serialization=safe_serialization, tokenizer=tokenizer,
                                        extra_tensors=extra_tensors, extra_config=extra_config))
    marker = directory / RANDOM_INIT
    if getattr(model, "random_init", None):  # a preset's random weights stay marked as such in every copy
        write_text_atomic(marker, json.dumps(model.random_init) + "\n")
    else:
        marker.unlink(missing_ok=True)
    return directory


# -- hub and presets -------------------------------------------------------------------------------


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def hub_snapshot(repo_id: str, revision: str | None = None, *, cache_dir: str | os.PathLike | None = None,
                 token: str | None = None) -> Path:
    """The local folder of a Hugging Face hub model (``InstaDeepAI/nucleotide-transformer-v2-50m-multi-species``)
    through ``huggingface_hub``: its cache first, a download otherwise (``HF_HUB_OFFLINE=1``: the
    cache only), ``revision`` a branch, tag or commit, the token from the usual places unless given.
    Weights as safetensors when the repository has them, else ``pytorch_model*.bin`` (read with
    ``weights_only``)."""
    meta = ["config.json", "vocab.txt", "vocab.json", "tokenizer_config.json", "special_tokens_map.json"]
    kw = {"revision": revision, "cache_dir": cache_dir, "token": token}
    try:
        path = Path(snapshot_download(repo_id, allow_patterns=meta + ["*.safetensors", "*.safetensors.index.json"], **kw))
        if not any(path.glob("*.safetensors")):
            path = Path(snapshot_download(repo_id, allow_patterns=meta + ["pytorch_model*.bin", "*.bin.index.json"], **kw))
    except Exception as e:  # offline without a cached copy, unknown repository, no access ...
        raise CheckpointError(f"{repo_id}: not a checkpoint directory, a preset or a reachable hub model ({type(e).__name__}: "
                              f"{' '.join(str(e).split())[:300]})") from None
    return path


def is_preset(name: str | os.PathLike) -> bool:
    """``name`` is a preset of some family (and not a path that exists)."""
    return registry.for_preset(str(name)) is not None and not Path(name).exists()


def load(path_or_preset: str | os.PathLike, device=None, dtype: torch.dtype | None = None, seed: int = 0,
         revision: str | None = None, *, cache_dir: str | os.PathLike | None = None, token: str | None = None):
    """A model in eval mode: a checkpoint folder of any family, a Hugging Face hub model by name
    (``org/name``, see ``hub_snapshot``: ``revision``, ``cache_dir``, ``token``), or a preset
    (``nt-v2-50m``, ``ntv3-8m-pre`` ...) with random weights (seeded; a warning says so)."""
    p = Path(path_or_preset)
    named = str(path_or_preset) + (f"@{revision}" if revision else "")  # what the user named (provenance)
    opened = registry.open_named(path_or_preset, device=device, dtype=dtype)  # a family's own name or folder (SpliceAI's .h5)
    if opened is not None:
        return opened.eval()
    if p.exists():
        model = load_checkpoint(p, device=device, dtype=dtype)
    elif HUB_ID.fullmatch(str(path_or_preset)):
        folder = hub_snapshot(str(path_or_preset), revision, cache_dir=cache_dir, token=token)
        model = load_checkpoint(folder, device=device, dtype=dtype)
        named = f"{path_or_preset}@{folder.name}"  # the commit of the snapshot read, whatever revision named it
    else:
        family = registry.for_preset(str(path_or_preset))
        if family is None:
            raise CheckpointError(f"{path_or_preset!s} is neither a checkpoint directory, a hub model (org/name) nor a preset "
                                  f"(presets: {', '.join(registry.presets())})")
        warnings.warn(f"{path_or_preset}: randomly initialised weights (seed={seed}); pass a checkpoint directory for trained weights",
                      stacklevel=2)
        model = family.build(str(path_or_preset), seed=seed, device=device, dtype=dtype).eval()
        model.random_init = {"preset": str(path_or_preset), "seed": seed}
    model.name_or_path = named
    return model
