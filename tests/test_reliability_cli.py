"""Issue 15 as a hostile user meets it: timed-out verdicts said in the records, run folders
owned by one command, damaged files and wrong parts as one-line errors, bounded inputs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ONE_SOLVE = ["--limit", "1", "--n", "1", "--prm", "none", "--selection", "majority"]


def one_line_error(result, *fragments: str) -> None:
    """Exit 2, one `ias: error:` line holding every fragment, no traceback."""
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("ias: error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def heavy_task(tmp_path: Path) -> list[str]:
    """Task options for a question the zoo policy answers whose reference takes math-verify
    past its time bound: every grading of it times out."""
    data = tmp_path / "heavy.jsonl"
    data.write_text(json.dumps({"question": "Compute 7+2*3.", "answer": "(10^{9})! - 9^{9^{9}}"}) + "\n")
    template = tmp_path / "prompt.txt"
    template.write_text("{question}\n\n")  # the zoo policy's own prompt format
    return ["--task", f"jsonl:{data}", "--prompt-template", str(template)]


@pytest.mark.slow
def test_a_timed_out_verdict_is_flagged_in_the_records_and_counted(tmp_path, cli):
    out = tmp_path / "run"
    result = cli(
        "solve", *heavy_task(tmp_path), "--n", "2", "--prm", "none", "--selection", "majority", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert [s.get("grade_timeout") for s in record["samples"]] == [True, True]
    assert not any(s["correct"] for s in record["samples"])
    assert record["grade_timeouts"] == 2
    assert json.loads((out / "summary.json").read_text())["grade_timeouts"] == 2


@pytest.mark.slow
def test_eval_counts_its_pools_timed_out_verdicts(tmp_path, cli):
    out = tmp_path / "eval"
    result = cli(
        "eval", *heavy_task(tmp_path), "--n-max", "2", "--strategies", "bon,sc", "--prm", "arith-prm", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["grade_timeouts"] == summary["pool"]["grade_timeouts"] == 2


@pytest.mark.slow
def test_timed_out_verdicts_in_rollouts_are_flagged_and_counted(tmp_path, cli):
    out = tmp_path / "rollouts"
    result = cli(
        "rollout",
        *heavy_task(tmp_path),
        "--split",
        "test",
        "--n-traj",
        "1",
        "--n-mc",
        "1",
        "--max-prefix",
        "0",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (record,) = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert [t.get("grade_timeout") for t in record["trajectories"]] == [True]
    assert record["grade_timeouts"] == 2  # the trajectory and its one continuation
    assert json.loads((out / "summary.json").read_text())["grade_timeouts"] == 2


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder`: its bytes and modification time."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_a_run_folder_belongs_to_one_command(tmp_path, cli):
    solved, evaluated = tmp_path / "solved", tmp_path / "evaluated"
    assert cli("solve", *ONE_SOLVE, "--out", str(solved)).returncode == 0
    assert cli("eval", "--limit", "1", "--n-max", "2", "--strategies", "bon", "--out", str(evaluated)).returncode == 0
    before = snapshot(solved), snapshot(evaluated)
    for args in (
        ["eval", "--limit", "1", "--n-max", "2", "--strategies", "bon", "--out", str(solved)],
        ["rollout", "--limit", "1", "--n-traj", "1", "--n-mc", "1", "--out", str(solved)],
        ["solve", *ONE_SOLVE, "--out", str(evaluated)],
        ["rollout", "--limit", "1", "--n-traj", "1", "--n-mc", "1", "--out", str(evaluated)],
    ):
        owner = "solve" if args[-1] == str(solved) else "eval"
        one_line_error(cli(*args), f"holds the run of `ias {owner}`", f"`ias {args[0]}`")
    assert (snapshot(solved), snapshot(evaluated)) == before
    assert cli("solve", *ONE_SOLVE, "--out", str(solved)).returncode == 0  # its own command resumes it


def test_a_folder_from_before_owners_were_recorded_is_still_owned(tmp_path, cli):
    evaluated = tmp_path / "old-eval"
    assert cli("eval", "--limit", "1", "--n-max", "2", "--strategies", "bon", "--out", str(evaluated)).returncode == 0
    (evaluated / "command.json").unlink()  # as ias wrote it before command.json existed
    before = snapshot(evaluated)
    one_line_error(cli("solve", *ONE_SOLVE, "--out", str(evaluated)), "holds the run of `ias eval`")
    assert snapshot(evaluated) == before


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_an_impossible_out_is_one_line(tmp_path, where, cli):
    afile = tmp_path / "afile"
    afile.write_text("x")
    out = afile / "run" if where == "under-a-file" else Path("/proc/ias-run")
    one_line_error(cli("solve", *ONE_SOLVE, "--out", str(out)), str(out), "--out")


def test_an_unwritable_out_is_one_line(tmp_path, cli):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        one_line_error(cli("solve", *ONE_SOLVE, "--out", str(locked / "run")), "pass a writable --out")
    finally:
        locked.chmod(0o700)


ZOO = Path(__file__).resolve().parents[1] / "src" / "ias" / "zoo" / "models"


def damaged_copy(source: Path, dest: Path, name: str, how: str) -> Path:
    """A copy of the folder `source` whose file `name` is truncated, emptied or garbled."""
    import shutil

    shutil.copytree(source, dest)
    data = (dest / name).read_bytes()
    damaged = {"half": data[: len(data) // 2], "empty": b"", "garbled": b"garbage!" + data[8:]}[how]
    (dest / name).write_bytes(damaged)
    return dest


@pytest.mark.parametrize(
    "name, how",
    [
        ("calibration.json", "half"),
        ("calibration.json", "empty"),
        ("quantile_head.safetensors", "half"),
        ("quantile_head.safetensors", "garbled"),
        ("quantile_head.json", "half"),
    ],
)
def test_a_damaged_calibrator_is_one_line(small_calibrator, tmp_path, name, how, cli):
    folder = damaged_copy(small_calibrator, tmp_path / "cal", name, how)
    result = cli("solve", "--limit", "1", "--n", "1", "--calibrator", str(folder), "--out", str(tmp_path / "o"))
    one_line_error(result, str(folder), "ias calibrate")
    if name.endswith(".safetensors"):
        assert name in result.stderr


@pytest.mark.parametrize("role, how", [("policy", "half"), ("policy", "garbled"), ("prm", "half"), ("prm", "garbled")])
def test_damaged_model_weights_are_one_line(tmp_path, role, how, cli):
    source = ZOO / ("arith-weak" if role == "policy" else "arith-prm")
    folder = damaged_copy(source, tmp_path / role, "model.safetensors", how)
    result = cli("solve", "--limit", "1", "--n", "1", f"--{role}", str(folder), "--out", str(tmp_path / "o"))
    one_line_error(result, str(folder / "model.safetensors"), "damaged")


def test_a_prm_read_in_another_prms_format_is_refused(tmp_path, cli):
    """Math-Shepherd's tag is no token of the zoo PRM: every input would be an unread skip."""
    result = cli("solve", "--limit", "1", "--n", "1", "--prm-format", "math-shepherd", "--out", str(tmp_path / "o"))
    one_line_error(result, "PRM 'arith-prm' has no token for ' ки'", "--prm-format")
    assert not (tmp_path / "o").exists()


