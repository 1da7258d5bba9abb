"""Windowed token confidence: the one arithmetic DeepConf's early exit uses, live and replayed.

A policy stopping a sample while it is written (`SamplingParams.exit_below`) and a replay
deciding where a finished sample would have stopped must agree, so both call `window_mean`
here: the mean of a window of per-token confidences, summed with `math.fsum` (correctly
rounded: the same log-probabilities give the same verdict bit for bit, however they were
summed). The log-probabilities themselves can differ in their last bits with the batch's
make-up, so a window within rounding of the threshold may be judged either way. This
module sits below policies and scaling alike and imports neither.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def window_mean(confidences: Sequence[float], end: int, window: int) -> float:
    """Mean confidence of the tokens max(0, end - window + 1) .. end."""
    start = max(0, end - window + 1)
    return math.fsum(confidences[start : end + 1]) / (end + 1 - start)


#: How far below the threshold a window's mean must be to stop a sample. The same tokens can
#: get log-probabilities a few ulps apart in two batches, and a later sample often repeats a
#: warm-up sample's window exactly (the threshold is such a window's mean): without a margin
#: the live run and its replay would judge those ties differently.
EXIT_MARGIN = 1e-5


def below(mean: float, threshold: float) -> bool:
    """Whether a window's mean stops a sample (below the threshold by more than the margin)."""
    return mean < threshold - EXIT_MARGIN


def judged(length: int, window: int) -> range:
    """The positions a trace is judged at: every full window, or for a trace shorter than one
    window its end (its whole mean). The threshold and the exit judge the same positions."""
    return range(window - 1, length) if length >= window else range(length - 1, length)


def exits_now(confidences: Sequence[float], threshold: float, window: int) -> bool:
    """Live: whether a trace being written stops after its latest token (a full window whose
    mean is below the threshold). At its end a shorter trace is judged by `judged` instead."""
    end = len(confidences) - 1
    return end >= window - 1 and below(window_mean(confidences, end, window), threshold)


def live_exit(logprobs: Sequence[float], finish_reason: str, threshold: float, window: int) -> int | None:
    """Where a sample drawn in full would have stopped had it been drawn with the live exit
    (`exits_now` after each token): the first full window below the threshold, unless that
    is the sample's last token and it ended there anyway (end of text or a stop string,
    which a live run checks first). Its last token's index, or None: it runs to its end."""
    for end in range(window - 1, len(logprobs)):
        if below(window_mean(logprobs, end, window), threshold):
            ended = end == len(logprobs) - 1 and finish_reason in ("eos", "stop")
            return None if ended else end
    return None
