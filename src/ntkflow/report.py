"""The HTML report: one self-contained page (figures embedded) that opens with the verdict.

Rendered from saved results only (`summary.json` and the figures), so `ntkflow report
RESULTS_DIR` can re-render it any time.
"""

import base64
import html
import json
import math
import re
from pathlib import Path
from typing import Any

from ._certificate_rows import certificate_rows
from ._quantities import FLOW_SCALARS
from .plotting import captions, stopped_at

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 62rem; color: #1d2330; line-height: 1.45; padding: 0 1rem; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #d8dde6; padding-bottom: .2rem; }
.sub { color: #5b6475; margin-top: 0; }
.verdict { border-radius: 8px; padding: 0.8rem 1.2rem; margin: 1rem 0; }
.ok { background: #e8f6ec; border: 1px solid #6fbf84; }
.bad { background: #fdeceb; border: 1px solid #e08a84; }
.warn { background: #fff6e0; border: 1px solid #e0b84f; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.92rem; }
th, td { border: 1px solid #d8dde6; padding: 0.25rem 0.6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.held { color: #1d7a3a; font-weight: 600; } .failed { color: #b3261e; font-weight: 600; }
.inconclusive { color: #9a6b00; font-weight: 600; }
figure { margin: 1.2rem 0 2rem; } figure img { max-width: 100%; border: 1px solid #e3e6ec; }
figcaption { color: #3d4556; font-size: 0.92rem; margin-top: 0.3rem; }
pre { background: #f5f7fa; padding: 0.8rem; overflow-x: auto; font-size: 0.85rem; }
.wide { overflow-x: auto; max-width: 100%; }
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(x: Any) -> str:
    if isinstance(x, str):
        return {"inf": "∞", "-inf": "−∞", "nan": "nan"}.get(x, x)
    if isinstance(x, float):
        return f"{x:.6g}" if math.isfinite(x) else str(x)
    return str(x)


def _figure(name: str, path: Path, caption: str = "") -> str:
    """A figure with its PNG embedded as a data URI (the report needs no other file)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return (
        f'<figure id="fig-{_e(name)}"><img alt="{_e(name)}" '
        f'src="data:image/png;base64,{data}">{cap}</figure>'
    )


# How a solve that stopped early stopped (`verification.status`, `solver.status`).
_STOPPED = {
    "max_steps": "the solver's step limit (max_steps) was reached",
    "nonfinite": "the gradient flow produced NaN or inf",
    "gd_diverged": "gradient descent diverged",
}
# Results written before the checks described only what they test (and before the exit
# check stopped asserting T = ∞) carry these in their descriptions; they are not shown.
_OLD_NOTES = re.compile(r"\s*\((?:exit time T = ∞ within the horizon|no finite values)\)$")


def _truncation(summary: dict[str, Any]) -> str:
    """The warning a truncated solve opens the verdict with: what happened, the time
    reached against `t1`, and the fix (the solve's message); empty when it completed."""
    stop = stopped_at(summary)
    if stop is None:
        return ""
    ver, solver = summary.get("verification") or {}, summary.get("solver") or {}
    # The verification's account when it has one, else the solver's (older results).
    source = ver if ver.get("status") not in (None, "success") else solver
    status = source.get("status") or "stopped"
    message = source.get("message") or solver.get("message") or ""
    reached, t1 = stop
    if not math.isfinite(reached):
        where = f"The flows did not all reach t1 = {_num(t1)}"
    elif math.isfinite(t1) and reached >= t1:
        where = f"The gradient flow itself reached t1 = {_num(t1)}"
    else:
        where = f"The gradient flow reached t = {_num(reached)} of t1 = {_num(t1)}"
    return (
        '<div class="verdict warn" id="truncated"><strong>The solve stopped early: '
        f"{_e(_STOPPED.get(status, status))}.</strong> {where}; nothing after that was "
        "computed, so a conclusion about [0, t1] that was not already violated there is "
        f"inconclusive. {_e(message)}</div>"
    )


def _shown(check: dict[str, Any], stop: tuple[float, float] | None) -> tuple[Any, str]:
    """A check's state and, when inconclusive, why. Results written before truncated
    solves were decided say a gradient-flow check held over time never computed: shown
    here as inconclusive."""
    holds, reason = check["holds"], check.get("reason")
    old_format = "reason" not in check
    if holds is True and stop is not None and old_format and check.get("flow") == "gradient":
        where = f"t = {_num(stop[0])}, " if math.isfinite(stop[0]) else ""
        return None, f"it held up to {where}where the solve stopped, before t1 = {_num(stop[1])}"
    if holds is None and not reason:
        if not isinstance(check.get("margin"), int | float) or not math.isfinite(check["margin"]):
            reason = "no finite values were computed"
        else:
            reason = (
                f"at t = {_num(check['t'])} the value {_num(check['value'])} is within its "
                f"error budget {_num(check['error'])} of the bound {_num(check['bound'])}"
            )
    return holds, reason or ""


def _check_line(check: dict[str, Any], stop: tuple[float, float] | None) -> str:
    """One check, saying only what was shown: held, FAILED from t = …, or inconclusive
    and why."""
    holds, reason = _shown(check, stop)
    desc = _OLD_NOTES.sub("", str(check["description"]))
    if holds is True:
        state = '<span class="held">held</span>'
    elif holds is False:
        first = check.get("first_violation")
        when = f" from t = {_num(first)}" if first is not None else ""
        state = f'<span class="failed">FAILED{when}</span>'
    else:
        state = '<span class="inconclusive">inconclusive</span>'
    detail = []
    margin = check.get("margin")
    if isinstance(margin, int | float) and math.isfinite(margin):
        detail.append(f"worst margin {_num(margin)} at t = {_num(check['t'])}")
    detail.append("guaranteed" if check.get("guaranteed") else "observed")
    why = f": {_e(reason)}" if holds is None and reason else ""
    return f"<li>{state} — {_e(desc)}{why} ({'; '.join(detail)})</li>"


def _exit_text(ver: dict[str, Any], stop: tuple[float, float] | None) -> str:
    """What the computed path showed about the ball of radius B."""
    exit_check = next((c for c in ver["checks"] if c["name"] == "exit_time"), None)
    exit_time = ver.get("exit_time")
    if isinstance(exit_time, int | float) and math.isfinite(exit_time):
        return f"The path left the ball of radius B at T = {_num(exit_time)}."
    if exit_check is None:
        return ""
    if stop is not None:
        until = f"t = {_num(stop[0])}, where " if math.isfinite(stop[0]) else ""
        return (
            f"The path did not leave the ball of radius B before {until}the solve stopped "
            f"(t1 = {_num(stop[1])}); whether it leaves later is not known."
        )
    horizon = _num(ver.get("horizon"))
    if exit_check["holds"] is True:
        return f"The path stayed in the ball of radius B up to t1 = {horizon} (T > t1)."
    return (
        f"The computed path stayed in the ball of radius B up to t1 = {horizon}, within "
        "its error budget of the boundary."
    )


def _verdict(summary: dict[str, Any]) -> str:
    """The verdict: a truncated solve first, then the hypotheses, then each conclusion."""
    cert = summary["certificate"]
    ver = summary.get("verification")
    stop = stopped_at(summary) if ver is not None else None
    parts = [_truncation(summary)] if ver is not None else []
    if cert["hypotheses_hold"]:
        user = cert.get("beta_kind") == "user"
        how = "β is the user's value (not proved by ntkflow)" if user else "β is certified"
        then = (
            "Its conclusions are guaranteed if the user's β is right"
            if user
            else "Its conclusions are guaranteed"
        )
        parts.append(
            '<div class="verdict ok"><strong>The theorem\'s hypotheses hold</strong>: '
            f"σ_min &gt; 0, {how} and α = {_num(cert['alpha'])} ≥ α* = "
            f"{_num(cert['alpha_star'])}. {then}.</div>"
        )
    else:
        reasons = "".join(f"<li>{_e(r)}</li>" for r in cert["reasons"])
        parts.append(
            '<div class="verdict bad"><strong>The theorem\'s hypotheses do not hold</strong>, '
            f"so its conclusions are not guaranteed here:<ul>{reasons}</ul></div>"
        )
    if ver is not None:
        checks = ver["checks"]
        states = [_shown(c, stop)[0] for c in checks]
        n_ok, n_failed = states.count(True), states.count(False)
        n_open = len(states) - n_ok - n_failed
        cls = "bad" if n_failed else ("warn" if n_open else "ok")
        if n_ok == len(checks):
            head = f"Along the simulated flows, all {len(checks)} conclusions held."
        else:
            past = " (past the time reached)" if stop is not None else ""
            counts = [f"{n_ok} held"]
            counts += [f"{n_open} inconclusive{past}"] if n_open else []
            counts += [f"{n_failed} failed"] if n_failed else []
            head = f"Along the simulated flows, of {len(checks)} conclusions: {', '.join(counts)}."
        items = "".join(_check_line(c, stop) for c in checks)
        parts.append(
            f'<div class="verdict {cls}"><strong>{head}</strong> {_exit_text(ver, stop)}'
            f"<ul>{items}</ul></div>"
        )
    return "\n".join(p for p in parts if p)


def _beta_kind(kind: str) -> str:
    """How `β` was obtained, for the certificate table."""
    if kind == "user":
        return "the user's value: the proof rests on it, ntkflow did not prove it"
    return kind


def _certificate_table(cert: dict[str, Any]) -> str:
    meaning = f"Lipschitz constant of J ({_beta_kind(cert['beta_kind'])})"
    rows = certificate_rows(cert, meaning)
    body = "".join(
        f"<tr><td>{_e(k)}</td><td class='num'>{_num(v)}</td><td>{_e(m)}</td></tr>"
        for k, v, m in rows
    )
    betas = cert.get("beta_estimates") or []
    beta_rows = "".join(
        f"<tr><td>{_e(b['method'])}</td><td class='num'>{_num(b['value'])}</td>"
        f"<td>{_e(b['kind'])}</td><td>{_e(b['note'])}</td></tr>"
        for b in betas
    )
    notes = "".join(f"<li>{_e(n)}</li>" for n in cert.get("notes") or [])
    out = f"<table><tr><th>quantity</th><th>value</th><th>meaning</th></tr>{body}</table>"
    if beta_rows:
        out += (
            "<p>Every β computed (an <em>estimate</em> is a lower bound on the true "
            "Lipschitz constant, not a proof):</p><table><tr><th>method</th><th>value</th>"
            f"<th>kind</th><th>note</th></tr>{beta_rows}</table>"
        )
    if notes:
        out += f"<ul>{notes}</ul>"
    return out


def _solver_table(solver: dict[str, Any]) -> str:
    stats = solver.get("stats", {})
    keys = [
        "solver",
        "num_accepted_steps",
        "num_rejected_steps",
        "vf_evaluations",
        "kernel_evaluations",
        "rtol",
        "atol",
        "wall_s",
        "method",
        "step",
        "iterations",
        "stable_limit",
    ]
    flows = [f for f in stats if isinstance(stats[f], dict)]
    head = "".join(f"<th>{_e(f)}</th>" for f in flows)
    body = ""
    for k in keys:
        if any(k in stats[f] for f in flows):
            cells = "".join(f"<td class='num'>{_num(stats[f].get(k, ''))}</td>" for f in flows)
            body += f"<tr><td>{_e(k)}</td>{cells}</tr>"
    return (
        f"<p>{_e(solver.get('message', ''))} Horizon t1 = {_num(solver.get('t1'))}.</p>"
        f"<table><tr><th></th>{head}</tr>{body}</table>"
    )


def _json_section(heading: str, obj: Any) -> str:
    return f"<h2>{_e(heading)}</h2><pre>{_e(json.dumps(obj, indent=2, ensure_ascii=False))}</pre>"


def _page(title: str, sections: list[str]) -> str:
    """A self-contained HTML page: the shared style, then the sections."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        + "\n".join(sections)
        + "</body></html>"
    )


def render_report(summary: dict[str, Any], figures: dict[str, Path]) -> str:
    """The report as one HTML string, with the PNG figures embedded as data URIs."""
    title = f"ntkflow report — {summary.get('name', 'experiment')}"
    problem = summary.get("problem", {})
    sub = (
        f"{_e(problem.get('model', {}).get('kind', ''))} network, "
        f"{_e(problem.get('data', {}).get('name', ''))}, centring "
        f"{_e(problem.get('centering', ''))}, α = {_num(summary['certificate']['alpha'])} · "
        f"{_e(summary.get('created', ''))}"
    )
    caps = captions()
    figs = "".join(_figure(name, path, caps.get(name, "")) for name, path in figures.items())
    sections = [
        f"<h1>{_e(title)}</h1><p class='sub'>{sub}</p>",
        "<h2>Verdict</h2>" + _verdict(summary),
        "<h2>Certificate</h2>" + _certificate_table(summary["certificate"]),
    ]
    if figs:
        sections.append("<h2>Figures</h2>" + figs)
    if summary.get("solver") is not None:
        sections.append("<h2>Solver</h2>" + _solver_table(summary["solver"]))
    sections.append(_json_section("Configuration", summary.get("config", {})))
    sections.append(_json_section("Versions", summary.get("versions", {})))
    return _page(title, sections)


def _fit_rows(fits: list[dict[str, Any]]) -> str:
    rows = ""
    for f in fits:
        where = ", ".join(f"{k}={v}" for k, v in (f.get("where") or {}).items()) or "—"
        ok = f.get("agrees")
        mark = '<span class="held">yes</span>' if ok else '<span class="failed">no</span>'
        # A "rate": the theory's slope lies in the (widened) interval; a "bound": the
        # quantity falls at least as fast as the theory's slope.
        mark += " (rate in interval)" if f.get("kind", "rate") == "rate" else " (at least as fast)"
        rows += (
            f"<tr><td>{_e(f['note'].split(';')[0])}</td><td>{_e(f['against'])}</td>"
            f"<td>{_e(where)}</td><td class='num'>{_num(f['slope'])}"
            f"{_stderr_text(f.get('stderr'))}</td>"
            f"<td class='num'>[{_num(f['low'])}, {_num(f['high'])}]</td>"
            f"<td class='num'>{_num(f['theory'])}</td><td>{mark}</td>"
            f"<td>{_e(_points_used(f))}</td><td>{_e(f['method'])}</td></tr>"
        )
    return (
        "<div class='wide'><table><tr><th>quantity</th><th>against</th><th>at</th>"
        "<th>fitted slope (± s.e.)</th><th>95% interval</th><th>theory</th><th>agrees</th>"
        f"<th>points fitted</th><th>interval</th></tr>{rows}</table></div>"
    )


def _stderr_text(stderr: Any) -> str:
    try:
        value = float(stderr)
    except (TypeError, ValueError):
        return ""
    return f" ± {value:.2g}" if value == value else ""


def _points_used(fit: dict[str, Any]) -> str:
    """`4 of 6 (α ≥ 30)`: how many grid points the line went through, and over what."""
    total = len(fit.get("x") or ())
    used = fit.get("used")
    if used is None:
        return "—"
    lo, hi = (float(v) for v in (fit.get("fit_range") or (0.0, "inf")))
    name = "α" if fit.get("against") == "problem.alpha" else "m"
    span = []
    if lo > 0:
        span.append(f"{name} ≥ {lo:g}")
    if hi < float("inf"):
        span.append(f"{name} ≤ {hi:g}")
    return f"{used} of {total}" + (f" ({', '.join(span)})" if span else "")


def _point_verdict(point: dict[str, Any]) -> str:
    """A sweep point's `all_hold`, saying only what was shown: a point whose solve did not
    succeed never reads as all held."""
    checks = point.get("checks") or {}
    failed = [name for name, c in checks.items() if c.get("holds") is False]
    unsure = [name for name, c in checks.items() if c.get("holds") is None]
    status = point.get("status", "success")
    if status == "error":
        return "—"
    if failed:
        return f'<span class="failed">no</span> (failed: {_e(", ".join(failed))})'
    if status != "success":
        return f'<span class="inconclusive">inconclusive</span> (stopped: {_e(status)})'
    if unsure:
        return f'<span class="inconclusive">inconclusive</span> ({_e(", ".join(unsure))})'
    if point.get("all_hold") is True:
        return '<span class="held">yes</span>'
    return _e(_num(point.get("all_hold", "")))


def _beta_cell(kind: str | None) -> str:
    """How the β behind a critical α's α* was obtained."""
    return {
        "estimate": "estimated (not certified)",
        "mixed": "certified at some points, estimated at others",
        None: "—",
    }.get(kind, kind or "—")


def _estimated(point: dict[str, Any], column: str) -> str:
    """The mark beside a point's α* when its β is an estimate."""
    if column == "alpha_star" and point.get("beta_kind") == "estimate":
        return " <span class='sub'>(β estimated)</span>"
    return ""


def render_sweep_report(summary: dict[str, Any], figures: dict[str, Path]) -> str:
    """A sweep's report: overview, failed points, scaling laws, critical α, figures, and
    one row per point."""
    title = f"ntkflow sweep — {summary.get('name', 'experiment')}"
    grid = "".join(
        f"<li><code>{_e(k)}</code> ∈ {_e(v)}</li>"
        for k, v in zip(summary["keys"], summary["values"], strict=True)
    )
    failed = summary.get("failed_points") or []
    sections = [
        f"<h1>{_e(title)}</h1><p class='sub'>{summary['n_points']} points · "
        f"{_e(summary.get('created', ''))}</p><ul>{grid}</ul>"
    ]
    if failed:
        items = "".join(
            f"<li>point {f['index']} ({_e(f['assignment'])}): <strong>{_e(f['status'])}"
            f"</strong> — {_e(f['message'])}</li>"
            for f in failed
        )
        sections.append(
            f'<div class="verdict warn"><strong>{len(failed)} point(s) did not finish '
            f"cleanly</strong> (recorded; the sweep carried on):<ul>{items}</ul></div>"
        )
    fits = summary.get("fits") or []
    if fits:
        sections.append("<h2>Scaling laws</h2>" + _fit_rows(fits))
    crit = summary.get("critical_alpha") or []
    if crit:
        whys = any(r.get("why") for r in crit)
        rows = "".join(
            f"<tr><td>{_e(', '.join(f'{k}={v}' for k, v in r['where'].items()) or '—')}</td>"
            f"<td class='num'>{_num(r['alpha_empirical'])}</td>"
            f"<td class='num'>{_num(r['alpha_star'])}</td>"
            f"<td class='num'>{_num(r['looseness'])}</td>"
            f"<td>{_e(_beta_cell(r.get('beta_kind')))}</td>"
            + (f"<td>{_e(r.get('why') or '')}</td>" if whys else "")
            + "</tr>"
            for r in crit
        )
        caveat = next((r["beta_caveat"] for r in crit if r.get("beta_caveat")), None)
        sections.append(
            "<h2>Critical α</h2><p>The smallest α on the grid at which every conclusion held "
            "along the flows, against the theorem's sufficient α*; their ratio measures how "
            "loose the theorem is.</p>"
            + (f'<div class="verdict warn">{_e(caveat)}.</div>' if caveat else "")
            + "<div class='wide'><table><tr><th>at</th><th>empirical α</th><th>α*</th>"
            "<th>α*/α_emp</th><th>β</th>"
            + ("<th>why there is none</th>" if whys else "")
            + f"</tr>{rows}</table></div>"
        )
    figs = "".join(_figure(name, path) for name, path in figures.items())
    if figs:
        sections.append("<h2>Figures</h2>" + figs)
    shown_scalars = [name for name, s in FLOW_SCALARS.items() if s.table]
    cols = ["status", "all_hold", "hypotheses_hold", "alpha_star", *shown_scalars, "wall_s"]
    head = "".join(f"<th>{_e(c)}</th>" for c in ["point", *cols])
    body = ""
    for p in summary.get("points", []):
        cells = "".join(
            f"<td>{_point_verdict(p)}</td>"
            if c == "all_hold"
            else f"<td class='num'>{_num(p.get(c, ''))}{_estimated(p, c)}</td>"
            for c in cols
        )
        shown = ", ".join(f"{k}={v}" for k, v in p["assignment"].items())
        body += f"<tr><td>{_e(shown)}</td>{cells}</tr>"
    # (a wide table scrolls inside its box: the page itself never scrolls sideways)
    sections.append(f"<h2>Points</h2><div class='wide'><table><tr>{head}</tr>{body}</table></div>")
    sections.append(_json_section("Configuration", summary.get("config", {})))
    return _page(title, sections)
