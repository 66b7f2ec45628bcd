"""``dlnotes reproduce``: run a set of recipes and write ``report.md`` and ``report.html``."""
from __future__ import annotations

import html
import json
import os
import sys
import time
import traceback
from pathlib import Path

from ..data.registry import DataError
from . import recipes as R
from .run import atomic_write_text


def select(lecture: int | None = None, names: list[str] | None = None) -> list[R.Recipe]:
    reg = R.load_all()
    if names:
        return [R.get(n) for n in names]
    recs = sorted(reg.values(), key=lambda r: (r.lecture, r.name))
    return [r for r in recs if lecture is None or r.lecture == lecture]


def _status(row: dict, met) -> str:
    if row["error"]:
        return "no data" if row["error"].startswith("no data") else "error"
    return "pass" if met else ("fail" if met is False else "-")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def reproduce(recipes: list[R.Recipe], *, preset: str = "full", runs_root="runs", out: str | Path | None = None,
              seed: int = 0, device: str = "auto", amp: str = "none") -> Path:
    out = Path(out or Path(runs_root) / "reports" / time.strftime("%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for rec in recipes:
        print(f"== {rec.name} ({preset})", file=sys.stderr, flush=True)
        try:
            run_dir, result = R.execute(rec.name, preset=preset, runs_root=runs_root, seed=seed, device=device, amp=amp)
            rows.append({"recipe": rec, "dir": Path(run_dir), "result": result, "error": None})
        except DataError as e:  # data root lacks this recipe's dataset: say so, go on
            print(f"   skipped: {str(e).splitlines()[0]}", file=sys.stderr)
            rows.append({"recipe": rec, "dir": None, "result": {}, "error": f"no data: {str(e).splitlines()[0]}"})
        except Exception as e:  # one broken recipe must not hide the others' results
            traceback.print_exc()
            rows.append({"recipe": rec, "dir": None, "result": {}, "error": f"{type(e).__name__}: {e}"})
    write_report(rows, out, preset)
    return out


def write_report(rows: list[dict], out: Path, preset: str) -> None:
    md = [f"# dlnotes report ({preset} preset)", "",
          f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} on {os.cpu_count()} CPU cores.", "",
          "| recipe | lecture | metric | value | target | source | met | wall (s) | command |",
          "|---|---|---|---|---|---|---|---|---|"]
    body = []
    for row in rows:
        rec, res = row["recipe"], row["result"]
        tgt = rec.target
        metric = tgt.metric if tgt else next((k for k in res if k not in ("wall_s", "peak_rss_mb", "target")), "")
        value = res.get(metric)
        met = res.get("target", {}).get("met") if tgt else None
        status = _status(row, met)
        cmd = R.command_for(rec, preset)
        md.append(f"| {rec.name} | {rec.lecture} | {metric} | {_fmt(value)} | {tgt or ''} | "
                  f"{tgt.source if tgt else ''} | {status} | {_fmt(res.get('wall_s'))} | `{cmd}` |")
        body.append((rec, row, res, status))
    md.append("")
    if preset != "full":
        md += ["Targets apply to the `full` preset; a quick run is a smoke test of the pipeline, so its "
               "`met` column is expected to say fail for most recipes.", ""]
    for rec, row, res, status in body:
        md.append(f"## {rec.name}")
        md.append(f"Lecture {rec.lecture}, {rec.section}. {rec.summary}")
        md.append("")
        if row["error"]:
            md += [f"**error**: `{row['error']}`", ""]
            continue
        md.append("| metric | value |")
        md.append("|---|---|")
        for k, v in res.items():
            if k != "target":
                md.append(f"| {k} | {_fmt(v)} |")
        md.append("")
        for png in sorted(row["dir"].glob("*.png")):
            rel = os.path.relpath(png, out)
            md.append(f"![{png.stem}]({rel})")
        for txt in sorted(row["dir"].glob("sample*.txt")):
            md += ["```", txt.read_text()[:1500], "```"]
        md.append("")
    text = "\n".join(md)
    atomic_write_text(out / "report.md", text)
    atomic_write_text(out / "report.html", _to_html(rows, out, preset))
    atomic_write_text(out / "results.json", json.dumps(
        {r["recipe"].name: (r["result"] if not r["error"] else {"error": r["error"]}) for r in rows}, indent=2))


def _to_html(rows, out: Path, preset: str) -> str:
    esc = html.escape
    parts = ["<!doctype html><meta charset='utf-8'><title>dlnotes report</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}.pass{background:#dfd}.fail{background:#fdd}"
             ".error{background:#fbb}img{max-width:100%}</style>",
             f"<h1>dlnotes report ({esc(preset)} preset)</h1><table><tr><th>recipe</th><th>lecture</th>"
             "<th>metric</th><th>value</th><th>target</th><th>source</th><th>met</th><th>wall (s)</th></tr>"]
    for row in rows:
        rec, res = row["recipe"], row["result"]
        tgt = rec.target
        metric = tgt.metric if tgt else ""
        met = res.get("target", {}).get("met") if tgt else None
        status = _status(row, met)
        parts.append(f"<tr class='{status}'><td><a href='#{esc(rec.name)}'>{esc(rec.name)}</a></td><td>{rec.lecture}</td>"
                     f"<td>{esc(metric)}</td><td>{esc(_fmt(res.get(metric)))}</td><td>{esc(str(tgt or ''))}</td>"
                     f"<td>{esc(tgt.source if tgt else '')}</td><td>{status}</td><td>{esc(_fmt(res.get('wall_s')))}</td></tr>")
    parts.append("</table>")
    for row in rows:
        rec = row["recipe"]
        parts.append(f"<h2 id='{esc(rec.name)}'>{esc(rec.name)}</h2><p>Lecture {rec.lecture}, {esc(rec.section)}. "
                     f"{esc(rec.summary)}</p>")
        if row["error"]:
            parts.append(f"<p class='error'>{esc(row['error'])}</p>")
            continue
        parts.append("<pre>" + esc(json.dumps(row["result"], indent=1)) + "</pre>")
        for png in sorted(row["dir"].glob("*.png")):
            parts.append(f"<img src='{esc(os.path.relpath(png, out))}' alt='{esc(png.stem)}'>")
        for txt in sorted(row["dir"].glob("sample*.txt")):
            parts.append("<pre>" + esc(txt.read_text()[:1500]) + "</pre>")
    return "\n".join(parts)
