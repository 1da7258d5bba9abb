"""How far `ias-adaptive` is from what its rule and this PRM can reach: one JSON line from an `ias eval` folder.

    python benchmarks/adaptive_headroom.py --eval /tmp/demoI/eval                 # an eval run with --tune-split calib
    python benchmarks/adaptive_headroom.py --eval runs/eval --shares 0.1,0.25,0.5

The folder is only read. Every figure is replayed with the library's own `ias-adaptive` replay
(`ias.scaling.adaptive`), expected over the same seeded orderings of each question's pool as
`ias eval` used, for the evaluated pool and (`tuning_pool`) for the tuning split's pool.

- `main`: the tuned `ias-adaptive` (`tune/tuning.json`'s settings and confidence map) replayed;
  the script stops unless it equals `summary.json`'s `ias-adaptive` (on the tuning pool: the
  tuning grid's row), which proves the replay is the computation `ias eval` made. `share`:
  its tokens over `bon@N_max`'s.
- `best_fixed`: the best fixed-N point of `summary.json`'s frontier (any rule, any N); on the
  tuning pool, of the best-score rule only (from the true curves).
- `ceiling[S]`: the most accurate setting of the library's own grid (`adaptive_grid`, the run's
  growth; `any_growth` with `BUDGET_GROWTHS` too) whose tokens are at most S x `bon@N_max`'s,
  chosen on the very problems it is measured on: a diagnostic ceiling of the rule with this
  PRM and confidence map, not a method. `oracle_alloc`: `oracle_allocation` on the true curves
  with the largest sample total whose expected tokens (over the same orderings) fit S; its
  accuracy and tokens are exact expectations over those orderings.
- `losses` of `main`: per (question, ordering) run, `never_solvable` (no right sample in the
  whole pool), `not_drawn` (a right sample exists but none was drawn), `selection` (one was
  drawn but the PRM chose a wrong one); these and `accuracy` sum to 1. `coverage`: a right
  sample drawn. Among the selection misses, the median calibrated score of the chosen (wrong)
  sample and of the best right one. `never_solved`: share of questions with no right sample and
  share of `main`'s tokens spent on them.
- `bands`: per band of the question's true success rate p (its pool's share of right samples):
  share of questions and of `main`'s tokens, mean samples, `main`'s accuracy, and `peak`, the
  mean of each question's best best-of-first-n accuracy (its true curve's maximum, which any
  number of samples with this PRM could reach at best); `gap` = peak - accuracy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ias.evaluation import fixed_sizes
from ias.methods import method_class
from ias.methods.ias_adaptive import ConfidenceMap
from ias.records import read_records
from ias.scaling import adaptive
from ias.scaling.budget import AdaptiveSettings, oracle_allocation
from ias.scaling.pool import PoolProblem

CEILING_NOTE = "a diagnostic ceiling, not a method: settings are chosen on the tuning split"
ORACLE_NOTE = (
    "oracle_allocation on the true curves at the largest sample total whose tokens fit the share, exact over the "
    "orderings; it spends nothing past a question's peak, so its tokens may stay below the share"
)
BANDS = ((0.0, 0.0), (0.0, 0.1), (0.1, 0.3), (0.3, 0.7), (0.7, 1.0))  # p = 0, then (low, high]


def fail(message: str) -> SystemExit:
    return SystemExit(f"adaptive_headroom: {message}")


@dataclass
class Pool:
    """One pool replayed: its records in each ordering (`shuffled[k][i]`), their views, the
    flat `ReplayTable` (row k * questions + i) read through the confidence map, and true curves."""

    records: list[PoolProblem]
    shuffled: list[list[PoolProblem]]
    views: list[list[adaptive.PrefixView]]
    table: adaptive.ReplayTable
    curves: list[list[float]]
    n_max: int

    @classmethod
    def of(cls, records: list[PoolProblem], seed: int, orderings: int, n_max: int, confidence: ConfidenceMap) -> Pool:
        shuffled = [[adaptive.reorder(r, seed, k) for r in records] for k in range(orderings)]
        views = [[adaptive.prefix_view(r) for r in rows] for rows in shuffled]
        flat = [v for row in views for v in row]
        questions = [adaptive.median(r) for r in records] * orderings
        table = adaptive.replay_table(flat, [adaptive.read_view(v, confidence) for v in flat], questions, n_max)
        return cls(records, shuffled, views, table, adaptive.selected_curves(views), n_max)

    @property
    def bon_tokens(self) -> float:
        return float(sum(s.generated_tokens for r in self.records for s in r.samples[: self.n_max]))

    def per_question(self, flat: np.ndarray) -> np.ndarray:
        """A flat per-run array as each question's mean over the orderings."""
        return flat.reshape(len(self.shuffled), len(self.records)).mean(axis=0)


