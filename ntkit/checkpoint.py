"""Hugging Face NT checkpoints: ``config.json`` + ``model.safetensors`` / ``pytorch_model.bin``
(single or sharded with an ``*.index.json``), with the state-dict names of ``EsmForMaskedLM``.

ntkit's own module names are shorter; ``HF_NAMES`` is the one place that maps between the two.
On save, tensors that HF's layout has but NT never uses are written as zeros so that HF code loads
the file without missing keys: the contact head (``esm.contact_head.regression``) and, for rotary
(v2) models, the unused ``esm.embeddings.position_embeddings`` table of NT's remote code. The v2
rotary frequencies are written per layer (``...attention.self.rotary_embeddings.inv_freq``) as
NT v2 checkpoints store them; recent ``transformers`` versions read that form too.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import torch

from .config import NTConfig, get_preset
from .model import NTModel, build

# ntkit name -> HF name. Per-block modules are under layers.{i} / esm.encoder.layer.{i}.
TOP_NAMES = {
    "embed_tokens": "esm.embeddings.word_embeddings",
    "embed_positions": "esm.embeddings.position_embeddings",
    "final_norm": "esm.encoder.emb_layer_norm_after",
    "lm_head.dense": "lm_head.dense",
    "lm_head.norm": "lm_head.layer_norm",
    "lm_head.decoder": "lm_head.decoder",
}
LAYER_NAMES = {
    "attn_norm": "attention.LayerNorm",
    "attn.q_proj": "attention.self.query",
    "attn.k_proj": "attention.self.key",
    "attn.v_proj": "attention.self.value",
    "attn.out_proj": "attention.output.dense",
    "ffn_norm": "LayerNorm",
    "ffn.fc1": "intermediate.dense",
    "ffn.fc2": "output.dense",
}
_TOP_BACK = {v: k for k, v in TOP_NAMES.items()}
_LAYER_BACK = {v: k for k, v in LAYER_NAMES.items()}
_LEGACY_NORM = {"gamma": "weight", "beta": "bias"}
# HF tensors that NT never uses: dropped on load.
_IGNORED = re.compile(
    r"(esm\.contact_head\..*|.*position_ids|.*rotary_embeddings\.inv_freq|esm\.pooler\..*|classifier\..*)$"
)
_INV_FREQ = re.compile(r"esm\.(encoder\.layer\.\d+\.attention\.self\.)?rotary_embeddings\.inv_freq$")

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: missing, corrupt, truncated or not an NT model."""


def to_hf_name(name: str) -> str:
    if name == "lm_head.bias":
        return name
    module, leaf = name.rsplit(".", 1)
    m = re.fullmatch(r"layers\.(\d+)\.(.+)", module)
    if m and m.group(2) in LAYER_NAMES:
        return f"esm.encoder.layer.{m.group(1)}.{LAYER_NAMES[m.group(2)]}.{leaf}"
    if module in TOP_NAMES:
        return f"{TOP_NAMES[module]}.{leaf}"
    raise KeyError(f"no HF name for ntkit parameter {name!r}")


def from_hf_name(name: str) -> str | None:
    if name == "lm_head.bias":
        return name
    module, leaf = name.rsplit(".", 1)
    if module.endswith("LayerNorm") or module.endswith("layer_norm"):
        leaf = _LEGACY_NORM.get(leaf, leaf)  # transformers>=5 saves LayerNorm.gamma / .beta
    m = re.fullmatch(r"esm\.encoder\.layer\.(\d+)\.(.+)", module)
    if m and m.group(2) in _LAYER_BACK:
        return f"layers.{m.group(1)}.{_LAYER_BACK[m.group(2)]}.{leaf}"
    if module in _TOP_BACK:
        return f"{_TOP_BACK[module]}.{leaf}"
    return None


# -- config.json -----------------------------------------------------------------------------------


