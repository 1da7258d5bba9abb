"""quantile-lora on all three PRM reading layouts: the zoo PRM, a Qwen2.5-Math-PRM-like
2-class head (tiny random Qwen2) and a Math-Shepherd-like LM (tiny random Mistral)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from peft import PeftModel

from ias.calibration.quantile_head import pinball
from ias.calibration.quantile_lora import fit_quantile_lora, load_quantile_lora, quantiles_of, save_quantile_lora
from ias.calibration.store import TargetRow
from ias.errors import UserError
from ias.prm.hf import HFPRM

PROBLEMS = [
    ("Compute 5+3.", ["5+3=8", "\\boxed{8}"], 1.0),
    ("Compute 7*6.", ["7*6=41", "\\boxed{41}"], 0.0),
    ("Compute 9-4.", ["9-4=5", "\\boxed{5}"], 1.0),
    ("Compute 8+8.", ["8+8=15", "\\boxed{15}"], 0.0),
    ("Compute 2*9.", ["2*9=18", "\\boxed{18}"], 1.0),
    ("Compute 6-7.", ["6-7=-1", "\\boxed{-1}"], 1.0),
]


def rows() -> list[TargetRow]:
    """Prefix targets as a rollout store holds them: t = 0 .. T, the last the 0/1 outcome."""
    out = []
    for k, (question, steps, final) in enumerate(PROBLEMS):
        targets = [0.5, 0.75 * final + 0.125, final]
        for t, p in enumerate(targets):
            n = 1 if t == len(steps) else 8
            hits = round(p * n)
            out.append(TargetRow(f"p{k}", 0, t, steps[:t], question, hits, n, hits / n, t == len(steps)))
    return out


@pytest.fixture(scope="module", params=["zoo", "qwen-prm", "math-shepherd"])
def prm(request):
    if request.param == "zoo":
        return request.getfixturevalue("zoo_prm")
    if request.param == "qwen-prm":
        return HFPRM(str(request.getfixturevalue("tiny_qwen_dir")), prm_format="qwen-prm")
    return HFPRM(str(request.getfixturevalue("tiny_shepherd_dir")))


def test_before_training_every_quantile_is_the_prms_own_probability(prm):
    adapted = fit_quantile_lora(prm, rows(), settings={"epochs": 0})
    items = [(q, steps) for q, steps, _ in PROBLEMS] + [(PROBLEMS[0][0], [])]
    for plain, calibrated in zip(prm.score(items), adapted.score(items)):
        assert np.allclose(calibrated.scores, plain.scores, atol=1e-5)
        assert np.allclose(np.asarray(calibrated.quantiles), np.asarray(plain.scores)[:, None], atol=1e-5)


def test_training_fits_the_targets_saves_and_loads(prm, tmp_path):
    data = rows()
    target = torch.tensor([r.p for r in data])
    levels = torch.tensor([0.1, 0.5, 0.9])
    before = pinball(
        torch.as_tensor(quantiles_of(fit_quantile_lora(prm, data, settings={"epochs": 0}), data)), target, levels
    )
    plain = [r.scores for r in prm.score([(q, s) for q, s, _ in PROBLEMS])]
    adapted = fit_quantile_lora(prm, data, settings={"epochs": 40, "lr": 1e-2, "batch_rows": 6})
    q = quantiles_of(adapted, data)  # raises unless every row was read
    assert q.shape == (len(data), 3)
    assert pinball(torch.as_tensor(q), target, levels) < 0.8 * before
    assert (np.diff(q, axis=1) >= 0).all()  # quantiles never cross
    assert [r.scores for r in prm.score([(q_, s) for q_, s, _ in PROBLEMS])] == plain  # the shared PRM is untouched

    save_quantile_lora(adapted, tmp_path)
    assert (tmp_path / "adapter_config.json").exists() and (tmp_path / "adapter_model.safetensors").exists()
    again = load_quantile_lora(prm, tmp_path)
    assert np.allclose(quantiles_of(again, data), q, atol=1e-5)
    # The adapter is a plain peft adapter: it loads onto the base model with from_pretrained.
    assert isinstance(PeftModel.from_pretrained(prm.fresh_copy().model, str(tmp_path)), PeftModel)


def test_unknown_setting_is_a_clear_error(zoo_prm):
    with pytest.raises(UserError, match="unknown quantile-lora setting"):
        fit_quantile_lora(zoo_prm, rows(), settings={"rnak": 4})
