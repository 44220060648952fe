"""What the `ntkflow` command prints, with rich: the certificate, a run's checks and
exit time, a sweep's fits and critical α, and the demo's verdict, on `console`."""

import math

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._certificate_rows import certificate_rows

console = Console()

# The certificate table's meaning of `β`, by kind (else "Lipschitz constant of J").
_BETA_MEANING = {
    "user": "Lipschitz constant of J: the user's value, which the proof rests on",
}


def _fmt(x: float | int) -> str:
    if isinstance(x, float) and not math.isfinite(x):
        return "∞" if x > 0 else ("nan" if math.isnan(x) else "−∞")
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def certificate_table(cert) -> Table:
    """The certificate as a rich table."""
    table = Table(
        title="Lazy-training certificate (docs/theory.md, “The theorem”"
        + ("" if cert.squared else ", “Losses other than the square”")
        + ")",
        title_justify="left",
    )
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    meaning = _BETA_MEANING.get(cert.beta_kind, "Lipschitz constant of J")
    rows = [
        (k, v if isinstance(v, str) else _fmt(v), m)
        for k, v, m in certificate_rows(cert.to_dict(details=True), meaning)
    ]
    for row in rows:
        table.add_row(*row)
    return table


def print_certificate(cert) -> None:
    console.print(certificate_table(cert))
    if cert.hypotheses_hold:
        given = " given the user's β" if cert.beta_kind == "user" else ""
        console.print(f"[bold green]Hypotheses hold[/]: the theorem applies{given}.")
    else:
        console.print("[bold red]Hypotheses fail[/]:")
        for r in cert.reasons:
            console.print(f"  • {r}", highlight=False)
    for note in cert.notes:
        console.print(f"  [dim]note: {note}[/]", highlight=False)


def checks_table(verification) -> Table:
    """The theorem's conclusions along the flows, as a rich table."""
    table = Table(title="Conclusions along the flows", title_justify="left")
    table.add_column("check", no_wrap=True)
    table.add_column("holds", no_wrap=True)
    table.add_column("guaranteed", no_wrap=True)
    table.add_column("worst margin", justify="right", no_wrap=True)
    table.add_column("at t", justify="right", no_wrap=True)
    marks = {True: "[green]yes[/]", False: "[bold red]NO[/]", None: "[yellow]inconclusive[/]"}
    for c in verification.checks:
        table.add_row(
            c.name,
            marks[c.holds],
            "yes" if c.guaranteed else "no (observed)",
            f"{c.margin:.3g}",
            f"{c.t:.4g}",
        )
    return table


def print_run(cert, sol, verification) -> None:
    """The certificate, then how the solve ended (first, in a warning, when it stopped
    short of t1), the checks, the exit time and the verdict."""
    checks = checks_table(verification)
    if not verification.complete:
        how = verification.status.name.lower()
        console.print(
            f"[bold yellow]Incomplete ({how}):[/] {escape(sol.message)}",
            highlight=False,
        )
        console.print()
    print_certificate(cert)
    console.print()
    g = sol.stats.get("gradient", {})
    ending = "integrated to t1" if verification.complete else escape(sol.message)
    console.print(
        f"[bold]Flows[/] to t1 = {sol.t1:.4g}: {ending} "
        f"({g.get('solver', '')}: {g.get('num_accepted_steps', 0)} steps accepted, "
        f"{g.get('num_rejected_steps', 0)} rejected, {g.get('wall_s', 0.0):.1f} s)",
        highlight=False,
    )
    console.print(checks)
    exit_t = verification.exit_time
    reached = verification.reached.get("gradient", verification.horizon)
    if exit_t is not None:
        exit_text = f"{exit_t:.4g}"
    elif reached < verification.horizon:
        exit_text = f"> {reached:.4g} (the path had not left the ball when the solve stopped)"
    else:
        exit_text = "> t1 (the path never left the ball of radius B up to t1)"
    console.print(
        f"Exit time T {'= ' if exit_t is not None else ''}{exit_text}. "
        f"{escape(verification.summary())}",
        highlight=False,
    )