def hf_config(cfg: NTConfig, dtype: torch.dtype = torch.float32) -> dict:
    d = {
        "architectures": ["EsmForMaskedLM"],
        "model_type": "esm",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "intermediate_size": cfg.ffn_size,
        "max_position_embeddings": cfg.max_tokens + 2,
        "position_embedding_type": "absolute" if cfg.position_embedding == "learned" else "rotary",
        "token_dropout": cfg.token_dropout,
        "emb_layer_norm_before": False,
        "layer_norm_eps": cfg.layer_norm_eps,
        "hidden_dropout_prob": cfg.hidden_dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "initializer_range": cfg.initializer_range,
        "pad_token_id": cfg.pad_token_id,
        "mask_token_id": cfg.mask_token_id,
        "tie_word_embeddings": False,
        "is_folding_model": False,
        "esmfold_config": None,
        "vocab_list": None,
        "use_cache": False,
        "torch_dtype": str(dtype).removeprefix("torch."),
        "ntkit": {"name": cfg.name, "ffn_activation": cfg.ffn_activation, "tokenizer": cfg.tokenizer},
    }
    if cfg.position_embedding == "rotary":
        d["rope_theta"] = cfg.rope_theta
    if cfg.ffn_activation == "swiglu":
        # NT v2 is not stock ESM (SwiGLU, no FFN bias): transformers loads it through NT's remote
        # code, named in the "repo--module.Class" form so that a local folder finds it on the hub.
        d["add_bias_fnn"] = cfg.ffn_bias
        repo = NT_V2_HUB.get(cfg.name, NT_V2_HUB["nt-v2-50m"])
        d["auto_map"] = {k: f"{repo}--{v}" for k, v in NT_V2_AUTO_MAP.items()}
    else:
        d["hidden_act"] = "gelu"  # v1: stock ESM
    return d


# NT v2 remote code (each repository of the v2 family holds the same esm_config.py / modeling_esm.py).
NT_V2_HUB = {"nt-v2-50m": "InstaDeepAI/nucleotide-transformer-v2-50m-multi-species",
             "nt-v2-100m": "InstaDeepAI/nucleotide-transformer-v2-100m-multi-species",
             "nt-v2-250m": "InstaDeepAI/nucleotide-transformer-v2-250m-multi-species",
             "nt-v2-500m": "InstaDeepAI/nucleotide-transformer-v2-500m-multi-species"}
NT_V2_AUTO_MAP = {"AutoConfig": "esm_config.EsmConfig", "AutoModelForMaskedLM": "modeling_esm.EsmForMaskedLM",
                  "AutoModelForSequenceClassification": "modeling_esm.EsmForSequenceClassification",
                  "AutoModelForTokenClassification": "modeling_esm.EsmForTokenClassification"}


def config_from_hf(d: dict, tensors: dict[str, torch.Tensor] | None = None) -> NTConfig:
    if d.get("model_type") not in (None, "esm"):
        raise CheckpointError(f"model_type {d.get('model_type')!r} is not an ESM/NT model")
    if d.get("emb_layer_norm_before"):
        raise CheckpointError("emb_layer_norm_before=true is not used by NT models and is not supported")
    extra = d.get("ntkit", {})
    learned = d.get("position_embedding_type", "absolute") == "absolute"
    inter = d["intermediate_size"]
    act = extra.get("ffn_activation")
    fc1 = (tensors or {}).get("esm.encoder.layer.0.intermediate.dense.weight")
    if fc1 is not None:  # the weights decide: SwiGLU's first projection has 2 x intermediate_size rows
        act = "swiglu" if fc1.shape[0] == 2 * inter else "gelu" if fc1.shape[0] == inter else None
        if act is None:
            raise CheckpointError(f"intermediate.dense has {fc1.shape[0]} rows; expected {inter} or {2 * inter}")
    act = act or ("gelu" if learned else "swiglu")
    bias = d.get("add_bias_fnn")
    if tensors is not None and "esm.encoder.layer.0.intermediate.dense.weight" in tensors:
        bias = "esm.encoder.layer.0.intermediate.dense.bias" in tensors
    if bias is None:
        bias = act == "gelu"
    vocab = d["vocab_size"]
    return NTConfig(
        name=extra.get("name", "custom"),
        vocab_size=vocab,
        hidden_size=d["hidden_size"],
        num_layers=d["num_hidden_layers"],
        num_heads=d["num_attention_heads"],
        ffn_size=inter,
        max_tokens=d["max_position_embeddings"] - 2,
        position_embedding="learned" if learned else "rotary",
        ffn_activation=act,
        ffn_bias=bool(bias),
        token_dropout=bool(d.get("token_dropout", False)),
        tokenizer=extra.get("tokenizer", "v1" if vocab == 4105 else "v2"),
        layer_norm_eps=d.get("layer_norm_eps", 1e-12),
        rope_theta=d.get("rope_theta", 10000.0),
        hidden_dropout=d.get("hidden_dropout_prob", 0.0),
        attention_dropout=d.get("attention_probs_dropout_prob", 0.0),
        pad_token_id=d.get("pad_token_id", 1),
        mask_token_id=d.get("mask_token_id", 2),
        initializer_range=d.get("initializer_range", 0.02),
    )


