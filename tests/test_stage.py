"""The one resumable loop (`ias.stage`) as rollouts use it: what its progress bar counts.
(Its records, resume and crash rules are tested through both callers: test_rollout.py,
test_bon.py.)"""

import re

import torch

from ias.calibration.rollout import RolloutMeter, max_rollouts, rollout
from ias.calibration.store import rollout_count
from ias.policy.base import load_policy
from ias.specs import RolloutSettings
from ias.stage import Meter


def _record(continuations: list[int]) -> dict:
    """A rollout record's shape as the meter reads it: one trajectory per entry, continued that often."""
    return {"trajectories": [{"targets": [{"t": 0, "n": n}, {"t": 1, "n": 1, "final": True}]} for n in continuations]}


def test_the_rollout_meter_starts_at_the_most_then_estimates_from_the_problems_done():
    settings = RolloutSettings(n_traj=2, n_mc=3, max_prefix=1)
    most = max_rollouts(settings)
    assert most == 2 * (1 + 2 * 3)  # each trajectory, and 3 continuations of each of its prefixes t = 0, 1
    meter = RolloutMeter(most)
    meter.start(problems=5, done_problems=1, done=4)  # a resumed run: one problem's 4 rollouts stored
    assert (meter.done, meter.total) == (4, 4 + 4 * most)
    chunk = [_record([3, 0]), _record([3, 3])]
    units = meter.advance(chunk)
    assert units == sum(rollout_count(r) for r in chunk) == (1 + 3) + (1 + 0) + (1 + 3) + (1 + 3)
    done = 4 + units
    assert (meter.done, meter.done_problems, meter.total) == (done, 3, done + round(2 * done / 3))
    problems = Meter()
    problems.start(problems=5, done_problems=1, done=1)
    problems.advance(chunk)
    assert (problems.done, problems.total) == (3, 5)


def test_a_rollout_bar_ends_at_the_rollouts_it_drew(tmp_path, capsys):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = rollout(
            "arith",
            "calib",
            load_policy("arith-weak"),
            RolloutSettings(n_traj=2, n_mc=2, max_prefix=3),
            tmp_path / "r",
            seed=0,
            limit=3,
            batch_problems=2,
            progress=True,
        )
    finally:
        torch.set_num_threads(threads)
    counts = re.findall(r"(\d+)/(\d+) \[", capsys.readouterr().err)
    assert counts, "no progress bar"
    assert counts[-1] == (str(summary["n_rollouts"]), str(summary["n_rollouts"]))
