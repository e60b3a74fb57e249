"""ntkit: the Nucleotide Transformer (NT v1/v2) in PyTorch."""

from ntkit.models.checkpoint import CheckpointError, load, load_checkpoint, save_checkpoint
from ntkit.models.nt.config import PRESETS, NTConfig, get_preset
from ntkit.models.nt.model import NTModel, NTOutput, build
from ntkit.models.nt.tokenizer import Tokenizer
from ntkit.models.tokenization import TokenBatch
from ntkit.runtime.engine import Runtime

__all__ = [
    "CheckpointError", "NTConfig", "NTModel", "NTOutput", "PRESETS", "Runtime", "TokenBatch", "Tokenizer",
    "build", "get_preset", "load", "load_checkpoint", "save_checkpoint",
]
from ntkit.core import __version__  # noqa: E402,F401  (one place for the version)
