"""Append-only JSONL records that survive a crash, and atomically written JSON files.

A record is appended as one `write` of a whole line, flushed and synced. A run killed in
the middle of a write leaves at most one partial last line; `read_records` drops it (and
`RecordWriter` cuts it off before appending), so a resumed run neither loses nor repeats a
finished record.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

from ias.errors import UserError


def read_records(path: Path, required: tuple[str, ...] = ("id",)) -> list[dict]:
    """The complete records of a JSONL file; a torn last line (no newline) is ignored. A line
    that is not JSON, or not an object holding the `required` keys, is a one-line error."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    records = []
    for number, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # ValueError: bad JSON, bad UTF-8, a number too long
            record = None
        if not isinstance(record, dict) or any(key not in record for key in required):
            raise UserError(f"{path}:{number} is not a valid record; move the file away to start over")
        records.append(record)
    return records


class RecordWriter:
    """Appends records to a JSONL file, one synced line each."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end != len(data):  # a torn line from a crash: cut it off
                with open(path, "r+b") as f:
                    f.truncate(end)
        self._file = open(path, "ab")

    def write(self, records: Iterable[dict]) -> None:
        # Serialise the whole batch first: a record that cannot be written stops all of it.
        lines = [json.dumps(r, ensure_ascii=False, allow_nan=False, default=_plain) + "\n" for r in records]
        self._file.write("".join(lines).encode())
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a reader sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False, default=_plain) + "\n")
    os.replace(tmp, path)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


#: Names the command that owns a run folder: `{"command": "solve"}`.
OWNER_FILE = "command.json"
#: How folders written before `OWNER_FILE` existed show their command (first match wins).
_LEGACY_SIGNS = (
    ("rollouts.jsonl", "rollout"),
    ("pool", "eval"),
    ("calibration.json", "calibrate"),
    ("metrics.json", "calib-eval"),
    ("records.jsonl", "solve"),
    ("config.json", "solve"),
)


def claim_run(out: Path, command: str) -> None:
    """Make `out` the folder of one `ias <command>` before anything is written to it.

    A folder another command owns is refused with nothing in it changed (its records would
    be replaced or misread); the same command resumes. An `--out` that is a file, lies under
    one, or cannot be written is a one-line error.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file, not a run folder; pass another --out")
    owner = run_owner(out)
    if owner is not None and owner != command:
        raise UserError(
            f"{out} holds the run of `ias {owner}`; pass another --out to `ias {command}` "
            "(a run folder belongs to one command)"
        )
    if owner == command and (out / OWNER_FILE).exists():
        return
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / OWNER_FILE, {"command": command})
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UserError(f"cannot write the run folder {out} ({reason}); pass a writable --out") from None


def run_owner(out: Path) -> str | None:
    """The command that owns the run folder `out`, or None when it is free (missing, empty,
    or holding only another command's unused claim)."""
    out = Path(out)
    marker = out / OWNER_FILE
    try:
        names = {p.name for p in out.iterdir()} if out.is_dir() else set()
    except OSError as err:
        raise UserError(f"cannot read the run folder {out} ({err.strerror}); pass another --out") from None
    if names <= {OWNER_FILE, OWNER_FILE + ".tmp"}:
        return None
    if OWNER_FILE in names:
        try:
            command = json.loads(marker.read_text())["command"]
            if not isinstance(command, str):
                raise TypeError
            return command
        except (OSError, ValueError, KeyError, TypeError):
            raise UserError(f"{marker} is unreadable; remove that folder or pass another --out") from None
    return next((command for name, command in _LEGACY_SIGNS if name in names), None)


def claim_folder(path: Path, config: dict) -> None:
    """Write a run's `config.json`, refusing a folder that holds a run with other settings.

    Only settings that change records matter; `limit` may grow between runs.
    """
    if path.parent.exists() and not path.parent.is_dir():
        raise UserError(f"{path.parent} is a file, not a run folder; pass another --out")
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise UserError(
                f"{path} is unreadable ({type(err).__name__}); remove that folder or pass another --out"
            ) from None
        differs = {k for k in set(saved) | set(config) if k != "limit" and saved.get(k) != config.get(k)}
        if differs:
            raise UserError(
                f"{path.parent} holds a run with other settings ({', '.join(sorted(differs))}); "
                "use another --out or remove it"
            )
    write_json(path, config)