def test_a_damaged_model_config_names_the_folder_not_the_network(tmp_path, cli):
    folder = damaged_copy(ZOO / "arith-weak", tmp_path / "policy", "config.json", "half")
    result = cli("solve", "--limit", "1", "--n", "1", "--policy", str(folder), "--out", str(tmp_path / "o"))
    one_line_error(result, f"cannot load the model folder '{folder}'", "copy the folder again")
    assert "network" not in result.stderr


@pytest.mark.parametrize(
    "option",
    ["digits=99999999999999999999999", "digits=" + "9" * 5000, "seed=" + "9" * 5000, "max_ops=2.5", "digits=0"],
)
def test_arith_options_past_their_bounds_are_one_line(tmp_path, option, cli):
    result = cli("solve", *ONE_SOLVE, "--task-opt", option, "--out", str(tmp_path / "o"))
    one_line_error(result, f"arith {option.split('=')[0]} must be a whole number from")


def test_a_policy_given_as_a_prm_is_refused_not_read_with_a_random_head(tmp_path, cli):
    result = cli(
        "solve", "--limit", "1", "--n", "1", "--prm", "arith-weak", "--prm-format", "zoo", "--out", str(tmp_path / "o")
    )
    one_line_error(result, "has no trained weights for score.", "not a PRM")


@pytest.mark.parametrize("option", ["max_length=-1", "max_length=0", "batch_size=0", "dtype=int8"])
def test_prm_options_that_make_nothing_readable_are_refused(tmp_path, option, cli):
    result = cli("solve", "--limit", "1", "--n", "1", "--prm-opt", option, "--out", str(tmp_path / "o"))
    one_line_error(result, f"PRM option {option.split('=')[0]} must be")


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "holds no rows"),
        ("\n \n", "holds no rows"),
        ('{"question": "q", "answer": NaN}\n', "field 'answer' is nan, not a finite number"),
        ('{"question": "q", "answer": -Infinity}\n', "field 'answer' is -inf, not a finite number"),
        ('{"question": "q", "answer": ' + "1" * 5000 + "}\n", ":1: not readable JSON"),
        ("[" * 100_000 + "\n", ":1: not readable JSON"),
        (
            '{"question": "q", "answer": "1"}\n' + json.dumps({"question": "x" * (2 << 20), "answer": "1"}) + "\n",
            ":2: a row longer than 1 MB (the limit per row)",
        ),
    ],
)
def test_data_files_that_hold_no_usable_rows_are_one_line(tmp_path, content, message, cli):
    data = tmp_path / "data.jsonl"
    data.write_text(content)
    one_line_error(cli("data", "check", "--task", f"jsonl:{data}"), message)


