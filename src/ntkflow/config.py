"""Experiment files: a TOML schema (pydantic), `--set` overrides and one-line errors.

An experiment names `[data]`, `[model]` and `[problem]` sections; see
`docs/experiments.md` for every key. Errors are `ConfigError`s with one line naming the key,
the value and the fix.
"""

import os
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
)

from ._activation_names import canonical_name
from ._errors import InputError
from ._files import path_kind, read_utf8


class ConfigError(InputError):
    """A bad experiment file or override: the message is one line for the user, which
    names the file, the section and the key (`key`, `value` when one key is at fault)."""

    def __init__(self, message: str, *, key: str | None = None, value: Any = None):
        super().__init__(key, value, message=message)


class _Section(BaseModel):
    # Strict: `width = true` or `width = 1e9` must not become 1 or 1000000000, nor
    # `figures = 1` a boolean; an integer is still accepted where a float is wanted.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# Seeds feed NumPy (non-negative) and JAX (64-bit) alike.
Seed = Annotated[int, Field(ge=0, lt=2**63)]


def _check_label(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty; give a non-blank string")
    if any(ord(c) < 32 for c in text):
        raise ValueError(f"must not contain control characters, got {text!r}")
    return text


def _check_activation(name: str) -> str:
    canonical_name(name)  # raises ValueError listing the known names
    return name


class DigitsData(_Section):
    """scikit-learn's digits (see `ntkflow.datasets.digits`)."""

    source: Literal["digits"] = "digits"
    n: Annotated[int, Field(ge=1)] | None = None
    classes: Annotated[list[Annotated[int, Field(ge=0, le=9)]], Field(min_length=2)] = [0, 1]
    n_test: Annotated[int, Field(ge=0)] = 0
    seed: Seed = 0
    # 8 × 8 × 1 images (for kind = "cnn") instead of 64-pixel vectors.
    images: bool = False


class SphereData(_Section):
    """Uniform on the unit sphere with a random teacher (see `ntkflow.datasets.sphere`)."""

    source: Literal["sphere"]
    n: Annotated[int, Field(ge=1)]
    d: Annotated[int, Field(ge=1)]
    teacher_width: Annotated[int, Field(ge=1)] = 4
    teacher_activation: str = "tanh"
    noise: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    n_test: Annotated[int, Field(ge=0)] = 0
    seed: Seed = 0

    _act = field_validator("teacher_activation")(_check_activation)


class FileData(_Section):
    """An `.npz` or `.csv` file (see `ntkflow.datasets.load`); a relative path is read
    relative to the experiment file."""

    source: Literal["file"]
    path: str
    y_column: int | None = None

    _path = field_validator("path")(_check_label)
    n_test: Annotated[int, Field(ge=0)] = 0
    seed: Seed = 0


class ShallowModel(_Section):
    """`ntkflow.Shallow`."""

    kind: Literal["shallow"] = "shallow"
    width: Annotated[int, Field(ge=1)] = 256
    activation: str = "tanh"
    train: Literal["hidden", "all"] = "hidden"

    _act = field_validator("activation")(_check_activation)


class MLPModel(_Section):
    """`ntkflow.MLP`."""

    kind: Literal["mlp"]
    widths: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] = [512, 512]
    activation: str = "tanh"
    out_dim: Annotated[int, Field(ge=1)] = 1
    bias: bool = False

    _act = field_validator("activation")(_check_activation)


class CNNModel(_Section):
    """`ntkflow.CNN` (image data: `[data] images = true`)."""

    kind: Literal["cnn"]
    channels: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)] = [32, 32]
    kernel_size: Annotated[int, Field(ge=1)] = 3
    activation: str = "tanh"
    out_dim: Annotated[int, Field(ge=1)] = 1
    bias: bool = False
    readout: Literal["flatten", "pool"] = "flatten"
    strides: Annotated[int, Field(ge=1)] = 1
    padding: Literal["SAME", "VALID"] = "SAME"
    pool: Annotated[int, Field(ge=1)] | None = None

    _act = field_validator("activation")(_check_activation)


