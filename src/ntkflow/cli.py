"""The `ntkflow` command: parse an experiment, call the library, show the result.

Exit codes: 0 done (a failed theorem check is a result), 2 bad input (one line on stderr,
no traceback), 3 under `--strict` when not every check held (failed, inconclusive, or a
solve that stopped before t1), 130 interrupted (nothing written).
"""

import importlib.resources
import json
import math
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer._click import exceptions as click_errors
from typer.core import TyperGroup

from .config import ConfigError


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error (no rich wrapping) and return the exit to raise."""
    print(f"ntkflow: error: {' '.join(str(message).split())}", file=sys.stderr)
    return typer.Exit(code)


class _OneLineErrors(TyperGroup):
    """The command group, with usage errors (a bad option value, a missing argument, an
    unknown option or command) in one line on stderr like every other bad input, instead
    of a boxed usage message."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        kwargs: dict[str, Any] = dict(prog_name=prog_name, complete_var=complete_var, **extra)
        if not standalone_mode:
            return super().main(args, standalone_mode=False, **kwargs)
        try:
            code = super().main(args, standalone_mode=False, **kwargs)
        except click_errors.NoArgsIsHelpError:
            print(self.get_help(self.make_context("ntkflow", ["--help"], resilient_parsing=True)))
            sys.exit(2)
        except click_errors.UsageError as e:
            fail(_usage_line(e, args, [c for c in args if c in self.commands][:1]))
            sys.exit(2)
        except click_errors.ClickException as e:
            fail(e.format_message())
            sys.exit(e.exit_code)
        except typer.Abort:
            fail("aborted", 1)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _usage_line(e: "click_errors.UsageError", args: list[str], sub: list[str]) -> str:
    """A usage error as one line: what was wrong, the value given, where to look."""
    command = e.ctx.command_path if e.ctx is not None else " ".join(["ntkflow", *sub])
    see = f"see `{command} --help`"
    if isinstance(e, click_errors.BadParameter) and not isinstance(
        e, click_errors.MissingParameter
    ):
        param = e.param
        opts = list(getattr(param, "opts", [])) if param is not None else []
        name = "/".join(opts) if opts else (e.param_hint or "argument")
        given = _given(opts, args)
        value = f" got {given!r}:" if given is not None else ""
        return f"{name}:{value} {e.message.rstrip('.')}; {see}"
    if isinstance(e, click_errors.MissingParameter) and e.param is not None:
        opts = list(getattr(e.param, "opts", []))
        if e.param.param_type_name == "argument":
            return f"missing argument {(e.param.name or '').upper()}; {see}"
        return f"missing option {'/'.join(opts)}; {see}"
    return f"{e.format_message().rstrip('.')}; {see}"


def _given(opts: list[str], args: list[str]) -> str | None:
    """The value an option was given on the command line (its last occurrence)."""
    found = None
    for i, arg in enumerate(args):
        for opt in opts:
            if arg == opt and i + 1 < len(args):
                found = args[i + 1]
            elif arg.startswith(opt + "="):
                found = arg[len(opt) + 1 :]
    return found


