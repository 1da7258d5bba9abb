"""Records survive torn writes; JSON files are replaced atomically."""

import json

import pytest

from ias.errors import UserError
from ias.records import RecordWriter, read_records, write_json


def test_torn_last_line_is_dropped_then_cut_before_appending(tmp_path):
    path = tmp_path / "records.jsonl"
    with RecordWriter(path) as w:
        w.write([{"id": "a"}, {"id": "b"}])
    with open(path, "ab") as f:
        f.write(b'{"id": "c", "tex')  # a crash in the middle of a write
    assert [r["id"] for r in read_records(path)] == ["a", "b"]
    with RecordWriter(path) as w:
        w.write([{"id": "c"}])
    assert [r["id"] for r in read_records(path)] == ["a", "b", "c"]
    assert path.read_text().count("\n") == 3


def test_corrupt_middle_line_is_a_user_error(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(UserError, match=":2"):
        read_records(path)


def test_nan_is_refused_and_its_batch_not_written(tmp_path):
    path = tmp_path / "records.jsonl"
    with RecordWriter(path) as w, pytest.raises(ValueError):
        w.write([{"id": "ok", "score": 0.5}, {"id": "bad", "score": float("nan")}])
    assert read_records(path) == []


def test_write_json_replaces_whole_file(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"a": 1})
    write_json(path, {"b": 2})
    assert json.loads(path.read_text()) == {"b": 2}
    assert not list(tmp_path.glob("*.tmp"))