def load_pool(folder: Path, ids: set[str] | None = None) -> list[PoolProblem]:
    path = folder / "records.jsonl"
    if not path.exists():
        raise fail(f"{path} not found (an `ias eval --tune-split` folder holds pool/ and tune/pool/)")
    records = [PoolProblem.from_json(r) for r in read_records(path) if ids is None or r["id"] in ids]
    if not records:
        raise fail(f"{path} holds none of the evaluated problems")
    return records


def replayed(pool: Pool, settings: AdaptiveSettings) -> tuple[np.ndarray, dict]:
    """`ias-adaptive`'s samples on every run (`replay_sizes`) and its expected figures."""
    sizes = adaptive.replay_sizes(pool.table, settings)
    rows = np.arange(len(sizes))
    tokens = float(pool.table.token_sum[rows, sizes - 1].sum()) / len(pool.shuffled)
    return sizes, {
        "accuracy": round(float(pool.table.correct[rows, sizes - 1].mean()), 4),
        "tokens": round(tokens, 1),
        "share": round(tokens / pool.bon_tokens, 4),
        "samples": round(float(sizes.mean()), 3),
    }


def check_same(figures: dict, reference: dict, what: str) -> None:
    """Stop unless the replay equals `ias eval`'s own figures to their rounding."""
    if abs(figures["accuracy"] - reference["accuracy"]) > 1.5e-4 or abs(figures["tokens"] - reference["tokens"]) > 0.15:
        raise fail(
            f"the replay of ias-adaptive gives accuracy {figures['accuracy']}, tokens {figures['tokens']} "
            f"but {what} says {reference['accuracy']}, {reference['tokens']}: not the same computation "
            "(another seed, orderings, confidence map or code version?)"
        )


def point(accuracy: float, tokens: float, bon_tokens: float, **more) -> dict:
    return {**more, "accuracy": round(accuracy, 4), "tokens": round(tokens, 1), "share": round(tokens / bon_tokens, 4)}


def oracle_at(pool: Pool, budget_tokens: float) -> dict:
    """`oracle-alloc` with the largest sample total whose expected tokens fit `budget_tokens`
    (the allocation only grows with the total, so a bisection finds it)."""
    token_means = np.mean([[v.token_sum for v in row] for row in pool.views], axis=0)  # [question][n - 1]

    def figures(total: int) -> tuple[float, float, list[int]]:
        sizes = oracle_allocation(pool.curves, total)
        tokens = float(sum(token_means[i][n - 1] for i, n in enumerate(sizes)))
        return sum(c[n - 1] for c, n in zip(pool.curves, sizes)) / len(sizes), tokens, sizes

    low, high = len(pool.curves), sum(min(len(c), pool.n_max) for c in pool.curves)
    if figures(low)[1] > budget_tokens:
        return {"fits": False}
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if figures(middle)[1] <= budget_tokens else (low, middle - 1)
    accuracy, tokens, sizes = figures(low)  # past each curve's peak the oracle spends no more: sizes may sum below
    return point(accuracy, tokens, pool.bon_tokens, mean_samples=round(sum(sizes) / len(sizes), 3))


