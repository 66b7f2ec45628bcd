"""Tier 1: Transformer blocks against torch's layers; positions; GPT and encoder-decoder invariants."""
import math

import pytest
import torch
from torch import nn

from dlnotes.sequence.transformer import (GPT, EncoderDecoder, TransformerBlock, TransformerEncoder,
                                          sinusoidal_encoding)


def _copy_block_from_torch(ours: TransformerBlock, ref, decoder: bool):
    ours.self_attn.load_torch_mha(ref.self_attn)
    norms = [ours.norm_attn, ours.norm_cross, ours.norm_mlp] if decoder else [ours.norm_attn, ours.norm_mlp]
    for mine, theirs in zip(norms, [ref.norm1, ref.norm2, ref.norm3] if decoder else [ref.norm1, ref.norm2]):
        mine.load_state_dict(theirs.state_dict())
    if decoder:
        ours.cross_attn.load_torch_mha(ref.multihead_attn)
    ours.mlp.fc.load_state_dict(ref.linear1.state_dict())
    ours.mlp.proj.load_state_dict(ref.linear2.state_dict())


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_block_equals_torch_encoder_layer(norm_first):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation="relu", batch_first=True,
                                     norm_first=norm_first).eval()
    ours = TransformerBlock(32, 4, 64, norm_first=norm_first, activation="relu").eval()
    _copy_block_from_torch(ours, ref, decoder=False)
    x = torch.randn(3, 7, 32)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[2, 5:] = True
    torch.testing.assert_close(ours(x, key_padding_mask=pad), ref(x, src_key_padding_mask=pad),
                               atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_block_equals_torch_decoder_layer(norm_first):
    torch.manual_seed(1)
    ref = nn.TransformerDecoderLayer(32, 4, 64, dropout=0.0, activation="relu", batch_first=True,
                                     norm_first=norm_first).eval()
    ours = TransformerBlock(32, 4, 64, norm_first=norm_first, activation="relu", causal=True,
                            cross_attention=True).eval()
    _copy_block_from_torch(ours, ref, decoder=True)
    x, mem = torch.randn(2, 6, 32), torch.randn(2, 9, 32)
    mpad = torch.zeros(2, 9, dtype=torch.bool)
    mpad[0, 7:] = True
    causal = nn.Transformer.generate_square_subsequent_mask(6)
    expect = ref(x, mem, tgt_mask=causal, memory_key_padding_mask=mpad)
    torch.testing.assert_close(ours(x, mem, memory_padding_mask=mpad), expect, atol=1e-5, rtol=1e-4)


def test_sinusoidal_encoding_formula():
    pe = sinusoidal_encoding(50, 16)
    t, k = 17, 3
    omega = 1 / 10000 ** (2 * k / 16)
    assert pe[t, 2 * k].item() == pytest.approx(math.sin(omega * t), abs=1e-6)
    assert pe[t, 2 * k + 1].item() == pytest.approx(math.cos(omega * t), abs=1e-6)
    assert pe.abs().max() <= 1.0
    assert sinusoidal_encoding(10, 7).shape == (10, 7)  # odd widths work too
    assert len({tuple(r.tolist()) for r in pe.round(decimals=4)}) == 50  # every position distinct


def test_without_positions_the_encoder_is_equivariant_and_with_them_it_is_not():
    torch.manual_seed(2)
    enc = TransformerEncoder(2, 16, 2, 32).eval()
    x = torch.randn(1, 9, 16)
    perm = torch.randperm(9)
    torch.testing.assert_close(enc(x[:, perm]), enc(x)[:, perm], atol=1e-5, rtol=1e-4)
    pe = sinusoidal_encoding(9, 16)
    with_pos = enc((x + pe)[:, perm] - pe[perm] + pe)  # permuted tokens, positions still 0..8
    assert (with_pos - enc(x + pe)[:, perm]).abs().max() > 1e-2


def test_gpt_initial_loss_is_log_vocab_and_weights_are_tied():
    torch.manual_seed(3)
    model = GPT(vocab_size=65, context=32, n_layers=2, n_heads=2, d_model=32)
    idx, targets = torch.randint(0, 65, (2, 8, 32))
    _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(65)) < 0.1
    assert model.head is None  # tied: the output layer is the token embedding
    n = model.num_params()
    assert model.flops_per_token() == 6 * n + 12 * 2 * 32 * 32


def test_gpt_does_not_leak_the_future():
    torch.manual_seed(4)
    model = GPT(vocab_size=20, context=16, n_layers=2, n_heads=2, d_model=32).eval()
    a = torch.randint(0, 20, (1, 16))
    b = a.clone()
    b[0, 10:] = (b[0, 10:] + 1) % 20
    la, _ = model(a)
    lb, _ = model(b)
    torch.testing.assert_close(la[0, :10], lb[0, :10])
    assert (la[0, 10:] - lb[0, 10:]).abs().max() > 1e-4


def test_gpt_generate_extends_and_respects_top_k():
    torch.manual_seed(5)
    model = GPT(vocab_size=20, context=8, n_layers=1, n_heads=2, d_model=16).eval()
    out = model.generate(torch.zeros(2, 3, dtype=torch.long), 12, top_k=1)
    assert out.shape == (2, 15)
    assert torch.equal(out[0], out[1])  # top-1 is greedy: both rows identical


def test_encoder_decoder_ignores_source_padding_and_is_causal():
    torch.manual_seed(6)
    model = EncoderDecoder(30, 40, d_model=32, n_heads=4, n_encoder=2, n_decoder=2, d_ff=64, dropout=0.0).eval()
    src = torch.randint(3, 30, (1, 7))
    src_padded = torch.cat([src, torch.zeros(1, 4, dtype=torch.long)], 1)
    tgt = torch.randint(3, 40, (1, 6))
    torch.testing.assert_close(model(src, tgt), model(src_padded, tgt), atol=1e-5, rtol=1e-4)
    tgt2 = tgt.clone()
    tgt2[0, 4:] = 5
    a, b = model(src, tgt), model(src, tgt2)
    torch.testing.assert_close(a[0, :4], b[0, :4])
    assert (a[0, 4:] - b[0, 4:]).abs().max() > 1e-4
