"""NT as transformers models: ``PreTrainedModel`` classes that run ntkit's own forward.

    from ntkit.hf import NTForMaskedLM, NTForSequenceClassification
    model = NTForSequenceClassification.from_pretrained("my-model", num_labels=2)   # a folder or hub name
    out = model(input_ids=ids, attention_mask=mask, labels=y)                        # out.loss, out.logits

Every class holds an ``NTModel`` as ``.nt`` (no second implementation of the encoder: the numbers
are ntkit's), takes the keywords of transformers' ESM (``input_ids``, ``attention_mask``,
``labels`` -> ``loss``, ``output_hidden_states``, ``output_attentions``, ``return_dict``) and
returns its output classes. ``from_pretrained`` reads what ``ntkit.load`` reads (an NT folder in HF
layout, v1 or v2, or a hub name through the cache: ``revision``, ``cache_dir``, ``token``);
``save_pretrained`` writes that layout again (``ntkit.save_checkpoint``), a task head's tensors
(``classifier.*``) and its settings (``num_labels``, ``id2label``, ``problem_type``) beside the
encoder's, so the folder still loads as a plain NT model, and ``push_to_hub`` uploads it. This is
the Hugging Face path to NT v2 on transformers 5 (NT's remote code needs transformers <= 4.55).

- ``NTModelForHF``: hidden states (``last_hidden_state``, ``hidden_states``: embeddings, then each
  layer, the last after the final layer norm, as ESM);
- ``NTForMaskedLM``: logits over the vocabulary; ``labels`` (-100 ignored) give the MLM loss;
- ``NTForSequenceClassification``: ntkit's fine-tuning head (mean over tokens, ``<cls>`` and
  padding excluded, dropout, linear: ``classifier.linear``), losses as transformers chooses them
  (``problem_type``: regression MSE, single-label cross-entropy, multi-label BCE);
- ``NTForTokenClassification``: dropout + linear per token (-100 ignored).

peft adapters: ``ntkit finetune`` writes its adapters in peft's layout for these classes (module
paths ``base_model.model.nt.<ntkit name>``, the sequence head as ``modules_to_save``), so
``load_adapter(NTForSequenceClassification.from_pretrained(base, num_labels=n), adapter)``
predicts what ``ntkit predict`` does. ``load_adapter`` is ``peft.PeftModel.from_pretrained`` after
the check the command line makes: the model must be the base the adapter was trained on (its
configuration and weights' fingerprint, kept in ``finetune_config.json``; ``force=True`` skips the
weights check). Plain ``PeftModel.from_pretrained`` works too, but applies an adapter to any base
without a word.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput, MaskedLMOutput, SequenceClassifierOutput, TokenClassifierOutput

from ntkit.models import adapters
from ntkit.models.adapters import check_base, read_meta
from ntkit.models.checkpoint import HUB_ID as _HUB_ID
from ntkit.models.checkpoint import hub_snapshot, load_checkpoint, save_checkpoint
from ntkit.models.nt.checkpoint import LAYER_NAMES, config_from_hf, hf_config
from ntkit.models.nt.config import NTConfig
from ntkit.models.nt.model import NTModel
from ntkit.runtime.jobs import atomic_output, write_text_atomic
from ntkit.tasks.finetune import FINETUNE_CONFIG, SequenceHead

TASK_KEYS = ("architectures", "num_labels", "id2label", "label2id", "problem_type", "classifier_dropout")


class NTHFConfig(PretrainedConfig):
    """The ESM-style ``config.json`` of an NT folder as a transformers config (``nt_config()``: ntkit's)."""

    model_type = "esm"  # the config.json is ESM's (NT's hub layout); transformers reads it as such

    def __init__(self, classifier_dropout: float = 0.1, **kwargs):
        kwargs.pop("model_type", None)
        self.classifier_dropout = classifier_dropout
        super().__init__(**kwargs)

    @classmethod
    def from_nt(cls, cfg: NTConfig, **task) -> "NTHFConfig":
        return cls(**{**hf_config(cfg), **task})

    def nt_config(self) -> NTConfig:
        return config_from_hf({**self.to_dict(), "model_type": "esm"})


def _folder(name_or_path, revision=None, cache_dir=None, token=None) -> Path:
    p = Path(name_or_path)
    if p.exists():
        return p
    if _HUB_ID.fullmatch(str(name_or_path)):
        return hub_snapshot(str(name_or_path), revision, cache_dir=cache_dir, token=token)
    raise OSError(f"{name_or_path}: neither a folder nor a hub model name (org/name)")


def _head_tensors(weights: Path) -> dict[str, torch.Tensor]:
    """The ``classifier.*`` tensors of a weights file (read alone: the encoder's were read by ntkit)."""
    if not weights.exists():
        return {}
    from safetensors import safe_open

    with safe_open(str(weights), framework="pt") as f:
        return {k.removeprefix("classifier."): f.get_tensor(k) for k in f.keys() if k.startswith("classifier.")}


class NTPreTrainedModel(PreTrainedModel):
    config_class = NTHFConfig
    base_model_prefix = "nt"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False

    def __init__(self, config: NTHFConfig, nt: NTModel | None = None):
        super().__init__(config)
        self.nt = nt if nt is not None else NTModel(config.nt_config())

    def _init_weights(self, module: nn.Module) -> None:
        """ntkit initialises its own modules (``NTModel``) and the heads at construction."""

    def get_input_embeddings(self) -> nn.Module:
        return self.nt.embed_tokens

    @property
    def tokenizer(self):
        return self.nt.tokenizer

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args, revision: str | None = None,
                        cache_dir=None, token=None, dtype=None, device_map=None, **task):
        """An NT folder (HF layout, as ``ntkit.load`` reads it) or hub name; ``task`` settings
        (``num_labels``, ``id2label``, ``problem_type`` ...) override the folder's."""
        import json

        folder = _folder(pretrained_model_name_or_path, revision, cache_dir, token)
        nt = load_checkpoint(folder, dtype=dtype if isinstance(dtype, torch.dtype) else None)
        if not isinstance(nt, NTModel):
            family = getattr(nt.config, "family", type(nt).__name__)
            raise ValueError(f"{pretrained_model_name_or_path}: a {family} model; ntkit.hf's {cls.__name__} holds NT v1/v2 "
                             f"encoders: load it with ntkit.load({str(pretrained_model_name_or_path)!r})")
        hub = not Path(pretrained_model_name_or_path).exists()
        nt.name_or_path = f"{pretrained_model_name_or_path}@{folder.name}" if hub else str(pretrained_model_name_or_path)
        saved = json.loads((folder / "config.json").read_text())
        settings = {k: saved[k] for k in TASK_KEYS if k in saved and k != "architectures"}
        config = NTHFConfig.from_nt(nt.config, **{**settings, **task})
        config.name_or_path = str(pretrained_model_name_or_path)
        model = cls(config, nt=nt)
        state = _head_tensors(folder / "model.safetensors") if hasattr(model, "classifier") else {}
        if state:
            if {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in model.classifier.state_dict().items()}:
                model.classifier.load_state_dict(state)
            else:
                import warnings

                warnings.warn(f"{folder}: its classifier does not fit num_labels={config.num_labels}: a new head, untrained",
                              stacklevel=2)
        if device_map is not None and not isinstance(device_map, dict):
            model.to(device_map)
        return model.eval()

    def save_pretrained(self, save_directory: str | os.PathLike, *args, safe_serialization: bool = True, push_to_hub: bool = False,
                        **kwargs) -> None:
        """``ntkit.save_checkpoint`` of the encoder, with the head's tensors and task settings
        (``push_to_hub``: then uploaded as ``push_to_hub`` does, to ``repo_id`` or the folder's name)."""
        if push_to_hub:
            self.save_pretrained(save_directory, safe_serialization=safe_serialization)
            repo_id = kwargs.pop("repo_id", None) or Path(save_directory).name
            return self.push_to_hub(repo_id, **{k: v for k, v in kwargs.items() if k in ("token", "private", "commit_message",
                                                                                         "revision", "create_pr")})
        head = getattr(self, "classifier", None)
        extra = {f"classifier.{k}": v for k, v in head.state_dict().items()} if head is not None else None
        d = self.config.to_dict()
        settings = {k: d[k] for k in TASK_KEYS if k in d and k != "architectures"}
        settings["architectures"] = [type(self).__name__]
        save_checkpoint(self.nt, save_directory, safe_serialization=safe_serialization or extra is not None, extra_tensors=extra,
                        extra_config=settings)

    def _encode(self, input_ids, attention_mask, output_hidden_states, output_attentions, logits: bool):
        L = self.nt.config.num_layers
        layers = range(L + 1) if output_hidden_states else [L]
        out = self.nt(input_ids, attention_mask, repr_layers=layers, need_attentions=bool(output_attentions), return_logits=logits)
        hidden = tuple(out.hidden_states[i] for i in range(L + 1)) if output_hidden_states else None
        attentions = tuple(out.attentions[i] for i in range(1, L + 1)) if output_attentions else None
        return out, out.hidden_states[L], hidden, attentions

    def _mask(self, input_ids, attention_mask):
        return attention_mask if attention_mask is not None else input_ids.ne(self.nt.config.pad_token_id)