def ceiling(pool: Pool, shares: list[float], confidence: ConfidenceMap, growth: float) -> dict:
    """Per share S: the grid's most accurate setting within S x `bon@N_max`'s tokens (at the
    run's growth, and at any growth the tuning may take) and `oracle-alloc` at S."""
    grids = {
        x: adaptive.adaptive_grid(pool.views, pool.shuffled, pool.n_max, confidence, x)
        for x in dict.fromkeys((growth, *adaptive.BUDGET_GROWTHS))
    }
    keys = ("target", "price", "wave", "prior", "growth")

    def best(grid: list[dict], limit: float) -> dict | None:
        within = [g for g in grid if g["tokens"] <= limit]
        if not within:
            return None
        top = max(within, key=lambda g: (g["accuracy"], -g["tokens"]))
        return point(top["accuracy"], top["tokens"], pool.bon_tokens, settings={k: top[k] for k in keys})

    out = {}
    for share in shares:
        limit = share * pool.bon_tokens
        out[str(share)] = {
            "adaptive": best(grids[growth], limit),
            "any_growth": best([g for grid in grids.values() for g in grid], limit),
            "oracle_alloc": oracle_at(pool, limit),
        }
    return {"note": CEILING_NOTE, "oracle_note": ORACLE_NOTE, "by_share": out}


def run_arrays(pool: Pool, sizes: np.ndarray) -> dict[str, np.ndarray]:
    """Per run (flat row, as the table's): a right sample drawn, the chosen one right, the
    chosen sample's calibrated score, the best calibrated score of a right drawn sample, tokens."""
    records = [r for row in pool.shuffled for r in row]
    views = [v for row in pool.views for v in row]
    width, rows = pool.table.correct.shape[1], np.arange(len(sizes))
    right = np.zeros((len(sizes), width), dtype=bool)
    scores = np.full((len(sizes), width), -np.inf)
    for row, (record, view) in enumerate(zip(records, views)):
        drawn = min(width, len(record.samples))
        right[row, :drawn] = [s.correct for s in record.samples[:drawn]]
        scores[row, :drawn] = view.scores[:drawn]
    right_drawn = right & (np.arange(width)[None, :] < sizes[:, None])
    return {
        "covered": right_drawn.any(axis=1),
        "chosen_right": pool.table.correct[rows, sizes - 1] > 0.5,
        "chosen_score": np.array([v.chosen_score[n - 1] for v, n in zip(views, sizes)]),
        "best_right_score": np.where(right_drawn, scores, -np.inf).max(axis=1),
        "tokens": pool.table.token_sum[rows, sizes - 1],
    }


def losses(pool: Pool, sizes: np.ndarray) -> dict:
    """Where `main`'s wrong answers come from, expected over the orderings."""
    runs = run_arrays(pool, sizes)
    p = np.array([r.p_true for r in pool.records])
    never = np.tile(p == 0, len(pool.shuffled))
    missed = runs["covered"] & ~runs["chosen_right"]
    tokens = pool.per_question(runs["tokens"])

    def median(values: np.ndarray) -> float | None:
        return round(float(statistics.median(values.tolist())), 4) if len(values) else None

    return {
        "accuracy": round(float(runs["chosen_right"].mean()), 4),
        "coverage": round(float(runs["covered"].mean()), 4),
        "selection_loss": round(float(missed.mean()), 4),
        "never_solvable": round(float(never.mean()), 4),
        "not_drawn": round(float((~runs["covered"] & ~never).mean()), 4),
        "missed_chosen_score_median": median(runs["chosen_score"][missed]),
        "missed_best_right_score_median": median(runs["best_right_score"][missed]),
        "never_solved": {
            "questions": round(float((p == 0).mean()), 4),
            "token_share": round(float(tokens[p == 0].sum() / tokens.sum()), 4),
        },
        "bands": bands(pool, p, runs, sizes, tokens),
    }


