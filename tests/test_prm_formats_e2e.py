"""Both real PRM layouts end to end, as a user runs them: real rollouts of the zoo policy,
`ias calibrate` with quantile-head and quantile-lora into folders, those folders loaded back
wherever a PRM is used, and `ias eval` budgeting from them. The PRMs are tiny, randomly
initialised Qwen2 (Qwen2.5-Math-PRM layout) and Mistral (Math-Shepherd layout) models."""

from __future__ import annotations

import json

import pytest

import ias
from ias.calibration.calibrate import calibrated_prm
from ias.prm.base import load_prm

ITEMS = [("Compute 5+3.", ["5+3=8", "\\boxed{8}"]), ("Compute 7*6.", ["7*6=41"]), ("Compute 9-4.", [])]


@pytest.fixture(scope="module", params=["qwen-prm", "math-shepherd"])
def prm(request):
    """(folder, --prm-format): the Qwen-like folder has no ias_prm.json, as the real one has none."""
    if request.param == "qwen-prm":
        return str(request.getfixturevalue("tiny_qwen_dir")), "qwen-prm"
    return str(request.getfixturevalue("tiny_shepherd_dir")), None


@pytest.mark.parametrize("method", ["quantile-head", "quantile-lora"])
def test_calibrate_save_load_score_and_eval(method, small_rollouts, prm, tmp_path):
    folder, prm_format = prm
    info = ias.calibrate(
        small_rollouts,
        prm=folder,
        method=method,
        out=tmp_path / "cal",
        held_out=0.25,
        prm_format=prm_format,
        lora={"epochs": 1} if method == "quantile-lora" else None,
    )
    assert info["method"] == method and info["levels"] == [0.1, 0.5, 0.9]
    assert 0 <= info["metrics_held_out"]["brier"] <= 1

    plain = load_prm(folder, prm_format=prm_format)
    calibrated = calibrated_prm(plain, tmp_path / "cal")
    readings = calibrated.score(ITEMS)
    raw = plain.score(ITEMS)
    for reading, before, (_, steps) in zip(readings, raw, ITEMS):
        assert reading.skipped is None and len(reading.scores) == max(1, len(steps)) == len(reading.quantiles)
        assert reading.tokens == before.tokens  # the same input, read the same way
        for q in reading.quantiles:
            assert q == sorted(q) and all(0.0 <= x <= 1.0 for x in q)
        assert reading.scores == [q[1] for q in reading.quantiles]  # the median is the score

    summary = ias.evaluate(
        policy="arith-weak",
        prm=folder,
        prm_format=prm_format,
        calibrator=tmp_path / "cal",
        strategies=["bon", "ias-bon", "ias-beam"],
        n_max=4,
        k_max=2,
        m_max=2,
        limit=2,
        out=tmp_path / "eval",
        progress=False,
    )
    assert {"bon@4", "ias-bon", "ias-beam"} <= set(summary["methods"])
    records = [json.loads(line) for line in (tmp_path / "eval" / "pool" / "records.jsonl").open()]
    for record in records:
        lower = record["question_reading"]["quantiles"][0]
        assert 0.0 <= lower <= record["question_reading"]["score"]