class NTModelForHF(NTPreTrainedModel):
    """The encoder: ``last_hidden_state`` and, on request, every layer's states and attentions."""

    def forward(self, input_ids=None, attention_mask=None, output_hidden_states=None, output_attentions=None, return_dict=None,
                **kwargs):
        _, last, hidden, attn = self._encode(input_ids, attention_mask, output_hidden_states, output_attentions, False)
        if return_dict is False:
            return tuple(x for x in (last, hidden, attn) if x is not None)
        return BaseModelOutput(last_hidden_state=last, hidden_states=hidden, attentions=attn)


class NTForMaskedLM(NTPreTrainedModel):
    """The encoder and its LM head; ``labels`` (token ids, -100 ignored) give the MLM loss."""

    def forward(self, input_ids=None, attention_mask=None, labels=None, output_hidden_states=None, output_attentions=None,
                return_dict=None, **kwargs):
        out, _, hidden, attn = self._encode(input_ids, attention_mask, output_hidden_states, output_attentions, True)
        logits = out.logits
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)
        if return_dict is False:
            return tuple(x for x in (loss, logits, hidden, attn) if x is not None)
        return MaskedLMOutput(loss=loss, logits=logits, hidden_states=hidden, attentions=attn)


def _sequence_loss(config, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """transformers' rule: regression (one label), single-label (integer labels), multi-label."""
    if config.problem_type is None:
        if config.num_labels == 1:
            config.problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            config.problem_type = "single_label_classification"
        else:
            config.problem_type = "multi_label_classification"
    if config.problem_type == "regression":
        return F.mse_loss(logits.float().squeeze(-1), labels.float().view(-1)) if config.num_labels == 1 else \
            F.mse_loss(logits.float(), labels.float())
    if config.problem_type == "single_label_classification":
        return F.cross_entropy(logits.float().view(-1, config.num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits.float(), labels.float())


class NTForSequenceClassification(NTPreTrainedModel):
    """ntkit's sequence head (``finetune.SequenceHead``: mean over tokens without ``<cls>`` and
    padding, dropout, linear) as ``classifier``."""

    def __init__(self, config: NTHFConfig, nt: NTModel | None = None):
        super().__init__(config, nt)
        self.num_labels = config.num_labels
        self.classifier = SequenceHead(self.nt.config.hidden_size, config.num_labels, config.classifier_dropout)

    def forward(self, input_ids=None, attention_mask=None, labels=None, output_hidden_states=None, output_attentions=None,
                return_dict=None, **kwargs):
        mask = self._mask(input_ids, attention_mask).bool()
        _, last, hidden, attn = self._encode(input_ids, mask, output_hidden_states, output_attentions, False)
        logits = self.classifier(last, mask & input_ids.ne(self.nt.config.cls_token_id))
        loss = _sequence_loss(self.config, logits, labels) if labels is not None else None
        if return_dict is False:
            return tuple(x for x in (loss, logits, hidden, attn) if x is not None)
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=hidden, attentions=attn)


class NTForTokenClassification(NTPreTrainedModel):
    """A label per token: dropout + linear (``classifier``); ``labels`` -100 ignored."""

    def __init__(self, config: NTHFConfig, nt: NTModel | None = None):
        super().__init__(config, nt)
        self.num_labels = config.num_labels
        self.dropout = nn.Dropout(config.classifier_dropout)
        self.classifier = nn.Linear(self.nt.config.hidden_size, config.num_labels)

    def forward(self, input_ids=None, attention_mask=None, labels=None, output_hidden_states=None, output_attentions=None,
                return_dict=None, **kwargs):
        _, last, hidden, attn = self._encode(input_ids, attention_mask, output_hidden_states, output_attentions, False)
        logits = self.classifier(self.dropout(last))
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().view(-1, self.num_labels), labels.view(-1), ignore_index=-100)
        if return_dict is False:
            return tuple(x for x in (loss, logits, hidden, attn) if x is not None)
        return TokenClassifierOutput(loss=loss, logits=logits, hidden_states=hidden, attentions=attn)