app = typer.Typer(
    name="ntkflow",
    cls=_OneLineErrors,
    help="Lazy training, made executable: the NTK certificate and the two gradient flows.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()


def _out_error(error: Exception, out: Path | None, experiment: Path | None) -> str:
    """A library error about the results directory, saying where its path came from:
    `--out`, or the experiment's `[output] dir`."""
    if out is not None or experiment is None:
        return f"--out: {error}"
    return f"{experiment}: [output] dir: {error}"


_INTERRUPT = threading.Event()


def _on_sigint(signum: int, frame: Any) -> None:
    # Remember the interrupt even if the KeyboardInterrupt raised here is swallowed (Python
    # ignores exceptions in weakref callbacks and destructors): writers check it last.
    _INTERRUPT.set()
    raise KeyboardInterrupt


def _unraisable(args: Any) -> None:
    # A KeyboardInterrupt swallowed in a callback is already recorded in _INTERRUPT.
    if args.exc_type is not None and issubclass(args.exc_type, KeyboardInterrupt):
        return
    sys.__unraisablehook__(args)


def catch_interrupts() -> None:
    """Install the Ctrl-C handler for a command that writes results."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)
        sys.unraisablehook = _unraisable


def interrupted(message: str) -> NoReturn:
    """After Ctrl-C (the partial results already removed): say so and exit 130 at once.

    `os._exit` skips the interpreter's teardown, which can crash (SIGSEGV) while XLA's
    threads are still busy with the computation the interrupt cut short.
    """
    print(f"ntkflow: error: {message}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


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
        title="Lazy-training certificate (docs/theory.md, “The theorem”)", title_justify="left"
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
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", help="Results directory (default: the experiment's output.dir)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]
ProgressOpt = Annotated[
    bool | None,
    typer.Option("--progress/--no-progress", help="Progress bars (default: on a terminal)."),
]


def _load(experiment: Path, overrides: list[str] | None):
    from .config import load_experiment

    return load_experiment(experiment, overrides or [], flag="--set")


@app.command()
def certify(
    experiment: ExperimentArg,
    json_: JsonOpt = False,
    set_: SetOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Also write a results directory with the certificate."),
    ] = None,
) -> None:
    """State the theorem's certificate: σ_min, σ_max, β, α*, B, B', hypotheses.

    Says whether the hypotheses hold, with the reasons when they don't.
    """
    import contextlib

    from ._results import ResultsError, output_lock
    from .experiment import run_experiment, save_run

    try:
        exp = _load(experiment, set_)
    except (ConfigError, ValueError, TypeError) as e:
        raise fail(str(e)) from None
    try:
        # The lock (and the check of --out) is held from before the run to the write.
        with output_lock(out) if out is not None else contextlib.nullcontext():
            catch_interrupts()
            result = run_experiment(exp, source=str(experiment), flows=False)
            if out is not None:
                save_run(result, out, cancelled=_INTERRUPT.is_set)
    except ResultsError as e:
        raise fail(_out_error(e, out, experiment)) from None
    except ConfigError as e:
        raise fail(str(e)) from None
    except (ValueError, TypeError) as e:  # found by the library, past the file's checks
        raise fail(f"{experiment}: {e}") from None
    except KeyboardInterrupt:
        interrupted("interrupted; nothing was written")
    if json_:
        print(json.dumps(result.certificate.to_dict(), indent=2, ensure_ascii=False))
    else:
        print_certificate(result.certificate)
        if out is not None:
            console.print(f"Results written to {out}", highlight=False)


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
    if not verification.complete:
        console.print(
            f"[bold yellow]Incomplete ({verification.status}):[/] {escape(sol.message)}",
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
    console.print(checks_table(verification))
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


def run_summary(result) -> dict:
    """The JSON summary of a run: the certificate's keys, the checks, the exit time and
    the solver's statistics."""
    cert, sol, verification = result.certificate, result.solution, result.verification
    out = cert.to_dict()
    v = verification.to_dict()
    out.update(
        checks=v["checks"],
        exit_time=v["exit_time"],
        all_hold=v["all_hold"],
        complete=v["complete"],
        status=sol.status.name.lower(),
        message=sol.message,
        t1=sol.scalars()["t1"],
        t_reached=v["t_reached"],
        reached=v["reached"],
        solver=sol.scalars()["stats"],
    )
    return out


@app.command()
def run(
    experiment: ExperimentArg,
    out: OutOpt = None,
    json_: JsonOpt = False,
    set_: SetOpt = None,
    progress: ProgressOpt = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Exit 3 unless every check held over the whole horizon (a failed or "
            "inconclusive check, or a solve that stopped short).",
        ),
    ] = False,
) -> None:
    """Certify, integrate both flows, check the theorem along them, write results.

    The results directory holds summary.json, trajectories.nc, figures/ and report.html.
    Exit 0 even when a check fails (that is a result), 2 on bad input, 3 with --strict when
    a check failed or is inconclusive (a solve that stopped before t1 leaves the time it did
    not reach inconclusive), 130 when interrupted (nothing is written).
    """
    from .config import output_dir

    try:
        exp = _load(experiment, set_)
        target = output_dir(exp, out)
    except (ConfigError, ValueError, TypeError) as e:
        raise fail(str(e)) from None
    where = None if out is not None else experiment
    result = _run_and_save(exp, str(experiment), target, progress, where)
    assert result.solution is not None and result.verification is not None
    if json_:
        print(json.dumps(run_summary(result), indent=2, ensure_ascii=False))
    else:
        print_run(result.certificate, result.solution, result.verification)
        console.print(
            f"Results written to {target} (open {target / 'report.html'})", highlight=False
        )

    if strict and not result.verification.all_hold:
        raise typer.Exit(3)


def _run_and_save(exp, source: str, target: Path, progress: bool | None, where: Path | None = None):
    """Run an experiment and write its results, holding the results directory's lock
    from its check to its write; one-line errors, clean interrupts. `where`: the
    experiment file when the path came from its `[output] dir` (for messages)."""
    from ._results import ResultsError, output_lock
    from .experiment import run_experiment, save_run

    show = sys.stderr.isatty() if progress is None else progress
    catch_interrupts()
    try:
        with output_lock(target):
            result = run_experiment(exp, source=source, progress=show, cancelled=_INTERRUPT.is_set)
            save_run(result, target, cancelled=_INTERRUPT.is_set)
    except ResultsError as e:
        raise fail(_out_error(e, None if where else target, where)) from None
    except ConfigError as e:
        raise fail(str(e)) from None
    except (ValueError, TypeError) as e:  # found by the library, past the file's checks
        raise fail(f"{source}: {e}") from None
    except KeyboardInterrupt:
        interrupted("interrupted; no results were written")
    return result


