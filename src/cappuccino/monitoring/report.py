"""``cappuccino report status``: the written status report, from one snapshot (and, when
given, an A/B campaign's ``compare.json``), as Markdown or HTML.

Sections: an executive summary, study statistics, top trials, the A/B verdicts with their
intervals (the arms of each study's categorical parameters, and the campaign's arms against
each other and against the benchmarks), the health of workers and paper sessions, and the
next actions the numbers support. Every action names the figure it rests on.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cappuccino.evaluation.compare import holm, mean_ci, welch_t_test
from cappuccino.monitoring.views import ARM_LABELS, ordered_arms, paper_tables, study_tables
from cappuccino.reporting.pages import Section, render_page
from cappuccino.reporting.table import Table
from cappuccino.utils.io import atomic_write_bytes

ALPHA = 0.05
MIN_TRIALS = 20
"""Complete trials below which a study's arms are too few to read."""
MAX_ARM_PARAMS = 4


def study_ab(s: dict[str, Any]) -> list[dict[str, Any]]:
    """Per categorical parameter (the primary arms first): each arm's mean value with its
    95% t interval, and Welch tests of the best arm against each other one (Holm-adjusted).
    Arms with fewer than two complete trials are listed without an interval."""
    out = []
    maximize = s["direction"] == "maximize"
    for name in ordered_arms(s["arms"])[:MAX_ARM_PARAMS]:
        arms = s["arms"][name]
        cis = {}
        for label, a in arms.items():
            if a["complete"] >= 2:
                cis[label] = mean_ci(a["values"])
        if len(cis) < 2:
            continue
        best = (max if maximize else min)(cis, key=lambda k: cis[k]["mean"])
        tests = [{"arm": label, **welch_t_test(arms[best]["values"], arms[label]["values"])}
                 for label in cis if label != best]  # fmt: skip
        for t, p in zip(tests, holm([t["p"] for t in tests]), strict=True):
            t["p_adjusted"] = p
        out.append({"parameter": name, "best": best, "intervals": cis, "tests": tests,
                    "verdict": _verdict(name, best, tests, maximize)})  # fmt: skip
    return out


def _verdict(name: str, best: str, tests: list[dict[str, Any]], maximize: bool) -> str:
    label = ARM_LABELS.get(name, name)
    sig = [t for t in tests if t["p_adjusted"] < ALPHA]
    if len(sig) == len(tests):
        return (f"{label}: {best} is significantly {'higher' if maximize else 'lower'} than "
                f"every other arm at {ALPHA:g} (Welch t, Holm)")  # fmt: skip
    rest = ", ".join(f"{t['arm']} (p {t['p_adjusted']:.3g})" for t in tests if t not in sig)
    return (f"{label}: {best} has the best mean, but not significantly better than {rest} at "
            f"{ALPHA:g} (Welch t, Holm)")  # fmt: skip


def campaign_ab(compare: dict[str, Any]) -> dict[str, Any]:
    """An A/B campaign's arms (Sharpe mean and interval), its best benchmark and verdicts."""
    bench = compare.get("benchmarks", {})
    best_b = max(bench.items(), key=lambda kv: kv[1].get("sharpe", -math.inf)) if bench else None
    arms = {}
    for arm, a in compare.get("arms", {}).items():
        sh = a.get("sharpe") or {}
        arms[arm] = {"sharpe": sh, "degenerate_runs": a.get("degenerate_runs", 0),
                     "degenerate_matches": a.get("degenerate_matches", []),
                     "beats_benchmark": best_b is not None and sh.get("low") is not None
                     and sh["low"] > best_b[1]["sharpe"]}  # fmt: skip
    return {"arms": arms, "benchmark": None if best_b is None else
            {"name": best_b[0], "sharpe": best_b[1]["sharpe"]},
            "verdicts": compare.get("verdicts", []), "warnings": compare.get("warnings", []),
            "period": compare.get("period"), "seeds": compare.get("seeds")}  # fmt: skip


