"""NT 6-mer tokenizer, vectorised with NumPy.

Vocabulary layouts (alphabet order A, T, C, G as in NT):

- v1: ``<unk> <pad> <mask> <cls>``, 4096 6-mers, ``A T C G N``, ``<eos> <bos>``.
  The v1 models have a 4105-row embedding: ``<eos>``/``<bos>`` (ids 4105, 4106) are in the
  vocabulary file but never produced.
- v2: ``<unk> <pad> <mask> <cls> <eos> <bos>`` (ids 0-5), 4096 6-mers, ``A T C G N`` (4107 rows).

Rules (identical to ``transformers.EsmTokenizer`` with the NT vocabulary): the sequence is split
on ``N``; each segment is cut into 6-mers from its start; the 0-5 leftover bases of a segment are
single-base tokens; every ``N`` is its own token; ``<cls>`` is prepended, no ``<eos>`` appended;
right padding with ``<pad>``.

Input handling: lowercase (soft-masked) bases are upper-cased; IUPAC ambiguity codes
(R Y S W K M B D H V) become ``N`` and are counted per sequence; any other character raises
``ValueError`` naming the sequence and position.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np

from ntkit.models.tokenization import IUPAC_AMBIGUOUS, TokenBatch, TokenizerBase, ranks
from ntkit.runtime.jobs import write_text_atomic

Version = Literal["v1", "v2"]

NUCLEOTIDES = "ATCG"
KMER = 6

_A, _N, _IUPAC, _SEP, _BAD = 0, 4, 5, 6, 255
_LUT = np.full(256, _BAD, dtype=np.uint8)
for _i, _c in enumerate(NUCLEOTIDES):
    _LUT[ord(_c)] = _LUT[ord(_c.lower())] = _i
_LUT[ord("N")] = _LUT[ord("n")] = _N
for _c in IUPAC_AMBIGUOUS:
    _LUT[ord(_c)] = _LUT[ord(_c.lower())] = _IUPAC
_LUT[0] = _SEP  # internal separator between the sequences of a batch
_LUT_BYTES = _LUT.tobytes()
_SEPS = [b"\x00" * i for i in range(KMER + 1)]


def build_vocab(version: Version) -> list[str]:
    kmers = ["".join(p) for p in itertools.product(NUCLEOTIDES, repeat=KMER)]
    singles = list(NUCLEOTIDES) + ["N"]
    if version == "v1":
        return ["<unk>", "<pad>", "<mask>", "<cls>"] + kmers + singles + ["<eos>", "<bos>"]
    if version == "v2":
        return ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>"] + kmers + singles
    raise ValueError(f"unknown tokenizer version {version!r} (expected 'v1' or 'v2')")


def _kmer_index(base: Callable[[int], np.ndarray]) -> np.ndarray:
    """Index of each 6-mer among the 4096 (base-4, A T C G), from ``base(i)``: the codes of every
    k-mer's ``i``-th base."""
    h = base(0).astype(np.int64)
    for i in range(1, KMER):
        h = (h << 2) | base(i)
    return h


def _padded_width(longest: int, max_length: int | None, padding: str) -> int:
    if padding == "max_length":
        if max_length is None:
            raise ValueError("padding='max_length' needs max_length")
        return max_length
    if padding != "longest":
        raise ValueError(f"padding must be 'longest' or 'max_length', not {padding!r}")
    return longest


