#!/usr/bin/env python3
"""Medians of the benchmarks' figures across runs, from the JSON each harness writes
(`benches/support.rs`, `Report::finish`): `<dir>/<bench>.json` (a bench's latest run) and
`<dir>/runs/<bench>/<UTC time>.json` (every run). A run found in both places counts once.

For each bench: every headline figure's median over the runs that measured it, with the runs'
values; each target judged on that median, and how many runs met it on their own. The median is
the upper middle value (as the harnesses take it), so it is always a figure some run measured.
--quick runs are smoke runs, not measurements: left out unless --include-quick.

--markdown prints one Markdown table row per bench (what, workload, result, target), the
columns of the README's Numbers table, for a person to edit into it.

Python 3 standard library only. Exit status 1 when no run was found."""
import argparse
import glob
import json
import os
import statistics
import sys

OPS = {">=": lambda v, t: v >= t, "<=": lambda v, t: v <= t, "<": lambda v, t: v < t}
OP_SIGNS = {">=": "≥", "<=": "≤", "<": "<"}


def default_dir():
    return os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "bench-results")


def show(value, unit=""):
    """A number as the harnesses print it: 409.5k events/s, 0.84 s."""
    if value is None:
        return "not measured"
    if abs(value) >= 1e6:
        number = f"{value / 1e6:.2f}M"
    elif abs(value) >= 1e4:
        number = f"{value / 1e3:.1f}k"
    elif abs(value) >= 100 or value == int(value):
        number = f"{value:.0f}"
    else:
        number = f"{value:.2f}"
    return f"{number} {unit}".strip()


def load(directory):
    """Every run under `directory`, once each, by bench, oldest first."""
    paths = glob.glob(os.path.join(directory, "*.json"))
    paths += glob.glob(os.path.join(directory, "runs", "*", "*.json"))
    runs = {}
    for path in sorted(paths):
        try:
            with open(path, encoding="utf-8") as f:
                run = json.load(f)
            key = (run["bench"], run["timestamp"])
            if not isinstance(run.get("figures"), list) or not isinstance(run.get("targets"), list):
                raise ValueError("figures and targets: expected lists")
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"{path}: skipped, expected a bench run's JSON ({type(e).__name__}: {e})",
                  file=sys.stderr)
            continue
        runs.setdefault(key, run)
    by_bench = {}
    for (bench, _), run in sorted(runs.items()):
        by_bench.setdefault(bench, []).append(run)
    return by_bench


def summarize(runs):
    """Per figure, in the order the runs list them: (name, unit, values, median)."""
    order, values, units = [], {}, {}
    for run in runs:
        for f in run["figures"]:
            if f["name"] not in values:
                order.append(f["name"])
                values[f["name"]] = []
            units[f["name"]] = f.get("unit", "")
            values[f["name"]].append(f.get("value"))
    out = []
    for name in order:
        measured = [v for v in values[name] if v is not None]
        median = statistics.median_high(measured) if measured else None
        out.append((name, units[name], values[name], median))
    return out


def judge(runs, medians):
    """Per target of the latest run: (target, median, met by the median, runs that met it)."""
    by_name = {name: median for name, _, _, median in medians}
    out = []
    for target in runs[-1]["targets"]:
        median = by_name.get(target["figure"])
        holds = OPS.get(target["op"])
        met = median is not None and holds is not None and holds(median, target["threshold"])
        met_runs = sum(
            1 for run in runs for t in run["targets"]
            if t["figure"] == target["figure"] and t.get("met"))
        out.append((target, median, met, met_runs))
    return out


def describe_target(target, median):
    ratio = ""
    if median is not None and target["threshold"]:
        ratio = f" ({median / target['threshold']:.2f}×)"
    sign = OP_SIGNS.get(target["op"], target["op"])
    return (f"{target['figure']} {sign} {show(target['threshold'], target['unit'])}: "
            f"median {show(median, target['unit'])}{ratio}")


def span(runs):
    first, last = runs[0]["timestamp"], runs[-1]["timestamp"]
    dates = first[:10] if first[:10] == last[:10] else f"{first[:10]}..{last[:10]}"
    commits = sorted({run.get("commit") or "?" for run in runs})
    cores = sorted({run.get("cores") for run in runs if run.get("cores") is not None})
    return (f"{len(runs)} run{'s' if len(runs) != 1 else ''}, {dates}, "
            f"commit {', '.join(commits)}, {'/'.join(map(str, cores)) or '?'} cores")


def print_plain(bench, runs):
    medians = summarize(runs)
    print(f"{bench}: {span(runs)}")
    print(f"  workload (latest run): {runs[-1].get('workload', '?')}")
    width = max((len(name) for name, *_ in medians), default=0)
    for name, unit, values, median in medians:
        each = ", ".join(show(v) for v in values)
        print(f"  {name:<{width}}  {show(median, unit):>18}   (runs: {each})")
    judged = judge(runs, medians)
    for target, median, met, met_runs in judged:
        print(f"  target {describe_target(target, median)}: {'met' if met else 'missed'}; "
              f"met in {met_runs} of {len(runs)} runs  [{target.get('source', '')}]")
    if not judged:
        print("  target: none stated")
    else:
        print(f"  target: {'met' if all(met for _, _, met, _ in judged) else 'missed'} "
              "on the medians")
    print()


def print_markdown_row(bench, runs):
    medians = summarize(runs)
    result = "; ".join(
        f"{name} **{show(median, unit)}**"
        + (f" (runs {', '.join(show(v) for v in values)})" if len(values) > 1 else "")
        for name, unit, values, median in medians)
    judged = judge(runs, medians)
    if judged:
        target = "; ".join(
            f"{describe_target(t, median)}: **{'met' if met else 'missed'}** "
            f"({met_runs} of {len(runs)} runs)"
            for t, median, met, met_runs in judged)
    else:
        target = "reported"
    cell = lambda text: str(text).replace("|", "\\|")
    print(f"| `{bench}` | {cell(runs[-1].get('workload', ''))} | "
          f"{cell(span(runs))}: {cell(result)} | {cell(target)} |")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", nargs="?", default=default_dir(),
                        help="where the harnesses wrote their JSON (default: "
                             "$CARGO_TARGET_DIR/bench-results, else target/bench-results)")
    parser.add_argument("--bench", action="append", metavar="NAME",
                        help="only this bench (repeatable)")
    parser.add_argument("--last", type=int, metavar="N",
                        help="only each bench's N most recent runs")
    parser.add_argument("--include-quick", action="store_true",
                        help="count --quick smoke runs too")
    parser.add_argument("--markdown", action="store_true",
                        help="print README-ready Markdown table rows")
    args = parser.parse_args()
    if args.last is not None and args.last < 1:
        parser.error(f"--last: expected a positive count of runs, got {args.last}")

    by_bench = load(args.dir)
    shown = 0
    if args.markdown:
        print("| what (benchmark) | workload | result | target |")
        print("|---|---|---|---|")
    for bench, runs in by_bench.items():
        if args.bench and bench not in args.bench:
            continue
        if not args.include_quick:
            runs = [run for run in runs if not run.get("quick")]
        if args.last:
            runs = runs[-args.last:]
        if not runs:
            continue
        shown += 1
        (print_markdown_row if args.markdown else print_plain)(bench, runs)
    if not shown:
        print(f"no bench runs in {args.dir}"
              + ("" if args.include_quick else " (--quick runs left out)"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
