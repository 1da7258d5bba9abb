"""Summaries as tables a person reads in a terminal."""

from __future__ import annotations

from ias.figures import new_figure, save_figure
from ias.scaling.pool import Outcome, PoolProblem


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
    print(
        f"calibration on {report['rows']} prefixes of {report['rollouts']} (PRM {report['prm']})"
        + (
            f"; only the calibrator's {report['problems']} held-out problems: it was fitted on these rollouts"
            if report.get("held_out_only")
            else ""
        )
    )
    print(table(["method", "Brier", "over-estimation", "ECE", "coverage: below..below or tied"], rows))


def eval_table(summary: dict) -> str:
    """Methods by accuracy and spend; the share of `bon@N_max`'s tokens makes savings readable."""
    reference = summary["methods"].get(f"bon@{summary['n_max']}", {}).get("tokens")
    rows = []
    for name, m in summary["methods"].items():
        share = f"{m['tokens'] / reference:.0%}" if reference else "-"
        # Spends are expected over orderings (fractional): shown whole; wall time to a tenth.
        rows.append(
            [
                name,
                m["accuracy"],
                f"{m['ci95'][0]}-{m['ci95'][1]}",
                f"{round(m['tokens']):,}",
                share,
                f"{round(m['samples']):,}",
                f"{round(m['prm_tokens']):,}",
                f"{m['wall_s']:.1f}",
            ]
        )
    return table(
        ["method", "accuracy", "95% CI", "tokens", f"of bon@{summary['n_max']}", "samples", "PRM tokens", "wall s"],
        rows,
    )


def _fixed(name: str) -> bool:
    """A fixed-N method (its point lies on the frontier)."""
    return name.split("@")[0] in ("bon", "sc", "weighted")


def fixed_accuracy_at(frontier: dict[str, list[dict]], tokens: float) -> float:
    """The best fixed-N accuracy (any selection rule) at `tokens`: each rule's curve read by
    linear interpolation between its N, held flat past its ends."""
    best = 0.0
    for points in frontier.values():
        xs = [p["tokens"] for p in points]
        ys = [p["accuracy"] for p in points]
        if tokens <= xs[0]:
            value = ys[0]
        elif tokens >= xs[-1]:
            value = ys[-1]
        else:
            j = next(k for k in range(1, len(xs)) if xs[k] >= tokens)
            value = ys[j - 1] + (ys[j] - ys[j - 1]) * (tokens - xs[j - 1]) / (xs[j] - xs[j - 1])
        best = max(best, value)
    return best


def frontier_verdict(summary: dict) -> dict[str, dict]:
    """Per non-fixed method: `saving`, the tokens of the cheapest fixed N (any rule) at least as
    accurate divided by its own (None: no fixed N is), and `gain`, its accuracy minus the
    fixed-N curve's at equal tokens."""
    frontier = summary["frontier"]
    points = [p for curve in frontier.values() for p in curve]
    verdict = {}
    for name, m in summary["methods"].items():
        if _fixed(name) or not m["tokens"]:
            continue
        as_good = [p["tokens"] for p in points if p["accuracy"] >= m["accuracy"]]
        verdict[name] = {
            "saving": round(min(as_good) / m["tokens"], 3) if as_good else None,
            "gain": round(m["accuracy"] - fixed_accuracy_at(frontier, m["tokens"]), 4),
        }
    return verdict


def verdict_line(summary: dict, name: str = "ias-adaptive") -> str:
    """One line: how `name` stands against the fixed-N frontier."""
    m, v = summary["methods"].get(name), frontier_verdict(summary).get(name)
    if not m or not v:
        return f"{name}: not run"
    best = max((p for c in summary["frontier"].values() for p in c), key=lambda p: p["accuracy"])
    reference = summary["methods"].get(f"bon@{summary['n_max']}", {}).get("tokens") or m["tokens"]
    saving = (
        f"the cheapest fixed N as accurate needs {v['saving']}x its tokens"
        if v["saving"]
        else "no fixed N is as accurate"
    )
    return (
        f"{name}: accuracy {m['accuracy']} at {m['tokens'] / reference:.0%} of bon@{summary['n_max']}'s tokens, "
        f"{v['gain']:+.3f} over fixed N at equal tokens (best fixed N: {best['accuracy']}); {saving}"
    )


def eval_plots(out, summary: dict, records: list[PoolProblem], outcomes: dict[str, list[Outcome]], budget) -> None:
    """`pareto.png` (accuracy against generated tokens: the fixed-N curve of each selection
    rule, every method, each swept knob and each `@B` family as a line) and `budget.png`
    (tokens each adaptive method spent on a problem against its true success rate)."""
    _pareto_plot(out, summary)
    _budget_plot(out, records, outcomes, budget)


