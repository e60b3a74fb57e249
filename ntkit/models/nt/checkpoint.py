"""NT v1/v2 in the Hugging Face layout: ``config.json`` (ESM's) and the state-dict names of
``EsmForMaskedLM``; reading and writing an NT folder (``load_folder`` / ``save_folder``, called
through the family registry by ``ntkit.models.checkpoint``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from ntkit.models.checkpoint import CheckpointError, check_tensors
from ntkit.models.nt.config import NTConfig
from ntkit.models.nt.model import NTModel
from ntkit.models.nt.tokenizer import Tokenizer
from ntkit.runtime.jobs import atomic_output

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


# NT v2 remote code (each repository of the v2 family holds the same esm_config.py / modeling_esm.py).
NT_V2_HUB = {"nt-v2-50m": "InstaDeepAI/nucleotide-transformer-v2-50m-multi-species",
             "nt-v2-100m": "InstaDeepAI/nucleotide-transformer-v2-100m-multi-species",
             "nt-v2-250m": "InstaDeepAI/nucleotide-transformer-v2-250m-multi-species",
             "nt-v2-500m": "InstaDeepAI/nucleotide-transformer-v2-500m-multi-species"}
NT_V2_AUTO_MAP = {"AutoConfig": "esm_config.EsmConfig", "AutoModelForMaskedLM": "modeling_esm.EsmForMaskedLM",
                  "AutoModelForSequenceClassification": "modeling_esm.EsmForSequenceClassification",
                  "AutoModelForTokenClassification": "modeling_esm.EsmForTokenClassification"}


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


# -- folders ---------------------------------------------------------------------------------------


def is_nt_config(d: dict) -> bool:
    """ESM's ``config.json`` (NT's hub layout), not SegmentNT's (which adds ``features``)."""
    return d.get("model_type", "esm") == "esm" and "features" not in d


def load_folder(directory: Path, config: dict, tensors: dict[str, torch.Tensor], device=None, dtype=None,
                check_finite: bool = True) -> NTModel:
    cfg_path = directory / "config.json"
    try:
        cfg = config_from_hf(config, tensors)
    except KeyError as e:
        raise CheckpointError(f"{cfg_path} lacks field {e}") from None
    if (directory / "vocab.txt").exists():
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


def save_folder(model: NTModel, directory: Path, *, safe_serialization: bool = True, tokenizer: bool = True,
                extra_tensors: dict[str, torch.Tensor] | None = None, extra_config: dict | None = None) -> Path:
    """``config.json`` (ESM's), the weights under ESM's names (+ ``extra_tensors``) and ``vocab.txt``."""

    def write(target: Path, how) -> None:
        with atomic_output(target) as tmp:
            how(tmp)

    directory.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to("cpu").contiguous() for k, v in {**to_hf_state_dict(model), **(extra_tensors or {})}.items()}
    dtype = model.embed_tokens.weight.dtype
    if safe_serialization:
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
