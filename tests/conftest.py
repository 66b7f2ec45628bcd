"""Shared test fixtures: real data from DLNOTES_DATA (default ../shared/data beside the repo),
quiet runs in a temporary folder, 2 torch threads (1 per xdist worker), a fixed seed per test."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if not os.environ.get("DLNOTES_DATA"):
    os.environ["DLNOTES_DATA"] = str(REPO.parent / "shared" / "data")
os.environ.setdefault("DLNOTES_QUIET", "1")
os.environ.setdefault("DLNOTES_SILENT", "1")
# One process: 2 threads on an idle CI machine. Under pytest-xdist (`-n 2`, the README's command) each
# worker takes 1 thread, and so do the `dlnotes` subprocesses it starts: oversubscribed OpenMP
# threads spin and can make small ops tens of times slower.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same random state, whichever tests its xdist worker ran before."""
    torch.manual_seed(0)


def has_data(name: str) -> bool:
    from dlnotes.data import available

    return available(name)


def needs_data(*names: str):
    """Skip marker for tests that need a dataset under DLNOTES_DATA (CI has them all)."""
    missing = [n for n in names if not has_data(n)]
    return pytest.mark.skipif(bool(missing), reason=f"datasets not under DLNOTES_DATA: {missing}")


@pytest.fixture
def run_recipe(tmp_path):
    """Run a recipe through the engine (like `dlnotes run`) in a temporary runs folder."""
    from dlnotes.engine import execute

    def _run(name: str, preset: str = "quick", overrides=(), **kw):
        return execute(name, preset=preset, overrides=list(overrides), runs_root=tmp_path / "runs", quiet=True, **kw)

    return _run
