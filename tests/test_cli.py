"""The `ias` command as a user meets it: real subprocesses, one-line errors, exit codes."""

import json

import pytest


def test_an_out_that_is_a_file_or_a_damaged_run_folder_is_a_one_line_error(tmp_path, cli):
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    result = cli("solve", "--limit", "1", "--n", "1", "--prm", "none", "--selection", "majority", "--out", str(afile))
    assert result.returncode == 2
    assert "is a file, not a run folder" in result.stderr and "Traceback" not in result.stderr
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{not json")
    result = cli("solve", "--limit", "1", "--n", "1", "--prm", "none", "--selection", "majority", "--out", str(damaged))
    assert result.returncode == 2 and "config.json is unreadable" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["solve", "--task", "nope"], "unknown task 'nope'"),
        (["solve", "--task", "gsm8k", "--path", "/no/such/file.jsonl"], "not found"),
        (["solve", "--n", "zero"], "expected a whole number"),
        (["solve", "--limit", "-3"], "expected a number >= 1"),
        (["solve", "--policy", "no-such-model", "--limit", "1"], "unknown model 'no-such-model'"),
        (["zoo", "train", "arith-huge"], "unknown zoo model"),
        (["solve", "--split", "dev", "--limit", "1"], "no split 'dev'"),
        (["eval", "--strategies", "ias-bon-tuned", "--limit", "1"], "needs problems to tune on"),
        (["solve", "--prm-opt", "devise=cpu", "--limit", "1"], "has no option devise"),
        (["eval", "--strategies", "ias-bon-tuned", "--tune-split", "test", "--limit", "1"], "tune on another split"),
        (["eval", "--tune-limit", "3", "--limit", "1"], "--tune-limit needs --tune-split"),
        (["calibrate", "--rollouts", "/no/such/folder"], "holds no rollouts.jsonl; run `ias rollout"),
        (["calib-eval", "--rollouts", "/no/such/folder"], "holds no rollouts.jsonl; run `ias rollout"),
        (
            ["eval", "--task-opt", "max_ops=1", "--task-opt", "digits=1", "--split", "calib", "--limit", "2"],
            "too few distinct questions for split 'test'",
        ),
        (["solve", "--temperature", "nan", "--limit", "1"], "--temperature: expected a finite number"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(args, message, tmp_path, cli):
    result = (
        cli(*args, "--out", str(tmp_path / "o"))
        if args[0] in ("solve", "eval", "calibrate", "calib-eval")
        else cli(*args)
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("ias")]) >= 1


@pytest.mark.slow
def test_every_subcommand_has_help(cli):
    for args in (
        ["--help"],
        ["demo", "--help"],
        ["solve", "--help"],
        ["data", "check", "--help"],
        ["zoo", "train", "--help"],
        ["zoo", "info", "--help"],
        ["eval", "--help"],
        ["serve", "--help"],
        ["rollout", "--help"],
        ["calibrate", "--help"],
        ["calib-eval", "--help"],
    ):
        result = cli(*args)
        assert result.returncode == 0 and "usage: ias" in result.stdout


def test_data_check_on_shared_gsm8k(cli):
    result = cli("data", "check", "--task", "gsm8k")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["rows"] == 1319 and report["agree"] == 1319


def test_data_check_on_arith(cli):
    report = json.loads(cli("data", "check", "--task", "arith").stdout)
    assert report["rows"] == report["agree"] == 500


def test_zoo_info_reports_the_shipped_models(cli):
    result = cli("zoo", "info", "--json")
    assert result.returncode == 0, result.stderr
    models = {m["name"]: m for m in json.loads(result.stdout)["models"]}
    assert set(models) == {"arith-weak", "arith-strong", "arith-prm"}
    for name in ("arith-weak", "arith-strong"):
        hist = models[name]["success_hist"]
        assert hist["edges"] == [round(0.1 * i, 4) for i in range(11)]
        assert sum(hist["counts"]) == 500 and len(hist["counts"]) == 10
        assert models[name]["params"] > 0 and isinstance(models[name]["seed"], int)
    weak = models["arith-prm"]["figures"]["arith-weak"]
    assert weak["final_step_auroc"] >= 0.9
    assert weak["bon@16_accuracy"] >= weak["majority@16_accuracy"]
    assert cli("zoo", "info").returncode == 0


def test_solve_prints_a_table_and_writes_files(tmp_path, cli):
    result = cli("solve", "--limit", "4", "--n", "4", "--out", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "accuracy" in result.stdout and "best" in result.stdout and "majority" in result.stdout
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n_problems"] == 4 and summary["usage"]["samples"] == 16


@pytest.mark.slow
def test_demo_runs_small(tmp_path, cli):
    result = cli("demo", "--quick", "--problems", "8", "--n-max", "8", "--out", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    assert "ias-bon" in result.stdout and "bon@8" in result.stdout and "quantile-head" in result.stdout
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["n_problems"] == 8 and summary["n_max"] == 8
    assert {
        "bon@8",
        "ias-bon",
        "ias-bon-uncalibrated",
        "ias-bon-tuned",
        "oracle-ias",
        "deepconf",
        "beam",
        "ias-beam",
    } <= set(summary["methods"])
    assert summary["tuning"]["estimate"] in ("lower", "median") and "ias-bon-tuned" in result.stdout
    beam = [json.loads(line) for line in (tmp_path / "demo" / "eval" / "beam" / "records.jsonl").open()]
    assert len(beam) == 8 and summary["methods"]["beam"]["tokens"] == sum(r["usage"]["generated_tokens"] for r in beam)
    assert set(summary["calibration"]["methods"]) >= {"uncalibrated", "quantile-head", "quantile-lora", "isotonic"}
    for name in ("report.md", "pareto.png", "budget.png", "records.jsonl"):
        assert (tmp_path / "demo" / "eval" / name).stat().st_size > 0
