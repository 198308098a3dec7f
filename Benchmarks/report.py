#!/usr/bin/env python3
"""Turns the raw runs of Benchmarks/compare.sh and Benchmarks/scaling.sh into the generated
sections of docs/benchmarks.md and the PNG plots under docs/img/.

    report.py compare --results R.jsonl --meta M.json --markdown docs/benchmarks.md --images docs/img
    report.py scaling --results S.jsonl --meta M.json --markdown docs/benchmarks.md --images docs/img

Each command rewrites only the text between its own markers in the markdown file
(``<!-- BEGIN compare.sh -->`` ... ``<!-- END compare.sh -->``, likewise for scaling.sh), so
the hand-written parts of the page stay as they are. Needs matplotlib (compare.sh installs it
into a private virtualenv).
"""

import argparse
import json
import os
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SERVERS = ("damselfly", "redis")
LABEL = {"damselfly": "Damselfly", "redis": "redis-server"}
COLOR = {"damselfly": "#2a7ab0", "redis": "#c0392b"}


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def medians(rows):
    """{(tool, server, test, pipeline): {"rps": median, "rps_min":…, "rps_max":…, field: median…}}"""
    groups = {}
    for r in rows:
        groups.setdefault((r["tool"], r["server"], r["test"], int(r["pipeline"])), []).append(r)
    out = {}
    for key, rs in groups.items():
        m = {"n": len(rs)}
        for field in ("rps", "fill_rps", "avg_us", "p50_us", "p99_us", "p999_us"):
            vals = [float(r[field]) for r in rs if field in r]
            if vals:
                m[field] = statistics.median(vals)
                m[field + "_min"] = min(vals)
                m[field + "_max"] = max(vals)
        out[key] = m
    return out


def fmt_rps(v):
    return f"{v:,.0f}" if v is not None else "—"


def fmt_ms(us):
    return f"{us / 1000:.3f}" if us is not None else "—"


def spread(m):
    if m["n"] < 2:
        return ""
    return f" <sub>({m['rps_min']:,.0f}–{m['rps_max']:,.0f})</sub>"


def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "—"


def splice(markdown_path, marker, body):
    begin, end = f"<!-- BEGIN {marker} -->", f"<!-- END {marker} -->"
    text = open(markdown_path).read() if os.path.exists(markdown_path) else ""
    block = f"{begin}\n<!-- generated: edit {marker} / Benchmarks/report.py, not this block -->\n\n{body.rstrip()}\n\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(markdown_path, "w") as f:
        f.write(text)


def machine_lines(meta):
    return [
        f"- date: {meta['date']}",
        f"- machine: {meta['nproc']} CPUs, {meta['cpu']}, {meta['memory']}, {meta['kernel']}",
        f"- damselfly: {meta['damselfly']}, flags `{meta['damselfly_flags']}`; {meta['swift']}",
        f"- redis-server {meta['redis']} (`--save '' --appendonly no`), redis-benchmark {meta['redis_benchmark']}",
    ]


# MARK: - compare