class ProblemSection(_Section):
    """The `Problem`'s settings."""

    alpha: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0
    centering: Literal["none", "subtract", "antisymmetric"] = "none"
    seed: Seed = 0
    dtype: Literal["float64", "float32"] = "float64"
    # A Lipschitz constant of J the user vouches for (`certify(problem, beta=…)`).
    beta: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    # The loss of the predictions (`Problem(loss=…)`): logistic needs ±1 targets,
    # cross_entropy one-hot ones.
    loss: Literal["squared", "logistic", "cross_entropy"] = "squared"


def _tag(field: str, default: str):
    """A discriminator that falls back to the default kind when the key is absent."""

    def get(value: Any) -> Any:
        if isinstance(value, dict):
            return value.get(field, default)
        return getattr(value, field, None)

    return Discriminator(get)


class FlowsSection(_Section):
    """Settings of `ntkflow.solve_flows` (see its docstring)."""

    t1: Annotated[float, Field(gt=0, allow_inf_nan=False)] | Literal["auto"] = "auto"
    saves: Annotated[int, Field(ge=2, le=1_000_000)] = 100
    spacing: Literal["log", "linear"] = "log"
    solver: Literal["auto", "adams", "exponential", "tsit5", "dopri5", "dopri8", "bosh3"] = "auto"
    rtol: Annotated[float, Field(gt=0, lt=1, allow_inf_nan=False)] | Literal["auto"] = "auto"
    atol: Annotated[float, Field(gt=0, allow_inf_nan=False)] | Literal["auto"] = "auto"
    max_steps: Annotated[int, Field(ge=1, le=2**31 - 1)] = 100_000
    tangent: Literal["auto", "closed_form", "ode"] = "auto"
    gd_step: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    error_estimate: bool = True
    diagnostics: bool | Literal["dense", "lanczos"] = True


class OutputSection(_Section):
    """Where and what `ntkflow run` writes."""

    dir: str = "results/{name}"
    figures: bool = True
    report: bool = True
    dpi: Annotated[int, Field(ge=30, le=600)] = 110
    # The distances of K0, σ_min, σ_max, α* to the infinite-width limit (MLP, Shallow, CNN);
    # `None`: on in sweeps over model.width(s), off otherwise.
    limit: bool | None = None

    @field_validator("dir")
    @classmethod
    def _dir(cls, value: str) -> str:
        _check_label(value)
        unknown = sorted(set(re.findall(r"\{[^{}]*\}", value)) - {"{name}"})
        if unknown:
            raise ValueError(
                f"unknown placeholder {unknown[0]} in {value!r}; the only one is {{name}}"
            )
        return value


DataSection = Annotated[
    Annotated[DigitsData, Tag("digits")]
    | Annotated[SphereData, Tag("sphere")]
    | Annotated[FileData, Tag("file")],
    _tag("source", "digits"),
]
ModelSection = Annotated[
    Annotated[ShallowModel, Tag("shallow")]
    | Annotated[MLPModel, Tag("mlp")]
    | Annotated[CNNModel, Tag("cnn")],
    _tag("kind", "shallow"),
]


# Each tagged section's tag key, its default and its classes by tag: the one place the
# tags are named (the unions above are checked against it by the tests; the error
# messages and the allowed keys read it).
TAGGED: dict[str, tuple[str, str, dict[str, type[_Section]]]] = {
    "data": ("source", "digits", {"digits": DigitsData, "sphere": SphereData, "file": FileData}),
    "model": ("kind", "shallow", {"shallow": ShallowModel, "mlp": MLPModel, "cnn": CNNModel}),
}


class Experiment(_Section):
    """A whole experiment file."""

    name: str = "experiment"
    data: DataSection = DigitsData()
    model: ModelSection = ShallowModel()
    problem: ProblemSection = ProblemSection()
    flows: FlowsSection = FlowsSection()
    output: OutputSection = OutputSection()
    # `ntkflow sweep`: dotted keys to lists of values (checked by `_grid.make_grid`),
    # and the run settings `executor`, `address` (`_grid.SETTINGS`); other commands run
    # the base experiment.
    sweep: dict[str, Any] = {}

    _name = field_validator("name")(_check_label)


# -- errors, in one line ---------------------------------------------------------------

_HINTS = {
    "greater_than_equal": "raise it",
    "greater_than": "raise it",
    "less_than_equal": "lower it",
    "finite_number": "give a finite number",
}