def esm_adapter(src: str | os.PathLike, dst: str | os.PathLike, for_class: str = "EsmModel") -> Path:
    """An NT v1 adapter of ``ntkit finetune`` (IA3 or LoRA) rewritten for transformers' own ESM
    classes (NT v1 is stock ESM): module names as ESM's (``q_proj`` -> ``attention.self.query``,
    ``fc2`` -> the layer's ``output.dense`` ...), tensors under ``for_class``'s paths
    (``EsmModel``: ``encoder.*``; ``EsmForMaskedLM`` / ``EsmForSequenceClassification``:
    ``esm.encoder.*``). The encoder's adapter only: ESM's classification head is not ntkit's
    (mean-pooled) head, so a classifier on top is the user's. Returns ``dst``."""
    import json
    import re

    from safetensors.torch import load_file, save_file

    src, dst = Path(src), Path(dst)
    if for_class not in ("EsmModel", "EsmForMaskedLM", "EsmForSequenceClassification", "EsmForTokenClassification"):
        raise ValueError(f"for_class must be one of transformers' ESM classes, not {for_class!r}")
    meta = json.loads((src / "finetune_config.json").read_text()) if (src / "finetune_config.json").exists() else {}
    if meta.get("base_config", {}).get("ffn_activation", "gelu") != "gelu":
        raise ValueError(f"{src}: an NT v2 adapter; transformers has no stock class for NT v2: use ntkit.hf's classes")
    cfg = json.loads((src / adapters.CONFIG).read_text())
    prefix = "" if for_class == "EsmModel" else "esm."
    layer_re = r".*encoder\.layer\.\d+\."
    if cfg["peft_type"] == "LORA":
        cfg["target_modules"] = [LAYER_NAMES[f"attn.{t}"].rsplit(".", 1)[1] for t in cfg["target_modules"]]
    elif cfg["peft_type"] == "IA3":
        names = {t: LAYER_NAMES[f"ffn.{t}" if t.startswith("fc") else f"attn.{t}"].replace(".", r"\.") for t in adapters.IA3_TARGETS}
        cfg["target_modules"] = layer_re + "(" + "|".join(names.values()) + ")"
        cfg["feedforward_modules"] = layer_re + names["fc2"]
    else:
        raise ValueError(f"{src}: a {cfg['peft_type']} adapter; IA3 and LoRA are exported")
    cfg["modules_to_save"] = None
    tensors = {}
    for k, v in load_file(str(src / adapters.WEIGHTS)).items():
        if k.startswith(adapters.PEFT_HEAD):
            continue
        name = k.removeprefix(adapters.PEFT_PREFIX).removeprefix("base_model.model.")
        cut = min((name.find(f".{t}") for t in adapters.ADAPTER_TENSORS if f".{t}" in name), default=-1)
        module, leaf = name[:cut], name[cut + 1 :]  # layers.3.attn.q_proj | lora_A.weight
        m = re.fullmatch(r"layers\.(\d+)\.(.+)", module)
        if m is None or m.group(2) not in LAYER_NAMES:
            raise ValueError(f"{src / adapters.WEIGHTS}: {k} is on no encoder layer module")
        tensors[f"base_model.model.{prefix}encoder.layer.{m.group(1)}.{LAYER_NAMES[m.group(2)]}.{leaf}"] = v
    dst.mkdir(parents=True, exist_ok=True)
    with atomic_output(dst / adapters.WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})
    write_text_atomic(dst / adapters.CONFIG, json.dumps(cfg, indent=2))
    return dst


def load_adapter(model: NTPreTrainedModel, adapter: str | os.PathLike, *, force: bool = False, **kwargs):
    """``peft.PeftModel.from_pretrained(model, adapter, **kwargs)`` once ``model`` is known to be the
    base ``adapter`` was trained on: an adapter folder of ``ntkit finetune`` names its base's
    configuration and weights' fingerprint, and another base is an error (``force=True``: use it
    anyway, as ``--force`` on the command line). An adapter saved by peft alone carries no
    fingerprint and is applied as peft does."""
    from peft import PeftModel

    d = Path(adapter)
    if (d / FINETUNE_CONFIG).exists():
        check_base(d, read_meta(d, FINETUNE_CONFIG), model.nt, force=force, fix="force=True")
    return PeftModel.from_pretrained(model, str(d), **kwargs)