@app.command()
def sweep(
    experiment: ExperimentArg,
    out: OutOpt = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, help="Points run in parallel (≥ 1).")
    ] = 1,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue a sweep in --out, skipping done points.")
    ] = False,
    json_: JsonOpt = False,
    set_: SetOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Run every point of the experiment's \\[sweep] grid; fit the scaling laws.

    Writes sweep.nc (a dimension per swept key, plus t), summary.json (per-point
    summaries, fitted slopes with bootstrap intervals, critical α), figures and report.html.
    Each finished point is saved at once, so --resume after an interruption skips it.
    """
    from ._sweep import LocalProcesses, SweepError, run_sweep
    from .config import apply_overrides, output_dir, parse_experiment, read_document

    try:
        doc = apply_overrides(read_document(experiment), set_ or [], flag="--set")
        exp = parse_experiment(doc, source=str(experiment))
        target = output_dir(exp, out)
        executor = LocalProcesses(jobs)
    except (ConfigError, SweepError, ValueError, TypeError) as e:
        raise fail(str(e)) from None
    show = sys.stderr.isatty() if progress is None else progress
    catch_interrupts()
    try:
        result = run_sweep(
            doc,
            target,
            executor=executor,
            resume=resume,
            progress=show,
            cancelled=_INTERRUPT.is_set,
        )
    except (ConfigError, SweepError, ValueError, TypeError) as e:
        raise fail(_sweep_error(e, out, experiment)) from None
    except KeyboardInterrupt:
        interrupted(
            f"interrupted; the points finished so far are saved in {target}: continue with --resume"
        )
    if json_:
        print(json.dumps(result.summary, indent=2, ensure_ascii=False))
        return
    print_sweep(result.summary)
    console.print(f"Sweep written to {target} (open {target / 'report.html'})", highlight=False)


def _sweep_error(error: Exception, out: Path | None, experiment: Path) -> str:
    """A sweep error; one about the sweep directory says where its path came from
    (`--out`, or the experiment's `[output] dir`) and which flag resumes it."""
    from ._sweep import SweepError

    if not (isinstance(error, SweepError) and error.directory):
        return str(error)
    message = str(error).replace("resume it,", "add --resume to continue it,")
    message = message.replace("resuming needs", "--resume needs")
    return _out_error(ValueError(message), out, experiment)


def print_sweep(summary: dict) -> None:
    """Fitted slopes, critical α and failed points, as rich tables."""
    fits = summary.get("fits") or []
    if fits:
        table = Table(
            title="Scaling laws (log-log fits, 95% bootstrap intervals)", title_justify="left"
        )
        for col in ("quantity", "vs", "at", "slope", "interval", "theory"):
            table.add_column(col, no_wrap=col != "at")
        for f in fits:
            where = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in f["where"].items())
            table.add_row(
                f["quantity"],
                f["against"].split(".")[-1],
                where or "—",
                _fmt_slope(f["slope"]),
                escape(f"[{_fmt_slope(f['low'])}, {_fmt_slope(f['high'])}]"),
                f"{f['theory']:g}" + (" ✓" if f.get("agrees") else ""),
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
        for col in ("at", "α empirical", "α*", "α*/α_emp"):
            table.add_column(col)
        for r in crit:
            where = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in r["where"].items())
            table.add_row(
                where or "—",
                _fmt_json(r["alpha_empirical"]),
                _fmt_json(r["alpha_star"]),
                _fmt_json(r["looseness"]),
            )
        console.print(table)
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