# -- state dicts -----------------------------------------------------------------------------------


def to_hf_state_dict(model: NTModel) -> dict[str, torch.Tensor]:
    """The model's tensors under HF names, plus the zero-filled unused HF tensors (see module doc)."""
    cfg = model.config
    out = {to_hf_name(k): v for k, v in model.state_dict().items()}
    ref = model.embed_tokens.weight
    out["esm.contact_head.regression.weight"] = torch.zeros(1, cfg.num_layers * cfg.num_heads, dtype=ref.dtype, device=ref.device)
    out["esm.contact_head.regression.bias"] = torch.zeros(1, dtype=ref.dtype, device=ref.device)
    if cfg.position_embedding == "rotary":
        out["esm.embeddings.position_embeddings.weight"] = torch.zeros(cfg.max_tokens + 2, cfg.hidden_size, dtype=ref.dtype, device=ref.device)
        for i in range(cfg.num_layers):
            out[f"esm.encoder.layer.{i}.attention.self.rotary_embeddings.inv_freq"] = model.rotary.inv_freq.clone()
    return out


def hf_num_parameters(cfg: NTConfig) -> int:
    """Parameters in HF layout (buffers excluded), computed on the meta device."""
    with torch.device("meta"):
        model = NTModel(cfg)
    sd = to_hf_state_dict(model)
    return sum(v.numel() for k, v in sd.items() if not k.endswith("inv_freq"))


def from_hf_state_dict(tensors: dict[str, torch.Tensor], cfg: NTConfig) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """HF tensors -> (ntkit state dict, rotary inv_freq or None). Raises on unknown tensors."""
    if tensors and not any(k.startswith("esm.") for k in tensors):
        tensors = {("esm." + k if not k.startswith("lm_head.") else k): v for k, v in tensors.items()}
    native, unknown, inv_freq = {}, [], None
    for k, v in tensors.items():
        if _INV_FREQ.match(k):
            inv_freq = v if inv_freq is None else inv_freq
            continue
        if k == "esm.embeddings.position_embeddings.weight" and cfg.position_embedding == "rotary":
            continue
        if _IGNORED.match(k):
            continue
        name = from_hf_name(k)
        if name is None:
            unknown.append(k)
        else:
            native[name] = v
    if unknown:
        raise CheckpointError(f"{len(unknown)} tensor(s) that are not part of an NT model, e.g. {unknown[:5]}")
    return native, inv_freq


# -- files -----------------------------------------------------------------------------------------


def _read_weight_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

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


RANDOM_INIT = "ntkit_random_init.json"  # in a folder written from a preset's random weights (`ntkit convert --random-init`)


def load_checkpoint(path: str | os.PathLike, device=None, dtype: torch.dtype | None = None, check_finite: bool = True) -> NTModel:
    """A checkpoint folder of any family (HF layout). A folder that holds a preset's random
    weights (``RANDOM_INIT``) loads with a warning, every time: it is not a trained model."""
    model = _load_folder(Path(path), device, dtype, check_finite)
    marker = Path(path) / RANDOM_INIT
    if marker.exists():
        try:
            model.random_init = json.loads(marker.read_text())
        except ValueError:
            model.random_init = {"preset": "?"}
        warnings.warn(f"{path}: random weights of preset {model.random_init.get('preset', '?')} (written by `ntkit convert "
                      "--random-init`), not a trained model: its outputs mean nothing biologically", stacklevel=2)
    return model


