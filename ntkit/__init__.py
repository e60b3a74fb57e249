"""ntkit: the Nucleotide Transformer family (NT v1/v2, NTv3, SegmentNT) in PyTorch.

The public names: ``load`` (a checkpoint folder, a hub name or a preset of any family, in eval
mode), ``save_checkpoint``, ``Runtime`` (where and how models run), NT's ``build`` / ``get_preset``
/ ``NTModel`` / ``Tokenizer``. The layers below (``ntkit.core``, ``ntkit.runtime``, ``ntkit.io``,
``ntkit.models``, ``ntkit.tasks``, ``ntkit.hf``, ``ntkit.cli``) each say what lives in them.
"""

from ntkit.core import __version__
from ntkit.models.checkpoint import CheckpointError, load, load_checkpoint, save_checkpoint
from ntkit.models.nt.config import PRESETS, NTConfig, get_preset
from ntkit.models.nt.model import NTModel, NTOutput, build
from ntkit.models.nt.tokenizer import Tokenizer
from ntkit.models.tokenization import TokenBatch
from ntkit.runtime.engine import Runtime

__all__ = [
    "CheckpointError", "NTConfig", "NTModel", "NTOutput", "PRESETS", "Runtime", "TokenBatch", "Tokenizer", "__version__",
    "build", "get_preset", "load", "load_checkpoint", "save_checkpoint",
]
