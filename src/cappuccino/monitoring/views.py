"""The snapshot as tables and figures: one set of cells and plots for the dashboard page,
the static snapshot page, the terminal monitor and the status report.

Tables are :class:`~cappuccino.reporting.table.Table` objects (rich, Markdown and HTML from
one object); figures are plotly figures as JSON-ready dicts (``{"data", "layout"}``), drawn
in the page by plotly.js.
"""

from __future__ import annotations

import json
from typing import Any

from cappuccino.reporting.table import Table, cell

PRIMARY_ARMS = ("use_ft_encoder", "model", "encoder", "loss")
"""Categorical parameters shown first (the FT vs MLP arm of an RL study is ``use_ft_encoder``)."""
ARM_LABELS = {"use_ft_encoder": "encoder (True: FT-Transformer, False: MLP)"}


def _money(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.2f}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2%}"


def _num(x: float | None, fmt: str = "{:.4f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _age(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f} s"


def _kv(rows: list[list[str]], title: str) -> Table:
    """A two-column table of labels and values."""
    return Table(title=title, header=("", ""), rows=tuple((a, b) for a, b in rows),
                 numeric=(False, False))  # fmt: skip


def ordered_arms(arms: dict[str, Any]) -> list[str]:
    first = [a for a in PRIMARY_ARMS if a in arms]
    return first + [a for a in arms if a not in first]


# -- tables -----------------------------------------------------------------------------------
def overview_table(snap: dict[str, Any]) -> Table:
    rows = []
    for p in snap["paper"]:
        h = p["health"]
        rows.append(["paper", p["state"], h["status"], "; ".join(h["reasons"]) or "-"])
    for s in snap["studies"]:
        rows.append(["study", f"{s['study_name']} ({s['storage']})", s["health"]["status"],
                     "; ".join(s["health"]["reasons"]) or "-"])  # fmt: skip
    for r in snap["reasons"]:
        if not r.startswith(("paper ", "study ")):
            rows.append(["source", r.split(":", 1)[0], "red", r])
    return Table.from_cells(["kind", "what", "status", "why"], rows)


def paper_tables(p: dict[str, Any]) -> list[Table]:
    """Session, P&L against the benchmarks, last decision, positions, orders."""
    h = p["health"]
    if "run_id" not in p:
        return [Table.from_cells(["state", "status", "why"],
                                 [[p["state"], h["status"], "; ".join(h["reasons"])]],
                                 title=f"Paper session {p['state']}")]  # fmt: skip
    ended = p["ended"]
    info = [
        ["status", h["status"] + (f" ({ended['reason']} at {ended['at'][:19]})" if ended else "")],
        ["session", f"{p['mode']} {p['run_id']} on {p['broker']}"],
        ["policy", p["policy"]],
        ["symbols", f"{', '.join(p['symbols'])} ({p['timeframe']})"],
        ["heartbeat age", _age(h.get("heartbeat_age_s"))],
        ["last bar", h.get("last_bar") or "none"],
        ["bars recorded", f"{p['bars_recorded']:,}"],
        ["reconciliation", _recon(p)],
        ["fills / fees", f"{p['fills']:,} / {_money(p['fees'])}"],
    ]
    out = [_kv(info, f"Paper session {p['state']}")]
    pnl = p["pnl"]
    if pnl:
        rows = [["session", _money(pnl["equity"]), _money(pnl["pnl"]),
                 _pct(pnl["return"])]]  # fmt: skip
        start = p["starting_equity"]
        for name, b in pnl["benchmarks"].items():
            if b:
                rows.append([name.replace("_", " "), _money(b["equity"]), _money(b["pnl"]),
                             _pct(b["equity"] / start - 1.0 if start else None)])  # fmt: skip
        out.append(Table(
            title=f"Equity since {pnl['since'][:16]} (quote currency)",
            header=("series", "equity", "P&L", "return"),
            rows=tuple(tuple(r) for r in rows), numeric=(False, True, True, True),
            notes=(f"Drawdown now {_pct(pnl['drawdown'])}, max {_pct(pnl['max_drawdown'])}. "
                   f"{pnl['convention']}.",),
        ))  # fmt: skip
    d = p["last_decision"]
    if d:
        w = d["target_weights"] or {}
        rows = [[s, f"{u:.6g}", _pct(w.get(s)), f"{p['positions']['held'].get(s, 0.0):.8g}"]
                for s, u in d["target_units"].items()]  # fmt: skip
        verified = "verified" if p["positions"]["verified"] else "NOT verified"
        out.append(Table(
            title=f"Last decision: bar {d['bar'][:16]}, decided {d['decided_at'][:19]}",
            header=("symbol", "target units", "target weight", "held"),
            rows=tuple(tuple(r) for r in rows), numeric=(False, True, True, True),
            notes=(f"Positions {verified} against the broker at "
                   f"{p['positions']['verified_at'] or 'never'}. {d['convention']}.",),
        ))  # fmt: skip
    orders = [[o["status"], o["bar"][:16], o["symbol"], o["side"], f"{o['qty']:.8g}",
               _age(o["age_s"]), o["reason"] or "-"] for o in p["open_orders"]]  # fmt: skip
    orders += [[o["status"], o["bar"][:16], o["symbol"], o["side"], f"{o['qty']:.8g}", "-",
                o["reason"] or "-"] for o in p["rejected"]]  # fmt: skip
    orders += [["SKIPPED", k["bar"][:16], k["symbol"], k["side"], f"{k['qty']:.8g}", "-",
                k["reason"]] for k in p["skipped"][-20:]]  # fmt: skip
    by = ", ".join(f"{k} {v:,}" for k, v in p["orders"]["by_status"].items()) or "none"
    out.append(Table(
        title=f"Orders: {p['orders']['total']:,} ({by}); open, rejected and skipped",
        header=("status", "bar", "symbol", "side", "qty", "age", "reason"),
        rows=tuple(tuple(r) for r in orders),
        notes=(f"{p['rejected_count']:,} rejected or expired, {p['skipped_count']:,} skipped in "
               "all (the newest are listed).",),
    ))  # fmt: skip
    return out


def _recon(p: dict[str, Any]) -> str:
    r = p["reconcile"]
    if not r:
        return "not yet"
    if r.get("ok"):
        return f"ok at bar {str(r.get('bar'))[:16]}"
    return f"DIFFERENCES at bar {str(r.get('bar'))[:16]}: {'; '.join(r.get('differences', []))}"


def study_tables(s: dict[str, Any]) -> list[Table]:
    """Counts and rates, top trials, arms, running trials and failures of one study."""
    c = s["counts"]
    info = [
        ["storage", s["storage"]],
        ["kind / metric", f"{s['kind']} / {s['metric']} ({s['direction']})"],
        ["trials", f"{s['trials']:,}: " + (", ".join(f"{k} {v:,}" for k, v in c.items()) or "none")],
        ["pruned share", _pct(s["pruned_share"])],
        ["finished per hour", f"{s['rate']['last_hour']:,} in the last hour; "
                              f"{_num(s['rate']['overall_per_hour'], '{:.1f}')} over the study"],
        ["best", "n/a" if not s["best"] else f"trial {s['best']['trial']}: "
                 f"{s['best']['value']:.4f}"],
        ["health", s["health"]["status"] + "".join(f"; {r}" for r in s["health"]["reasons"])],
    ]  # fmt: skip
    out = [_kv(info, f"Study {s['study_name']}")]
    out.append(Table.from_cells(
        ["trial", "value", "seconds", "parameters"],
        [[t["trial"], f"{t['value']:.4f}", _num(t["seconds"], "{:.1f}"),
          json.dumps(t["params"], default=str)] for t in s["top_trials"]],
        title=f"Top {len(s['top_trials'])} trials ({s['metric']})",
    ))  # fmt: skip
    arm_rows = []
    for name in ordered_arms(s["arms"]):
        for label, a in s["arms"][name].items():
            arm_rows.append([ARM_LABELS.get(name, name), label, a["trials"], a["complete"],
                             _num(a["mean"]), _num(a["median"]),
                             f"{_num(a['q25'])} to {_num(a['q75'])}", _num(a["best"])])  # fmt: skip
    if arm_rows:
        out.append(Table.from_cells(
            ["parameter", "arm", "trials", "complete", "mean", "median", "quartiles", "best"],
            arm_rows, title="Arms: value distribution of complete trials per categorical choice",
        ))  # fmt: skip
    if s["running"]:
        out.append(Table.from_cells(
            ["trial", "started", "heartbeat age", "stale"],
            [[r["trial"], (r["started"] or "")[:19], _age(r["heartbeat_age_s"]),
              "STALE" if r["stale"] else "no"] for r in s["running"]],
            title="Running trials (one per worker)",
        ))  # fmt: skip
    f = s["failures"]
    if f["count"]:
        out.append(Table.from_cells(["trial", "reason"],
                                    [[x["trial"], x["reason"]] for x in f["newest"]],
                                    title=f"Failed trials: {f['count']:,} (newest)"))  # fmt: skip
    rl = s.get("rl")
    if rl and "error" not in rl and rl.get("pbo"):
        dsr, cp = rl.get("deflated_sharpe") or {}, rl.get("cpcv") or {}
        out.append(Table.from_cells(["statistic", "value"], [
            ["PBO (CSCV)", _num(rl["pbo"].get("pbo"), "{:.3f}") if rl["pbo"].get("pbo") is not None
             else rl["pbo"].get("reason", "n/a")],
            ["deflated Sharpe probability", _num(dsr.get("dsr"), "{:.3f}")],
            ["CPCV paths", f"{cp.get('paths', 0)}: mean {_num(cp.get('mean'), '{:.3f}')}, "
                           f"std {_num(cp.get('std'), '{:.3f}')}, min {_num(cp.get('min'), '{:.3f}')}"],
        ], title="Overfitting (RL): " + rl.get("units", "")))  # fmt: skip
    elif rl and "error" in rl:
        out.append(Table.from_cells(["statistic", "value"], [["error", rl["error"]]],
                                    title="Overfitting (RL)"))  # fmt: skip
    return out


def explanation_table(e: dict[str, Any], top: int = 10) -> Table:
    rows = [[str(t["rank"]), t["token"], _pct(t["gradient_share"]),
             "n/a" if t["attention"] is None else f"{t['attention']:.4f}"]
            for t in e["tokens"][:top]]  # fmt: skip
    p = e["period"]
    return Table(title=f"Which tokens drive the policy, {p['start'][:10]} .. {p['end'][:10]} "
                       f"({e['bars']} bars): top {top} by integrated gradients",
                 header=("rank", "token", "share of |IG|", "[CLS] attention"),
                 rows=tuple(tuple(r) for r in rows), numeric=(True, False, True, True),
                 notes=(e["units"],))  # fmt: skip


def runs_table(runs: dict[str, Any]) -> Table:
    rows = []
    for r in runs["runs"]:
        metrics = ", ".join(f"{k} {cell(v)}" for k, v in list(r["metrics"].items())[:5])
        rows.append([r["experiment"], r["name"], r["state"], (r["started"] or "")[:19], metrics])
    return Table.from_cells(["experiment", "run", "state", "started", "key metrics"], rows,
                            title=f"Latest MLflow runs ({runs['tracking_uri']})")  # fmt: skip


def machine_table(m: dict[str, Any]) -> Table:
    gb = 1024**3
    rows = [
        ["CPU", f"{m['cpu']['count']} cores, {m['cpu']['percent']:.0f}% busy, load "
                f"{_num(m['cpu']['load_1m'], '{:.2f}')}"],
        ["memory", f"{(m['memory']['total'] - m['memory']['available']) / gb:.1f} of "
                   f"{m['memory']['total'] / gb:.1f} GiB used ({m['memory']['percent']:.0f}%)"],
        ["disk", f"{m['disk']['free'] / gb:.1f} GiB free of {m['disk']['total'] / gb:.1f} GiB "
                 f"({m['disk']['path']})"],
    ]  # fmt: skip
    gpus = m["gpus"]
    if isinstance(gpus, dict):
        rows.append(["GPU", gpus["none"]])
    else:
        for g in gpus:
            rows.append([f"GPU {g['index']}", f"{g['name']}: {g['utilisation']:.0f}% busy, "
                         f"{g['memory_used'] / gb:.1f} of {g['memory_total'] / gb:.1f} GiB"])  # fmt: skip
    return _kv(rows, "Machine")


def all_tables(snap: dict[str, Any]) -> list[tuple[str, list[Table]]]:
    """(section heading, tables) in page order."""
    out: list[tuple[str, list[Table]]] = [("Health", [overview_table(snap)])]
    for p in snap["paper"]:
        out.append((f"Paper: {p['state']}", paper_tables(p)))
    for s in snap["studies"]:
        out.append((f"Study: {s['study_name']}", study_tables(s)))
    for e in snap.get("explanations", []):
        out.append((f"Explanation: {e['bundle']}", [explanation_table(e)]))
    if snap["runs"]:
        out.append(("MLflow runs", [runs_table(snap["runs"])]))
    if snap["machine"]:
        out.append(("Machine", [machine_table(snap["machine"])]))
    return out


# -- figures ----------------------------------------------------------------------------------
def figures(snap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Plotly figures (JSON-ready) by the id of the element that shows them."""
    out: dict[str, dict[str, Any]] = {}
    for i, p in enumerate(snap["paper"]):
        ser = p.get("series")
        if not ser or not ser["bar"]:
            continue
        data = [{"type": "scatter", "mode": "lines", "name": "session", "x": ser["bar"],
                 "y": ser["equity"]}]  # fmt: skip
        for key in ("buy_and_hold", "equal_weight"):
            if key in ser:
                data.append({"type": "scatter", "mode": "lines", "name": key.replace("_", " "),
                             "x": ser["bar"], "y": ser[key], "line": {"dash": "dot"}})  # fmt: skip
        out[f"paper-{i}-equity"] = {"data": data, "layout": {
            "title": {"text": "Equity vs benchmarks (quote currency, no fees on benchmarks)"},
            "height": 340, "margin": {"t": 40, "b": 40}}}  # fmt: skip
    for i, s in enumerate(snap["studies"]):
        h = s["history"]
        if h["trial"]:
            out[f"study-{i}-history"] = {"data": [
                {"type": "scatter", "mode": "markers", "name": "complete trial", "x": h["trial"],
                 "y": h["value"]},
                {"type": "scatter", "mode": "lines", "name": "best so far", "x": h["trial"],
                 "y": h["best"], "line": {"shape": "hv"}},
            ], "layout": {"title": {"text": f"{s['study_name']}: {s['metric']} by trial"},
                          "height": 320, "margin": {"t": 40, "b": 40},
                          "xaxis": {"title": {"text": "trial"}}}}  # fmt: skip
        arms = [a for a in ordered_arms(s["arms"])
                if sum(1 for v in s["arms"][a].values() if v["complete"]) >= 2][:3]  # fmt: skip
        for a in arms:
            out[f"study-{i}-arm-{a}"] = {"data": [
                {"type": "box", "name": label, "y": v["values"], "boxpoints": "all"}
                for label, v in s["arms"][a].items() if v["complete"]
            ], "layout": {"title": {"text": f"{ARM_LABELS.get(a, a)}: {s['metric']}"},
                          "height": 300, "margin": {"t": 40, "b": 40}, "showlegend": False}}  # fmt: skip
    for i, e in enumerate(snap.get("explanations", [])):
        maps = [("share of |integrated gradients|", e["gradient_map"])]
        if e.get("attention_map"):
            maps.append(("[CLS] attention", e["attention_map"]))
        for k, (title, m) in enumerate(maps):
            out[f"explain-{i}-{k}"] = {"data": [{"type": "heatmap", "z": m, "x": e["features"],
                                                 "y": e["symbols"], "colorscale": "Viridis"}],
                                       "layout": {"title": {"text": f"{title} (asset x feature)"},
                                                  "height": 160 + 40 * len(e["symbols"]),
                                                  "margin": {"t": 40, "b": 90}}}  # fmt: skip
    return out


# -- HTML ------------------------------------------------------------------------------------
def body_html(snap: dict[str, Any]) -> str:
    """The page's content (everything the refresh replaces): banner, sections, tables and
    the empty elements the figures are drawn into."""
    from html import escape

    figs = figures(snap)
    parts = [f'<div id="banner" class="banner {snap["status"]}" data-status="{snap["status"]}">'
             f'<b>{snap["status"].upper()}</b> at {escape(snap["at"][:19])} UTC'
             + "".join(f"<div>{escape(r)}</div>" for r in snap["reasons"]) + "</div>"]  # fmt: skip
    for heading, tables in all_tables(snap):
        parts.append(f"<h2>{escape(heading)}</h2>")
        for t in tables:
            if t.title:
                parts.append(f"<h3>{escape(t.title)}</h3>")
            parts.append(t.html())
            parts += [f"<p>{escape(n)}</p>" for n in t.notes]
        prefix = _figure_prefix(snap, heading)
        for fid in figs:
            if prefix and fid.startswith(prefix):
                parts.append(f'<div class="fig" id="{fid}"></div>')
    return "\n".join(parts)


def _figure_prefix(snap: dict[str, Any], heading: str) -> str | None:
    for i, p in enumerate(snap["paper"]):
        if heading == f"Paper: {p['state']}":
            return f"paper-{i}-"
    for i, s in enumerate(snap["studies"]):
        if heading == f"Study: {s['study_name']}":
            return f"study-{i}-"
    for i, e in enumerate(snap.get("explanations", [])):
        if heading == f"Explanation: {e['bundle']}":
            return f"explain-{i}-"
    return None


def view_doc(snap: dict[str, Any]) -> dict[str, Any]:
    """What the page's script draws: the content HTML, the figures and the status."""
    return {"at": snap["at"], "status": snap["status"], "html": body_html(snap),
            "figures": figures(snap)}  # fmt: skip
