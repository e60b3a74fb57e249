"""The inference engine every model-running job uses: streaming, token-budget batches, input order.

Where and how a model runs is one ``Runtime`` (device, dtype, batch_tokens, batch_size,
progress), taken by every model-running function of ntkit as ``runtime=``.

``run(model, requests, forward)`` reads ``requests`` lazily into a bounded look-ahead buffer
(``lookahead`` requests), sorts the buffer by token length, cuts it into batches of at most
``batch_tokens`` tokens (rows x padded length; a request over the budget forms a batch of its own),
calls ``forward(model, batch)`` on each, and yields the per-request results in input order before
it reads the next buffer. Peak memory therefore depends on the buffer, the batch and the model,
never on the length of the input.

``forward`` runs under ``torch.inference_mode`` (and autocast when ``dtype`` is set) with the model
in eval mode on ``device``, and must return CPU results (numpy, floats); the caller's model is given back as it was found (device, train/eval
mode) when the stream ends or is closed.

Helpers shared by the jobs: ``encode`` (tokenise a batch onto the device) and ``mean_pool``
(mean over tokens, ``<cls>`` and padding excluded).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
import torch

from ntkit.runtime.progress import bar as progress_bar

R = TypeVar("R")
O = TypeVar("O")


@dataclass(frozen=True)
class Runtime:
    """Where and how a model runs, for every model-running function (``runtime=``)."""

    device: Any = None  # "cpu", "cuda", "cuda:1" ...; None: where the model is
    dtype: Any = None  # autocast dtype of the forwards (torch.bfloat16 ...); None: the weights' own
    batch_tokens: int | None = None  # tokens per forward (rows x padded length); None: default_batch_tokens(device)
    batch_size: int | None = None  # rows per forward, at most
    progress: bool = False  # progress bars

    def replace(self, **changes) -> "Runtime":
        return dataclasses.replace(self, **changes)

    def __post_init__(self):
        for name in ("batch_tokens", "batch_size"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"Runtime.{name} must be a positive integer, not {v!r}")


def as_runtime(runtime: Runtime | None) -> Runtime:
    return runtime if runtime is not None else Runtime()


def default_batch_tokens(device) -> int:
    """Tokens per batch (rows x padded length) when none is given. On CPUs small batches win:
    on 2 cores, 1-2k-token batches embedded 1.2-1.3x faster than 8k-token ones (the activations
    stay in cache; BENCHMARKS.md). GPUs need large batches to fill their cores."""
    return 2048 if torch.device(device).type == "cpu" else 16384


def model_device(model) -> torch.device:
    """The device of a model's weights (a module without any, e.g. a user's fixed filter: the CPU)."""
    t = next(model.parameters(), None)
    if t is None:
        t = next(model.buffers(), None)
    return t.device if t is not None else torch.device("cpu")


@contextlib.contextmanager
def inference_session(model, device=None):
    """The model in eval mode on ``device``; its device and train/eval mode are restored on exit."""
    was_training, home = model.training, model_device(model)
    device = torch.device(device) if device is not None else home
    if device != home:
        model.to(device)
    model.eval()
    try:
        yield device
    finally:
        if device != home:
            model.to(home)
        model.train(was_training)


def no_grad_autocast(device: torch.device, dtype=None):
    """Inference mode, plus autocast to ``dtype`` when it is set and not float32. Entered around
    each forward only: a generator must not leave it switched on in its consumer's code."""
    stack = contextlib.ExitStack()
    stack.enter_context(torch.inference_mode())
    if dtype is not None and dtype != torch.float32:
        stack.enter_context(torch.autocast(device_type=device.type, dtype=dtype))
    return stack


def token_batches(lengths: Sequence[int], batch_tokens: int, batch_size: int | None = None) -> list[np.ndarray]:
    """Indices of ``lengths`` in length-sorted batches of at most ``batch_tokens`` tokens (rows x
    the longest row) and ``batch_size`` rows."""
    order = np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable")
    out, i = [], 0
    while i < len(order):
        j = i + 1
        # The batch's padded length is its last (longest) row's.
        while j < len(order) and (j - i + 1) * lengths[order[j]] <= batch_tokens and (batch_size is None or j - i < batch_size):
            j += 1
        out.append(order[i:j])
        i = j
    return out


def run(
    model,
    requests: Iterable[R],
    forward: Callable[[object, list[R]], Sequence[O]],
    *,
    length: Callable[[R], int],
    runtime: Runtime | None = None,
    lookahead: int = 4096,
    desc: str = "inference",
    unit: str = "seq",
    total: int | None = None,
) -> Iterator[O]:
    """Results of ``forward`` for every request, in input order (see the module docstring).
    ``length(request)``: its tokens, ``<cls>`` included."""
    rt = as_runtime(runtime)
    with inference_session(model, rt.device) as dev:
        batch_tokens, batch_size, dtype = rt.batch_tokens or default_batch_tokens(dev), rt.batch_size, rt.dtype
        with progress_bar(total=total, unit=unit, desc=desc, enabled=rt.progress) as bar:
            buffer: list[R] = []
            it = iter(requests)
            while True:
                buffer.clear()
                for r in it:
                    buffer.append(r)
                    if len(buffer) >= lookahead:
                        break
                if not buffer:
                    return
                results: list = [None] * len(buffer)
                for idx in token_batches([length(r) for r in buffer], batch_tokens, batch_size):
                    with no_grad_autocast(dev, dtype):
                        out = forward(model, [buffer[k] for k in idx])
                    for k, o in zip(idx, out):
                        results[k] = o
                    bar.update(len(idx))
                for k in range(len(results)):  # each result released as it is handed on
                    o, results[k] = results[k], None
                    yield o


def encode(tok, sequences: Sequence[str], device, truncation: bool = False):
    """(TokenBatch, ids, mask) with ids / mask on ``device``."""
    enc = tok.batch_encode(sequences, truncation=truncation)
    ids, mask = enc.to_torch(device)
    return enc, ids, mask


def mean_pool(h: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, cls_id: int) -> torch.Tensor:
    """Mean over tokens, ``<cls>`` and padding excluded: [B, L, H] -> [B, H] (fp32)."""
    keep = (mask & (ids != cls_id)).unsqueeze(-1).float()
    return (h.float() * keep).sum(1) / keep.sum(1).clamp(min=1)