@app.command()
def report(
    results_dir: Annotated[
        Path, typer.Argument(help="A results directory of `ntkflow run` or `ntkflow sweep`.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write a re-rendered copy here instead of in place."),
    ] = None,
    json_: JsonOpt = False,
) -> None:
    """Re-render the figures and report.html of a results or sweep directory.

    Drawn from its saved data alone (summary.json with trajectories.nc, or sweep.nc).
    """
    from ._results import ResultsError, load_results, write_results
    from .experiment import render

    try:
        is_sweep = (results_dir / "sweep.json").is_file()
    except OSError:  # a name too long, …: load_results says so in one line
        is_sweep = False
    if is_sweep:
        _report_sweep(results_dir, out, json_)
        return
    try:
        loaded = load_results(results_dir)
    except ResultsError as e:
        raise fail(str(e)) from None
    # In place too, the directory is rewritten whole and renamed over the old one: a
    # render that fails half-way leaves the old figures and report, not a mix.
    target = loaded.path if out is None else out
    try:
        write_results(target, loaded.summary, loaded.dataset, render=render)
    except ResultsError as e:
        raise fail(str(e) if out is None else _out_error(e, out, None)) from None
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as e:
        # A summary.json edited by hand, or written by another version: the saved data
        # do not hold what the figures and the report read.
        raise fail(
            f"{str(results_dir)!r}: cannot render from its saved data ({type(e).__name__}: "
            f"{e}); the results directory is damaged or from another version of ntkflow: "
            "run the experiment again"
        ) from None
    except OSError as e:
        raise fail(
            f"{str(target)!r} cannot be written ({e.strerror}); choose a writable path"
        ) from None
    except KeyboardInterrupt:
        interrupted("interrupted; the results directory is unchanged")
    if json_:
        print(json.dumps(loaded.summary, indent=2, ensure_ascii=False))
    else:
        console.print(f"Report written to {target / 'report.html'}", highlight=False)


def _report_sweep(directory: Path, out: Path | None, json_: bool) -> None:
    from ._sweep import SweepError, load_sweep, render_sweep

    if out is not None:
        raise fail(
            f"--out {str(out)!r}: a sweep's report is re-rendered in place; drop --out (or "
            "copy the sweep directory first)"
        )
    try:
        loaded = load_sweep(directory)
        target = render_sweep(loaded)
    except (SweepError, ValueError) as e:
        raise fail(str(e)) from None
    except OSError as e:
        raise fail(
            f"{str(directory)!r}: cannot read or write the sweep ({e.strerror}: "
            f"{e.filename}); the sweep directory is damaged or not writable"
        ) from None
    except KeyboardInterrupt:
        interrupted("interrupted")
    if json_:
        print(json.dumps(loaded.summary, indent=2, ensure_ascii=False))
    else:
        console.print(f"Report written to {target}", highlight=False)


@app.command()
def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Where the two results directories go.")
    ] = Path("results/demo"),
    progress: ProgressOpt = None,
    experiment: Annotated[
        Path | None,
        typer.Option("--experiment", help="Another experiment file (default: the seed's)."),
    ] = None,
) -> None:
    """Run the seed's experiment below and at its certified scale α*, with reports.

    The seed: a shallow tanh network on scikit-learn's digits 0 vs 1, antisymmetric
    centring. Writes both results directories and says what the theorem gave.
    """
    from ._certificate import certify as certify_problem
    from ._results import ResultsError, check_output_dir
    from .config import build_problem

    path = example_path("seed.toml") if experiment is None else experiment
    labels = ("below-alpha-star", "above-alpha-star")
    try:
        exp = _load(path, None)
    except (ConfigError, ValueError, TypeError) as e:
        raise fail(str(e)) from None
    try:
        for label in labels:  # both, before either run
            check_output_dir(out / label)
    except ResultsError as e:
        raise fail(_out_error(e, out, None)) from None
    try:
        alpha_star = certify_problem(build_problem(exp, source=str(path))).alpha_star
    except (ConfigError, ValueError, TypeError) as e:
        raise fail(str(e)) from None
    if not math.isfinite(alpha_star):
        raise fail(f"{path}: α* is infinite (the theorem cannot apply at any scale)")
    console.print(f"[bold]ntkflow demo[/]: the experiment {path}", highlight=False)
    above = float(f"{alpha_star * 1.005:.3g}")
    above = above if above >= alpha_star else alpha_star * 1.005
    runs = []
    for label, alpha in zip(labels, (exp.problem.alpha, above), strict=True):
        e = _load(path, [f"problem.alpha={alpha!r}"])
        console.print(f"\n[bold]α = {alpha:.4g}[/] ({label.replace('-', ' ')})")
        result = _run_and_save(e, str(path), out / label, progress)
        assert result.verification is not None
        print_run(result.certificate, result.solution, result.verification)
        runs.append((label, result))
    (_, lo), (_, hi) = runs
    console.print()
    console.print(_demo_verdict(lo, hi), highlight=False)
    for label, _ in runs:
        console.print(f"Report: {out / label / 'report.html'}", highlight=False)


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
            parts.append(f"the solve stopped at t = {v.t_reached:.3g} ({v.status})")
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


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A library warning (a tolerance raised to what the dtype resolves, an unstable GD
    step, …) as one line on stderr, like the errors: the user's fix, not our source."""
    print(f"ntkflow: warning: {' '.join(str(message).split())}", file=sys.stderr)


def main() -> None:
    warnings.showwarning = _show_warning
    app()
