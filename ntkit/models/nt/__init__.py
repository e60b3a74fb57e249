"""NT v1/v2: the BERT-style encoder over 6-mer tokens (learned positions + GELU in v1, rotary +
SwiGLU in v2), its tokenizer, its presets and its Hugging Face layout (ESM's names)."""

from ntkit.models import registry
from ntkit.models.nt.checkpoint import hf_num_parameters, is_nt_config, load_folder, save_folder
from ntkit.models.nt.config import PRESETS, TRAINED_WEIGHTS, NTConfig, get_preset
from ntkit.models.nt.model import NTModel, NTOutput, build
from ntkit.models.nt.tokenizer import Tokenizer


def describe(model: NTModel) -> dict:
    cfg = model.config
    return {**cfg.to_dict(), "parameters_hf_layout": hf_num_parameters(cfg), "max_nucleotides": cfg.max_nucleotides}


FAMILY = registry.register(registry.Family(
    name="nt", model_class=NTModel, recognise=is_nt_config, load_folder=load_folder, save_folder=save_folder, build=build,
    random_like=registry.rebuild(build), presets=PRESETS, trained_weights=TRAINED_WEIGHTS,
    description="Nucleotide Transformer v1/v2 (6-mer tokens)", describe=describe))

__all__ = ["FAMILY", "NTConfig", "NTModel", "NTOutput", "PRESETS", "Tokenizer", "build", "get_preset"]
