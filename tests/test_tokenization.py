"""ntkit.models.tokenization: one tokenizer protocol in every family. Calling a tokenizer is
transformers' call (a ``BatchEncoding``); ``batch_encode`` is ntkit's array API; both feed the
model to the same outputs."""

from __future__ import annotations

import pytest
import torch
from transformers import BatchEncoding

import ntkit
from ntkit.models import ntv3, segment_nt
from ntkit.models.tokenization import TokenBatch

SEQS = ["ACGTAGGCTAACGTAGGCTAGGATTACA", "GATTACAGATTACAN", "ACGTNNACGTACGTAGGCTAAC"]


@pytest.mark.parametrize("name", ["nt-v2-tiny", "ntv3-tiny", "segment-nt-tiny"])
def test_call_and_batch_encode_mean_the_same_in_every_family(name):
    with pytest.warns(UserWarning, match="randomly initialised"):
        model = ntkit.load(name)
    assert not model.training  # ntkit.load returns eval mode, as from_pretrained does
    tok = model.tokenizer
    enc = tok(SEQS, padding=True, return_tensors="pt")
    batch = tok.batch_encode(SEQS)
    assert isinstance(enc, BatchEncoding) and isinstance(batch, TokenBatch)
    ids, mask = batch.to_torch()
    for r in range(len(SEQS)):  # the same tokens for each row's own sequence
        assert enc["input_ids"][r][enc["attention_mask"][r].bool()].tolist() == ids[r][mask[r]].tolist()
    single = tok(SEQS[0])
    assert single["input_ids"] == enc["input_ids"][0][enc["attention_mask"][0].bool()].tolist()
    for attr in ("pad_token_id", "mask_token_id", "unk_token_id", "model_max_length", "vocab_size"):
        assert isinstance(getattr(tok, attr), int), attr
    assert tok.convert_ids_to_tokens(tok.convert_tokens_to_ids("<mask>")) == "<mask>"
    if name.startswith("segment"):
        return  # SegmentNT reads its own encode (tokens after <cls> a multiple of 4): the backbone below
    net = model.backbone()
    with torch.no_grad():
        a = net(enc["input_ids"], enc["attention_mask"], repr_layers=[-1], return_logits=False).hidden_states[net.resolve_layer(-1)]
        b = net(ids, mask, repr_layers=[-1], return_logits=False).hidden_states[net.resolve_layer(-1)]
    for r in range(len(SEQS)):  # both inputs give the same per-token outputs for each row's own tokens
        n = int(enc["attention_mask"][r].sum())
        torch.testing.assert_close(a[r, :n], b[r, :n], rtol=1e-5, atol=1e-5)  # other padding widths: other kernels' sums


def test_single_base_models_take_no_special_tokens_and_keep_unknown_rules():
    tok = ntv3.build("ntv3-tiny").tokenizer
    assert tok("acgtRY")["input_ids"] == tok.batch_encode(["ACGTNN"]).input_ids[0, :6].tolist()
    assert tok("ACGT", add_special_tokens=True)["input_ids"] == [6, 8, 9, 7]  # no <cls> to add
    with pytest.raises(ValueError, match="invalid character 'X'"):
        tok("ACXT")
    assert type(tok)(8, unknown="unk")("AXC")["input_ids"] == [6, 0, 8]
    six = segment_nt.build("segment-nt-tiny").tokenizer
    assert six("ACGTAC")["input_ids"] == [six.cls_token_id, six.convert_tokens_to_ids("ACGTAC")]  # <cls> first: NT's 6-mers
