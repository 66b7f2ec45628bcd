"""Run directory, checkpoints (atomic, resumable, last good kept), non-finite loss, resume equality."""
import contextlib
import json
import math

import pytest
import torch

from dlnotes.engine import NonFiniteLoss, Run
from dlnotes.engine.recipes import execute


def _run(tmp_path, **kw):
    return Run(tmp_path / "r", quiet=True, **kw)


def test_checkpoint_round_trip_restores_weights_optimizer_rng_and_state(tmp_path):
    run = _run(tmp_path)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    run.watch(model=model, optimizer=opt)
    run.step, run.state["hidden"] = 7, torch.arange(3.0)
    path = run.checkpoint()
    assert (path / "weights.safetensors").exists() and (path / "state.pt").exists()
    expected_next = torch.rand(2)
    saved = {k: v.clone() for k, v in model.state_dict().items()}

    run2 = Run(tmp_path / "r", quiet=True, resume=True)
    model2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.1)
    run2.watch(model=model2, optimizer=opt2)
    assert run2.restore() == 7
    for k, v in model2.state_dict().items():
        assert torch.equal(v, saved[k])
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(run2.state["hidden"], torch.arange(3.0))
    assert torch.equal(torch.rand(2), expected_next)  # RNG state restored


def test_keeps_last_two_checkpoints_and_latest_pointer(tmp_path):
    run = _run(tmp_path)
    run.watch(model=torch.nn.Linear(2, 2))
    for s in (1, 2, 3):
        run.step = s
        run.checkpoint()
    names = sorted(p.name for p in (run.dir / "checkpoints").glob("step-*"))
    assert names == ["step-000000002", "step-000000003"]
    assert (run.dir / "checkpoints" / "latest").read_text() == "step-000000003"
    assert not list((run.dir / "checkpoints").glob(".tmp*"))


def test_non_finite_loss_stops_with_step_and_keeps_checkpoint(tmp_path):
    run = _run(tmp_path)
    run.watch(model=torch.nn.Linear(2, 2))
    run.step = 5
    run.checkpoint()
    run.log(5, loss=1.0)
    with pytest.raises(NonFiniteLoss, match="step 6"):
        run.log(6, loss=float("nan"))
    with pytest.raises(NonFiniteLoss):
        run.log_check(7, val_loss=math.inf)
    assert run.latest_checkpoint().name == "step-000000005"
    lines = (run.dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [5]


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path, monkeypatch):
    over = ["corpus=builtin-chars", "epochs=0.25", "hidden=32", "emb=16", "bptt=20", "ckpt_every=10",
            "dropout=0.1", "sample_chars=20"]
    _, full = execute("shakespeare-char-lstm", overrides=over, runs_root=tmp_path / "a", quiet=True)
    monkeypatch.setenv("DLNOTES_STOP_AFTER", "17")
    with pytest.raises(KeyboardInterrupt):
        execute("shakespeare-char-lstm", overrides=over, runs_root=tmp_path / "b", quiet=True)
    run_dir = next((tmp_path / "b" / "shakespeare-char-lstm").iterdir())
    assert (run_dir / "checkpoints" / "latest").read_text() == "step-000000017"
    monkeypatch.delenv("DLNOTES_STOP_AFTER")
    _, resumed = execute(resume=run_dir, quiet=True)
    for key in ("val_loss", "test_loss"):
        assert resumed[key] == full[key]
    steps = [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps)  # no duplicated tail after resuming
    assert (run_dir / "result.json").exists() and (run_dir / "curves.png").exists()


def test_runs_started_in_the_same_second_get_their_own_directories(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from dlnotes.engine.recipes import _new_run_dir
    with ThreadPoolExecutor(8) as ex:
        dirs = list(ex.map(lambda _: _new_run_dir(tmp_path, "r"), range(8)))
    assert len(set(dirs)) == 8
    assert all(d.is_dir() and not any(d.iterdir()) for d in dirs)


def test_time_limit_ends_the_loop_with_a_checkpoint_and_still_finishes_the_run(tmp_path):
    over = ["corpus=builtin-chars", "epochs=0.25", "hidden=32", "emb=16", "bptt=20", "ckpt_every=0",
            "sample_chars=20"]
    run_dir, result = execute("shakespeare-char-lstm", overrides=over, runs_root=tmp_path, quiet=True,
                              max_minutes=1e-9)  # spent after the first step
    assert result["stopped_at_step"] == 1
    assert math.isfinite(result["val_loss"]) and (run_dir / "result.json").exists()
    assert (run_dir / "checkpoints" / "latest").read_text() == "step-000000001"
    assert json.loads((run_dir / "partial_wall.json").read_text())["wall_s"] > 0
    cfg = json.loads((run_dir / "config.json").read_text())["config"]  # throughput counts the one step done
    assert 0 < result["throughput"] * result["wall_s"] <= 2 * cfg["batch_size"] * cfg["bptt"]  # wall_s is rounded
    _, resumed = execute(resume=run_dir, quiet=True)  # no limit now: trains to the end
    assert "stopped_at_step" not in resumed
    assert int((run_dir / "checkpoints" / "latest").read_text().split("-")[1]) > 1
    assert resumed["wall_s"] > result["wall_s"] * 0.5  # includes the first invocation's time


def test_time_limit_must_not_be_negative(tmp_path):
    from dlnotes.engine.config import ConfigError
    with pytest.raises(ConfigError, match="max-minutes must be a positive number"):
        execute("shakespeare-char-lstm", runs_root=tmp_path, quiet=True, max_minutes=-1)


def test_bf16_without_hardware_support_says_it_runs_fp32(tmp_path, monkeypatch, capsys):
    from dlnotes.engine import dist as D
    monkeypatch.setattr(D, "bf16_supported", lambda device: False)
    run = Run(tmp_path / "r", quiet=True, amp="bf16")
    assert "running in fp32" in capsys.readouterr().err
    assert isinstance(run.autocast(), contextlib.nullcontext)


def test_bf16_places_conv_weights_channels_last_and_checkpoints_them_contiguously(tmp_path):
    from dlnotes.engine import dist as D
    run = Run(tmp_path / "r", quiet=True, amp="bf16")
    if not D.bf16_supported(run.device):
        pytest.skip("no bf16 on this device")
    model = run.place(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(144, 2)))
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert Run(tmp_path / "s", quiet=True).place(torch.nn.Conv2d(1, 4, 3)).weight.is_contiguous()  # fp32: untouched
    with run.autocast():
        model(torch.rand(2, 1, 8, 8)).float().sum().backward()
    run.watch(model=model)
    run.checkpoint()
    again = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.Linear(144, 2))
    run2 = Run(tmp_path / "r", quiet=True, resume=True)
    run2.watch(model=again)
    run2.restore()
    assert torch.equal(again[0].weight, model[0].weight)
