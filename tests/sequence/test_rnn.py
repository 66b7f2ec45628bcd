"""Cells written from the notes vs torch's fused modules; BPTT as the notes derive it; clipping;
perplexity of a uniform model; a tiny LM learning on real text."""
import math

import pytest
import torch

from dlnotes.sequence.rnn import Cell, Recurrent, clip_grad_norm, copy_to_torch, torch_module
from dlnotes.sequence.rnn_lm import RNNLM, evaluate_stream
from tests.conftest import needs_data


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, False), (2, True)])
def test_our_recurrent_stack_equals_torch(kind, layers, bidirectional):
    torch.manual_seed(0)
    ours = Recurrent(kind, 5, 7, num_layers=layers, bidirectional=bidirectional)
    ref = torch_module(kind, 5, 7, num_layers=layers, bidirectional=bidirectional)
    copy_to_torch(ours, ref)
    x = torch.randn(9, 3, 5)
    dirs = 2 if bidirectional else 1
    h0 = torch.randn(layers * dirs, 3, 7)
    state = (h0, torch.randn_like(h0)) if kind == "lstm" else h0
    out, fin = ours(x, state)
    out_ref, fin_ref = ref(x, state)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=0)
    for a, b in zip(fin if kind == "lstm" else [fin], fin_ref if kind == "lstm" else [fin_ref]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # gradients through the whole unrolled sequence agree as well (BPTT = autograd of the unrolled graph)
    out.square().sum().backward()
    out_ref.square().sum().backward()
    torch.testing.assert_close(ours.cells[0].weight_hh.grad, ref.weight_hh_l0.grad, atol=1e-4, rtol=1e-4)


def test_notes_gru_candidate_resets_before_the_matrix():
    """reset_after=False is the notes' h~ = tanh(U x + W (h * r)); it is not torch's variant."""
    torch.manual_seed(1)
    cell = Cell("gru", 4, 3, reset_after=False)
    x, h = torch.randn(2, 4), torch.randn(2, 3)
    Ur, Uz, U = cell.weight_ih.chunk(3)
    Wr, Wz, W = cell.weight_hh.chunk(3)
    bir, biz, bi = cell.bias_ih.chunk(3)
    bhr, bhz, bh = cell.bias_hh.chunk(3)
    r = torch.sigmoid(x @ Ur.T + bir + h @ Wr.T + bhr)
    z = torch.sigmoid(x @ Uz.T + biz + h @ Wz.T + bhz)
    cand = torch.tanh(x @ U.T + bi + (h * r) @ W.T + bh)
    torch.testing.assert_close(cell(x, h), z * h + (1 - z) * cand)
    cell.reset_after = True
    assert not torch.allclose(cell(x, h), z * h + (1 - z) * cand)


def test_notes_scalar_bptt_recurrence_equals_autograd():
    """dL/dw = sum_t dl_t/dh_t * a_t with a_t = dh_t/dw = sigma'(.) (h_{t-1} + w a_{t-1})."""
    torch.manual_seed(2)
    u, w = torch.tensor(0.7), torch.tensor(0.9, requires_grad=True)
    xs, gs = torch.randn(30), torch.randn(30)  # inputs and dl_t/dh_t
    h, hs = torch.tensor(0.0), []
    for x in xs:
        h = torch.tanh(u * x + w * h)
        hs.append(h)
    (torch.stack(hs) * gs).sum().backward()
    a, h_prev, total = 0.0, 0.0, 0.0
    for t, x in enumerate(xs):
        h_t = math.tanh(float(u * x) + float(w) * h_prev)
        a = (1 - h_t ** 2) * (h_prev + float(w) * a)
        total += float(gs[t]) * a
        h_prev = h_t
    assert abs(total - float(w.grad)) < 1e-4


def test_clip_grad_norm_is_the_notes_rescaling_and_matches_torch():
    torch.manual_seed(3)
    p1, p2 = torch.nn.Parameter(torch.randn(5)), torch.nn.Parameter(torch.randn(3, 3))
    p1.grad, p2.grad = torch.randn(5) * 10, torch.randn(3, 3) * 10
    q1, q2 = torch.nn.Parameter(p1.detach().clone()), torch.nn.Parameter(p2.detach().clone())
    q1.grad, q2.grad = p1.grad.clone(), p2.grad.clone()
    norm = clip_grad_norm([p1, p2], 1.0)
    ref = torch.nn.utils.clip_grad_norm_([q1, q2], 1.0)
    assert abs(norm - float(ref)) < 1e-4
    torch.testing.assert_close(p1.grad, q1.grad)
    new = torch.linalg.vector_norm(torch.cat([p1.grad.flatten(), p2.grad.flatten()]))
    assert abs(float(new) - 1.0) < 1e-4


def test_uniform_model_perplexity_equals_vocabulary_size():
    model = RNNLM(50, 8, 8, 1)
    with torch.no_grad():
        model.decoder.weight.zero_()
        model.decoder.bias.zero_()
    data = torch.randint(0, 50, (4, 100))
    assert abs(math.exp(evaluate_stream(model, data, 20, "cpu")) - 50) < 1e-3


def test_truncated_bptt_detaches_between_windows():
    from dlnotes.sequence.rnn_lm import detach

    model = RNNLM(20, 8, 8, 1, cell="lstm")
    x = torch.randint(0, 20, (2, 10))
    _, state = model(x)
    state = detach(state)
    assert all(not s.requires_grad for s in state)
    logits, _ = model(x, state)
    logits.sum().backward()  # would fail with "backward through the graph a second time" if not detached


@needs_data("shakespeare")
def test_char_lstm_learns_shakespeare_in_seconds(run_recipe):
    _, res = run_recipe("shakespeare-char-lstm", preset="full",
                        overrides=["epochs=0.25", "hidden=128", "bptt=50", "eval_batch=64", "ckpt_every=0",
                                   "sample_chars=50"])
    # uniform over 65 characters is ln 65 = 4.17 nats
    assert res["val_loss"] < 2.7, res
