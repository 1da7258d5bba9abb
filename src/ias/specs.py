"""One description of a run: frozen specs of its parts, each setting declared once.

A run is a tree of parts (task, policy, PRM, sampling, executor, method, a command's own
settings). Each part's field carries its *key*: the `ias.solve(...)`/`ias.evaluate(...)`
keyword and the `--flag` (`n_max` -> `--n-max`) of the same setting, with its help and its
parser. From that one declaration come the API's keyword form (`from_keys`), the CLI's
argument groups (`add_flags` / `given_keys`), the `config.yaml` every run folder keeps and
`--config` reads back (`to_document` / `from_document`), the settings a resume checks
(`record_config`: only those that change records), and the Ray workers' recipe (the same
task, policy and PRM specs).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from ias.errors import UserError

#: Options that must never land in a run's files (an API key is the user's secret).
SECRET_OPTIONS = frozenset({"api_key"})
#: PRM options that change scores; device and batch_size do not.
SCORING_OPTIONS = ("max_length", "dtype")
BACKENDS = ("hf", "vllm", "openai")
EXECUTORS = ("local", "ray")


def whole_at_least(least: int) -> Callable[[str], int]:
    """A flag parser: a whole number >= `least`, with a message naming the bound."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"expected a number >= {least}, got {value}")
        return value

    return parse


def finite_at_least(least: float) -> Callable[[str], float]:
    """A flag parser: a finite number >= `least`."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
        if not math.isfinite(value) or value < least:
            raise argparse.ArgumentTypeError(f"expected a finite number >= {least:g}, got {value:g}")
        return value

    return parse


def key_value(text: str) -> tuple[str, object]:
    """KEY=VALUE; true/false become booleans, numbers ints or floats (digits=3, lr=1e-3)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    if value.lower() in ("true", "false"):
        return key, value.lower() == "true"
    for number in (int, float):
        try:
            return key, number(value)
        except ValueError:
            pass
    return key, value


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _prm_name(text: str) -> str | None:
    return None if text == "none" else text


