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


def read_records(path: Path) -> list[dict]:
    """The complete records of a JSONL file; a torn last line (no newline) is ignored."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    records = []
    for number, line in enumerate(data[:end].splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise UserError(f"{path}:{number} is not a valid record; move the file away to start over") from None
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
            raise UserError(f"{path} is unreadable ({type(err).__name__}); remove that folder or pass another --out") \
                from None
        differs = {k for k in set(saved) | set(config) if k != "limit" and saved.get(k) != config.get(k)}
        if differs:
            raise UserError(
                f"{path.parent} holds a run with other settings ({', '.join(sorted(differs))}); "
                "use another --out or remove it"
            )
    write_json(path, config)
