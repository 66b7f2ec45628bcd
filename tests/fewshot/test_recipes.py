"""Tier 3: every few-shot recipe's quick preset runs end to end through the engine."""
import json

import pytest

from tests.conftest import needs_data


@needs_data("omniglot")
@pytest.mark.parametrize("name", ["omniglot-protonet", "omniglot-maml", "omniglot-matching", "omniglot-relation",
                                  "omniglot-siamese", "omniglot-triplet"])
def test_quick_recipe(run_recipe, name):
    run_dir, result = run_recipe(name)
    assert 0.0 <= result["accuracy"] <= 1.0 and result["throughput"] > 0
    assert result["accuracy_5way1shot"] > 0.3, result  # chance is 0.2: a few dozen steps already lift it
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["accuracy"] == result["accuracy"]
    assert (run_dir / "metrics.jsonl").exists() and (run_dir / "checkpoints" / "latest").exists()


@needs_data("omniglot")
def test_protonet_resumes_after_interruption(run_recipe, tmp_path, monkeypatch):
    from dlnotes.engine import execute

    monkeypatch.setenv("DLNOTES_STOP_AFTER", "10")
    with pytest.raises(KeyboardInterrupt):
        run_recipe("omniglot-protonet", overrides=["episodes=20", "eval_episodes=20"])
    monkeypatch.delenv("DLNOTES_STOP_AFTER")
    (run_dir,) = list((tmp_path / "runs" / "omniglot-protonet").iterdir())
    _, result = execute(resume=run_dir, quiet=True)
    steps = [json.loads(ln)["step"] for ln in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [9, 19] and 0 <= result["accuracy"] <= 1  # each logged once, across the restart
