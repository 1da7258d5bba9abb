"""Summaries as tables a person reads in a terminal."""

from __future__ import annotations


def table(headers: list[str], rows: list[list]) -> str:
    """A plain fixed-width table."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "-" if value is None else str(value)


def print_summary(summary: dict) -> None:
    usage = summary["usage"]
    n = summary["n_problems"]
    print(
        f"{summary['strategy']} on {summary['task']}/{summary['split']}: {n} problems, "
        f"policy {summary['policy']}, PRM {summary['prm']}"
    )
    rows = []
    for how, acc in summary["by_selection"].items():
        rows.append([how, acc, usage["generated_tokens"], usage["samples"], usage["prm_tokens"]])
    print(table(["selection", "accuracy", "generated tokens", "samples", "PRM tokens"], rows))
    lo, hi = summary["ci95"] or (None, None)
    print(f"accuracy {summary['accuracy']} (95% CI {lo}-{hi}); {summary['tokens_per_problem']} tokens per problem")


def print_zoo(data: dict) -> None:
    rows = []
    for m in data["models"]:
        if not m.get("shipped"):
            rows.append([m["name"], "-", "-", "-", "not shipped"])
            continue
        figures = m.get("figures", {})
        if "success_hist" in figures:
            note = (
                f"mean success {figures['mean_success']}, <0.2: {figures['share_below_0.2']}, "
                f"0.2-0.8: {figures['share_0.2_to_0.8']}, >0.8: {figures['share_above_0.8']}"
            )
        else:
            weak = figures.get("arith-weak", {})
            note = ", ".join(f"{k} {v}" for k, v in weak.items() if k.endswith(("auroc", "accuracy")))
            note = f"on arith-weak: {note}" if note else ""
        rows.append([m["name"], m["kind"], m.get("params"), m["seed"], note])
    print(table(["model", "kind", "params", "seed", "figures (test split)"], rows))


def print_calibration(report: dict) -> None:
    rows = []
    for name, m in report["methods"].items():
        ties = m.get("coverage_with_ties", {})
        cov = ", ".join(f"{b}: {v}..{ties.get(b, v)}" for b, v in m["coverage"].items()) or "-"
        rows.append([name, m["brier"], m["overestimation"], m["ece"], cov])
    print(f"calibration on {report['rows']} prefixes of {report['rollouts']} (PRM {report['prm']})")
    print(table(["method", "Brier", "over-estimation", "ECE", "coverage: below..below or tied"], rows))
