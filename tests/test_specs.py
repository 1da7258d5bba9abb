"""Typed run specs: one declaration per setting, config files that rerun a run exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import ias
from ias.cli import build_parser, main
from ias.errors import UserError
from ias.specs import (
    AskRun,
    EvalRun,
    RolloutRun,
    SolveRun,
    from_document,
    from_keys,
    key_table,
    read_config,
    to_document,
)

#: Figures of a summary that are measured, not computed from the records.
TIMED = ("wall_s", "wall_s_this_run", "fit_seconds", "seconds")


def _without_timing(node):
    if isinstance(node, dict):
        return {k: _without_timing(v) for k, v in node.items() if not any(t in k for t in TIMED)}
    if isinstance(node, list):
        return [_without_timing(v) for v in node]
    return node


def _subparser(command: str):
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices[command]


@pytest.mark.parametrize(
    "command,run_cls", [("solve", SolveRun), ("rollout", RolloutRun), ("eval", EvalRun), ("ask", AskRun)]
)
def test_every_setting_of_a_run_is_one_flag_and_every_flag_one_setting(command, run_cls):
    table = key_table(run_cls)
    dests = [a.dest for a in _subparser(command)._actions]
    flag_keys = [k for k in table if k not in ("task_options", "settings", "progress")]
    if command == "ask":
        flag_keys = [k for k in flag_keys if k not in ("split", "limit", "out", "batch_problems")]
    for key in flag_keys:
        assert dests.count(key) == 1, key
    # the flags a run command has beyond its spec: the config file, the task options, the threads,
    # the method settings (from the method registry) and ask's own
    extra = {d for d in dests if d not in table and not d.startswith("setting_")}
    assert extra <= {"help", "config", "path", "task_opt", "prompt_template", "chat", "threads", "question", "json"}


def test_keywords_build_the_nested_spec_and_unknown_or_mistyped_ones_are_one_line_errors():
    run = from_keys(
        EvalRun,
        {
            "n_max": 8,
            "limit": 3,
            "prm_options": {"dtype": "float32"},
            "strategies": ["bon"],
            "out": Path("runs/x"),
            "ray_num_cpus": 2,
        },
    )
    assert (run.eval.n_max, run.task.limit, run.prm.options, run.eval.strategies) == (
        8,
        3,
        {"dtype": "float32"},
        ("bon",),
    )
    assert run.out == "runs/x" and run.executor.num_cpus == 2.0
    with pytest.raises(UserError, match="unknown setting 'n_mac'"):
        from_keys(EvalRun, {"n_mac": 8})
    with pytest.raises(UserError, match="'eval.n_max' must be int"):
        from_document(EvalRun, {"eval": {"n_max": "eight"}}, "eval", "run.yaml")
    with pytest.raises(UserError, match="unknown setting 'eval.n_mac'"):
        from_document(EvalRun, {"eval": {"n_mac": 8}}, "eval", "run.yaml")
    with pytest.raises(UserError, match="describes an `ias solve` run"):
        from_document(EvalRun, {"command": "solve"}, "eval", "run.yaml")


def test_a_document_round_trips_and_keeps_no_secret():
    run = from_keys(
        SolveRun,
        {
            "backend": "openai",
            "backend_options": {"base_url": "http://x", "api_key": "S"},
            "settings": {"n": 4},
            "temperature": 0.5,
        },
    )
    document = to_document(run, "solve")
    assert "S" not in json.dumps(document)
    back = from_document(SolveRun, yaml.safe_load(yaml.safe_dump(document)), "solve", "f")
    assert back.policy.options == {"base_url": "http://x"} and back.method.settings == {"n": 4}
    assert back.sampling.temperature == 0.5


def test_bad_config_files_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match="cannot read --config"):
        read_config(tmp_path / "missing.yaml", EvalRun, "eval")
    broken = tmp_path / "broken.yaml"
    broken.write_text("eval: {n_max: [")
    with pytest.raises(UserError, match="is not valid YAML"):
        read_config(broken, EvalRun, "eval")
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="expected a mapping"):
        read_config(listed, EvalRun, "eval")
    toml = tmp_path / "run.toml"
    toml.write_text("[eval]\nn_max = 4\n[task]\nlimit = 2\n")
    assert read_config(toml, EvalRun, "eval").eval.n_max == 4


def test_eval_from_its_saved_config_reproduces_the_summary_and_flags_override_the_file(tmp_path, capsys):
    first = tmp_path / "first"
    args = [
        "eval",
        "--limit",
        "3",
        "--n-max",
        "4",
        "--orderings",
        "2",
        "--strategies",
        "bon,sc,ias-adaptive",
        "--tune-split",
        "calib",
        "--tune-limit",
        "3",
        "--out",
        str(first),
    ]
    assert main(args) == 0
    saved = first / "config.yaml"
    document = yaml.safe_load(saved.read_text())
    assert document["eval"]["n_max"] == 4 and document["out"] == str(first)
    again = tmp_path / "again"
    assert main(["eval", "--config", str(saved), "--out", str(again)]) == 0
    summary = json.loads((first / "summary.json").read_text())
    rerun = json.loads((again / "summary.json").read_text())
    assert _without_timing(rerun) == _without_timing(summary)
    assert yaml.safe_load((again / "config.yaml").read_text())["out"] == str(again)
    # a flag wins over the file; the rest of the file stands
    run = read_config(saved, EvalRun, "eval")
    assert run.eval.tune_split == "calib" and run.task.limit == 3


def test_the_api_takes_a_spec_and_keywords_override_it(tmp_path):
    run = from_keys(SolveRun, {"limit": 2, "settings": {"n": 2}, "out": str(tmp_path / "a"), "progress": False})
    first = ias.solve(run)
    second = ias.solve(run, out=tmp_path / "b", n=2)
    assert first["accuracy"] == second["accuracy"] and first["usage"] == second["usage"]
    saved = read_config(tmp_path / "b" / "config.yaml", SolveRun, "solve")
    assert saved.method.settings == {"n": 2} and saved.task.limit == 2
    with pytest.raises(UserError, match="unknown setting"):
        ias.solve(run, n_mac=3)