def print_sweep(summary: dict) -> None:
    """Fitted slopes, critical α and failed points, as rich tables."""
    fits = summary.get("fits") or []
    if fits:
        table = Table(
            title="Scaling laws (log-log fits, 95% bootstrap intervals)", title_justify="left"
        )
        for col in ("quantity", "vs", "at", "slope ± s.e.", "interval", "theory", "points"):
            table.add_column(col, no_wrap=col != "at")
        for f in fits:
            where = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in f["where"].items())
            stderr = _fmt_slope(f.get("stderr", "nan"))
            table.add_row(
                f["quantity"],
                f["against"].split(".")[-1],
                where or "—",
                _fmt_slope(f["slope"]) + ("" if stderr == "nan" else f" ± {stderr}"),
                escape(f"[{_fmt_slope(f['low'])}, {_fmt_slope(f['high'])}]"),
                f"{f['theory']:g}" + (" ✓" if f.get("agrees") else ""),
                f"{f.get('used', '—')}/{len(f.get('x') or ())}",
            )
        console.print(table)
        for f in fits:
            if _fmt_slope(f["slope"]) == "nan":
                console.print(
                    f"[yellow]{f['quantity']}[/]: fewer than two usable points "
                    f"({escape(f['note'])})",
                    highlight=False,
                )
    crit = summary.get("critical_alpha") or []
    if crit:
        table = Table(
            title="Critical α: smallest α at which every check held", title_justify="left"
        )
        for col in ("at", "α empirical", "α*", "α*/α_emp", "β"):
            table.add_column(col)
        for r in crit:
            where = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in r["where"].items())
            table.add_row(
                where or "—",
                _fmt_json(r["alpha_empirical"]),
                _fmt_json(r["alpha_star"]),
                _fmt_json(r["looseness"]),
                str(r.get("beta_kind") or "—"),
            )
        console.print(table)
        caveat = next((r["beta_caveat"] for r in crit if r.get("beta_caveat")), None)
        if caveat:
            console.print(f"[yellow]{escape(caveat)}.[/]", highlight=False)
    for f in summary.get("failed_points") or []:
        console.print(
            f"[yellow]point {f['index']}[/] {escape(str(f['assignment']))}: {f['status']} — "
            f"{escape(f['message'])}",
            highlight=False,
        )


def _fmt_slope(x) -> str:
    x = float(x)  # "nan" from JSON too
    return "nan" if x != x else f"{x:.3f}"


def _fmt_json(x) -> str:
    if isinstance(x, str):
        return {"inf": "∞", "nan": "nan"}.get(x, x)
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def _demo_verdict(lo, hi) -> str:
    c = lo.certificate
    vlo, vhi = lo.verification, hi.verification

    def held(v) -> str:
        if v.all_hold:
            return f"all {len(v.checks)} checks held"
        failed = [x.name for x in v.failed]
        unsure = [x.name for x in v.inconclusive]
        parts = []
        if failed:
            parts.append(f"{len(failed)} of {len(v.checks)} checks failed ({', '.join(failed)})")
        if unsure:
            parts.append(f"{len(unsure)} are inconclusive ({', '.join(unsure)})")
        if not v.complete:
            parts.append(f"the solve stopped at t = {v.t_reached:.3g} ({v.status.name.lower()})")
        return "; ".join(parts)

    def left(v) -> str:
        if v.exit_time is not None:
            return f"at T = {v.exit_time:.3g}"
        return "never" if v.complete else f"not before t = {v.t_reached:.3g}"

    return (
        f"[bold]Verdict.[/] On {c.n} digits with p = {c.p} parameters the empirical NTK has "
        f"σ_min = {c.sigma_min:.3g}, σ_max = {c.sigma_max:.3g} (condition number "
        f"{c.condition:.3g}) and the Jacobian is {c.beta_kind} β = {c.beta:.3g}-Lipschitz. "
        f"With antisymmetric centring R0 = {c.R0:.3g} does not depend on α, so the theorem "
        f"needs α ≥ α* = {c.alpha_star:.4g}. At α = {lo.certificate.alpha:.4g} it does not "
        f"apply, and along the flows {held(vlo)}; the path left the ball of radius B "
        + left(vlo)
        + f". At α = {hi.certificate.alpha:.4g} the hypotheses "
        f"{'hold' if hi.certificate.hypotheses_hold else 'still fail'} and {held(vhi)}: the "
        f"network moved ‖w − w0‖ ≤ {np.nanmax(hi.solution.dist_w):.3g} ≤ B' = "
        f"{hi.certificate.B_prime:.3g}, and its predictions αf stayed within "
        f"{np.nanmax(hi.solution.gap_f):.3g} of its linearisation's."
    )