def setting(
    default: Any,
    key: str | None,
    help: str,
    parse: Callable[[str], Any] | None = None,
    *,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
    options: bool = False,
    flag: bool | str = True,
) -> Any:
    """A spec field declared once: `key` is its API keyword and `--flag` (`flag="--name"`: a
    flag of another name; False: set on the command line through other flags, the task
    options, a method's settings); `options=True`: a repeatable KEY=VALUE flag."""
    meta = {
        "key": key,
        "help": help,
        "parse": parse,
        "metavar": metavar,
        "choices": choices,
        "options": options,
        "flag": flag,
    }
    if isinstance(default, dict):
        return field(default_factory=dict, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TaskSpec:
    """Which problems: a task (its options: data path, field mapping, prompt template...) and a split."""

    name: str = setting("arith", "task", "arith, gsm8k, math500, jsonl:PATH or hf:NAME")
    split: str = setting("test", "split", "split of the task (arith: test, calib, train, seed:N)")
    limit: int | None = setting(None, "limit", "only the split's first N problems", whole_at_least(1))
    options: dict = setting(
        {},
        "task_options",
        "task options: a data `path`, a jsonl field mapping, arith knobs, "
        "`prompt_template`, `chat` (flags --task-opt, --path, --prompt-template, --chat)",
        flag=False,
    )

    def record(self) -> dict:
        """What of the task changes records (all of it but the limit, which may grow on a resume)."""
        return {"task": self.name, "task_options": dict(self.options), "split": self.split, "limit": self.limit}


@dataclass(frozen=True)
class PolicySpec:
    """The policy model and the engine that samples it."""

    model: str = setting("arith-weak", "policy", "zoo name, local HF model folder, or a served model's name")
    backend: str = setting(
        "hf",
        "backend",
        "policy backend: hf (transformers), vllm (extra 'vllm') or openai "
        "(an OpenAI-compatible server; the policy is its served model name)",
        choices=BACKENDS,
    )
    options: dict = setting(
        {},
        "backend_options",
        "backend option, repeatable: openai: base_url=http://HOST:PORT/v1, "
        "tokenizer, concurrency, timeout_s, max_retries, api_key (better: $OPENAI_API_KEY); "
        "hf: device, dtype, batch_size; vllm: tensor_parallel_size, dtype, max_model_len, "
        "kv_cache_gb, gpu_memory_utilization, enable_prefix_caching, any EngineArgs field",
        key_value,
        metavar="KEY=VALUE",
        options=True,
        flag="--backend-opt",
    )

    def record(self) -> dict:
        """Only a non-default backend is recorded (folders from before backends stay resumable);
        its options never are: an address or a key must not land in files."""
        return {"policy": self.model, **({} if self.backend == "hf" else {"backend": self.backend})}


@dataclass(frozen=True)
class PRMSpec:
    """The process reward model, how to read it, and its calibrator."""

    model: str | None = setting(
        "arith-prm", "prm", "zoo name or local PRM folder ('none': no PRM, where allowed)", _prm_name
    )
    format: str | None = setting(None, "prm_format", "PRM reading format when the folder has no ias_prm.json")
    options: dict = setting(
        {},
        "prm_options",
        "PRM loading option, repeatable: device=cuda, dtype=bfloat16, batch_size=16, max_length=4096",
        key_value,
        metavar="KEY=VALUE",
        options=True,
        flag="--prm-opt",
    )
    calibrator: str | None = setting(
        None,
        "calibrator",
        "calibrator folder from `ias calibrate` (scores become calibrated; IAS budgets from its quantiles)",
    )

    def record(self) -> dict:
        """How the PRM scores (its format, the options that change scores, the calibrator's
        content hash), so a resume never mixes records scored two ways; only what is set, so
        folders from before these keys stay resumable."""
        if self.model is None:
            return {"prm": None, "calibrator": None}
        options = {k: v for k, v in sorted(self.options.items()) if k in SCORING_OPTIONS}
        scoring = {
            "prm_format": self.format,
            "prm_options": options or None,
            "calibrator_sha": calibrator_sha(self.calibrator) if self.calibrator else None,
        }
        return {"prm": self.model, "calibrator": self.calibrator, **{k: v for k, v in scoring.items() if v is not None}}


@dataclass(frozen=True)
class SamplingSpec:
    """Overrides of the policy's own sampling settings (None: the policy's)."""

    temperature: float | None = setting(
        None, "temperature", "sampling temperature (default: the policy's own)", finite_at_least(0.0)
    )
    top_p: float | None = setting(
        None, "top_p", "nucleus sampling threshold (default: the policy's own)", finite_at_least(0.0)
    )
    max_tokens: int | None = setting(None, "max_tokens", "most tokens per sample", whole_at_least(1))


@dataclass(frozen=True)
class ExecutorSpec:
    """Where the batched work runs: here, or sharded over Ray actors (docs/ray.md)."""

    kind: str = setting(
        "local", "executor", "local (this process) or ray (actors on a Ray cluster; extra 'ray')", choices=EXECUTORS
    )
    workers: int = setting(1, "workers", "Ray actors, each with its own model replicas", whole_at_least(1))
    address: str | None = setting(
        None, "ray_address", "Ray cluster to join: 'auto' or HOST:PORT (default: start a local one)"
    )
    num_cpus: float = setting(1.0, "ray_num_cpus", "CPUs per Ray actor", finite_at_least(0.0))
    num_gpus: float = setting(
        0.0, "ray_num_gpus", "GPUs per Ray actor (transformers models then go to its GPU)", finite_at_least(0.0)
    )

    def check(self) -> None:
        """Checked before anything is loaded."""
        if self.kind not in EXECUTORS:
            raise UserError(f"unknown executor '{self.kind}'; known: {', '.join(EXECUTORS)}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise UserError(f"--workers must be a whole number >= 1, got {self.workers!r}")
        if self.kind == "local" and (self.workers != 1 or self.address is not None):
            raise UserError("--workers and --ray-address need --executor ray")
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise UserError(f"--ray-num-cpus and --ray-num-gpus must be >= 0, got {self.num_cpus} and {self.num_gpus}")


@dataclass(frozen=True)
class MethodSpec:
    """A registered method (`ias.methods`), its settings, and ias-adaptive's tuning file."""

    strategy: str = setting("bon", "strategy", "a registered method (`ias.methods.method_names()`)")
    settings: dict = setting({}, "settings", "the method's settings (flags from the method registry)", flag=False)
    tuning: str | None = setting(
        None,
        "tuning",
        "ias-adaptive's tuned settings and confidence map: "
        "tune/tuning.json of `ias eval --tune-split` (or its eval folder)",
    )


@dataclass(frozen=True)
class RolloutSettings:
    """Monte-Carlo targets (SPEC §2): trajectories per problem, continuations per prefix."""

    n_traj: int = setting(8, "n_traj", "trajectories per problem", whole_at_least(1))
    n_mc: int = setting(8, "n_mc", "continuations per prefix", whole_at_least(1))
    max_prefix: int = setting(
        20,
        "max_prefix",
        "continue prefixes t = 0 .. max-prefix (t = T is always kept, by correctness)",
        whole_at_least(0),
    )


@dataclass(frozen=True)
class EvalSettings:
    """`ias eval`'s own settings: which methods, the pool, the tuning split, the searches."""

    strategies: tuple[str, ...] | None = setting(
        None, "strategies", "comma-separated subset of the eval strategies (default: all)", _names
    )
    n_max: int = setting(64, "n_max", "samples per problem in the pool (N_max)", whole_at_least(1))
    coverage: float = setting(0.99, "coverage", "IAS target coverage C", finite_at_least(0.0))
    tune_split: str | None = setting(
        None,
        "tune_split",
        "adds ias-bon-tuned and tunes ias-adaptive on this split's "
        "own pool (e.g. calib), never on the evaluated problems",
        metavar="SPLIT",
    )
    tune_limit: int | None = setting(None, "tune_limit", "only the tuning split's first N problems", whole_at_least(1))
    tolerance: float = setting(
        0.015, "tolerance", "tuning: the cheapest setting within this accuracy of bon@N_max", finite_at_least(0.0)
    )
    orderings: int = setting(
        16,
        "orderings",
        "each method's figures are expected over this many seeded orderings "
        "of every question's pool (1: the pool as drawn, what `ias solve` does)",
        whole_at_least(1),
    )
    k_max: int = setting(8, "k_max", "beam searches: most beams kept (K_max)", whole_at_least(1))
    m_max: int = setting(8, "m_max", "beam searches: most samples per beam (M_max)", whole_at_least(1))
    beam_freq: int = setting(1, "beam_freq", "beam searches: steps between PRM readings", whole_at_least(1))
    beam_rounds: int = setting(
        16, "beam_rounds", "beam searches: PRM readings before the beams are continued to the end", whole_at_least(1)
    )


def _out(default: str) -> Any:
    return setting(default, "out", "output folder; an existing one is resumed")


def _seed() -> Any:
    return setting(0, "seed", "run seed; same seed, same records", int)


def _batch(default: int) -> Any:
    return setting(default, "batch_problems", "problems per batched call (a chunk)", whole_at_least(1))


@dataclass(frozen=True)
class SolveRun:
    """`ias solve`: a registered method over a task split, live."""

    task: TaskSpec = field(default_factory=TaskSpec)
    policy: PolicySpec = field(default_factory=PolicySpec)
    prm: PRMSpec = field(default_factory=PRMSpec)
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    method: MethodSpec = field(default_factory=MethodSpec)
    out: str = _out("runs/solve")
    seed: int = _seed()
    batch_problems: int = _batch(32)
    progress: bool = True


@dataclass(frozen=True)
class RolloutRun:
    """`ias rollout`: Monte-Carlo calibration targets of a policy."""

    task: TaskSpec = field(default_factory=lambda: TaskSpec(split="calib"))
    policy: PolicySpec = field(default_factory=PolicySpec)
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    rollout: RolloutSettings = field(default_factory=RolloutSettings)
    out: str = _out("runs/rollout")
    seed: int = _seed()
    batch_problems: int = _batch(16)
    progress: bool = True


@dataclass(frozen=True)
class EvalRun:
    """`ias eval`: every strategy on one shared pool."""

    task: TaskSpec = field(default_factory=TaskSpec)
    policy: PolicySpec = field(default_factory=PolicySpec)
    prm: PRMSpec = field(default_factory=PRMSpec)
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    eval: EvalSettings = field(default_factory=EvalSettings)
    out: str = _out("runs/eval")
    seed: int = _seed()
    batch_problems: int = _batch(16)
    progress: bool = True


@dataclass(frozen=True)
class AskRun:
    """`ias ask` and `ias serve --strategy`: a method answering typed questions live."""

    task: TaskSpec = field(default_factory=TaskSpec)
    policy: PolicySpec = field(default_factory=PolicySpec)
    prm: PRMSpec = field(default_factory=PRMSpec)
    sampling: SamplingSpec = field(default_factory=SamplingSpec)
    method: MethodSpec = field(default_factory=lambda: MethodSpec(strategy="ias-adaptive"))
    seed: int = setting(0, "seed", "run seed; same seed, same answer", int)


Run = typing.Union[SolveRun, RolloutRun, EvalRun, AskRun]
#: A run's settings that are no part of its description (a progress bar changes nothing).
_NOT_DESCRIBED = frozenset({"progress"})


def _part_class(run_cls: type, f: dataclasses.Field) -> type:
    hints = typing.get_type_hints(run_cls)
    return hints[f.name]


def key_table(run_cls: type) -> dict[str, tuple[str | None, str]]:
    """Every setting's key -> (its part's field in the run, or None for the run's own; its field name)."""
    table: dict[str, tuple[str | None, str]] = {}
    for f in fields(run_cls):
        if f.name in _NOT_DESCRIBED:
            table[f.name] = (None, f.name)
        elif _is_spec(run_cls, f):
            for g in fields(_part_class(run_cls, f)):
                if g.metadata.get("key"):
                    table[g.metadata["key"]] = (f.name, g.name)
        else:
            table[f.metadata.get("key") or f.name] = (None, f.name)
    return table


def _is_spec(run_cls: type, f: dataclasses.Field) -> bool:
    return dataclasses.is_dataclass(_part_class(run_cls, f))


def from_keys(run_cls: type, keys: Mapping[str, Any], base: Any = None) -> Any:
    """`base` (default: the run's defaults) with the settings given by key (the API's keyword
    form, the CLI's flags); an unknown key is a one-line error naming the known ones."""
    run = base if base is not None else run_cls()
    table = key_table(run_cls)
    unknown = sorted(set(keys) - set(table))
    if unknown:
        raise UserError(f"unknown setting '{unknown[0]}'; known: {', '.join(sorted(table))}")
    changes: dict[str | None, dict[str, Any]] = {}
    for key, value in keys.items():
        part, name = table[key]
        changes.setdefault(part, {})[name] = value
    return _apply(run_cls, run, changes)


def _apply(run_cls: type, run: Any, changes: Mapping[str | None, Mapping[str, Any]]) -> Any:
    """`run` with the settings changed by part (None: the run's own fields), each value checked."""
    checked = {
        part: {name: _checked(run_cls, part, name, str(x) if isinstance(x, Path) else x) for name, x in values.items()}
        for part, values in changes.items()
    }
    own = checked.pop(None, {})
    parts = {
        part: dataclasses.replace(getattr(run, part), **values) for part, values in checked.items() if part is not None
    }
    return dataclasses.replace(run, **own, **parts)


def _checked(run_cls: type, part: str | None, name: str, value: Any) -> Any:
    """A setting's value of the right kind (a config file's text is not a number), sequences as tuples."""
    owner = _part_class(run_cls, next(f for f in fields(run_cls) if f.name == part)) if part else run_cls
    hint = typing.get_type_hints(owner)[name]
    allowed = _kinds(hint)
    if isinstance(value, list) and tuple in allowed:
        value = tuple(value)
    if isinstance(value, int) and not isinstance(value, bool) and float in allowed and int not in allowed:
        value = float(value)
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        label = f"{part}.{name}" if part else name
        raise UserError(f"setting '{label}' must be {' or '.join(k.__name__ for k in allowed)}, got {value!r}")
    return value


def _kinds(hint: Any) -> tuple[type, ...]:
    """The runtime classes a type hint admits (Optional[int] -> (int, NoneType))."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return tuple(k for a in args for k in _kinds(a))
    if origin is not None:
        return (origin,)
    return (type(None),) if hint is type(None) else (hint,)


def record_config(run: Any) -> dict:
    """The settings of a run that change its records (each part's `record()`): what its
    `config.json` holds and a resume checks."""
    config: dict[str, Any] = {}
    for f in fields(run):
        part = getattr(run, f.name)
        if hasattr(part, "record"):
            config.update(part.record())
    return config


def to_document(run: Any, command: str) -> dict:
    """The run as the `config.yaml` its folder keeps: parts as sections, secrets left out."""
    document: dict[str, Any] = {"command": command}
    for f in fields(run):
        value = getattr(run, f.name)
        if f.name in _NOT_DESCRIBED:
            continue
        if dataclasses.is_dataclass(value):
            section = dataclasses.asdict(value)  # type: ignore[arg-type]
            document[f.name] = {
                k: _plain(
                    {o: x for o, x in v.items() if o not in SECRET_OPTIONS}
                    if k == "options" and isinstance(v, dict)
                    else v
                )
                for k, v in section.items()
            }
        else:
            document[f.name] = _plain(value)
    return document


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def from_document(run_cls: type, document: Mapping[str, Any], command: str, source: str) -> Any:
    """A run from a config document (sections by part, each by its spec's field names); unknown
    sections or fields, or another command's document, are one-line errors naming `source`."""
    if not isinstance(document, Mapping):
        raise UserError(f"{source}: expected a mapping of settings, got {type(document).__name__}")
    if document.get("command", command) != command:
        raise UserError(f"{source} describes an `ias {document['command']}` run, not `ias {command}`")
    by_field = {f.name: f for f in fields(run_cls)}
    changes: dict[str | None, dict[str, Any]] = {}
    for name, value in document.items():
        if name == "command":
            continue
        if name not in by_field:
            raise UserError(f"{source}: unknown section '{name}'; known: {', '.join(sorted(by_field))}")
        f = by_field[name]
        if not _is_spec(run_cls, f):
            changes.setdefault(None, {})[name] = value
            continue
        if not isinstance(value, Mapping):
            raise UserError(f"{source}: section '{name}' must be a mapping, got {value!r}")
        part_fields = {g.name: g for g in fields(_part_class(run_cls, f))}
        for field_name, x in value.items():
            if field_name not in part_fields:
                raise UserError(
                    f"{source}: unknown setting '{name}.{field_name}'; known: {', '.join(sorted(part_fields))}"
                )
            changes.setdefault(name, {})[field_name] = x
    return _apply(run_cls, run_cls(), changes)


def read_config(path: str | Path, run_cls: type, command: str) -> Any:
    """`--config FILE` (YAML, or TOML by its suffix) as a run; a missing or malformed file is one line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read --config {path}: {getattr(err, 'strerror', None) or err}") from None
    try:
        document = _parse(text, path)
    except UserError:
        raise
    except Exception as err:  # yaml.YAMLError, tomllib.TOMLDecodeError: the parser's own message
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"--config {path} is not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: {first}"
        ) from None
    return from_document(run_cls, document or {}, command, str(path))


def _parse(text: str, path: Path) -> Any:
    """A config file's document: TOML by its suffix (Python 3.11+), else YAML."""
    if path.suffix != ".toml":
        import yaml

        return yaml.safe_load(text)
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    raise UserError(f"--config {path}: TOML needs Python 3.11 or newer; write it as YAML")


def write_config(folder: Path, run: Any, command: str) -> None:
    """Keep the resolved run in `folder/config.yaml`, so `ias <command> --config` reruns it."""
    import yaml

    header = f"# The resolved settings of this `ias {command}` run. Rerun: ias {command} --config THIS_FILE\n"
    text = header + yaml.safe_dump(to_document(run, command), sort_keys=False, allow_unicode=True)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "config.yaml.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, folder / "config.yaml")  # a reader sees the old file or the new one


def add_flags(
    parser: argparse.ArgumentParser | Any,
    run_cls: type,
    parts: tuple[str, ...] | None = None,
    skip: frozenset[str] = frozenset(),
) -> None:
    """One flag per setting of the run's parts (all, or `parts`), from its declaration; flags
    default to "not given" so a config file's or the spec's default applies."""
    for f in fields(run_cls):
        if f.name in _NOT_DESCRIBED or (parts is not None and f.name not in parts):
            continue
        declared = [g for g in fields(_part_class(run_cls, f))] if _is_spec(run_cls, f) else [f]
        defaults = getattr(run_cls(), f.name)
        for g in declared:
            key = g.metadata.get("key")
            if not key or key in skip or not g.metadata["flag"]:
                continue
            default = getattr(defaults, g.name) if _is_spec(run_cls, f) else defaults
            _add_flag(parser, key, g.metadata, default)


def _add_flag(parser: Any, key: str, meta: Mapping[str, Any], default: Any) -> None:
    shown = "" if default in (None, {}, ()) else f" (default {default})"
    kwargs: dict[str, Any] = {"dest": key, "default": argparse.SUPPRESS, "help": meta["help"] + shown}
    if meta["options"]:
        kwargs.update(action="append", type=meta["parse"], metavar=meta["metavar"])
    else:
        kwargs.update(type=meta["parse"], metavar=meta["metavar"], choices=meta["choices"])
    name = meta["flag"] if isinstance(meta["flag"], str) else "--" + key.replace("_", "-")
    parser.add_argument(name, **kwargs)


def given_keys(args: argparse.Namespace, run_cls: type) -> dict[str, Any]:
    """The flags given on the command line, by key (repeated KEY=VALUE flags as one dict)."""
    table = key_table(run_cls)
    given = {}
    for key, value in vars(args).items():
        if key in table and key not in _NOT_DESCRIBED:
            given[key] = dict(value) if isinstance(value, list) and value and isinstance(value[0], tuple) else value
    return given


def calibrator_sha(folder: str | Path) -> str:
    """A short hash of the calibrator's `calibration.json`, its fitting time aside: a
    calibrator refitted to other numbers in the same folder is another calibrator, the same
    fit done again (as `ias demo` does on a rerun) is the same one."""
    import hashlib
    import json

    from ias.calibration.calibrate import read_calibration

    info = read_calibration(folder)  # a folder without one is a one-line user error
    stable = {k: v for k, v in info.items() if k != "fit_seconds"}
    return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:12]
