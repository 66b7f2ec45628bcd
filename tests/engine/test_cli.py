"""The command line end to end: list, run --quick, bad --set, unknown recipe, missing data,
Ctrl-C then --resume, sample, reproduce, data verify."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


from tests.conftest import needs_data


def cli(*args, env=None, cwd=None, timeout=300):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "dlnotes.cli", *args], capture_output=True, text=True,
                          env=e, cwd=cwd, timeout=timeout)


def test_list_groups_recipes_by_lecture_with_targets():
    out = cli("list")
    assert out.returncode == 0, out.stderr
    assert "Lecture 6" in out.stdout and "ptb-kn5" in out.stdout and "test_ppl <= 148" in out.stdout


def test_run_quick_writes_a_complete_run_directory(tmp_path):
    out = cli("run", "ptb-lstm-small", "--quick", "--runs", str(tmp_path))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["test_ppl"] > 1 and result["target"]["metric"] == "test_ppl"
    run_dir = next((tmp_path / "ptb-lstm-small").iterdir())
    for name in ("config.json", "metrics.jsonl", "result.json", "curves.png", "vocab.json"):
        assert (run_dir / name).exists(), name
    assert list((run_dir / "tb").glob("events.out.tfevents*"))
    assert (run_dir / "checkpoints" / "latest").exists()
    sample = cli("sample", str(run_dir), "--length", "5", "--prompt", "the")
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.startswith("the ") and len(sample.stdout.split()) == 6


def test_bad_set_exits_nonzero_listing_valid_keys(tmp_path):
    out = cli("run", "ptb-lstm-small", "--quick", "--set", "hidden=big", "--runs", str(tmp_path))
    assert out.returncode == 2 and "valid keys" in out.stderr and "bptt (int)" in out.stderr
    out = cli("run", "ptb-lstm-small", "--quick", "--set", "hiden=3", "--runs", str(tmp_path))
    assert out.returncode == 2 and "unknown config key 'hiden'" in out.stderr
    assert not (tmp_path / "ptb-lstm-small").exists()  # nothing written for a rejected config


def test_unknown_recipe(tmp_path):
    out = cli("run", "no-such-recipe", "--runs", str(tmp_path))
    assert out.returncode == 2 and "unknown recipe 'no-such-recipe'" in out.stderr and "ptb-kn5" in out.stderr


def test_missing_data_file_names_file_checksum_and_fetch_command(tmp_path):
    out = cli("run", "ptb-kn5", "--runs", str(tmp_path), env={"DLNOTES_DATA": str(tmp_path / "empty")})
    assert out.returncode == 3
    assert "ptb.train.txt" in out.stderr and "dlnotes data fetch ptb" in out.stderr
    assert "sha256" in out.stderr


@needs_data("ptb")
def test_corrupt_data_file_is_refused(tmp_path):
    root = tmp_path / "data" / "ptb"
    root.mkdir(parents=True)
    src = Path(os.environ["DLNOTES_DATA"]) / "ptb"
    for f in ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"):
        (root / f).write_bytes((src / f).read_bytes())
    with open(root / "ptb.train.txt", "ab") as fh:
        fh.write(b"tampered\n")
    env = {"DLNOTES_DATA": str(tmp_path / "data"), "DLNOTES_CACHE": str(tmp_path / "cache")}
    out = cli("run", "ptb-kn5", "--runs", str(tmp_path / "runs"), env=env)
    assert out.returncode == 3 and "corrupt data file" in out.stderr and "ptb.train.txt" in out.stderr
    verify = cli("data", "verify", "ptb", env=env)
    assert verify.returncode == 1 and "corrupt" in verify.stdout


def test_ctrl_c_saves_checkpoint_and_resume_finishes(tmp_path):
    args = ["run", "shakespeare-char-gru", "--quick", "--set", "epochs=3", "--set", "ckpt_every=100000",
            "--runs", str(tmp_path)]
    proc = subprocess.Popen([sys.executable, "-m", "dlnotes.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    metrics = None
    deadline = time.time() + 120
    while time.time() < deadline:
        found = list(tmp_path.glob("shakespeare-char-gru/*/metrics.jsonl"))
        if found and found[0].stat().st_size > 0:
            metrics = found[0]
            break
        time.sleep(0.2)
    assert metrics is not None, "run never started logging"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    run_dir = metrics.parent
    assert (run_dir / "checkpoints" / "latest").exists() and "resume with" in err
    out = cli("run", "--resume", str(run_dir), "--set", "epochs=0.6")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["val_loss"] < 4.0


def test_reproduce_writes_markdown_and_html_reports(tmp_path):
    out = cli("reproduce", "--quick", "--recipes", "ptb-kn5,shakespeare-char-rnn", "--runs", str(tmp_path),
              "--out", str(tmp_path / "rep"))
    assert out.returncode == 0, out.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "| ptb-kn5 | 6 | test_ppl |" in md and "shakespeare-char-rnn" in md and "curves" in md
    assert "<table>" in html and "ptb-kn5" in html
    assert set(json.loads((tmp_path / "rep" / "results.json").read_text())) == {"ptb-kn5", "shakespeare-char-rnn"}