def bands(pool: Pool, p: np.ndarray, runs: dict[str, np.ndarray], sizes: np.ndarray, tokens: np.ndarray) -> list[dict]:
    """`main` per band of true success rate, beside each question's best reachable accuracy (`peak`)."""
    accuracy = pool.per_question(runs["chosen_right"].astype(float))
    samples = pool.per_question(sizes.astype(float))
    peak = np.array([max(c[: pool.n_max]) for c in pool.curves])
    out = []
    for low, high in BANDS:
        here = p == 0 if high == 0 else (p > low) & (p <= high)
        if not here.any():
            continue
        out.append(
            {
                "p": "0" if high == 0 else f"({low}, {high}]",
                "questions": round(float(here.mean()), 4),
                "token_share": round(float(tokens[here].sum() / tokens.sum()), 4),
                "samples": round(float(samples[here].mean()), 2),
                "accuracy": round(float(accuracy[here].mean()), 4),
                "peak": round(float(peak[here].mean()), 4),
                "gap": round(float(peak[here].mean() - accuracy[here].mean()), 4),
            }
        )
    return out


def best_fixed_curve(pool: Pool) -> dict:
    """The best fixed-N point of the best-score rule, from the true curves (expected over orderings)."""
    token_means = np.mean([[v.token_sum for v in row] for row in pool.views], axis=0)
    points = [
        point(
            float(np.mean([c[n - 1] for c in pool.curves])),
            float(token_means[:, n - 1].sum()),
            pool.bon_tokens,
            rule="best",
            n=n,
        )
        for n in fixed_sizes(pool.n_max)
    ]
    return max(points, key=lambda q: (q["accuracy"], -q["tokens"]))


def pool_figures(pool: Pool, settings: AdaptiveSettings, confidence: ConfidenceMap, shares: list[float]) -> dict:
    """`main` (its figures; the caller checks them), `ceiling` and `losses` of one pool."""
    sizes, main = replayed(pool, settings)
    return {
        "n_problems": len(pool.records),
        "bon_tokens": round(pool.bon_tokens, 1),
        "main": main,
        "ceiling": ceiling(pool, shares, confidence, method_class("ias-adaptive").growth),
        "losses": losses(pool, sizes),
    }


def parse_shares(text: str) -> list[float]:
    try:
        shares = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise fail(f"--shares must be numbers separated by commas, got {text!r}") from None
    if not shares or any(not 0 < s <= 1 for s in shares):
        raise fail(f"--shares must be shares of bon@N_max's tokens in (0, 1], got {text!r}")
    return shares


def read_eval(folder: Path) -> tuple[dict, dict, int]:
    """summary.json, tune/tuning.json and the run seed of an `ias eval --tune-split` folder."""
    paths = [folder / "summary.json", folder / "tune" / "tuning.json", folder / "pool" / "config.json"]
    for path in paths:
        if not path.exists():
            raise fail(f"{path} not found (pass an `ias eval --tune-split calib` folder)")
    summary, tuning, config = (json.loads(p.read_text()) for p in paths)
    if "ias-adaptive" not in summary["methods"] or "adaptive" not in tuning:
        raise fail(f"{folder} has no tuned ias-adaptive (run ias eval with --tune-split and that strategy)")
    return summary, tuning, int(summary["config"].get("seed", config["seed"]))


def evaluated(folder: Path, summary: dict, tuning: dict, seed: int, shares: list[float]) -> dict:
    """The evaluated pool's figures, `main` checked against `summary.json`."""
    tuned = tuning["adaptive"]
    settings, confidence = AdaptiveSettings(**tuned["settings"]), ConfidenceMap.from_dict(tuned["confidence_map"])
    ids = {r["id"] for r in read_records(folder / "records.jsonl")}
    pool = Pool.of(load_pool(folder / "pool", ids), seed, summary["orderings"], summary["n_max"], confidence)
    figures = pool_figures(pool, settings, confidence, shares)
    check_same(figures["main"], summary["methods"]["ias-adaptive"], "summary.json")
    bon = summary["methods"][f"bon@{pool.n_max}"]["tokens"]
    if abs(bon - pool.bon_tokens) > 0.15:
        raise fail(f"the pool's bon@{pool.n_max} tokens {pool.bon_tokens} differ from summary.json's {bon}")
    rule, top = max(
        ((rule, p) for rule, curve in summary["frontier"].items() for p in curve),
        key=lambda x: (x[1]["accuracy"], -x[1]["tokens"]),
    )
    best = point(top["accuracy"], top["tokens"], pool.bon_tokens, rule=rule, n=top["n"])
    figures["main"] = {"settings": tuned["settings"], **figures["main"], "minus_best_fixed": _minus(figures, best)}
    return {"best_fixed": best, **figures}


