"""The `quantile-lora` calibrator, the paper's method (SPEC §3): LoRA on the PRM's body and a
quantile reader in place of its reading layer, trained with the pinball loss.

The reader is a linear layer with one row per quantile level, each started from the PRM's
own reading (for a 2-class head: row `w1 - w0`, bias `b1 - b0`; for `+`/`-` tokens: the LM
head's `+` row minus its `-` row), so before training every quantile equals the PRM's
probability. Its logits are sorted before the sigmoid: quantiles cannot cross. Training
reads the PRM through the very inputs scoring builds (`HFPRM.encode`, one input per
trajectory and one per question), so the training and inference formats cannot differ.

The calibrator folder holds the adapter (`adapter_config.json`, `adapter_model.safetensors`,
loadable with peft's `PeftModel.from_pretrained`) and the reader (`quantile_reader.safetensors`).
"""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ias.calibration.calibrator import LEVELS, Calibrator, Prefixes, check_levels, median_column
from ias.calibration.quantile_head import pinball, prm_readings, reading_plan
from ias.calibration.store import TargetRow
from ias.errors import UserError
from ias.prm.base import PRM, AdaptablePRM, ReadablePRM, require_adaptable

READER_FILE = "quantile_reader.safetensors"
READER_INFO = "quantile_reader.json"
# The paper's settings: rank 2, alpha 32, dropout 0.1 on attention q/v of every 4th layer,
# 3 epochs, lr 1e-4, batches of about 32 prefixes.
LORA_DEFAULTS: dict[str, Any] = {
    "rank": 2,
    "alpha": 32,
    "dropout": 0.1,
    "every": 4,
    "epochs": 3,
    "lr": 1e-4,
    "batch_rows": 32,
}