def next_actions(snap: dict[str, Any], ab: dict[str, Any] | None) -> list[str]:
    """What the numbers support, most urgent first."""
    acts: list[str] = []
    for p in snap["paper"]:
        h = p["health"]
        if h["status"] == "red":
            acts.append(f"Paper session {p['state']} is RED ({'; '.join(h['reasons'])}): read "
                        "its runner's log, then restart `cappuccino paper run` on the same "
                        "--state (it resumes after its last processed bar).")  # fmt: skip
    for r in snap["reasons"]:
        if r.startswith(("storage ", "mlflow ")):
            acts.append(f"A source could not be read: {r}.")
    for s in snap["studies"]:
        for r in s["health"]["reasons"]:
            acts.append(f"Study {s['study_name']}: {r}: restart its workers (`cappuccino tune "
                        "--workers N`); Optuna fails and re-queues the stale trial.")  # fmt: skip
        f = s["failures"]
        if f["count"]:
            newest = f["newest"][-1]["reason"] if f["newest"] else "n/a"
            acts.append(f"Study {s['study_name']}: {f['count']} failed trials (newest: "
                        f"{newest}); fix the cause before adding trials.")  # fmt: skip
    if ab and ab["benchmark"]:
        b = ab["benchmark"]
        winners = [a for a, v in ab["arms"].items() if v["beats_benchmark"]]
        if not winners:
            acts.append(f"No arm of the A/B campaign beats {b['name']} (Sharpe {b['sharpe']:.3f}"
                        "; no arm's 95% interval lies above it): do not deploy.")  # fmt: skip
        else:
            acts.append(f"{', '.join(winners)} beat {b['name']} (95% Sharpe interval above "
                        f"{b['sharpe']:.3f}): paper-trade the best of them before any "
                        "live use.")  # fmt: skip
        degenerate = [a for a, v in ab["arms"].items() if v["degenerate_runs"]]
        if degenerate:
            like = sorted({m for a in degenerate for m in ab["arms"][a]["degenerate_matches"]})
            acts.append(f"Arms {', '.join(degenerate)} have runs that trade like "
                        f"{', '.join(like)}: they learned a benchmark, not a strategy.")  # fmt: skip
    for s in snap["studies"]:
        n = s["counts"].get("COMPLETE", 0)
        if s["kind"] == "rl":
            rl = s.get("rl") or {}
            if s["best"] is not None and s["best"]["value"] <= 0:
                acts.append(f"Study {s['study_name']}: its best trial does not beat the "
                            f"benchmark out of sample ({s['best']['value']:+.3f}): do not "
                            "deploy.")  # fmt: skip
            pbo = (rl.get("pbo") or {}).get("pbo")
            if pbo is not None and pbo > 0.5:
                acts.append(f"Study {s['study_name']}: PBO {pbo:.2f} > 0.5: its best in-sample "
                            "trial is more likely than not to underperform out of sample.")  # fmt: skip
            dsr = (rl.get("deflated_sharpe") or {}).get("dsr")
            if dsr is not None and dsr < 0.95:
                acts.append(f"Study {s['study_name']}: deflated Sharpe probability {dsr:.2f} < "
                            f"0.95 after {s['finished']} trials: the best Sharpe is not "
                            "significant.")  # fmt: skip
        if n < MIN_TRIALS:
            acts.append(f"Study {s['study_name']}: {n} complete trial(s) (< {MIN_TRIALS}): too few "
                        "to read its arms; run more trials before choosing.")  # fmt: skip
    for p in snap["paper"]:
        pnl = p.get("pnl")
        ew = (pnl or {}).get("benchmarks", {}).get("equal_weight") if pnl else None
        if pnl and ew and p.get("starting_equity"):
            gap = pnl["return"] - (ew["equity"] / p["starting_equity"] - 1.0)
            if gap < 0:
                acts.append(f"Paper session {p['state']} trails equal weight by {-gap:.2%} "
                            f"since {pnl['since'][:16]} (the benchmark pays no fees).")  # fmt: skip
    return acts or ["No action: every source is healthy and nothing above needs a decision."]