class Tokenizer(TokenizerBase):
    """NT 6-mer tokenizer. ``Tokenizer("v2")`` for NT v2, ``Tokenizer("v1")`` for NT v1.

    ``unknown``: what a character that is neither a base nor an IUPAC code does (``X``, ``-``, a
    digit, a space): ``"error"`` (the default: a ValueError naming the sequence and position) or
    ``"unk"``: it becomes an ``<unk>`` token of one base that breaks the 6-mer frame as ``N`` does
    (base coordinates stay exact). The hub tokenizer also gives ``<unk>`` there, but one per run of
    such characters and none for whitespace, which it drops."""

    kmer = KMER  # bases per full token
    n_special = 1  # tokens before the sequence: <cls>

    def __init__(self, version: Version = "v2", max_tokens: int | None = None, unknown: Literal["error", "unk"] = "error"):
        if unknown not in ("error", "unk"):
            raise ValueError(f"unknown must be 'error' or 'unk', not {unknown!r}")
        self.unknown = unknown
        self.version: Version = version
        self.vocab = build_vocab(version)
        self.token_to_id = {t: i for i, t in enumerate(self.vocab)}
        self.unk_id, self.pad_id, self.mask_id, self.cls_id = 0, 1, 2, 3
        self.eos_id, self.bos_id = self.token_to_id["<eos>"], self.token_to_id["<bos>"]
        self.kmer_offset = self.token_to_id["A" * KMER]
        self.single_offset = self.token_to_id["A"]
        self.n_id = self.token_to_id["N"]
        self.special_ids = [self.token_to_id[t] for t in self.vocab if t.startswith("<")]
        # Special-token text inside an input string ("ACGTAC<mask>GG") is that token, as in the hub tokenizer.
        self._special_text = re.compile(b"(" + b"|".join(re.escape(t.encode()) for t in self.vocab if t.startswith("<")) + b")")
        # Rows of the model's embedding matrix (v1 embeddings stop before <eos>/<bos>).
        self.embedding_rows = 4105 if version == "v1" else 4107
        self.max_tokens = max_tokens

    def __repr__(self) -> str:
        return f"Tokenizer(version={self.version!r}, vocab={len(self)}, max_tokens={self.max_tokens}, unknown={self.unknown!r})"

    @property
    def standard_ids(self) -> np.ndarray:
        """Ids of the non-special tokens (6-mers, single bases, N): the targets of random replacement in MLM."""
        return np.concatenate([np.arange(self.kmer_offset, self.kmer_offset + 4**KMER), np.arange(self.single_offset, self.single_offset + 5)])

    # -- encoding -------------------------------------------------------------------------------

    def encode(self, sequence: str, add_cls: bool = True) -> np.ndarray:
        batch = self.batch_encode([sequence], add_cls=add_cls, truncation=False, max_length=None)
        return batch.input_ids[0, batch.attention_mask[0]]

    # transformers' names: TokenizerBase; NT has no <eos> in its inputs
    eos_token = None

    def batch_encode(
        self,
        sequences: Sequence[str | bytes],
        max_length: int | None = -1,
        padding: Literal["longest", "max_length"] = "longest",
        truncation: bool = False,
        add_cls: bool = True,
    ) -> TokenBatch:
        """Tokenise a batch in one vectorised pass.

        ``max_length`` counts tokens including ``<cls>``; -1 means the tokenizer's ``max_tokens``
        and ``None`` means no limit. Longer sequences raise ``ValueError`` unless
        ``truncation=True``, which keeps the first ``max_length`` tokens and reports the dropped
        nucleotides in ``n_truncated``.
        """
        if max_length == -1:
            max_length = self.max_tokens
        n_seq = len(sequences)
        raw = [s.encode("ascii", errors="replace") if isinstance(s, str) else bytes(s) for s in sequences]
        if any(b"<" in r for r in raw):
            return self._encode_with_special_text(raw, max_length, padding, truncation, add_cls)
        seq_len = np.fromiter((len(r) for r in raw), dtype=np.int64, count=n_seq)
        # Every sequence is followed by 1-6 separators so that the next one starts at a multiple of
        # 6: the buffer viewed as [-1, 6] then holds every 6-mer of an N-free sequence as a row.
        n_sep = (-(seq_len + 1)) % KMER + 1
        joined = b"".join([x for r, k in zip(raw, n_sep.tolist()) for x in (r, _SEPS[k])])
        codes = np.frombuffer(joined.translate(_LUT_BYTES), dtype=np.uint8)
        seq_start = np.cumsum(seq_len + n_sep) - (seq_len + n_sep)
        bad = codes == _BAD
        if np.count_nonzero(codes == _SEP) != n_sep.sum():  # a NUL byte inside a sequence: find it
            seg = seq_len + n_sep
            in_seq = np.arange(len(codes)) - np.repeat(seq_start, seg) < np.repeat(seq_len, seg)
            bad |= (codes == _SEP) & in_seq
        if bad.any() and self.unknown == "unk":
            codes = np.where(bad, _N, codes).astype(np.uint8)  # a frame break as N; its token becomes <unk> below
        elif bad.any():
            p = int(np.flatnonzero(bad)[0])
            s = int(np.searchsorted(seq_start, p, side="right") - 1)
            ch = sequences[s][p - seq_start[s]] if isinstance(sequences[s], str) else chr(joined[p])
            raise ValueError(
                f"sequence {s}: invalid character {ch!r} at position {p - seq_start[s]} "
                "(allowed: A C G T N, IUPAC codes R Y S W K M B D H V, any case)"
            )
        iupac = codes == _IUPAC
        n_iupac = np.zeros(n_seq, dtype=np.int64)
        if iupac.any():
            seq_of_pos = np.searchsorted(seq_start, np.flatnonzero(iupac), side="right") - 1
            n_iupac = np.bincount(seq_of_pos, minlength=n_seq).astype(np.int64)
            codes = np.where(iupac, _N, codes).astype(np.uint8)

        # Token lists (flat): sequence, column (rank in the sequence), id, nucleotide offset, span.
        # N-free sequences (the common case) are tokenised without any per-base pass.
        has_n = np.zeros(n_seq, dtype=bool)
        has_n[np.searchsorted(seq_start, np.flatnonzero(codes == _N), side="right") - 1] = True
        if n_seq and not has_n.any() and (seq_len == seq_len[0]).all():
            uniform = self._encode_uniform(codes, n_seq, int(seq_len[0]), max_length, padding, truncation, add_cls)
            if uniform is not None:
                return TokenBatch(**uniform, n_iupac=n_iupac)
        parts = []
        if (~has_n).any():
            parts.append(self._tokens_clean(codes, seq_start, seq_len, np.flatnonzero(~has_n)))
        if has_n.any():
            parts.append(self._tokens_with_n(codes, seq_start, seq_len, np.flatnonzero(has_n)))
        tok_seq, rank, ids, pos, span = (np.concatenate(x) for x in zip(*parts)) if parts else (np.zeros(0, np.int64),) * 5
        if self.unknown == "unk" and bad.any():
            ids = np.where(bad[seq_start[tok_seq] + pos] & (span == 1), self.unk_id, ids)
        span = span.astype(np.int8)
        n_tok = np.bincount(tok_seq, minlength=n_seq).astype(np.int64)
        extra = 1 if add_cls else 0

        n_truncated = np.zeros(n_seq, dtype=np.int64)
        if max_length is not None and (n_tok + extra > max_length).any():
            too_long = np.flatnonzero(n_tok + extra > max_length)
            if not truncation:
                s = int(too_long[0])
                raise ValueError(
                    f"sequence {s} has {n_tok[s] + extra} tokens ({seq_len[s]} bp), over max_length={max_length} "
                    f"({len(too_long)} sequence(s) too long); pass truncation=True or split it into windows"
                )
            keep = rank + extra < max_length
            cover = np.bincount(tok_seq[keep], weights=span[keep], minlength=n_seq).astype(np.int64)
            n_truncated = seq_len - cover
            tok_seq, ids, span, pos, rank = tok_seq[keep], ids[keep], span[keep], pos[keep], rank[keep]
            n_tok = np.bincount(tok_seq, minlength=n_seq).astype(np.int64)

        width = _padded_width(int(n_tok.max(initial=0)) + extra, max_length, padding)

        input_ids = np.full((n_seq, width), self.pad_id, dtype=np.int64)
        offsets = np.full((n_seq, width), -1, dtype=np.int64)
        spans = np.zeros((n_seq, width), dtype=np.int8)
        if add_cls:
            input_ids[:, 0] = self.cls_id
        col = rank + extra
        input_ids[tok_seq, col] = ids
        offsets[tok_seq, col] = pos
        spans[tok_seq, col] = span
        return TokenBatch(
            input_ids=input_ids,
            attention_mask=input_ids != self.pad_id,
            offsets=offsets,
            spans=spans,
            seq_lengths=seq_len - n_truncated,
            n_iupac=n_iupac,
            n_truncated=n_truncated,
        )

    def _encode_with_special_text(self, raw: list[bytes], max_length, padding, truncation, add_cls) -> TokenBatch:
        """Sequences holding special-token text (``<mask>`` ...): the text between specials is
        tokenised as usual (its 6-mer frame restarts after each special, as the hub tokenizer's
        greedy split does), each special is its token (offset -1, span 0, no bases)."""
        rows, n_iupac, seq_len = [], [], []
        for i, r in enumerate(raw):
            parts = self._special_text.split(r)
            try:
                enc = self.batch_encode(parts[0::2], max_length=None, add_cls=False)
            except ValueError as e:  # positions in the piece -> positions in the sequence
                m = re.match(r"sequence (\d+): (.*) at position (\d+)(.*)", str(e))
                if not m:
                    raise
                starts = np.cumsum([0] + [len(x) for x in parts])[0::2]
                raise ValueError(f"sequence {i}: {m.group(2)} at position {starts[int(m.group(1))] + int(m.group(3))}{m.group(4)}") from None
            ids, offs, spans, base = [self.cls_id] if add_cls else [], [-1] if add_cls else [], [0] if add_cls else [], 0
            for k, piece in enumerate(parts):
                if k % 2:
                    ids.append(self.token_to_id[piece.decode()])
                    offs.append(-1)
                    spans.append(0)
                    continue
                j = k // 2
                n = int(enc.attention_mask[j].sum())
                ids += enc.input_ids[j, :n].tolist()
                offs += (enc.offsets[j, :n] + base).tolist()
                spans += enc.spans[j, :n].tolist()
                base += len(piece)
            rows.append((ids, offs, spans))
            n_iupac.append(int(enc.n_iupac.sum()))
            seq_len.append(base)
        seq_len = np.asarray(seq_len, dtype=np.int64)
        n_truncated = np.zeros(len(raw), dtype=np.int64)
        if max_length is not None:
            for i, (ids, offs, spans) in enumerate(rows):
                if len(ids) > max_length:
                    if not truncation:
                        raise ValueError(f"sequence {i} has {len(ids)} tokens, over max_length={max_length}; "
                                         "pass truncation=True or split it into windows")
                    n_truncated[i] = seq_len[i] - sum(spans[:max_length])
                    rows[i] = (ids[:max_length], offs[:max_length], spans[:max_length])
        width = _padded_width(max((len(r[0]) for r in rows), default=0), max_length, padding)
        input_ids = np.full((len(raw), width), self.pad_id, dtype=np.int64)
        offsets = np.full((len(raw), width), -1, dtype=np.int64)
        spans = np.zeros((len(raw), width), dtype=np.int8)
        mask = np.zeros((len(raw), width), dtype=bool)  # a "<pad>" written in the text is attended, as in the hub tokenizer
        for i, (ids, offs, sp) in enumerate(rows):
            input_ids[i, : len(ids)], offsets[i, : len(ids)], spans[i, : len(ids)], mask[i, : len(ids)] = ids, offs, sp, True
        return TokenBatch(input_ids=input_ids, attention_mask=mask, offsets=offsets, spans=spans,
                          seq_lengths=seq_len - n_truncated, n_iupac=np.asarray(n_iupac, dtype=np.int64), n_truncated=n_truncated)

    def _encode_uniform(self, codes, n_seq, L, max_length, padding, truncation, add_cls):
        """Equal-length N-free sequences (genome windows): the buffer is an [n, L + 1] grid, so
        every row has the same token layout and 6-mers are strided views. None if it does not apply."""
        nk, nl = divmod(L, KMER)
        extra = 1 if add_cls else 0
        n_tok = nk + nl
        if max_length is not None and n_tok + extra > max_length:
            return None  # truncation or its error: the general path
        width = _padded_width(n_tok + extra, max_length, padding)
        grid = codes.reshape(n_seq, -1)  # rows of L bases + separators
        km = grid[:, : nk * KMER].reshape(n_seq, nk, KMER)
        h = _kmer_index(lambda i: km[:, :, i])
        input_ids = np.full((n_seq, width), self.pad_id, dtype=np.int64)
        if add_cls:
            input_ids[:, 0] = self.cls_id
        input_ids[:, extra : extra + nk] = h + self.kmer_offset
        input_ids[:, extra + nk : extra + n_tok] = grid[:, nk * KMER : L].astype(np.int64) + self.single_offset
        row_off = np.full(width, -1, dtype=np.int64)
        row_off[extra : extra + n_tok] = np.concatenate([np.arange(nk) * KMER, nk * KMER + np.arange(nl)])
        row_span = np.zeros(width, dtype=np.int8)
        row_span[extra : extra + nk] = KMER
        row_span[extra + nk : extra + n_tok] = 1
        lengths = np.full(n_seq, L, dtype=np.int64)
        return dict(input_ids=input_ids, attention_mask=input_ids != self.pad_id, offsets=np.broadcast_to(row_off, (n_seq, width)).copy(),
                    spans=np.broadcast_to(row_span, (n_seq, width)).copy(), seq_lengths=lengths, n_truncated=np.zeros(n_seq, np.int64))

    def _tokens_clean(self, codes, seq_start, seq_len, idx):
        """Sequences without N: 6-mers from the start, then the 0-5 leftover bases."""
        st, L = seq_start[idx], seq_len[idx]
        nk, nl = np.divmod(L, KMER)
        krank = ranks(nk)
        rows = codes.reshape(-1, KMER)  # sequences start at multiples of 6 (see batch_encode)
        h = _kmer_index(lambda i: rows[:, i])[np.repeat(st // KMER, nk) + krank]
        srank = ranks(nl)
        spos = np.repeat(KMER * nk, nl) + srank
        sids = self.single_offset + codes[np.repeat(st, nl) + spos].astype(np.int64)
        return (np.concatenate([np.repeat(idx, nk), np.repeat(idx, nl)]),
                np.concatenate([krank, np.repeat(nk, nl) + srank]),
                np.concatenate([self.kmer_offset + h, sids]),
                np.concatenate([KMER * krank, spos]),
                np.concatenate([np.full(len(h), KMER, np.int64), np.ones(len(sids), np.int64)]))

    def _tokens_with_n(self, codes, seq_start, seq_len, idx):
        """General rule: split on N (each N a token); 6-mers from each run's start, leftovers single."""
        seg = [codes[seq_start[i] : seq_start[i] + seq_len[i] + 1] for i in idx]  # each ends with its separator
        sub = np.concatenate(seg)
        sub_len = seq_len[idx]
        sub_start = np.cumsum(sub_len + 1) - (sub_len + 1)
        is_base = sub < 4
        padded = np.zeros(len(sub) + 2, dtype=bool)
        padded[1:-1] = is_base
        edges = np.flatnonzero(padded[1:] != padded[:-1])
        run_start, run_end = edges[0::2], edges[1::2]
        n_kmer, n_left = np.divmod(run_end - run_start, KMER)
        kp = np.repeat(run_start, n_kmer) + KMER * ranks(n_kmer)
        single = np.repeat(run_start + KMER * n_kmer, n_left) + ranks(n_left)
        is_kmer_start = np.zeros(len(sub), dtype=bool)
        is_kmer_start[kp] = True
        is_token = is_kmer_start | (sub == _N)
        is_token[single] = True
        tok_pos = np.flatnonzero(is_token)
        kmer_here = is_kmer_start[tok_pos]
        h = _kmer_index(lambda i: sub[kp + i])
        ids = self.single_offset + sub[tok_pos].astype(np.int64)
        ids[kmer_here] = self.kmer_offset + h
        n_tok = np.add.reduceat(is_token, sub_start, dtype=np.int64)
        tok_sub = np.repeat(np.arange(len(idx)), n_tok)
        return idx[tok_sub], ranks(n_tok), ids, tok_pos - sub_start[tok_sub], np.where(kmer_here, KMER, 1).astype(np.int64)

    # -- decoding -------------------------------------------------------------------------------

    def decode(self, ids: Sequence[int] | np.ndarray, skip_special: bool = True) -> str:
        out = []
        for i in np.asarray(ids).tolist():
            tok = self.vocab[i] if 0 <= i < len(self.vocab) else "<unk>"
            if skip_special and tok.startswith("<"):
                continue
            out.append(tok)
        return "".join(out)

    def token_length(self, sequence_length: int) -> int:
        """Tokens (with ``<cls>``) for an N-free sequence of ``sequence_length`` bases."""
        return 1 + sequence_length // KMER + sequence_length % KMER

    # -- Hugging Face layout --------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write ``vocab.txt``, ``tokenizer_config.json`` and ``special_tokens_map.json`` (EsmTokenizer layout)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        write_text_atomic(d / "vocab.txt", "\n".join(self.vocab) + "\n")
        special = {"unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>", "cls_token": "<cls>"}
        config = {
            "tokenizer_class": "EsmTokenizer",
            **special,
            "eos_token": None,
            "model_max_length": self.model_max_length,
            "ntkit_version": self.version,
        }
        write_text_atomic(d / "tokenizer_config.json", json.dumps(config, indent=2) + "\n")
        write_text_atomic(d / "special_tokens_map.json", json.dumps(special, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, max_tokens: int | None = None) -> "Tokenizer":
        d = Path(directory)
        vocab = (d / "vocab.txt").read_text().split()
        for version in ("v1", "v2"):
            if vocab == build_vocab(version):
                return cls(version, max_tokens=max_tokens)
        raise ValueError(f"{d / 'vocab.txt'} is not an NT v1 or v2 vocabulary ({len(vocab)} tokens)")
