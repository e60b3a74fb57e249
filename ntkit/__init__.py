"""ntkit: the Nucleotide Transformer (NT v1/v2) in PyTorch."""

from .checkpoint import CheckpointError, load, load_checkpoint, save_checkpoint
from .config import PRESETS, NTConfig, get_preset
from .engine import Runtime
from .model import NTModel, NTOutput, build
from .tokenizer import TokenBatch, Tokenizer

__all__ = [
    "CheckpointError", "NTConfig", "NTModel", "NTOutput", "PRESETS", "Runtime", "TokenBatch", "Tokenizer",
    "build", "get_preset", "load", "load_checkpoint", "save_checkpoint",
]
__version__ = "0.1.0"
