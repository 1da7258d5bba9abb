"""Every calibration method by name (`ias calibrate --method NAME`, `calibration.json`'s
`method`): a new method is its module and one line here."""

from __future__ import annotations

from ias.calibration.baselines import HistogramCalibrator, IsotonicCalibrator, TemperatureCalibrator
from ias.calibration.calibrator import Calibrator
from ias.calibration.quantile_head import QuantileHeadCalibrator
from ias.calibration.quantile_lora import QuantileLoraCalibrator
from ias.errors import UserError

CALIBRATORS: dict[str, type[Calibrator]] = {
    "quantile-lora": QuantileLoraCalibrator,
    "quantile-head": QuantileHeadCalibrator,
    "temperature": TemperatureCalibrator,
    "isotonic": IsotonicCalibrator,
    "histogram": HistogramCalibrator,
}


def calibrator_class(method: str) -> type[Calibrator]:
    """The class of a calibration method, or a one-line error naming the known ones."""
    if method not in CALIBRATORS:
        raise UserError(f"unknown calibration method '{method}'; known: {', '.join(CALIBRATORS)}")
    return CALIBRATORS[method]
