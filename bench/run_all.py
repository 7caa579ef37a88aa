"""Every benchmark, several times: bench/results.md and the plots (python -m bench.run_all;
make bench calls it).

Each benchmark module measures its figures and their floors (or peers) in the same run and
turns them into rows (module.rows); this runner repeats each benchmark, takes the median of
each figure and of its floor over the runs, writes the table to bench/results.md and draws
the latency distributions of all runs together (ECDFs, bench/*.png). Nothing is copied from
an earlier run: a benchmark that fails leaves its rows out and says why.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

from . import (api_bench, backend_bench, desktop_bench, failover_bench, hkd_bench, l7r_bench,
               netns_bench, pool_bench, pool_storm, portal_bench, scale_bench, wat_bench)
from .common import Row, fmt

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(os.path.dirname(HERE), "README.md")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
LINEAR = {"storm", "failover", "pool_storm"}  # distributions drawn on a linear time axis


def _benches(args) -> list[tuple[str, object, object]]:
    """(name, module, how to run it once) in the order of the table."""
    quick = args.quick
    # The defaults (70 s / 90 s, to ride a database failover) would make each repeat last
    # minutes; the figures are ratios to the configured timeouts either way.
    failover_timings = ({"hkd.lease.interval": 0.5, "hkd.lease.fence_timeout": 3,
                         "hkd.cluster.node_timeout": 5} if quick else
                        {"hkd.lease.interval": 2, "hkd.lease.fence_timeout": 10,
                         "hkd.cluster.node_timeout": 15})
    return [
        ("hkd", hkd_bench, lambda: asyncio.run(hkd_bench.run(
            20 if quick else 200, 100 if quick else 1000, 2 if quick else 10))),
        ("l7r", l7r_bench, lambda: l7r_bench.run(3 if quick else 30, 1 if quick else 5)),
        ("desktop", desktop_bench, lambda: desktop_bench.run(1 if quick else 10)),
        ("backends", backend_bench, lambda: backend_bench.run(1 if quick else 5,
                                                               1 if quick else 2)),
        ("failover", failover_bench, lambda: failover_bench.run(2 if quick else 5,
                                                                 failover_timings)),
        ("api", api_bench, lambda: api_bench.run(20 if quick else 200, 2 if quick else 5)),
        ("wat", wat_bench, lambda: wat_bench.run(50 if quick else 200)),
        ("portal", portal_bench, lambda: portal_bench.run(3 if quick else 10,
                                                           2 if quick else 5)),
        ("scale", scale_bench, lambda: scale_bench.run(
            (1, 2) if quick else args.sizes, args.processes, 2 if quick else 10)),
        ("cluster", netns_bench, lambda: netns_bench.run(3 if quick else 10)),
        ("pools", pool_bench, lambda: {  # first login, then the login storm (one result)
            **pool_bench.run(3 if quick else 10, 2),
            **pool_storm.run_storm(40 if quick else pool_storm.USERS,
                                   4 if quick else pool_storm.SPARE)}),
    ]


# --- medians ------------------------------------------------------------------------------
def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def median_rows(runs: list[list[Row]]) -> list[tuple[Row, int]]:
    """One row per figure: median value and median floor over the runs; (row, runs)."""
    order, by_key = [], {}
    for rows in runs:
        for row in rows:
            if row.key not in by_key:
                order.append(row.key)
            by_key.setdefault(row.key, []).append(row)
    found = []
    for key in order:
        rows = by_key[key]
        measured = [row for row in rows if row.value is not None]
        last = rows[-1]
        merged = Row(key, last.figure, _median([r.value for r in measured]), last.unit,
                     _median([r.floor for r in measured]), last.floor_label, last.note)
        found.append((merged, len(measured)))
    return found


def median_scale(results: list[dict]) -> dict:
    """The scale benchmark's per-size figures, each the median over the runs."""
    sizes = {}
    for result in results:
        for size in result["sizes"]:
            sizes.setdefault(size["nodes"], []).append(size)
    merged = []
    for nodes, runs in sorted(sizes.items()):
        entry = {}
        for key, value in runs[0].items():
            if isinstance(value, list):
                entry[key] = sorted(v for run in runs for v in run[key])
            else:
                entry[key] = statistics.median(run[key] for run in runs)
        entry["runs"] = len(runs)
        merged.append(entry)
    return {"sizes": merged}


# --- the report -----------------------------------------------------------------------------
def results_table(rows: list[tuple[Row, int]]) -> str:
    lines = ["| figure | qvd | floor or peer (same runs) | ratio | runs |",
             "|---|---|---|---|---|"]
    for row, runs in rows:
        if row.value is None:
            lines.append(f"| {row.figure} | not measured: {row.note} | - | - | 0 |")
            continue
        floor = (f"{fmt(row.floor, row.unit)} ({row.floor_label})" if row.floor is not None
                 else row.floor_label)
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        lines.append(f"| {row.figure} | {fmt(row.value, row.unit)} | {floor} | {ratio} | "
                     f"{runs} |")
    return "\n".join(lines)


