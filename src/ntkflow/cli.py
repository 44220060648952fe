"""The `ntkflow` command: parse an experiment, call the library, show the result.

Exit codes: 0 done, 2 bad input (one line on stderr, no traceback).
"""

import importlib.resources
import json
import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .config import ConfigError, build_problem, flow_settings, load_experiment

app = typer.Typer(
    name="ntkflow",
    help="Lazy training, made executable: the NTK certificate and the two gradient flows.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error (no rich wrapping) and return the exit to raise."""
    print(f"ntkflow: error: {' '.join(str(message).split())}", file=sys.stderr)
    return typer.Exit(code)


def example_path(name: str) -> Path:
    """A shipped example experiment: inside the installed package, or in a source tree."""
    packaged = importlib.resources.files("ntkflow") / "_examples" / name
    if packaged.is_file():
        return Path(str(packaged))
    source = Path(__file__).resolve().parents[2] / "examples" / name
    if source.is_file():
        return source
    raise FileNotFoundError(f"example {name!r} is not shipped with this installation")


def _fmt(x: float) -> str:
    if isinstance(x, float) and not math.isfinite(x):
        return "∞" if x > 0 else ("nan" if math.isnan(x) else "−∞")
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def certificate_table(cert) -> Table:
    """The certificate as a rich table."""
    table = Table(
        title="Lazy-training certificate (THEORY.md, “The theorem”)", title_justify="left"
    )
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("meaning")
    rows = [
        ("n, p", f"{cert.n}, {cert.p}", "outputs, parameters"),
        ("α", _fmt(cert.alpha), "scale"),
        ("R0", _fmt(cert.R0), "initial loss ½‖αf(w0) − y‖²"),
        ("σ_min", _fmt(cert.sigma_min), "σ_n(J_0) = sqrt(λ_min(K0))"),
        ("σ_max", _fmt(cert.sigma_max), "σ_1(J_0) = sqrt(λ_max(K0))"),
        ("cond(K0)", _fmt(cert.condition), "(σ_max/σ_min)²"),
        ("β", f"{_fmt(cert.beta)} ({cert.beta_kind})", "Lipschitz constant of J"),
        ("α*", _fmt(cert.alpha_star), "β·sqrt(1152σ_max²R0)/σ_min³"),
        ("B", _fmt(cert.B), "ball radius σ_min/(2β)"),
        ("B'", _fmt(cert.B_prime), "distance bound 3·sqrt(8σ_max²R0)/(ασ_min²)"),
        ("tangent bound", _fmt(cert.tangent_distance_bound), "sqrt(2σ_max²R0)/(ασ_min²)"),
    ]
    for row in rows:
        table.add_row(*row)
    return table


def print_certificate(cert) -> None:
    console.print(certificate_table(cert))
    if cert.hypotheses_hold:
        console.print("[bold green]Hypotheses hold[/]: the theorem applies.")
    else:
        console.print("[bold red]Hypotheses fail[/]:")
        for r in cert.reasons:
            console.print(f"  • {r}", highlight=False)
    for note in cert.notes:
        console.print(f"  [dim]note: {note}[/]", highlight=False)


ExperimentArg = Annotated[Path, typer.Argument(help="An experiment TOML file.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a key: SECTION.KEY=VALUE (repeatable)."),
]


@app.command()
def certify(
    experiment: ExperimentArg,
    json_: Annotated[bool, typer.Option("--json", help="Print the certificate as JSON.")] = False,
    set_: SetOpt = None,
) -> None:
    """State the lazy-training theorem's certificate for an experiment: σ_min, σ_max, β,
    α*, B, B', and whether the hypotheses hold, with the reasons when they don't."""
    from ._certificate import certify as certify_problem

    try:
        problem = build_problem(load_experiment(experiment, set_ or []), source=str(experiment))
        cert = certify_problem(problem)
    except (ConfigError, ValueError, TypeError) as e:
        raise fail(str(e)) from None
    if json_:
        print(json.dumps(cert.to_dict(), indent=2, ensure_ascii=False))
    else:
        print_certificate(cert)


def checks_table(verification) -> Table:
    """The theorem's conclusions along the flows, as a rich table."""
    table = Table(title="Conclusions along the flows", title_justify="left")
    table.add_column("check", no_wrap=True)
    table.add_column("holds", no_wrap=True)
    table.add_column("guaranteed", no_wrap=True)
    table.add_column("worst margin", justify="right", no_wrap=True)
    table.add_column("at t", justify="right", no_wrap=True)
    marks = {True: "[green]yes[/]", False: "[bold red]NO[/]", None: "[yellow]unclear[/]"}
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
    print_certificate(cert)
    console.print()
    g = sol.stats.get("gradient", {})
    console.print(
        f"[bold]Flows[/] to t1 = {sol.t1:.4g}: {sol.message} "
        f"({g.get('solver', '')}: {g.get('num_accepted_steps', 0)} steps accepted, "
        f"{g.get('num_rejected_steps', 0)} rejected, {g.get('wall_s', 0.0):.1f} s)",
        highlight=False,
    )
    console.print(checks_table(verification))
    exit_t = verification.exit_time
    console.print(
        "Exit time T = "
        + ("∞ (the path never left the ball of radius B)" if exit_t is None else f"{exit_t:.4g}")
        + f". {verification.summary()}",
        highlight=False,
    )


def run_summary(cert, sol, verification) -> dict:
    """The JSON summary of a run: the certificate's keys, the checks, the exit time and
    the solver's statistics."""
    out = cert.to_dict()
    v = verification.to_dict()
    out.update(
        checks=v["checks"],
        exit_time=v["exit_time"],
        all_hold=v["all_hold"],
        status=sol.status.name.lower(),
        message=sol.message,
        t1=sol.scalars()["t1"],
        solver=sol.scalars()["stats"],
    )
    return out


@app.command()
def run(
    experiment: ExperimentArg,
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    set_: SetOpt = None,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="Progress bars (default: on a terminal)."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 3 when a conclusion fails.")
    ] = False,
) -> None:
    """Certify an experiment, integrate both gradient flows, and check every conclusion of
    the theorem along them (exit 0 even when a check fails: that is a result)."""
    from ._certificate import certify as certify_problem
    from ._flows import solve_flows
    from ._verify import verify

    try:
        exp = load_experiment(experiment, set_ or [])
        problem = build_problem(exp, source=str(experiment))
        settings = flow_settings(exp)
    except (ConfigError, ValueError, TypeError) as e:
        raise fail(str(e)) from None
    show = sys.stderr.isatty() if progress is None else progress
    try:
        cert = certify_problem(problem)
        sol = solve_flows(problem, progress=show, **settings)
    except ValueError as e:
        raise fail(str(e)) from None
    verification = verify(sol, cert)
    if json_:
        print(json.dumps(run_summary(cert, sol, verification), indent=2, ensure_ascii=False))
    else:
        print_run(cert, sol, verification)
    if strict and verification.failed:
        raise typer.Exit(3)


