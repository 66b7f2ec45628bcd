"""Project the wall time of the Lecture 11 full recipes from a short run of each.

For each recipe: run the full config for a few steps (scoring cheapened), time the training steps
from metrics.jsonl, and project steps x seconds/step. Prints one JSON line per recipe.

    DLNOTES_DATA=../shared/data .venv/bin/python benchmarks/gan_vae_projection.py [recipe ...]
"""
from __future__ import annotations

import json
import sys
import tempfile

from dlnotes.engine import execute
from dlnotes.engine.recipes import get

# (recipe, step field, total steps of the full preset or None to read it, short-run overrides)
PLANS = {
    "gan-mnist-dcgan": ("steps", ["steps=60", "log_every=10", "n_eval=500", "classifier=quick"]),
    "wgan-gp-mnist": ("gen_steps", ["gen_steps=24", "log_every=4", "n_eval=500", "classifier=quick"]),
    "cgan-mnist": ("steps", ["steps=60", "log_every=10", "n_eval=500", "classifier=quick"]),
    "cyclegan-mnist-digits": ("steps", ["steps=30", "log_every=5", "n_eval_a=300", "clf_epochs=1",
                                        "classifier=quick"]),
    "vae-mnist-20d": ("epochs", ["epochs=0.2", "log_every=20", "n_test=200", "n_score=0"]),
    "conv-ae-mnist": ("epochs", ["epochs=0.1", "log_every=10", "n_score=0"]),
}


def step_seconds(run_dir) -> float:
    rows = [json.loads(ln) for ln in open(run_dir / "metrics.jsonl") if ln.strip()]
    rows = [r for r in rows if any(k.endswith("loss") for k in r)]
    (s0, t0), (s1, t1) = (rows[1]["step"], rows[1]["time"]), (rows[-1]["step"], rows[-1]["time"])
    return (t1 - t0) / max(s1 - s0, 1)


def main(names):
    for name in names or PLANS:
        field, overrides = PLANS[name]
        full = getattr(get(name).make_config("full"), field)
        with tempfile.TemporaryDirectory() as tmp:
            run_dir, res = execute(name, overrides=overrides, runs_root=tmp, quiet=True)
            sec = step_seconds(run_dir)
            if field == "epochs":
                short = json.loads((run_dir / "result.json").read_text())["steps"]
                total = short * full / float(dict(o.split("=") for o in overrides)["epochs"])
            else:
                total = full
        print(json.dumps({"recipe": name, "seconds_per_step": round(sec, 4), "full_steps": int(total),
                          "projected_train_minutes": round(sec * total / 60, 1)}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