def tuned_pool(folder: Path, summary: dict, tuning: dict, seed: int, shares: list[float]) -> dict:
    """The tuning pool's figures, `main` checked against the tuning grid's row of the setting."""
    tuned = tuning["adaptive"]
    settings, confidence = AdaptiveSettings(**tuned["settings"]), ConfidenceMap.from_dict(tuned["confidence_map"])
    pool = Pool.of(load_pool(folder / "tune" / "pool"), seed, adaptive.ORDERINGS, summary["n_max"], confidence)
    figures = pool_figures(pool, settings, confidence, shares)
    row = next((g for g in tuned["grid"] if all(g[k] == v for k, v in tuned["settings"].items())), None)
    if row is None:
        raise fail("tune/tuning.json's grid has no row for its own main setting")
    check_same(figures["main"], row, "tune/tuning.json's grid")
    best = best_fixed_curve(pool)
    figures["main"] = {**figures["main"], "minus_best_fixed": _minus(figures, best)}
    return {"best_fixed": best, **figures}


def _minus(figures: dict, best: dict) -> float:
    """`main`'s accuracy minus the best fixed N's; each ceiling point gets its own beside it."""
    for row in figures["ceiling"]["by_share"].values():
        for entry in row.values():
            if entry and "accuracy" in entry:
                entry["minus_best_fixed"] = round(entry["accuracy"] - best["accuracy"], 4)
    return round(figures["main"]["accuracy"] - best["accuracy"], 4)


def table(name: str, figures: dict) -> str:
    """A short human summary of one pool's figures."""
    main, best, loss = figures["main"], figures["best_fixed"], figures["losses"]
    lines = [
        f"{name}: ias-adaptive {main['accuracy']:.3f} at {main['share']:.0%} of bon tokens; best fixed "
        f"{best['accuracy']:.3f} ({best['rule']}@{best['n']}, {best['share']:.0%})",
        f"  wrong answers: never solvable {loss['never_solvable']:.3f}, not drawn {loss['not_drawn']:.3f}, "
        f"selection {loss['selection_loss']:.3f}",
    ]
    for share, row in figures["ceiling"]["by_share"].items():
        rule, oracle = row["adaptive"], row["oracle_alloc"]
        lines.append(
            f"  at {float(share):.0%}: grid ceiling {rule['accuracy'] if rule else '-'}, "
            f"oracle-alloc {oracle.get('accuracy', '-')}"
        )
    lines += [
        f"  p {b['p']}: {b['questions']:.0%} of questions, {b['token_share']:.0%} of tokens, "
        f"accuracy {b['accuracy']:.3f}, peak {b['peak']:.3f}"
        for b in loss["bands"]
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", required=True, help="an `ias eval --tune-split calib` output folder (only read)")
    parser.add_argument("--shares", default="0.15,0.2,0.25", help="shares of bon@N_max's tokens for the ceilings")
    parser.add_argument("--no-tuning-pool", action="store_true", help="skip the tuning pool's figures")
    args = parser.parse_args()
    folder, shares = Path(args.eval), parse_shares(args.shares)
    summary, tuning, seed = read_eval(folder)
    figures = {
        "eval": str(folder),
        "seed": seed,
        "n_max": summary["n_max"],
        "orderings": summary["orderings"],
        **evaluated(folder, summary, tuning, seed, shares),
    }
    print(table("evaluated", figures), file=sys.stderr)
    if not args.no_tuning_pool:
        figures["tuning_pool"] = tuned_pool(folder, summary, tuning, seed, shares)
        print(table(f"tuning pool ({tuning.get('split')})", figures["tuning_pool"]), file=sys.stderr)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