def _load_folder(directory: Path, device, dtype, check_finite: bool):
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is not a checkpoint directory")
    cfg_path = directory / "config.json"
    try:
        hf_cfg = json.loads(cfg_path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{cfg_path} not found") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{cfg_path} is not valid JSON: {e}") from e
    tensors = read_tensors(directory)
    from . import ntv3, segment_nt

    if ntv3.is_ntv3_config(hf_cfg):
        return ntv3.load_folder(directory, hf_cfg, tensors, device=device, dtype=dtype, check_finite=check_finite)
    if segment_nt.is_segment_nt_config(hf_cfg):
        return segment_nt.load_folder(directory, hf_cfg, tensors, device=device, dtype=dtype, check_finite=check_finite)
    try:
        cfg = config_from_hf(hf_cfg, tensors)
    except KeyError as e:
        raise CheckpointError(f"{cfg_path} lacks field {e}") from None
    if (directory / "vocab.txt").exists():
        from .tokenizer import Tokenizer

        try:
            tok = Tokenizer.from_pretrained(directory)
        except ValueError as e:
            raise CheckpointError(str(e)) from None
        if tok.version != cfg.tokenizer:
            raise CheckpointError(f"{directory / 'vocab.txt'} is the NT {tok.version} vocabulary but {cfg_path.name} describes an NT "
                                  f"{cfg.tokenizer} model (vocab_size {cfg.vocab_size}): every token id would be shifted; "
                                  "use the vocab.txt of this checkpoint")
    native, inv_freq = from_hf_state_dict(tensors, cfg)

    with torch.device("meta"):
        expected = NTModel(cfg).state_dict()
    check_tensors(directory, native, expected, to_hf_name, check_finite, unexpected=None)
    # Keep the checkpoint's rotary frequencies when present (HF does: they may have been stored in fp16).
    model = NTModel.from_state_dict(cfg, native, inv_freq)
    load_dtype = dtype or next(iter(native.values())).dtype
    return model.to(device=device or "cpu", dtype=load_dtype if load_dtype.is_floating_point else None)


def save_checkpoint(model: NTModel, path: str | os.PathLike, safe_serialization: bool = True, tokenizer: bool = True, *,
                    extra_tensors: dict[str, torch.Tensor] | None = None, extra_config: dict | None = None) -> Path:
    """Write ``config.json``, weights and (by default) the tokenizer files in HF layout.
    ``extra_tensors`` (a task head's, ``classifier.*``: ignored when the folder loads as an NT
    model) join the weights; ``extra_config`` the config (``ntkit.hf``'s task settings).

    Each file is written under a temporary name and renamed, so an interrupted save never leaves a
    half-written file behind under the final name.
    """
    from .jobs import write_text_atomic

    directory = _save_folder(model, path, safe_serialization, tokenizer, extra_tensors, extra_config)
    marker = directory / RANDOM_INIT
    if getattr(model, "random_init", None):  # a preset's random weights stay marked as such in every copy
        write_text_atomic(marker, json.dumps(model.random_init) + "\n")
    else:
        marker.unlink(missing_ok=True)
    return directory


