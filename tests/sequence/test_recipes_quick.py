"""Every Lecture 6 recipe runs end to end with its quick preset."""
import math

import pytest


@pytest.mark.parametrize("name", ["ptb-kn5", "ptb-lstm-small", "shakespeare-char-rnn", "shakespeare-char-gru",
                                  "shakespeare-char-lstm"])
def test_quick_recipe(run_recipe, name):
    run_dir, res = run_recipe(name)
    assert math.isfinite(res["test_ppl"]) and res["test_ppl"] > 1
    assert (run_dir / "result.json").exists()
    if name.startswith("shakespeare"):
        assert len((run_dir / "sample.txt").read_text()) > 50


def test_gradient_study_shows_vanishing_and_exploding(run_recipe):
    run_dir, res = run_recipe("rnn-gradient-study")
    assert res["grad_ratio_rnn"] < 1e-6 and res["grad_ratio_rnn_big"] > 1e2
    assert res["grad_ratio_lstm"] > res["grad_ratio_rnn"]
    assert (run_dir / "gradient_vs_steps_back.png").exists() and (run_dir / "clipping_comparison.png").exists()
