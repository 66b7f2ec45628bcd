"""Two CPU processes under torchrun (gloo) reach the same parameters as one process at the same
global batch."""
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

OVER = ["--set", "corpus=builtin-words", "--set", "epochs=0.05", "--set", "hidden=32", "--set", "emb=16",
        "--set", "batch_size=20", "--set", "eval_batch=10", "--set", "ckpt_every=0"]


def _weights(runs):
    run_dir = next((runs / "ptb-lstm-small").iterdir())
    ck = run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text()
    return load_file(str(ck / "weights.safetensors"))


def test_two_process_ddp_matches_single_process(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    single = subprocess.run([sys.executable, "-m", "dlnotes.cli", "run", "ptb-lstm-small", *OVER,
                             "--runs", str(tmp_path / "one")], capture_output=True, text=True, env=env)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_port=29517", "-m", "dlnotes.cli", "run", "ptb-lstm-small", *OVER,
                          "--runs", str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4)
    import json
    result = json.loads(ddp.stdout.strip().splitlines()[-1]) if ddp.stdout.strip() else {}
    single_result = json.loads(single.stdout.strip().splitlines()[-1])
    assert single_result["steps"] >= 5  # several optimizer steps were compared, not just the init
    assert len(list((tmp_path / "two" / "ptb-lstm-small").iterdir())) == 1  # both ranks shared one directory