def _format_error(err: dict[str, Any], source: str, data: dict[str, Any]) -> str:
    loc = [str(x) for x in err["loc"]]
    kind = err["type"]
    # Drop the union tag pydantic inserts for discriminated unions (`data.digits.n`).
    if len(loc) >= 2 and loc[0] in TAGGED and loc[1] in TAGGED[loc[0]][2]:
        loc = [loc[0], *loc[2:]]
    # Drop the member tags pydantic adds for plain unions (`t1.constrained-float`).
    union = any(not (x.isidentifier() or x.isdigit()) for x in loc)
    loc = [x for x in loc if x.isidentifier() or x.isdigit()]
    # A top-level key (`name`) is named bare; a section's keys after the section.
    section = "top level" if not loc else loc[0] if loc[0] == "name" else f"[{loc[0]}]"
    key = ".".join(loc[1:])
    where = f"{source}: {section}" + (f" {key}" if key else "")
    value = err.get("input")
    if union and loc and loc[-1] == "rtol":
        return f'{where}: must be "auto" or a number in (0, 1), got {value!r}'
    if union and loc and loc[-1] in ("t1", "atol"):
        return f'{where}: must be "auto" or a finite number > 0, got {value!r}'
    if loc[:2] == ["flows", "diagnostics"]:  # (a union of bool and two names)
        allowed = 'true, false, "dense" or "lanczos"'
        return f"{source}: [flows] diagnostics: must be {allowed}, got {value!r}"
    if kind == "extra_forbidden":
        parent = _allowed_keys(loc[:-1], data)
        allowed = f"; allowed keys: {', '.join(parent)}" if parent else ""
        place = section if len(loc) > 1 else "the file"
        return f"{source}: unknown key {loc[-1]!r} in {place}{allowed}"
    if kind == "missing":
        return f"{where}: missing required key; add `{loc[-1]} = …`"
    if kind == "union_tag_invalid":
        tag = TAGGED[loc[0]][0] if loc and loc[0] in TAGGED else "kind"
        ctx = err.get("ctx", {})
        return f"{where} {tag}: must be one of {ctx.get('expected_tags')}, got {ctx.get('tag')!r}"
    if kind == "union_tag_not_found":
        return f"{where}: must be a table (a [{loc[0]}] section), got {value!r}"
    msg = err["msg"]
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        return f"{where}: {msg}"
    hint = _type_hint(kind, value) or _HINTS.get(kind)
    return f"{where}: {msg}, got {value!r}" + (f" ({hint})" if hint else "")


def _type_hint(kind: str, value: Any) -> str | None:
    """The fix for a value of the wrong type (the schema is strict: nothing is coerced)."""
    if kind == "int_type":
        if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
            return f"write {int(value)}: an integer, without a decimal point or exponent"
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return f"write {value.strip()} unquoted"
        return "give an integer, e.g. 3"
    if kind == "bool_type":
        return "write true or false, unquoted"
    if kind == "float_type":
        return "give a number, unquoted, e.g. 1.0 or 1e-3"
    if kind == "string_type":
        return 'give a string in quotes, e.g. "tanh"'
    if kind in ("list_type", "dict_type"):
        return "e.g. [1, 2]" if kind == "list_type" else "a table of SECTION.KEY = [values]"
    return None


def _allowed_keys(loc: list[str], data: dict[str, Any]) -> list[str]:
    if not loc:
        return list(Experiment.model_fields)
    section = loc[0]
    if section in TAGGED:
        key, default, classes = TAGGED[section]
        cls = classes.get(data.get(section, {}).get(key, default))
    else:
        cls = _PLAIN.get(section)
    return list(cls.model_fields) if cls is not None else []


_PLAIN: dict[str, type[BaseModel]] = {
    "problem": ProblemSection,
    "flows": FlowsSection,
    "output": OutputSection,
}
_SECTION_CLASSES: list[tuple[str, type[BaseModel]]] = [
    *((section, cls) for section, (_, _, classes) in TAGGED.items() for cls in classes.values()),
    *_PLAIN.items(),
]