class QuantileReader(nn.Module):
    """Quantiles of success from the reading layer's input; sorted logits, so no crossing."""

    def __init__(self, width: int, levels: Sequence[float] = LEVELS):
        super().__init__()
        self.levels = check_levels(levels)
        self.linear = nn.Linear(width, len(self.levels))
        self.median_index = median_column(self.levels)
        self.shift = 0.0  # conformal: subtracted from the lowest quantile (kept in calibration.json)

    @classmethod
    def from_reading_layer(
        cls, layer: nn.Linear, positive: int, negative: int, levels: Sequence[float]
    ) -> QuantileReader:
        """Every level starts as the PRM's own reading: logit = x . (w_pos - w_neg) + (b_pos - b_neg)."""
        reader = cls(layer.in_features, levels)
        with torch.no_grad():
            weight = (layer.weight[positive] - layer.weight[negative]).float()
            bias = (
                (layer.bias[positive] - layer.bias[negative]).float() if layer.bias is not None else torch.tensor(0.0)
            )
            reader.linear.weight.copy_(weight.expand(len(reader.levels), -1))
            reader.linear.bias.fill_(float(bias))
        return reader.to(layer.weight.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.sigmoid(self.linear(x.float()).sort(dim=-1).values)
        if self.shift:
            q = torch.cat([(q[:, :1] - self.shift).clamp(min=0.0), q[:, 1:]], dim=1)
        return q

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        save_file({k: v.contiguous().cpu() for k, v in self.state_dict().items()}, str(folder / READER_FILE))
        (folder / READER_INFO).write_text(json.dumps({"levels": self.levels, "width": self.linear.in_features}) + "\n")

    @classmethod
    def load(cls, folder: Path) -> QuantileReader:
        from safetensors.torch import load_file

        if not (folder / READER_FILE).exists():
            raise UserError(f"{folder} holds no quantile reader ({READER_FILE})")
        info = json.loads((folder / READER_INFO).read_text())
        reader = cls(info["width"], info["levels"])
        reader.load_state_dict(load_file(str(folder / READER_FILE)))
        return reader.eval()


def lora_layers(model: nn.Module, every: int) -> list[int]:
    """Indices of every `every`-th transformer layer (0, every, 2*every, ...), as the paper adapts."""
    count = getattr(model.config, "num_hidden_layers", None)
    if not count:
        raise UserError("cannot tell how many layers the PRM has (no num_hidden_layers in its config)")
    return list(range(0, count, every))


def fit_quantile_lora(
    prm: PRM, rows: Sequence[TargetRow], levels: Sequence[float] = LEVELS, seed: int = 0, settings: dict | None = None
) -> AdaptablePRM:
    """A fresh copy of `prm` with a trained LoRA adapter and quantile reader attached.

    `settings` override `LORA_DEFAULTS`. Whole trajectories stay together in a batch: one
    forward reads all their tags.
    """
    unknown = set(settings or {}) - set(LORA_DEFAULTS)
    if unknown:
        raise UserError(
            f"unknown quantile-lora setting(s) {', '.join(sorted(unknown))}; known: {', '.join(LORA_DEFAULTS)}"
        )
    s = {**LORA_DEFAULTS, **(settings or {})}
    import peft  # a core dependency, imported here so `import ias` stays light

    torch.manual_seed(seed)
    adapted = require_adaptable(prm, "quantile-lora calibration").fresh_copy()
    layer, positive, negative = adapted.reading_layer()
    reader = QuantileReader.from_reading_layer(layer, positive, negative, levels)
    config = peft.LoraConfig(
        r=s["rank"],
        lora_alpha=s["alpha"],
        lora_dropout=s["dropout"],
        target_modules=["q_proj", "v_proj"],
        layers_to_transform=lora_layers(adapted.model, s["every"]),
        layers_pattern="layers",
    )
    with warnings.catch_warnings():  # peft asks transformers a deprecated question; not the user's concern
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        adapted.model = peft.get_peft_model(adapted.model, config)
    examples = _examples(adapted, rows)
    if not examples:
        raise UserError("the PRM could read none of the rollouts' prefixes")
    params = [p for p in adapted.model.parameters() if p.requires_grad] + list(reader.parameters())
    optimizer = torch.optim.AdamW(params, lr=s["lr"], weight_decay=0.0)
    betas = torch.tensor(reader.levels, device=adapted.device)
    order = random.Random(seed)
    adapted.model.train()
    for _ in range(s["epochs"]):
        order.shuffle(examples)
        for batch in _batches(examples, s["batch_rows"]):
            ids, mask = adapted.batch_tensors([(enc, tags) for enc, tags, _ in batch])
            _, inputs = adapted.forward_reading_inputs(ids, mask)
            x = torch.cat([inputs[k, [tags[j] for j, _ in targets]] for k, (_, tags, targets) in enumerate(batch)])
            p = torch.tensor([t for _, _, targets in batch for _, t in targets], device=x.device)
            loss = pinball(reader(x), p, betas)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    adapted.model.eval()
    adapted.quantile_reader = reader.eval()
    return adapted


Example = tuple[list[int], list[int], list[tuple[int, float]]]  # input ids, tag positions, [(tag index, target)]


def _examples(prm: ReadablePRM, rows: Sequence[TargetRow]) -> list[Example]:
    """(input ids, tag positions, [(tag index, target)]) per readable PRM input."""
    items, where = reading_plan(rows, prm)
    targets: dict[int, list[tuple[int, float]]] = {}
    for row, (i, j) in zip(rows, where):
        targets.setdefault(i, []).append((j, row.p))
    out = []
    for i, (question, steps) in enumerate(items):
        try:
            ids, tags = prm.encode(question, steps)
        except ValueError:
            continue
        if len(ids) <= prm.max_length and i in targets:
            out.append((ids, tags, targets[i]))
    return out


def _batches(examples: list, batch_rows: int) -> Iterator[list]:
    """Consecutive groups of inputs holding about `batch_rows` labelled tags each."""
    batch, size = [], 0
    for example in examples:
        batch.append(example)
        size += len(example[2])
        if size >= batch_rows:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def save_quantile_lora(adapted: AdaptablePRM, folder: Path) -> None:
    adapted.model.save_pretrained(str(folder))
    _reader(adapted).save(folder)


def _reader(adapted: AdaptablePRM) -> QuantileReader:
    """The quantile reader quantile-lora attached to `adapted`."""
    reader = adapted.quantile_reader
    if not isinstance(reader, QuantileReader):
        raise RuntimeError(f"PRM '{adapted.name}' carries no quantile reader: it was not adapted by quantile-lora")
    return reader


def load_quantile_lora(prm: PRM, folder: Path) -> AdaptablePRM:
    """A fresh copy of `prm` with the folder's adapter and quantile reader: scores are medians."""
    import peft  # a core dependency, imported here so `import ias` stays light

    plain = require_adaptable(prm, "quantile-lora calibration")
    reader = QuantileReader.load(folder)
    adapted = plain.fresh_copy()
    adapted.model = peft.PeftModel.from_pretrained(adapted.model, str(folder)).eval()
    adapted.quantile_reader = reader.to(adapted.device)
    adapted.name = f"{prm.name}+quantile-lora"
    return adapted


def quantiles_of(adapted: ReadablePRM, rows: Sequence[TargetRow]) -> np.ndarray:
    """[rows, levels] quantiles of rows the plain PRM could read (the adapted one reads the same inputs)."""
    readings = prm_readings(adapted, rows, hidden=False)
    if len(readings.kept) != len(rows):
        raise UserError("the adapted PRM could not read every prefix the plain PRM read")
    if readings.quantiles is None:
        raise RuntimeError(f"PRM '{adapted.name}' reads no quantiles: it was not adapted by quantile-lora")
    return readings.quantiles


class QuantileLoraCalibrator(Calibrator):
    """`quantile-lora` as a calibrator: an adapted copy of the PRM whose quantile reader
    gives the quantiles (and holds the conformal shift, so the adapted PRM applies it)."""

    changes_prm = True
    defaults = LORA_DEFAULTS

    def __init__(self, method: str, adapted: AdaptablePRM, settings: dict[str, Any]):
        self.reader = _reader(adapted)
        super().__init__(method, self.reader.levels)
        self.adapted = adapted
        self.settings = settings

    @property
    def shift(self) -> float:
        return self.reader.shift

    @shift.setter
    def shift(self, value: float) -> None:
        self.reader.shift = float(value)

    @classmethod
    def fit(
        cls,
        method: str,
        prm: ReadablePRM,
        data: Prefixes,
        levels: tuple[float, ...],
        seed: int,
        settings: dict[str, Any],
    ) -> Calibrator:
        return cls(method, fit_quantile_lora(prm, data.rows, levels, seed, settings), settings)

    def predict(self, data: Prefixes) -> np.ndarray:
        return quantiles_of(self.adapted, data.rows)

    def save(self, folder: Path) -> dict[str, Any]:
        save_quantile_lora(self.adapted, folder)
        return {"lora": self.settings}

    @classmethod
    def load(cls, folder: Path, info: dict[str, Any], prm: PRM | None) -> Calibrator:
        if prm is None:  # load_calibrator refuses this first, with the fix
            raise TypeError(f"the {info['method']} calibrator in {folder} loads onto the PRM it adapts")
        return cls(info["method"], load_quantile_lora(prm, folder), {**LORA_DEFAULTS, **(info.get("lora") or {})})

    def wrap(self, prm: PRM) -> PRM:
        """The adapted copy of `prm` (the PRM `load` was given): scores are medians."""
        self.adapted.name = f"{prm.name}+{self.method}"
        return self.adapted
