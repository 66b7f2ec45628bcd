"""Run every recipe's quick preset on a CUDA device and tabulate what happened.

The brief promises that every recipe runs on CUDA unchanged. This script is the check: each recipe
runs ``--quick --device cuda`` in its own process (several at a time), and the table records the
exit status, wall time, the GPU memory the recipe actually allocated (0 MiB means it kept its
tensors on the CPU, which is right for the numpy-environment RL recipes) and the headline metric.

    DLNOTES_DATA=/path/to/data python benchmarks/cuda_check.py --out cuda_check --jobs 4

Recipes whose datasets are absent from the data root, or whose optional packages (OpenSpiel,
ale-py) are not installed, are listed as skipped with the reason instead of failing.
``--amp bf16`` runs the same check under bf16 autocast. Writes ``cuda_check.json`` and
``cuda_check.md`` into ``--out``.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# Optional packages some recipes need beyond the core dependencies.
NEEDS = {"pong-dqn": ("ale_py", "gymnasium"), "alphazero-connect4": ("pyspiel",),
         "alphago-pipeline-connect4": ("pyspiel",), "alphazero-go9": ("pyspiel",)}


def worker(name: str, runs: str, amp: str, device: str) -> None:
    """Child process: run one quick recipe on CUDA, print one JSON line with the outcome."""
    import torch

    from dlnotes.engine.recipes import execute
    t0 = time.time()
    run_dir, result = execute(name, preset="quick", runs_root=runs, device=device, amp=amp, quiet=True)
    out = {"name": name, "run_dir": str(run_dir), "wall_s": round(time.time() - t0, 1),
           "cuda_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if device == "cuda" else 0.0,
           "result": {k: v for k, v in result.items() if isinstance(v, (int, float))}}
    print("CUDA_CHECK " + json.dumps(out), flush=True)


def headline(name: str, result: dict, target: dict | None) -> str:
    if target and target.get("metric") in result:
        return f"{target['metric']}={result[target['metric']]:.4g}"
    keys = [k for k in result if k not in ("wall_s", "peak_rss_mb")]
    return ", ".join(f"{k}={result[k]:.4g}" for k in keys[:2])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="cuda_check")
    p.add_argument("--jobs", type=int, default=4)
    p.add_argument("--timeout", type=float, default=240.0, help="seconds per recipe")
    p.add_argument("--only", nargs="*", default=None, help="recipe names (default: all)")
    p.add_argument("--amp", default="none", choices=["none", "bf16"])
    p.add_argument("--device", default="cuda", help="cuda (the check); cpu to try the script without a GPU")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--runs", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        return worker(a.worker, a.runs, a.amp, a.device)

    import torch

    from dlnotes.data.registry import data_root
    from dlnotes.engine.recipes import load_all
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("cuda_check: torch.cuda.is_available() is False; run this on a machine with a GPU")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    recipes = load_all()
    names = a.only or sorted(recipes)
    root = data_root()
    rows, todo = [], []
    for n in names:
        rec = recipes[n]
        missing = [d for d in rec.datasets if not (root / d).exists()]
        mods = [m for m in NEEDS.get(n, ()) if importlib.util.find_spec(m) is None]
        if missing or mods:
            rows.append({"name": n, "status": "skipped",
                         "why": "no data: " + ",".join(missing) if missing else "no module: " + ",".join(mods)})
        else:
            todo.append(n)
    env = dict(os.environ, DLNOTES_QUIET="1", DLNOTES_SILENT="1",
               OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 4) // a.jobs)))

    def one(n: str) -> dict:
        t0 = time.time()
        cmd = [sys.executable, __file__, "--worker", n, "--runs", str(out / "runs"), "--amp", a.amp, "--device", a.device]
        try:
            pr = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout, env=env)
        except subprocess.TimeoutExpired:
            return {"name": n, "status": "timeout", "wall_s": round(time.time() - t0, 1)}
        lines = [ln for ln in pr.stdout.splitlines() if ln.startswith("CUDA_CHECK ")]
        if pr.returncode or not lines:
            tail = (pr.stderr or pr.stdout).strip().splitlines()[-1:] or [""]
            return {"name": n, "status": f"failed rc={pr.returncode}", "why": tail[0][:200],
                    "wall_s": round(time.time() - t0, 1), "stderr": pr.stderr[-3000:]}
        got = json.loads(lines[-1][len("CUDA_CHECK "):])
        tgt = recipes[n].target
        got["status"] = "ok"
        got["headline"] = headline(n, got["result"], tgt.as_dict() if tgt else None)
        return got

    with cf.ThreadPoolExecutor(a.jobs) as ex:
        for r in ex.map(one, todo):
            rows.append(r)
            print(f"{r['name']:32s} {r['status']:12s} {r.get('wall_s', 0):7.1f}s "
                  f"{r.get('cuda_mib', 0):8.1f} MiB  {r.get('headline', r.get('why', ''))}", flush=True)
    rows.sort(key=lambda r: r["name"])
    info = {"gpu": torch.cuda.get_device_name(0) if a.device == "cuda" else "none (cpu)", "torch": torch.__version__, "amp": a.amp, "rows": rows}
    (out / "cuda_check.json").write_text(json.dumps(info, indent=2))
    md = [f"GPU: {info['gpu']}, torch {info['torch']}, amp {a.amp}", "",
          "| recipe | status | wall s | CUDA MiB | metric (quick preset) |", "|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| `{r['name']}` | {r['status']} | {r.get('wall_s', '')} | {r.get('cuda_mib', '')} | "
                  f"{r.get('headline', r.get('why', ''))} |")
    (out / "cuda_check.md").write_text("\n".join(md) + "\n")
    bad = [r["name"] for r in rows if r["status"] not in ("ok", "skipped")]
    print(f"{len(rows) - len(bad)} ok or skipped, {len(bad)} failed: {' '.join(bad)}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