def parse_experiment(data: dict[str, Any], *, source: str = "experiment") -> Experiment:
    """Validate a parsed TOML document. **Raises:** `ConfigError` (one line)."""
    try:
        return Experiment.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_format_error(dict(e.errors()[0]), source, data)) from None


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare string


def apply_overrides(
    data: dict[str, Any], overrides: Sequence[str], *, flag: str = "override"
) -> dict[str, Any]:
    """Apply `section.key=value` overrides (values parsed as TOML, else strings); a
    top-level key (`name=…`) has no section, and a `[sweep]` key is itself dotted
    (`sweep.problem.alpha=[1, 10]`).

    **Raises:** `ConfigError` for an override without `=`, a malformed key, or a section
    given a value; the message calls an override `flag` (the CLI: `"--set"`).
    """
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    sections = [k for k, v in Experiment.model_fields.items() if k != "name"]
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = [p.strip() for p in key.strip().split(".")]
        if parts[0] == "sweep" and len(parts) > 2:
            parts = ["sweep", ".".join(parts[1:])]
        if not sep or len(parts) > 2 or not all(parts):
            raise ConfigError(
                f"{flag} expects SECTION.KEY=VALUE (e.g. problem.alpha=10), got {item!r}"
            )
        if len(parts) == 1 and parts[0] != "name":
            if parts[0] in sections:
                raise ConfigError(
                    f"{flag} {item!r}: {parts[0]!r} is a section; set one of its keys, "
                    f"e.g. {parts[0]}.KEY=VALUE"
                )
            homes = [s for s, cls in _SECTION_CLASSES if parts[0] in cls.model_fields]
            example = f"{homes[0]}.{parts[0]}={value.strip()}" if homes else "problem.alpha=10"
            raise ConfigError(f"{flag} expects SECTION.KEY=VALUE (e.g. {example}), got {item!r}")
        if len(parts) == 1:
            out["name"] = _parse_value(value.strip())
            continue
        section, name = parts
        target = out.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"{flag} {item!r}: {section!r} is not a section")
        target[name] = _parse_value(value.strip())
    return out


def read_document(path: str | os.PathLike) -> dict[str, Any]:
    """Read an experiment file as a dict, with a relative data path made relative to the
    file's folder.

    **Raises:** `ConfigError` with a one-line message.
    """
    path = Path(path)
    kind = path_kind(path, what="experiment file", error=ConfigError)
    if kind == "dir":
        raise ConfigError(
            f"experiment file {str(path)!r} is a directory, expected a file (a TOML file)"
        )
    if kind == "missing":
        raise ConfigError(f"experiment file {str(path)!r} does not exist; check the path")
    text = read_utf8(path, what="experiment file", kind="TOML", error=ConfigError)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    if not data:
        # Every key has a default, but an empty file is a mistake (a truncated copy, the
        # wrong path), not a request for the default experiment.
        raise ConfigError(
            f"{path}: the file is empty (no settings); write the experiment's sections, "
            "at least [data] (see docs/experiments.md)"
        )
    section = data.get("data")
    file = section.get("path") if isinstance(section, dict) else None
    relative = isinstance(file, str) and bool(file.strip()) and not os.path.isabs(file)
    if isinstance(section, dict) and isinstance(file, str) and relative:
        # (An empty path stays empty, to be refused as such.)
        data["data"] = {**section, "path": str(path.parent / file)}
    return data


def load_experiment(
    path: str | os.PathLike, overrides: Sequence[str] = (), *, flag: str = "override"
) -> Experiment:
    """Read and validate an experiment file, with `SECTION.KEY=VALUE` overrides.

    Relative data paths are resolved against the file's folder.

    **Raises:** `ConfigError` with a one-line message (an override is called `flag`).
    """
    data = apply_overrides(read_document(path), list(overrides), flag=flag)
    return parse_experiment(data, source=str(path))


def output_dir(exp: Experiment, out: str | os.PathLike | None = None) -> Path:
    """`out` if given (the CLI's `--out`), else `[output] dir` with `{name}` filled in."""
    if out is not None:
        return Path(out)
    return Path(exp.output.dir.replace("{name}", exp.name))


__all__ = [
    "ConfigError",
    "Experiment",
    "apply_overrides",
    "load_experiment",
    "output_dir",
    "parse_experiment",
]