@app.command()
def demo() -> None:
    """Run the seed's experiment (shallow tanh network on digits 0 vs 1, antisymmetric
    centring) below and at its certified scale α*, and say what the theorem gives."""
    from ._certificate import certify as certify_problem

    path = example_path("seed.toml")
    console.print(f"[bold]ntkflow demo[/]: {path}")
    below = certify_problem(build_problem(load_experiment(path), source=str(path)))
    print_certificate(below)
    if not math.isfinite(below.alpha_star):
        console.print("α* is infinite: no scale makes the theorem apply.")
        return
    alpha = float(f"{below.alpha_star * 1.001:.3g}")
    if alpha < below.alpha_star:
        alpha = below.alpha_star * 1.001
    above = certify_problem(build_problem(load_experiment(path, [f"problem.alpha={alpha!r}"])))
    console.print()
    print_certificate(above)
    console.print()
    console.print(
        f"[bold]Verdict.[/] On {below.n} digits with p = {below.p} parameters, the "
        f"empirical NTK has σ_min = {below.sigma_min:.3g} and σ_max = {below.sigma_max:.3g} "
        f"(condition number {below.condition:.3g}), and the Jacobian is {below.beta_kind} "
        f"β = {below.beta:.3g}-Lipschitz. With centring, R0 = {below.R0:.3g} does not depend "
        f"on α, so the theorem needs α ≥ α* = {below.alpha_star:.4g}: at α = "
        f"{below.alpha:g} it {'applies' if below.hypotheses_hold else 'does not apply'}, at "
        f"α = {above.alpha:.4g} it {'applies' if above.hypotheses_hold else 'does not apply'}, "
        f"and then both flows stay within B' = {above.B_prime:.3g} of w0, inside the ball "
        f"of radius B = {above.B:.3g} on which σ_min(J) ≥ σ_min/2.",
        highlight=False,
    )


def _version(value: bool | None) -> None:
    if value:
        from . import __version__

        print(f"ntkflow {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = None,
) -> None:
    """ntkflow: does a network trained by gradient flow stay in its NTK regime?"""


def main() -> None:
    app()