def _read(path: str, pattern: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            match = re.search(pattern, handle.read(), re.M)
        return match.group(1).strip() if match else None
    except OSError:
        return None


def machine() -> str:
    from qvd.db.embedded import server_bindir
    cpu = _read("/proc/cpuinfo", r"^model name\s*:\s*(.*)$") or platform.machine()
    mem = _read("/proc/meminfo", r"^MemTotal:\s*(\d+)")
    debian = _read("/etc/debian_version", r"(.*)")
    try:
        postgres = re.search(r"\) ([\d.]+)", subprocess.run(
            [os.path.join(server_bindir(), "postgres"), "--version"], capture_output=True,
            text=True).stdout).group(1)
    except Exception:  # noqa: BLE001 - only a label
        postgres = "?"
    parts = [f"{cpu}, {os.cpu_count()} cores"]
    if mem:
        parts.append(f"{int(mem) / 1024 / 1024:.0f} GiB RAM")
    if debian:
        parts.append(f"Debian {debian}")
    parts += [f"Python {platform.python_version()}",
              f"PostgreSQL {postgres} (embedded, fsync off)"]
    return ", ".join(parts)


def revision() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=HERE,
                               capture_output=True, text=True).stdout.strip()
        return f"commit {head}" + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown commit"


def notes(collected: dict) -> list[str]:
    found = []
    for result in collected.get("failover", []):
        if result["overlap"]:
            found.append(f"failover: {result['overlap']} VM(s) ran on node 2 while their "
                         "copy on the killed or partitioned node 1 still ran.")
    if collected.get("failover"):
        first = collected["failover"][0]
        if not any(r["overlap"] for r in collected["failover"]):
            found.append("failover: in every run, no VM ran on node 2 while its copy on the "
                         "killed or partitioned node 1 still ran (its watchdog, or node 1 "
                         "itself, killed them first).")
        found.append("failover timings (node files): " + ", ".join(
            f"{key} = {first[key]:g} s" for key in failover_bench.TIMINGS)
            + f"; {first['vms']} VMs, process backend (real qvd-vma processes). Both "
            "timeouts count from the dead node's last lease renewal, up to one lease interval "
            "before its death: a failover can end sooner after the death than the timeout. "
            "The database outage and the standby promotion run with the shipped timeouts "
            "(they are made to ride a 60 s failover).")
    for index, result in enumerate(collected.get("pools", []), 1):
        found += [f"pools run {index}: check FAILED: {what}"
                  for what, ok in result["checks"].items() if not ok]
        found += [f"pools run {index}: {count} storm login(s) retried after: "
                  f"{reason}" for reason, (count, _) in result["retry_reasons"].items()]
    if collected.get("scale"):
        found.append("scale: the simulated nodes (real node code, fake backend and VMAs) run "
                     f"in {collected['scale'][0]['processes']} processes on this machine's "
                     f"{os.cpu_count()} cores, with PostgreSQL and the clients: real nodes "
                     "have a machine each, so the storm times are upper bounds.")
    return found


def write_results(path: str, rows, collected: dict, failures: list[str], durations: dict,
                  repeat: int, plots: list[tuple[str, str]]) -> str:
    table = results_table(rows)
    lines = ["# Benchmark results", "",
             f"`make bench` (`python -m bench.run_all`), {datetime.date.today().isoformat()}, "
             f"{revision()}.", "", f"Machine: {machine()}.", "",
             f"Each figure is the median of {repeat} runs (column `runs`: the runs that "
             "measured it); its floor or peer is measured in the same runs and is the median "
             "too; the ratio is figure / floor.", "", table, ""]
    if failures or notes(collected):
        lines += ["## Notes", ""] + [f"- {n}" for n in notes(collected)]
        lines += [f"- FAILED: {f}" for f in failures] + [""]
    if collected.get("scale"):
        merged = median_scale(collected["scale"])
        lines += ["## Scale: each cluster size (medians)", "",
                  scale_bench.details(merged), ""]
    if plots:
        lines += ["## Distributions (all runs together)", ""]
        lines += [f"![{title}]({os.path.basename(png)})" for png, title in plots] + [""]
    lines += ["## Durations", "", ", ".join(f"{name} {seconds:.0f} s"
                                            for name, seconds in durations.items()), "",
              "## Reproduce", "", "```sh", "make bench                          "
              "# all benchmarks, 3 runs each: this file and bench/*.png",
              "make bench BENCH_ARGS='--repeat 5 --only hkd,scale'",
              ".venv/bin/python -m bench.failover_bench --help   # one benchmark, one run",
              "```", ""]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    return table


