"""The ``dlnotes`` command: list | run | reproduce | sample | data."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


EXTENSION_MODULES = ["dlnotes.rl.play", "dlnotes.selfsup.classify"]


def _err(msg: str, code: int = 2) -> int:
    print(f"dlnotes: error: {msg}", file=sys.stderr)
    return code


def cmd_list(args) -> int:
    from .engine import recipes as R

    reg = R.load_all()
    by_lecture: dict[int, list] = {}
    for rec in reg.values():
        by_lecture.setdefault(rec.lecture, []).append(rec)
    for lec in sorted(by_lecture):
        print(f"Lecture {lec}")
        for rec in sorted(by_lecture[lec], key=lambda r: r.name):
            tgt = f"target {rec.target} ({rec.target.source})" if rec.target else "no target (study)"
            print(f"  {rec.name:28s} {rec.summary}")
            print(f"  {'':28s} {tgt}; data: {', '.join(rec.datasets) or 'built-in'}")
    return 0


def _run_opts(p):
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--amp", default="none", choices=["none", "bf16"], help="bf16 autocast where supported")
    p.add_argument("--runs", default="runs", help="folder that holds run directories")


def cmd_run(args) -> int:
    from .engine import recipes as R
    from .engine.config import ConfigError
    from .engine.run import NonFiniteLoss
    from .data import DataError

    if not args.recipe and not args.resume:
        return _err("give a recipe name (see `dlnotes list`) or --resume RUN_DIR")
    try:
        run_dir, result = R.execute(args.recipe, preset="quick" if args.quick else args.preset,
                                    overrides=args.set or [], seed=args.seed, resume=args.resume,
                                    runs_root=args.runs, device=args.device, amp=args.amp,
                                    compile=args.compile, ckpt_every=args.ckpt_every,
                                    max_minutes=args.max_minutes)
    except R.UnknownRecipe as e:
        return _err(e.args[0])
    except ConfigError as e:
        return _err(str(e))
    except (DataError, FileNotFoundError) as e:
        return _err(str(e), 3)
    except NonFiniteLoss as e:
        return _err(str(e), 4)
    except KeyboardInterrupt:
        print("dlnotes: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(result))
    print(f"run directory: {run_dir}", file=sys.stderr)
    return 0


def cmd_reproduce(args) -> int:
    from .engine import report
    from .engine.recipes import UnknownRecipe

    try:
        recs = report.select(args.lecture, args.recipes.split(",") if args.recipes else None)
    except UnknownRecipe as e:
        return _err(e.args[0])
    if not recs:
        return _err(f"no recipes for lecture {args.lecture}")
    out = report.reproduce(recs, preset="quick" if args.quick else "full", runs_root=args.runs, out=args.out,
                           seed=args.seed, device=args.device, amp=args.amp)
    print(f"report: {out / 'report.md'} and {out / 'report.html'}")
    return 0


def cmd_sample(args) -> int:
    from .engine.recipes import get

    run_dir = Path(args.run_dir)
    cfg_path = run_dir / "config.json"
    if not cfg_path.exists():
        return _err(f"{cfg_path} not found: give a run directory written by `dlnotes run`")
    saved = json.loads(cfg_path.read_text())
    rec = get(saved["recipe"])
    args.out = Path(args.out) if args.out else run_dir / f"samples-seed{args.seed}.png"  # image models only
    import importlib

    mod = importlib.import_module(rec.fn.__module__)
    if not hasattr(mod, "sample_cli"):
        return _err(f"recipe {rec.name} has nothing to sample")
    try:
        print(mod.sample_cli(run_dir, saved, args))
    except FileNotFoundError as e:
        return _err(str(e), 3)
    except (ValueError, KeyError) as e:
        return _err(f"cannot sample from {run_dir}: {e}")
    return 0


def cmd_data(args) -> int:
    import dlnotes.data.registry as reg

    names = sorted(reg.registry())
    if args.action == "list":
        print(f"data root: {reg.data_root()}")
        for n in names:
            files = reg.registry()[n]["files"]
            have = sum((reg.data_root() / n / f).exists() for f in files)
            state = "present" if have == len(files) else (f"partial {have}/{len(files)}" if have else "absent")
            print(f"  {n:16s} {len(files):4d} files  {state}")
        return 0
    targets = args.names or names
    unknown = [n for n in targets if n not in names]
    if unknown:
        return _err(f"unknown dataset(s) {unknown}; known: {', '.join(names)}")
    if args.action == "verify":
        bad = 0
        for n in targets:
            res = reg.verify(n)
            ok = sum(v == "ok" for v in res.values())
            print(f"  {n:16s} {ok}/{len(res)} ok" + "".join(f"\n    {f}: {v}" for f, v in res.items() if v != "ok"))
            bad += ok != len(res)
        return 1 if bad else 0
    if args.action == "fetch":
        if not args.names:
            return _err("name the dataset(s) to fetch, e.g. `dlnotes data fetch ptb`")
        for n in targets:
            try:
                got = reg.fetch(n)
            except reg.DataError as e:
                return _err(str(e), 3)
            print(f"  {n}: {len(got)} file(s) downloaded, all checksums match")
        return 0
    return _err(f"unknown data action {args.action}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dlnotes", description="Runnable lectures 6-13 of a deep-learning course.")
    sub = p.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="recipes grouped by lecture, with their targets").set_defaults(fn=cmd_list)

    r = sub.add_parser("run", help="run one recipe")
    r.add_argument("recipe", nargs="?")
    r.add_argument("--quick", action="store_true", help="the under-a-minute preset")
    r.add_argument("--preset", default="full")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    r.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    r.add_argument("--compile", action="store_true", help="torch.compile the model")
    r.add_argument("--ckpt-every", type=int, default=None, help="checkpoint every N steps")
    r.add_argument("--max-minutes", type=float, default=0.0, metavar="M",
                   help="stop training after M minutes (checkpoint, then final evaluation as usual)")
    _run_opts(r)
    r.set_defaults(fn=cmd_run)

    rp = sub.add_parser("reproduce", help="run recipes and write report.md / report.html")
    rp.add_argument("--quick", action="store_true")
    rp.add_argument("--lecture", type=int)
    rp.add_argument("--recipes", help="comma-separated recipe names")
    rp.add_argument("--out", help="report folder (default runs/reports/<time>)")
    _run_opts(rp)
    rp.set_defaults(fn=cmd_reproduce)

    s = sub.add_parser("sample", help="sample from a trained run")
    s.add_argument("run_dir")
    s.add_argument("--prompt", default="")
    s.add_argument("--length", type=int, default=300)
    s.add_argument("--temperature", type=float, default=0.8)
    s.add_argument("--top-k", type=int, default=0)
    s.add_argument("--top-p", type=float, default=None, help="nucleus sampling (language models that support it)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--src", help="source sentence for translation models")
    s.add_argument("--n", type=int, default=64, help="number of samples for image models")
    s.add_argument("--out", help="where image models write their grid (PNG; default RUN_DIR/samples-seed<seed>.png)")
    s.set_defaults(fn=cmd_sample)

    d = sub.add_parser("data", help="list | verify | fetch datasets")
    d.add_argument("action", choices=["list", "verify", "fetch"])
    d.add_argument("names", nargs="*")
    d.set_defaults(fn=cmd_data)

    # Topic modules may add subcommands (e.g. `dlnotes play`, `dlnotes classify`) with add_cli(sub).
    import importlib
    import importlib.util
    for mod in EXTENSION_MODULES:
        if importlib.util.find_spec(mod.rsplit(".", 1)[0]) and importlib.util.find_spec(mod):
            importlib.import_module(mod).add_cli(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