def _pareto_plot(out, summary: dict) -> None:
    from matplotlib import colormaps

    methods = summary["methods"]
    fig = new_figure(figsize=(8, 5.5))
    ax = fig.subplots()
    for (how, points), style in zip(summary["frontier"].items(), ("-", "--", ":")):
        ax.plot(
            [p["tokens"] for p in points],
            [p["accuracy"] for p in points],
            style,
            marker="o",
            color="black",
            markersize=3,
            label=f"fixed N, {how}",
        )
        if how == "best":
            for p in points:
                ax.annotate(
                    str(p["n"]), (p["tokens"], p["accuracy"]), textcoords="offset points", xytext=(4, -10), fontsize=7
                )
    colours = colormaps["tab20"]
    families = sorted({n.split("@")[0] for n in methods if "@" in n and not _fixed(n)})
    lines = [
        (f"{f}@B", sorted((m["tokens"], m["accuracy"]) for n, m in methods.items() if n.startswith(f + "@")))
        for f in families
    ]
    lines += [
        (f"{name} ({sweep['knob']} swept)", sorted((p["tokens"], p["accuracy"]) for p in sweep["points"]))
        for name, sweep in summary.get("sweeps", {}).items()
    ]
    for k, (label, xy) in enumerate(lines):
        ax.plot(
            [x for x, _ in xy], [y for _, y in xy], marker=".", color=colours((2 * k + 1) % 20), alpha=0.8, label=label
        )
    singles = [(n, m) for n, m in methods.items() if "@" not in n]
    for k, (name, m) in enumerate(singles):
        ax.scatter(
            [m["tokens"]], [m["accuracy"]], label=name, zorder=3, color=colours((2 * k) % 20), marker="os^Dv<>"[k % 7]
        )
    ax.set_xscale("log")
    ax.set_xlabel("generated tokens (all problems)")
    ax.set_ylabel(f"accuracy (expected over {summary.get('orderings', 1)} orderings of each pool)")
    ax.set_title(f"Accuracy against compute, {summary['n_problems']} problems")
    ax.legend(fontsize=6, loc="lower right", ncol=2)
    save_figure(fig, out / "pareto.png")


def _budget_plot(out, records: list[PoolProblem], outcomes: dict[str, list[Outcome]], budget) -> None:
    fig = new_figure(figsize=(7, 4.5))
    ax = fig.subplots()
    p_true = [r.p_true for r in records]
    for name in ("oracle-ias", "ias-bon", "ias-bon-uncalibrated", "ias-adaptive", "ias-beam"):
        if name in outcomes:
            ax.scatter(p_true, [max(1, o.tokens) for o in outcomes[name]], s=10, alpha=0.6, label=name)
    ax.set_xlabel(f"true success rate (share correct of {budget.n_max} samples)")
    ax.set_ylabel("generated tokens")
    ax.set_yscale("log")
    ax.set_title("Budget per problem against its difficulty")
    if ax.get_legend_handles_labels()[0]:  # no adaptive method asked for: an empty plot, no legend
        ax.legend(fontsize=8)
    save_figure(fig, out / "budget.png")


def write_eval_report(path, summary: dict) -> None:
    config = summary.get("config", {})
    text = "\n".join(
        [
            f"# ias eval: {config.get('task')} / {config.get('split')}, policy {config.get('policy')}, "
            f"PRM {config.get('prm')}, calibrator {config.get('calibrator')}",
            "",
            f"{summary['n_problems']} problems, N_max = {summary['n_max']}, "
            f"coverage C = {summary['budget']['coverage']}. "
            "Every whole-sample method is replayed on one shared pool of samples (its wall time: the pool's, shared "
            f"by tokens), expected over {summary.get('orderings', 1)} seeded random orderings of each question's pool "
            "(accuracy, tokens and samples are means over them); the beam searches run for real, once (wall time "
            "measured; samples: step continuations).",
            "",
            "```",
            eval_table(summary),
            "```",
            "",
            *_frontier_section(summary),
            "![accuracy against tokens](pareto.png)",
            "",
            "![budget per problem](budget.png)",
            "",
            *([tuning_line(summary["tuning"]), ""] if summary.get("tuning") else []),
        ]
    )
    path.write_text(text)


def tuning_line(tuning: dict) -> str:
    """What `ias-bon-tuned` chose, and on what."""
    reference = next(v for k, v in tuning.items() if k.endswith("_accuracy"))
    return (
        f"ias-bon-tuned: budget from the calibrated {tuning['estimate']} estimate at coverage C = "
        f"{tuning['coverage']}, chosen on {tuning['n_problems']} tuning problems (the cheapest setting within "
        f"{tuning['tolerance']} of Best-of-N_max's accuracy there, {reference}); grid in tune/tuning.json."
    )


def _frontier_section(summary: dict) -> list[str]:
    """report.md's frontier verdict: for each non-fixed method, the fixed N it beats or not."""
    if "frontier" not in summary:
        return []
    verdict = frontier_verdict(summary)
    rows = [
        [name, summary["methods"][name]["accuracy"], v["gain"], v["saving"] if v["saving"] else "none as good"]
        for name, v in verdict.items()
    ]
    behind = [name for name, v in verdict.items() if v["gain"] <= 0]
    lines = [
        "## Against the fixed-N frontier",
        "",
        "`gain`: accuracy minus the best fixed-N accuracy (any selection rule) at equal tokens; `saving`: the "
        "tokens of the cheapest fixed N at least as accurate divided by the method's own.",
        "",
        "```",
        table(["method", "accuracy", "gain", "saving"], rows),
        "```",
        "",
        verdict_line(summary),
        "",
    ]
    if behind:
        lines += [
            f"Where adaptive compute does not help here: {', '.join(behind)} "
            "sit on or below the fixed-N curve (a fixed N does as well for the same tokens).",
            "",
        ]
    if summary.get("confidence_ece"):
        ece = summary["confidence_ece"]
        lines += [
            f"Confidence of ias-adaptive's answers: ECE {ece['calibrated']} (calibrated, through the tuning "
            f"pool's map); the raw PRM score of ias-adaptive-uncalibrated's answers: ECE {ece['uncalibrated']}.",
            "",
        ]
    if "tuning" in summary and "adaptive" in summary["tuning"]:
        tuned = summary["tuning"]["adaptive"]
        lines += [
            f"ias-adaptive settings {tuned['settings']} (the cheapest within {summary['tuning']['tolerance']} of "
            f"the most accurate on {tuned['n_problems']} tuning problems); ias-adaptive@B: the most accurate "
            "spending at most fixed N = B's tokens there. Grid in tune/tuning.json.",
            "",
        ]
    return lines