def _save_folder(model, path, safe_serialization: bool, tokenizer: bool, extra_tensors, extra_config) -> Path:
    from .jobs import atomic_output

    family = getattr(model.config, "family", "nt")
    if family != "nt":  # NTv3 and SegmentNT write their own HF layouts
        if extra_tensors or extra_config or not safe_serialization:
            raise ValueError(f"{family} checkpoints are written as safetensors without extra tensors")
        from . import ntv3, segment_nt

        return Path((ntv3 if family == "ntv3" else segment_nt).save_folder(model, path, tokenizer=tokenizer))

    def write(target: Path, how) -> None:
        with atomic_output(target) as tmp:
            how(tmp)

    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in {**to_hf_state_dict(model), **(extra_tensors or {})}.items()}
    dtype = model.embed_tokens.weight.dtype
    if safe_serialization:
        from safetensors.torch import save_file

        write(directory / "model.safetensors", lambda p: save_file(sd, str(p), metadata={"format": "pt"}))
        stale = directory / "pytorch_model.bin"
    else:
        write(directory / "pytorch_model.bin", lambda p: torch.save(sd, p))
        stale = directory / "model.safetensors"
    if stale.exists():  # never leave two different weight files side by side
        stale.unlink()
    if tokenizer:
        model.tokenizer.save_pretrained(directory)
    cfg_text = json.dumps({**hf_config(model.config, dtype), **(extra_config or {})}, indent=2) + "\n"
    write(directory / "config.json", lambda p: p.write_text(cfg_text))
    return directory


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def hub_snapshot(repo_id: str, revision: str | None = None, *, cache_dir: str | os.PathLike | None = None,
                 token: str | None = None) -> Path:
    """The local folder of a Hugging Face hub model (``InstaDeepAI/nucleotide-transformer-v2-50m-multi-species``)
    through ``huggingface_hub``: its cache first, a download otherwise (``HF_HUB_OFFLINE=1``: the
    cache only), ``revision`` a branch, tag or commit, the token from the usual places unless given.
    Weights as safetensors when the repository has them, else ``pytorch_model*.bin`` (read with
    ``weights_only``)."""
    from huggingface_hub import snapshot_download

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


def family_presets() -> set[str]:
    """Preset names of the model families beyond NT v1/v2 (NTv3, SegmentNT)."""
    from . import ntv3, segment_nt

    return set(ntv3.PRESETS) | set(segment_nt.PRESETS)


def load(path_or_preset: str | os.PathLike, device=None, dtype: torch.dtype | None = None, seed: int = 0,
         revision: str | None = None, *, cache_dir: str | os.PathLike | None = None, token: str | None = None) -> NTModel:
    """Load an HF-format NT checkpoint directory, a Hugging Face hub model by name (``org/name``,
    see ``hub_snapshot``: ``revision``, ``cache_dir``, ``token``), or build a preset
    (``nt-v2-50m`` ...) with random weights."""
    p = Path(path_or_preset)
    named = str(path_or_preset) + (f"@{revision}" if revision else "")  # what the user named (provenance)
    if p.exists():
        model = load_checkpoint(p, device=device, dtype=dtype)
    elif _HUB_ID.fullmatch(str(path_or_preset)):
        folder = hub_snapshot(str(path_or_preset), revision, cache_dir=cache_dir, token=token)
        model = load_checkpoint(folder, device=device, dtype=dtype)
        named = f"{path_or_preset}@{folder.name}"  # the commit of the snapshot read, whatever revision named it
    elif str(path_or_preset) in family_presets():
        from . import ntv3, segment_nt

        warnings.warn(f"{path_or_preset}: randomly initialised weights (seed={seed}); pass a checkpoint directory for trained weights",
                      stacklevel=2)
        family = ntv3 if str(path_or_preset) in ntv3.PRESETS else segment_nt
        model = family.build(str(path_or_preset), seed=seed, device=device, dtype=dtype)
        model.random_init = {"preset": str(path_or_preset), "seed": seed}
    else:
        try:
            cfg = get_preset(str(path_or_preset))
        except KeyError as e:
            raise CheckpointError(f"{path_or_preset!s} is neither a checkpoint directory, a hub model (org/name) nor a preset "
                                  f"({e.args[0]})") from None
        warnings.warn(f"{cfg.name}: randomly initialised weights (seed={seed}); pass a checkpoint directory for trained weights",
                      stacklevel=2)
        model = build(cfg, seed=seed, device=device, dtype=dtype)
        model.random_init = {"preset": cfg.name, "seed": seed}
    model.name_or_path = named
    return model