def build(snap: dict[str, Any], compare: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report's content as data (also its ``--json`` form)."""
    ab = campaign_ab(compare) if compare else None
    return {"snapshot": snap, "study_ab": {s["study_name"]: study_ab(s) for s in snap["studies"]},
            "campaign_ab": ab, "next_actions": next_actions(snap, ab)}  # fmt: skip


def _summary(r: dict[str, Any]) -> list[str]:
    snap = r["snapshot"]
    paper = [f"{p['state']} {p['health']['status']}" for p in snap["paper"]]
    studies = [f"{s['study_name']} ({s['trials']} trials, best "
               f"{'n/a' if not s['best'] else format(s['best']['value'], '.4f')})"
               for s in snap["studies"]]  # fmt: skip
    lines = [f"Overall status: **{snap['status'].upper()}** at {snap['at'][:19]} UTC."]
    if studies:
        lines.append(f"Studies: {'; '.join(studies)}.")
    if paper:
        lines.append(f"Paper sessions: {'; '.join(paper)}.")
    lines.append(f"First action: {r['next_actions'][0]}")
    return lines


def _tables(r: dict[str, Any]) -> list[Section]:
    snap = r["snapshot"]
    out: list[Section] = []
    for s in snap["studies"]:
        for k, t in enumerate(study_tables(s)):
            out.append(Section(t, f"Study {s['study_name']}" if k == 0 else ""))
        for ab in r["study_ab"].get(s["study_name"], []):
            rows = [[label, f"{c['mean']:.4f}", f"{c['low']:.4f} to {c['high']:.4f}", int(c["n"])]
                    for label, c in ab["intervals"].items()]  # fmt: skip
            out.append(Section(Table.from_cells(
                ["arm", "mean", "95% interval (t)", "complete trials"], rows,
                title=f"A/B within the study: {ARM_LABELS.get(ab['parameter'], ab['parameter'])}",
            ), text=ab["verdict"]))  # fmt: skip
    ab = r["campaign_ab"]
    if ab:
        b = ab["benchmark"]
        rows = [[arm, f"{v['sharpe'].get('mean', math.nan):.3f}",
                 f"{v['sharpe'].get('low', math.nan):.3f} to {v['sharpe'].get('high', math.nan):.3f}",
                 "yes" if v["beats_benchmark"] else "no", v["degenerate_runs"]]
                for arm, v in ab["arms"].items()]  # fmt: skip
        text = (f"Best benchmark: {b['name']}, Sharpe {b['sharpe']:.3f}. " if b else "") + " ".join(
            ab["warnings"])  # fmt: skip
        out.append(Section(Table.from_cells(
            ["arm", "Sharpe (ann.) mean", "95% interval over seeds", "beats the benchmark",
             "degenerate runs"], rows, title="A/B campaign: arms out of sample"), text=text))  # fmt: skip
        out.append(Section(Table.from_cells(["verdict"], [[v] for v in ab["verdicts"]],
                                            title="A/B campaign verdicts")))  # fmt: skip
    for p in snap["paper"]:
        for k, t in enumerate(paper_tables(p)):
            out.append(Section(t, f"Paper session {p['state']}" if k == 0 else ""))
    return out


def markdown(r: dict[str, Any]) -> str:
    lines = ["# Cappuccino status report", "", "## Executive summary", ""]
    lines += [f"- {x}" for x in _summary(r)]
    lines += ["", "## Next actions", ""] + [f"{i}. {a}" for i, a in
                                             enumerate(r["next_actions"], 1)]  # fmt: skip
    lines += ["", "## Details", ""]
    for s in _tables(r):
        lines += [s.table.markdown(), ""]
        if s.text:
            lines += [s.text, ""]
    return "\n".join(lines)


def html(r: dict[str, Any]) -> str:
    return render_page(
        "base.html.j2", title="Cappuccino status report",
        intro=[x.replace("**", "") for x in _summary(r)]
        + [f"Next action {i}: {a}" for i, a in enumerate(r["next_actions"], 1)],
        sections=_tables(r),
    )  # fmt: skip


def write(r: dict[str, Any], path: Path) -> Path:
    """Markdown for ``.md``, HTML for ``.html``/``.htm`` (atomic)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".md", ".html", ".htm"):
        raise ValueError(f"--out: {path}: expected a .md or .html file")
    text = markdown(r) if suffix == ".md" else html(r)
    atomic_write_bytes(path, text.encode())
    return path
