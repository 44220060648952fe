"""The `ntkflow` command: parse an experiment, call the library, show the result.

Exit codes: 0 done (a failed theorem check is a result), 2 bad input (one line on stderr,
no traceback), 3 under `--strict` when not every check held (failed, inconclusive, or a
solve that stopped before t1), 130 interrupted (nothing written).
"""

import importlib.resources
import json
import math
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer

from ._cli_errors import (
    _INTERRUPT,
    _OneLineErrors,
    _out_error,
    _show_warning,
    _sweep_error,
    catch_interrupts,
    fail,
    interrupted,
)
from ._console import _demo_verdict, console, print_certificate, print_run, print_sweep
from .config import ConfigError

app = typer.Typer(
    name="ntkflow",
    cls=_OneLineErrors,
    help="Lazy training, made executable: the NTK certificate and the two gradient flows.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def example_path(name: str) -> Path:
    """A shipped example experiment: inside the installed package, or in a source tree."""
    packaged = importlib.resources.files("ntkflow") / "_examples" / name
    if packaged.is_file():
        return Path(str(packaged))
    source = Path(__file__).resolve().parents[2] / "examples" / name
    if source.is_file():
        return source
    raise FileNotFoundError(f"example {name!r} is not shipped with this installation")


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

    try:
        exp = _load(experiment, set_)
    except (ConfigError, ValueError, TypeError) as e:
        raise fail(str(e)) from None
    # (the library, JAX with it, only once the file is known to be good: a bad file's
    # error is immediate)
    from ._results import ResultsError, output_lock
    from .experiment import run_experiment, save_run

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
    from ._summary import run_view

    where = None if out is not None else experiment
    result = _run_and_save(exp, str(experiment), target, progress, where)
    assert result.solution is not None and result.verification is not None
    if json_:
        print(json.dumps(run_view(result.summary, target), indent=2, ensure_ascii=False))
    else:
        print_run(result.certificate, result.solution, result.verification)
        console.print(
            f"Results written to {target} (open {target / 'report.html'})", highlight=False
        )

    if strict and not result.verification.all_hold:
        raise typer.Exit(3)


def _run_and_save(
    exp, source: str, target: Path, progress: bool | None, where: Path | None = None, **run: Any
):
    """Run an experiment and write its results, holding the results directory's lock
    from its check to its write; one-line errors, clean interrupts. `where`: the
    experiment file when the path came from its `[output] dir` (for messages); `run`:
    more of `run_experiment`'s keywords (`certificate`)."""
    from ._results import ResultsError, output_lock
    from .experiment import run_experiment, save_run

    show = sys.stderr.isatty() if progress is None else progress
    catch_interrupts()
    try:
        with output_lock(target):
            result = run_experiment(
                exp, source=source, progress=show, cancelled=_INTERRUPT.is_set, **run
            )
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
    executor: Annotated[
        str | None,
        typer.Option(
            "--executor",
            help="How points run: local (worker processes, --jobs) or ray (Ray tasks). "
            "Default: the experiment's \\[sweep] executor, else local.",
        ),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            help="The Ray cluster to join (e.g. auto, ray://HOST:10001); without it "
            "--executor ray starts a local Ray instance.",
        ),
    ] = None,
    json_: JsonOpt = False,
    set_: SetOpt = None,
    progress: ProgressOpt = None,
) -> None:
    """Run every point of the experiment's \\[sweep] grid; fit the scaling laws.

    Writes sweep.nc (a dimension per swept key, plus t), summary.json (per-point
    summaries, fitted slopes with bootstrap intervals, critical α), figures and report.html.
    Each finished point is saved at once, so --resume after an interruption skips it.
    """
    from .config import apply_overrides, output_dir, parse_experiment, read_document
    from .sweeps._grid import SweepError

    try:
        doc = apply_overrides(read_document(experiment), set_ or [], flag="--set")
        exp = parse_experiment(doc, source=str(experiment))
        target = output_dir(exp, out)
    except (ConfigError, SweepError, ValueError, TypeError) as e:
        raise fail(str(e)) from None
    from .sweeps._sweep import run_sweep, sweep_executor  # (the library: only for a good file)

    try:
        chosen = sweep_executor(doc, executor, jobs=jobs, address=address)
    except (ConfigError, SweepError, ValueError, TypeError) as e:
        raise fail(str(e)) from None
    show = sys.stderr.isatty() if progress is None else progress
    catch_interrupts()
    try:
        result = run_sweep(
            doc,
            target,
            executor=chosen,
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
    from ._results import ResultsError, load_results, results_writer
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
        with results_writer(target, loaded.summary, loaded.dataset) as (tmp, summary):
            render(tmp, loaded.dataset, summary)
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
    from .sweeps._grid import SweepError
    from .sweeps._sweep import load_sweep, render_sweep

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
    from .experiment import build_problem

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
    try:  # (the first run's certificate: computed once, passed on to its run)
        first = certify_problem(build_problem(exp, source=str(path)), beta=exp.problem.beta)
    except (ConfigError, ValueError, TypeError) as e:
        raise fail(str(e)) from None
    alpha_star = first.alpha_star
    if not math.isfinite(alpha_star):
        raise fail(f"{path}: α* is infinite (the theorem cannot apply at any scale)")
    console.print(
        f"[bold]ntkflow demo[/]: {path}\nRun at its own α, then just above its certified "
        f"α* = {alpha_star:.6g}.",
        highlight=False,
    )
    above, how = float(f"{alpha_star * 1.005:.3g}"), "α*·1.005 to 3 digits"
    if above < alpha_star:
        above, how = alpha_star * 1.005, "α*·1.005"
    headings = (f"below α* = {alpha_star:.6g}", f"above α* = {alpha_star:.6g}: {how}")
    runs = []
    for label, alpha, heading in zip(labels, (exp.problem.alpha, above), headings, strict=True):
        e = _load(path, [f"problem.alpha={alpha!r}"])
        console.print(f"\n[bold]α = {alpha:.6g}[/] ({heading})", highlight=False)
        cert = first if alpha == exp.problem.alpha else None
        result = _run_and_save(e, str(path), out / label, progress, certificate=cert)
        assert result.verification is not None
        print_run(result.certificate, result.solution, result.verification)
        runs.append(result)
    lo, hi = runs
    console.print()
    console.print(_demo_verdict(lo, hi), highlight=False)
    for label in labels:
        console.print(f"Report: {out / label / 'report.html'}", highlight=False)


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
    warnings.showwarning = _show_warning
    app()