def compare(args):
    rows = load(args.results)
    meta = json.load(open(args.meta))
    med = medians(rows)
    os.makedirs(args.images, exist_ok=True)
    img_rel = os.path.relpath(args.images, os.path.dirname(os.path.abspath(args.markdown)))

    def get(tool, server, test, depth):
        return med.get((tool, server, test, depth))

    conns = meta["connections"]
    lines = ["## Results", ""]
    if meta.get("quick"):
        lines += ["> **Quick run** (`--quick`): one round of short runs, to check the script; "
                  "the numbers are indicative only.", ""]
    lines += machine_lines(meta)
    lines += [
        f"- rounds: {meta['rounds']} (each workload: Damselfly, then redis-server; tables show the median, "
        f"with the range over rounds in small print); {meta['elapsed_s']} s of runs",
        f"- load: {conns} connections ({meta['threads']} generator threads × {meta['clients']}), "
        f"{meta['keyspace']:,} random keys, {meta['data_size']} B values; the generator shares the machine with the server",
        "",
        "Commands (the port differs per server):",
        "",
        "```sh",
        f"damselfly-bench --threads={meta['threads']} --clients={meta['clients']} --pipeline=P "
        f"--test-time={meta['seconds_per_run']} --ratio=1:0|0:1 --key-prefix=key: "
        f"--key-maximum={meta['keyspace'] - 1} --key-width=12 --data-size={meta['data_size']}",
        f"redis-benchmark --threads {meta['threads']} -c {conns} -P P -t set,get -n {meta['n_p1']}|{meta['n_p16']} "
        f"-r {meta['keyspace']} -d {meta['data_size']} --csv",
        f"redis-benchmark --threads {meta['threads']} -c {conns} -P 1 -t lpush,rpop -n {meta['n_p1']} "
        f"-r {meta['keyspace']} -d {meta['data_size']} --csv",
        f"damselfly-bench --threads={meta['threads']} --queues={meta['queues']} --elements={meta['elements']} "
        f"--consumers={meta['consumers']} --pipeline=64",
        "```",
        "",
    ]

    # Generator check.
    lines += [
        "### The generator is not the bottleneck",
        "",
        f"Both load generators against the same redis-server, with the same {conns} connections and pipeline "
        f"depth (redis-benchmark with `--threads {meta['threads']}`, damselfly-bench with "
        f"`--threads={meta['threads']} --clients={meta['clients']}`). A ratio ≥ 1 means damselfly-bench drives "
        "the server at least as hard as redis-benchmark does.",
        "",
        "| test | pipeline | redis-benchmark ops/s | damselfly-bench ops/s | damselfly-bench / redis-benchmark |",
        "|------|---------:|----------------------:|----------------------:|------:|",
    ]
    verdict = []
    for depth in (1, 16):
        for test in ("SET", "GET"):
            rb = get("redis-benchmark", "redis", test, depth)
            db = get("damselfly-bench", "redis", test, depth)
            if rb and db:
                verdict.append(db["rps"] / rb["rps"])
                lines.append(f"| {test} | {depth} | {fmt_rps(rb['rps'])}{spread(rb)} | {fmt_rps(db['rps'])}{spread(db)} "
                             f"| **{ratio(db['rps'], rb['rps'])}** |")
    if verdict:
        lines += ["", f"Lowest ratio: {min(verdict):.2f} "
                      f"({'damselfly-bench reaches at least what redis-benchmark reaches' if min(verdict) >= 1 else 'below redis-benchmark in some cell: see the table'})."]
    lines.append("")

    # SET/GET side by side.
    for tool, title in (("damselfly-bench", "SET / GET with damselfly-bench"),
                        ("redis-benchmark", "SET / GET with redis-benchmark")):
        lines += [f"### {title}", "",
                  "| test | pipeline | Damselfly ops/s | redis-server ops/s | Damselfly / Redis "
                  "| Damselfly p50 / p99 / p99.9 ms | redis-server p50 / p99 / p99.9 ms |",
                  "|------|---------:|----------------:|-------------------:|------:|------|------|"]
        for depth in (1, 16):
            for test in ("SET", "GET"):
                d, r = get(tool, "damselfly", test, depth), get(tool, "redis", test, depth)
                if not (d and r):
                    continue

                def lat(m):
                    return f"{fmt_ms(m.get('p50_us'))} / {fmt_ms(m.get('p99_us'))} / {fmt_ms(m.get('p999_us'))}"
                lines.append(f"| {test} | {depth} | {fmt_rps(d['rps'])}{spread(d)} | {fmt_rps(r['rps'])}{spread(r)} | "
                             f"**{ratio(d['rps'], r['rps'])}** | {lat(d)} | {lat(r)} |")
        lines.append("")

    # Lists and queue.
    list_servers = meta.get("list_servers", [])
    lines += ["### LPUSH / RPOP (redis-benchmark, pipeline 1)", ""]
    lines += ["| test | Damselfly ops/s | redis-server ops/s | Damselfly / Redis |", "|------|----------------:|-------------------:|------:|"]
    for test in ("LPUSH", "RPOP"):
        d, r = get("redis-benchmark", "damselfly", test, 1), get("redis-benchmark", "redis", test, 1)
        dcell = f"{fmt_rps(d['rps'])}{spread(d)}" if d else "skipped: not implemented yet"
        rcell = f"{fmt_rps(r['rps'])}{spread(r)}" if r else "skipped"
        lines.append(f"| {test} | {dcell} | {rcell} | {ratio(d['rps'], r['rps']) if d and r else '—'} |")
    lines.append("")
    lines += [f"### Queue drain ({meta['queues']} queues × {meta['elements']:,} Sidekiq-style jobs, "
              f"{meta['consumers']} BRPOP consumers)", ""]
    lines += ["| | Damselfly | redis-server | Damselfly / Redis |", "|---|---:|---:|---:|"]
    d, r = get("damselfly-bench", "damselfly", "QUEUE_DRAIN", 1), get("damselfly-bench", "redis", "QUEUE_DRAIN", 1)
    if "damselfly" not in list_servers:
        d = None
    skip = "skipped: not implemented yet"
    lines.append(f"| drain jobs/s | {fmt_rps(d['rps']) + spread(d) if d else skip} | "
                 f"{fmt_rps(r['rps']) + spread(r) if r else 'skipped'} | {ratio(d['rps'], r['rps']) if d and r else '—'} |")
    lines.append(f"| fill jobs/s (pipelined LPUSH) | {fmt_rps(d['fill_rps']) if d else skip} | "
                 f"{fmt_rps(r['fill_rps']) if r else 'skipped'} | {ratio(d['fill_rps'], r['fill_rps']) if d and r else '—'} |")
    lines.append(f"| BRPOP p50 / p99 ms | {fmt_ms(d['p50_us']) + ' / ' + fmt_ms(d['p99_us']) if d else skip} | "
                 f"{fmt_ms(r['p50_us']) + ' / ' + fmt_ms(r['p99_us']) if r else 'skipped'} | |")
    lines.append("")

    # Plots.
    depths = meta["depths"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    for ax, test in zip(axes, ("SET", "GET")):
        for server in SERVERS:
            ys = [get("damselfly-bench", server, test, p) for p in depths]
            xs = [p for p, y in zip(depths, ys) if y]
            ys = [y["rps"] / 1000 for y in ys if y]
            if ys:
                ax.plot(xs, ys, marker="o", color=COLOR[server], label=LABEL[server])
        ax.set_xscale("log", base=2)
        ax.set_xticks(depths)
        ax.set_xticklabels([str(p) for p in depths])
        ax.set_xlabel("pipeline depth")
        ax.set_ylabel("kops/s (median)")
        ax.set_title(f"{test}, {conns} connections")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Throughput by pipeline depth (damselfly-bench)")
    fig.tight_layout()
    fig.savefig(os.path.join(args.images, "throughput_by_pipeline.png"), dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    pct = (("p50_us", "p50"), ("p99_us", "p99"), ("p999_us", "p99.9"))
    for ax, depth in zip(axes, (1, 16)):
        labels, width = [], 0.2
        for ti, test in enumerate(("SET", "GET")):
            for si, server in enumerate(SERVERS):
                m = get("damselfly-bench", server, test, depth)
                if not m:
                    continue
                xs = [i + (ti * 2 + si - 1.5) * width for i in range(len(pct))]
                ax.bar(xs, [m[k] / 1000 for k, _ in pct], width,
                       color=COLOR[server], alpha=1.0 if test == "GET" else 0.55,
                       label=f"{LABEL[server]} {test}")
        ax.set_xticks(range(len(pct)))
        ax.set_xticklabels([name for _, name in pct])
        ax.set_ylabel("ms (median over rounds)")
        ax.set_title(f"pipeline {depth}, {conns} connections")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Latency percentiles (damselfly-bench; time from sending a batch to each reply)")
    fig.tight_layout()
    fig.savefig(os.path.join(args.images, "latency_percentiles.png"), dpi=110)
    plt.close(fig)

    lines += [
        "### Plots",
        "",
        f"![Throughput by pipeline depth]({img_rel}/throughput_by_pipeline.png)",
        "",
        f"![Latency percentiles]({img_rel}/latency_percentiles.png)",
        "",
        "Throughput by server thread count: see [Scaling](#scaling-on-16-cores) below.",
    ]
    splice(args.markdown, "compare.sh", "\n".join(lines))


# MARK: - scaling

def scaling(args):
    rows = load(args.results)
    meta = json.load(open(args.meta))
    med = medians(rows)
    os.makedirs(args.images, exist_ok=True)
    img_rel = os.path.relpath(args.images, os.path.dirname(os.path.abspath(args.markdown)))
    threads = sorted({int(r["server_threads"]) for r in rows})
    tests = []
    for r in rows:
        if r["test"] not in tests:
            tests.append(r["test"])

    by = {}
    for r in rows:
        by.setdefault((r["test"], int(r["server_threads"])), []).append(float(r["rps"]))
    lines = ["### Scaling results", ""] + machine_lines(meta) + [
        f"- generator: damselfly-bench `{meta['generator']}` on CPUs {meta['bench_cpus']}; server on CPUs 0..N-1",
        "- efficiency = throughput at N threads / (N × throughput at 1 thread)",
        "",
        "| test | " + " | ".join(f"{t} thr ops/s (eff.)" for t in threads) + " |",
        "|------|" + "|".join("---:" for _ in threads) + "|",
    ]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for test in tests:
        base = statistics.median(by[(test, threads[0])]) if (test, threads[0]) in by else None
        cells, ys = [], []
        for t in threads:
            vals = by.get((test, t))
            if not vals:
                cells.append("—")
                ys.append(None)
                continue
            v = statistics.median(vals)
            eff = v / (t / threads[0] * base) if base else 0
            cells.append(f"{v:,.0f} ({eff:.2f})")
            ys.append(v / 1000)
        lines.append(f"| {test} | " + " | ".join(cells) + " |")
        xs = [t for t, y in zip(threads, ys) if y is not None]
        ax.plot(xs, [y for y in ys if y is not None], marker="o", label=test)
    ax.set_xlabel("server threads (--proactor_threads)")
    ax.set_ylabel("kops/s")
    ax.set_xticks(threads)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Damselfly throughput by thread count")
    fig.tight_layout()
    fig.savefig(os.path.join(args.images, "scaling.png"), dpi=110)
    plt.close(fig)
    if "redis_rps" in meta:
        lines += ["", f"redis-server (1 thread) on the same machine and load: {meta['redis_rps']}"]
    lines += ["", f"![Scaling]({img_rel}/scaling.png)"]
    splice(args.markdown, "scaling.sh", "\n".join(lines))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["compare", "scaling"])
    p.add_argument("--results", required=True)
    p.add_argument("--meta", required=True)
    p.add_argument("--markdown", required=True)
    p.add_argument("--images", required=True)
    args = p.parse_args()
    {"compare": compare, "scaling": scaling}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
