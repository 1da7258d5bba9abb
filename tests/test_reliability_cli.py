"""Issue 15 as a hostile user meets it: timed-out verdicts said in the records, run folders
owned by one command, damaged files and wrong parts as one-line errors, bounded inputs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ONE_SOLVE = ["--limit", "1", "--n", "1", "--prm", "none", "--selection", "majority"]


def ias(*args, **kw):
    return subprocess.run([sys.executable, "-m", "ias.cli", *args], capture_output=True, text=True, **kw)


def one_line_error(result, *fragments: str) -> None:
    """Exit 2, one `ias: error:` line holding every fragment, no traceback."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("ias: error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_a_timed_out_verdict_is_flagged_in_the_records_and_counted(tmp_path):
    data = tmp_path / "heavy.jsonl"
    data.write_text(json.dumps({"question": "Compute 7+2*3.", "answer": "(10^{9})! - 9^{9^{9}}"}) + "\n")
    template = tmp_path / "prompt.txt"
    template.write_text("{question}\n\n")  # the zoo policy's own prompt format
    out = tmp_path / "run"
    result = ias("solve", "--task", f"jsonl:{data}", "--prompt-template", str(template), "--n", "2",
                 "--prm", "none", "--selection", "majority", "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [s.get("grade_timeout") for s in record["samples"]] == [True, True]
    assert not any(s["correct"] for s in record["samples"])
    assert record["grade_timeouts"] == 2
    assert json.loads((out / "summary.json").read_text())["grade_timeouts"] == 2
