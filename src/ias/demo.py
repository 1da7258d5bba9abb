"""`ias demo`: the main job on the built-in task and the shipped zoo models, no downloads."""

from __future__ import annotations

from pathlib import Path

from ias.api import solve
from ias.records import read_records
from ias.report import table


def run_demo(out: Path = Path("ias-demo"), limit: int = 100, n: int = 16, seed: int = 0) -> dict:
    """Best-of-N on `arith` test problems with the weak policy and the zoo PRM.

    One set of samples answers every selection rule (PRM best, PRM-weighted vote,
    majority vote), compared with a single sample.
    """
    print(f"ias demo: Best-of-{n} on {limit} arith test problems (policy arith-weak, PRM arith-prm)")
    summary = solve(task="arith", split="test", policy="arith-weak", prm="arith-prm", n=n,
                    out=out / "bon", limit=limit, seed=seed)
    records = read_records(out / "bon" / "records.jsonl")
    single = sum(r["samples"][0]["correct"] for r in records) / len(records)
    tokens = summary["usage"]["generated_tokens"]
    rows = [["single sample", round(single, 4), tokens // n]]
    names = {"best": f"best-of-{n} (PRM)", "weighted": f"PRM-weighted vote@{n}", "majority": f"majority vote@{n}"}
    for how, acc in summary["by_selection"].items():
        rows.append([names[how], acc, tokens])
    print(table(["method", "accuracy", "generated tokens"], rows))
    print(f"records and summary: {out / 'bon'}")
    return summary