def test_a_50_mb_row_is_refused_at_once_without_reading_it_whole(tmp_path):
    data = tmp_path / "big.jsonl"
    data.write_text(json.dumps({"question": "x" * (50 << 20), "answer": "1"}) + "\n")
    if not Path("/proc/self/status").exists():
        pytest.skip("peak memory is read from /proc")
    # `ias data check` run by a wrapper that says its own peak memory last, on stderr (VmHWM:
    # this program's own, where getrusage would also count the forking test process).
    code = (
        "import sys; from ias.cli import main; rc = main(sys.argv[1:]); "
        "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0], file=sys.stderr); "
        "sys.exit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, "data", "check", "--task", f"jsonl:{data}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    one_line_error(result, "a row longer than 1 MB")
    peak_mb = int(result.stderr.split()[-1]) / 1024
    assert peak_mb < 400  # the 50 MB row is never held whole (a 2 MB one took 1.2 GB before)


@pytest.mark.parametrize(
    "args, flag, ceiling",
    [
        (["solve", "--n", "1000000000"], "--n", "1,024"),
        (["eval", "--n-max", "2048"], "--n-max", "1,024"),
        (["rollout", "--n-mc", "5000"], "--n-mc", "1,024"),
        (["solve", "--split", "seed:1", "--limit", "100000000"], "--limit", "1,000,000"),
    ],
)
def test_counts_past_their_ceiling_are_refused_before_any_work(tmp_path, args, flag, ceiling, cli):
    out = tmp_path / "o"
    one_line_error(cli(*args, "--out", str(out), timeout=60), f"{flag} ", f"past the ceiling of {ceiling}")
    assert not out.exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        ("config", "config.json is damaged"),
        ("foreign-row", "rollouts.jsonl:2 is not a valid record"),
        ("empty", "holds no rollouts"),
        ("shape", "holds a record of another shape"),
    ],
)
def test_a_damaged_rollout_folder_is_one_line(small_rollouts, tmp_path, damage, message, cli):
    import shutil

    folder = tmp_path / "rollouts"
    shutil.copytree(small_rollouts, folder)
    store = folder / "rollouts.jsonl"
    first = json.loads(store.read_text().splitlines()[0])
    if damage == "config":
        (folder / "config.json").write_text((small_rollouts / "config.json").read_text()[:30])
    elif damage == "foreign-row":
        store.write_text(json.dumps(first) + "\n" + json.dumps({"a": 1}) + "\n")
    elif damage == "empty":
        store.write_text("")
    else:
        first["trajectories"][0]["targets"] = [{"t": 0}]
        store.write_text(json.dumps(first) + "\n")
    one_line_error(cli("calibrate", "--rollouts", str(folder), "--out", str(tmp_path / "cal")), message)


def test_a_foreign_row_in_a_run_folder_is_one_line(tmp_path, cli):
    out = tmp_path / "run"
    assert cli("solve", *ONE_SOLVE, "--out", str(out)).returncode == 0
    with open(out / "records.jsonl", "a") as f:
        f.write(json.dumps({"id": "x"}) + "\n")
    one_line_error(cli("solve", *ONE_SOLVE, "--out", str(out)), "records.jsonl:2 is not a valid record")


@pytest.mark.slow
def test_the_same_fit_done_again_is_the_same_calibrator_for_a_resumed_run(
    small_calibrator, small_rollouts, tmp_path, cli
):
    """`ias demo` refits its calibrators on every rerun: its runs must resume (a calibrator's
    fitting time is no part of it)."""
    import shutil

    cal = tmp_path / "cal"
    shutil.copytree(small_calibrator, cal)
    run = ["solve", "--limit", "1", "--n", "1", "--calibrator", str(cal), "--out", str(tmp_path / "run")]
    assert cli(*run).returncode == 0
    refit = cli("calibrate", "--rollouts", str(small_rollouts), "--out", str(cal))
    assert refit.returncode == 0, refit.stderr[-2000:]
    result = cli(*run)
    assert result.returncode == 0, result.stderr[-2000:]


def test_data_check_counts_timed_out_verdicts(tmp_path, cli):
    data = tmp_path / "heavy.jsonl"
    data.write_text(json.dumps({"question": "q", "answer": "(10^{9})! - 9^{9^{9}}", "solution": r"\boxed{13}"}) + "\n")
    result = cli("data", "check", "--task", f"jsonl:{data}", "--task-opt", "solution_field=solution")
    report = json.loads(result.stdout)
    assert report["agree"] == 0 and report["grade_timeouts"] == 1