# --- plots ----------------------------------------------------------------------------------
def plot(distributions: dict, scale: list[dict], out: str) -> list[tuple[str, str]]:
    """ECDFs of every distribution (all runs pooled) and the scale growth; [(png, title)]."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("run_all: matplotlib is missing (pip install -e '.[bench]'): no plots",
              file=sys.stderr)
        return []
    made = []
    for name, (title, unit, series) in distributions.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        spread = [v for values in series.values() for v in values if v > 0]
        for label, values in series.items():
            if not values:
                continue
            ordered = sorted(values)
            ax.step(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))],
                    where="post", label=f"{label} (n={len(ordered)})")
        if name not in LINEAR and spread and max(spread) / min(spread) > 20:
            ax.set_xscale("log")
            plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
            ax.xaxis.set_major_formatter(plain)
            ax.xaxis.set_minor_formatter(plain)
            ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_xlabel(unit)
        ax.set_ylabel("fraction of the samples <= x")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        png = os.path.join(out, f"{name}.png")
        fig.savefig(png, dpi=100)
        plt.close(fig)
        made.append((png, title))
    if scale:
        nodes = [s["nodes"] for s in scale]
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        left.plot(nodes, [s["idle_qps"] for s in scale], "o-", label="statements/s")
        base = scale[0]
        left.plot(nodes, [base["idle_qps"] * n / base["nodes"] for n in nodes], ":",
                  label=f"linear from {base['nodes']} nodes")
        left.set_xlabel("nodes (200 running VMs each)")
        left.set_ylabel("per second")
        left.set_title("idle database load (statements the nodes send)", fontsize=10)
        right.plot(nodes, [s["storm_s"] for s in scale], "o-", label="all running")
        right.plot(nodes, [s["storm_issue_s"] for s in scale], "s--",
                   label="commands committed")
        right.set_xlabel("nodes (200 running VMs each)")
        right.set_ylabel("s")
        right.set_title(f"storm of {scale_bench.STORM:,} starts", fontsize=10)
        for ax in (left, right):
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
            ax.set_ylim(bottom=0)
        fig.tight_layout()
        png = os.path.join(out, "scale.png")
        fig.savefig(png, dpi=100)
        plt.close(fig)
        made.append((png, "scale: idle load and storm time against cluster size"))
    return made


def update_readme(table: str, path: str = README) -> bool:
    """Put the table between the bench markers of README.md (only there)."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        print(f"run_all: no {BEGIN} ... {END} in {path}: README not updated", file=sys.stderr)
        return False
    text = text[:start + len(BEGIN)] + "\n" + table + "\n" + text[end:]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each benchmark")
    parser.add_argument("--only", help="comma-separated: hkd,l7r,desktop,failover,scale")
    parser.add_argument("--sizes", default=",".join(map(str, scale_bench.SIZES)),
                        help="scale: cluster sizes in nodes (default %(default)s)")
    parser.add_argument("--processes", type=int, default=4,
                        help="scale: processes the simulated nodes run in")
    parser.add_argument("--quick", action="store_true",
                        help="tiny counts and fast failover timings: checks that all runs")
    parser.add_argument("--out", help="where results.md and the plots go (default: bench/, "
                        "or a new temporary directory with --quick)")
    parser.add_argument("--update-readme", action="store_true",
                        help="also put the table into README.md (between the bench markers)")
    args = parser.parse_args()
    args.sizes = tuple(int(n) for n in args.sizes.split(","))
    if args.out is None:
        args.out = tempfile.mkdtemp(prefix="qvd-bench-quick-") if args.quick else HERE
    benches = _benches(args)
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {name for name, _, _ in benches}
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        benches = [b for b in benches if b[0] in wanted]
    runs: list[list[Row]] = []
    collected: dict[str, list[dict]] = {}
    distributions: dict = {}
    failures, durations = [], {}
    for name, module, call in benches:
        began = time.monotonic()
        for index in range(args.repeat):
            print(f"run_all: {name} run {index + 1}/{args.repeat}", file=sys.stderr, flush=True)
            try:
                result = call()
            except Exception as exc:  # noqa: BLE001 - reported in results.md, others go on
                traceback.print_exc()
                failures.append(f"{name} run {index + 1}: {type(exc).__name__}: {exc}")
                continue
            collected.setdefault(name, []).append(result)
            runs.append(module.rows(result))
            for key, (title, unit, series) in module.distributions(result).items():
                pooled = distributions.setdefault(key, (title, unit, {}))[2]
                for label, values in series.items():
                    pooled.setdefault(label, []).extend(values)
        durations[name] = time.monotonic() - began
    rows = median_rows(runs)
    scale = median_scale(collected["scale"])["sizes"] if collected.get("scale") else []
    plots = plot(distributions, scale, args.out)
    path = os.path.join(args.out, "results.md")
    table = write_results(path, rows, collected, failures, durations, args.repeat, plots)
    print(table)
    print(f"\nrun_all: wrote {path} and {len(plots)} plot(s)", file=sys.stderr)
    if args.update_readme:
        update_readme(table)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
