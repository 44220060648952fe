"""How the `ntkflow` command ends on a bad input, a warning or Ctrl-C: one line on
stderr, no traceback. Usage errors (`_OneLineErrors`), library errors (`fail`, with where a
results path came from: `_out_error`, `_sweep_error`) and warnings (`_show_warning`);
Ctrl-C (`catch_interrupts`, `interrupted`: exit 130, nothing written).
"""

import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import typer
from typer._click import exceptions as click_errors
from typer.core import TyperGroup


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


def _sweep_error(error: Exception, out: Path | None, experiment: Path) -> str:
    """A sweep error; one about the sweep directory says where its path came from
    (`--out`, or the experiment's `[output] dir`) and which flag resumes it."""
    from .sweeps._grid import SweepError

    if not (isinstance(error, SweepError) and error.directory):
        return str(error)
    return _out_error(ValueError(error.worded(resume="--resume")), out, experiment)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A library warning (a tolerance raised to what the dtype resolves, an unstable GD
    step, …) as one line on stderr, like the errors: the user's fix, not our source."""
    print(f"ntkflow: warning: {' '.join(str(message).split())}", file=sys.stderr)
