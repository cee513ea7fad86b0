"""Every benchmark, side by side; writes ``benchmarks/RESULTS.md``.

Run with ``nox -s bench`` (or ``python benchmarks/run.py``; ``--quick`` for
a short smoke run). Never part of the test suite's pass/fail.

1. An origin (``origin.py``: raw asyncio, uvloop when installed) serves
   realistic bodies on 127.0.0.1, pinned to one CPU; each client runs in a
   process of its own pinned to another. Its capacity (1 / CPU per
   request) is checked against the best client's rate first.
2. Client columns (``columns.py``): floor (aiohttp + orjson), a hand-rolled
   httpx loop (default pool, and pool raised to the concurrency), the SDK,
   the SDK with ``http_backend="aiohttp"``; at concurrency 1, 16, 128 and
   512, then the latency-bound regime (20 ms server delay, concurrency 200,
   every pool sized to 200). Columns take turns within each round (the
   order rotates), over ``--rounds`` rounds. Every ratio is taken within a
   round (a column against the floor of the same round) and reported as the
   median and the min–max over rounds.
3. Decode (``decode_bench.py``): bytes → models, no network, the same GC
   settings for every decoder.
4. Fan-out and memory (``fanout_bench.py``): 1,000 caches through
   ``fan_out`` against a raw aiohttp gather; RSS polling 10,000 caches.
5. For each missed target, a cProfile of the SDK in that regime: where its
   CPU goes, by package and by function.

The exporter's capacity (probes per CPU-second of one replica) is
``exporter_bench.py``, run on its own; it writes its own section of
RESULTS.md, which this script keeps when it rewrites the rest.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _bodies import SHARED_DIR, bodies, save  # noqa: E402
from _profile import summary as profile_summary  # noqa: E402

COLUMNS = ["floor", "httpx", "httpx-limits", "sdk", "sdk-aiohttp"]
LABELS = {
    "floor": "aiohttp + orjson.loads (floor)",
    "httpx": "hand-rolled httpx.AsyncClient loop",
    "httpx-limits": "the same, limits raised to the concurrency",
    "sdk": "AsyncAnalytics (default transport)",
    "sdk-aiohttp": 'AsyncAnalytics(http_backend="aiohttp")',
}
CONCURRENCY = [1, 16, 128, 512]
LATENCY_MS = 20.0
LATENCY_CONCURRENCY = 200
FANOUT = ["fanout-aiohttp", "fanout-sdk", "fanout-sdk-aiohttp"]
FANOUT_LABELS = {
    "fanout-aiohttp": "raw aiohttp gather (same concurrency)",
    "fanout-sdk": "fan_out (default transport)",
    "fanout-sdk-aiohttp": 'fan_out(http_backend="aiohttp")',
}


def log(message: str) -> None:
    print(message, flush=True)


def replace_section(path: Path, start: str, end: str, text: str) -> None:
    """Put ``text`` (which begins with ``start`` and ends with ``end``) in place of that
    section of ``path``, or append it; the rest of the file is left as it is."""
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text, current)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    path.write_text(updated.rstrip("\n") + "\n")


# --- the machine ------------------------------------------------------------


def cpus() -> tuple[int | None, int | None]:
    """(origin CPU, client CPU): two different ones where the OS allows pinning."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return allowed[0], allowed[1]


def machine() -> dict[str, str]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions = ", ".join(
        f"{name} {_version(name)}"
        for name in (
            "httpx",
            "httpcore",
            "httpx2",
            "httpcore2",
            "aiohttp",
            "orjson",
            "msgspec",
            "pydantic",
            "uvloop",
        )
    )
    return {
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": f"{model}, {os.cpu_count()} CPUs",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": versions,
    }


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "(not installed)"


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# --- processes --------------------------------------------------------------


@contextmanager
def origin(cpu: int | None) -> Iterator[str]:
    """The origin server running; yields its root URL."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = os.path.join(tmp, "port")
        command = [sys.executable, str(HERE / "origin.py"), port_file]
        command += ["--delay-ms", str(LATENCY_MS)]
        if cpu is not None:
            command += ["--cpu", str(cpu)]
        process = subprocess.Popen(command)
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(port_file):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the origin did not start")
                time.sleep(0.05)
            with open(port_file) as f:
                yield f"http://127.0.0.1:{f.read().strip()}"
        finally:
            process.terminate()
            process.wait(10)


def origin_counters(root: str) -> tuple[int, float]:
    with urllib.request.urlopen(root + "/_origin", timeout=10) as response:
        data = json.load(response)
    return int(data["requests"]), float(data["cpu"])


def run_json(command: Sequence[str], timeout: float = 300) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, *command], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def client_run(
    column: str,
    base: str,
    *,
    concurrency: int,
    cpu: int | None,
    warmup: float,
    duration: float,
    pool: int | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    command = [str(HERE / "columns.py"), column, base, "--concurrency", str(concurrency)]
    command += ["--warmup", str(warmup), "--duration", str(duration)]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    if pool is not None:
        command += ["--pool", str(pool)]
    if profile is not None:
        command += ["--profile", profile]
    return run_json(command)


# --- statistics -------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of the values measured (NaN: nothing measured that round)."""
    measured = [v for v in values if not math.isnan(v)]
    if not measured:
        return dict.fromkeys(("median", "min", "max"), math.nan)
    return {"median": statistics.median(measured), "min": min(measured), "max": max(measured)}


def paired(
    runs: Sequence[dict[str, Any]], others: Sequence[dict[str, Any]], key: str
) -> dict[str, float]:
    """``runs[i][key] / others[i][key]`` for each round ``i``, summarised over rounds."""
    return summary(
        [a[key] / b[key] if b[key] else math.nan for a, b in zip(runs, others, strict=True)]
    )


def rotated(items: Sequence[str], by: int) -> list[str]:
    by %= len(items)
    return [*items[by:], *items[:by]]


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "cpu_us_per_call": summary([r["cpu_us_per_call"] for r in runs]),
        "calls_per_s": summary([r["calls_per_s"] for r in runs]),
        "p50_ms": summary([r["p50_ms"] for r in runs]),
        "p99_ms": summary([r["p99_ms"] for r in runs]),
        "cpu_share": summary([r["cpu_share"] for r in runs]),
        "errors": sum(r["errors"] for r in runs),
        "calls": sum(r["calls"] for r in runs),
        "rounds": len(runs),
    }


# --- the parts --------------------------------------------------------------


def check_origin(
    root: str, cpu: tuple[int | None, int | None], args: argparse.Namespace
) -> dict[str, Any]:
    """The origin's capacity against the floor client at concurrency 128, before measuring."""
    requests0, cpu0 = origin_counters(root)
    result = client_run(
        "floor",
        root + "/s4/api/v1",
        concurrency=128,
        cpu=cpu[1],
        warmup=args.warmup,
        duration=args.duration,
    )
    requests1, cpu1 = origin_counters(root)
    per_request = (cpu1 - cpu0) / max(requests1 - requests0, 1)
    capacity = 1 / per_request if per_request > 0 else float("inf")
    check = {
        "origin_cpu_us_per_request": per_request * 1e6,
        "origin_capacity_per_s": capacity,
        "best_client_per_s": result["calls_per_s"],
        "ratio": capacity / max(result["calls_per_s"], 1e-9),
    }
    verdict = "OK" if check["ratio"] >= 3 else "WARNING: below 3×"
    log(
        f"origin: {check['origin_cpu_us_per_request']:.1f} µs CPU/request → capacity "
        f"{capacity:,.0f}/s; best client (floor, c=128) {result['calls_per_s']:,.0f}/s; "
        f"{check['ratio']:.1f}× — {verdict}"
    )
    return check


REGIMES: list[tuple[str, str, int, int | None]] = [
    *((f"c{c}", "/s4/api/v1", c, None) for c in CONCURRENCY),
    ("latency", "/slow/api/v1", LATENCY_CONCURRENCY, LATENCY_CONCURRENCY),
]


def client_matrix(
    root: str, cpu: tuple[int | None, int | None], args: argparse.Namespace, loads: list[float]
) -> dict[str, Any]:
    """Every column in every regime, ``args.rounds`` times; ratios paired within rounds."""
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for round_number in range(args.rounds):
        loads.append(os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan)
        for name, path, concurrency, pool in REGIMES:
            for column in rotated(COLUMNS, round_number):
                result = client_run(
                    column,
                    root + path,
                    concurrency=concurrency,
                    cpu=cpu[1],
                    warmup=args.warmup,
                    duration=args.duration,
                    pool=pool,
                )
                runs.setdefault(name, {}).setdefault(column, []).append(result)
                log(
                    f"round {round_number + 1}/{args.rounds} {name:>7} {column:<12} "
                    f"{result['cpu_us_per_call']:8.0f} µs/call {result['calls_per_s']:8.0f}/s "
                    f"p50 {result['p50_ms']:7.1f} ms errors {result['errors']}"
                )
    out: dict[str, Any] = {}
    for name, by_column in runs.items():
        floor, httpx = by_column["floor"], by_column["httpx"]
        out[name] = {
            column: {
                **summarize_runs(results),
                "cpu_vs_floor": paired(results, floor, "cpu_us_per_call"),
                "cpu_vs_httpx": paired(results, httpx, "cpu_us_per_call"),
                "rate_vs_floor": paired(results, floor, "calls_per_s"),
            }
            for column, results in by_column.items()
        }
    return out


def decode(cpu: int | None, args: argparse.Namespace) -> dict[str, Any]:
    command = [str(HERE / "decode_bench.py"), "--repeat", str(max(3, args.rounds)), "--profile"]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    result = run_json(command, timeout=900)
    for payload, data in result.items():
        for mode, seconds in data["seconds"].items():
            log(
                f"decode {payload} ({mode}): "
                + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in seconds.items())
            )
    return result


def fanout(root: str, cpu: int | None, args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for round_number in range(args.fanout_rounds):
        for mode in rotated(FANOUT, round_number):
            runs.setdefault(mode, []).append(fanout_run(root, cpu, args, mode))
            result = runs[mode][-1]
            log(
                f"fan-out round {round_number + 1} {mode:<19} {result['wall']:.2f} s wall, "
                f"{result['cpu']:.2f} s CPU, errors {result['errors']}"
            )
    base = runs["fanout-aiohttp"]
    return {
        mode: {
            "wall": summary([r["wall"] for r in results]),
            "cpu": summary([r["cpu"] for r in results]),
            "wall_vs_aiohttp": paired(results, base, "wall"),
            "errors": sum(r["errors"] for r in results),
        }
        for mode, results in runs.items()
    }


def fanout_run(
    root: str, cpu: int | None, args: argparse.Namespace, mode: str, profile: str | None = None
) -> dict[str, Any]:
    command = [str(HERE / "fanout_bench.py"), mode, root + "/s4/api/v1"]
    command += ["--caches", str(args.caches), "--concurrency", "100"]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    if profile is not None:
        command += ["--profile", profile]
    return run_json(command)


def memory(root: str, cpu: int | None, args: argparse.Namespace, per_call: float) -> dict[str, Any]:
    # Each round must finish before the next is due: give it a third more.
    interval = max(2.0, 1.33 * per_call * args.poll_caches)
    command = [str(HERE / "fanout_bench.py"), "rss", root + "/s4/api/v1"]
    command += ["--caches", str(args.poll_caches), "--concurrency", "100"]
    command += ["--interval", f"{interval:.1f}", "--rounds", "4"]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    result = run_json(command, timeout=60 + 4 * interval)
    result["interval"] = interval
    result["caches"] = args.poll_caches
    for i, r in enumerate(result["rounds"], 1):
        log(
            f"poll round {i}: ok {r['ok']} failed {r['failed']} pending {r['pending']}, "
            f"peak RSS {r['peak_rss'] / 2**20:.1f} MiB, RSS {r['rss'] / 2**20:.1f} MiB"
        )
    return result


# --- targets (issue 14) -----------------------------------------------------

#: (key, measure, today as the issue measured it, target text, limit, at least)
TARGETS: list[tuple[str, str, str, str, float, bool]] = [
    (
        "aiohttp-floor",
        "SDK + aiohttp backend ÷ raw aiohttp floor, CPU/call, c=128",
        "1.73–1.86×",
        "≤ 1.1×",
        1.1,
        False,
    ),
    ("default-floor", "SDK default ÷ floor, CPU/call, c=128", "3.6–3.9×", "≤ 2.2×", 2.2, False),
    (
        "default-httpx-c1",
        "SDK default ÷ hand-rolled httpx, CPU/call, c=1",
        "0.72×",
        "≤ 0.5×",
        0.5,
        False,
    ),
    (
        "latency-share",
        f"latency-bound ({LATENCY_MS:.0f} ms, c={LATENCY_CONCURRENCY}), SDK + aiohttp, "
        "share of the floor's calls/s",
        "~54 %",
        "≥ 90 %",
        0.9,
        True,
    ),
    (
        "fanout-aiohttp",
        "`fan_out` 1,000 caches, wall ÷ raw aiohttp gather, aiohttp backend",
        "2.5×",
        "≤ 1.3×",
        1.3,
        False,
    ),
    (
        "fanout-default",
        "`fan_out` 1,000 caches, wall ÷ raw aiohttp gather, default backend",
        "4.4×",
        "≤ 2.5×",
        2.5,
        False,
    ),
    (
        "decode-stats",
        "decode stats ×64 ÷ pydantic v2 (fair), CPU",
        "1.55–1.81×",
        "≤ 1.0×",
        1.0,
        False,
    ),
    (
        "decode-history",
        "decode history ×10,000 ÷ pydantic v2 (fair), CPU",
        "1.0–1.3×",
        "≤ 1.0×",
        1.0,
        False,
    ),
]

#: What to profile when a target is missed: a client column in a regime, a
#: fan-out mode, or a decode payload.
PROFILE_FOR: dict[str, tuple[str, str]] = {
    "aiohttp-floor": ("client", "sdk-aiohttp/c128"),
    "default-floor": ("client", "sdk/c128"),
    "default-httpx-c1": ("client", "sdk/c1"),
    "latency-share": ("client", "sdk-aiohttp/latency"),
    "fanout-aiohttp": ("fanout", "fanout-sdk-aiohttp"),
    "fanout-default": ("fanout", "fanout-sdk"),
    "decode-stats": ("decode", "stats"),
    "decode-history": ("decode", "history"),
}


def _decode_ratio(results: dict[str, Any], payload: str) -> dict[str, float]:
    """SDK ÷ pydantic under the GC mode that is worse for the SDK (both are fair)."""
    by_mode = results["decode"][payload]["ratios"]
    return max((modes["pydantic"] for modes in by_mode.values()), key=lambda s: s["median"])


def measured(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Each target's figure: median, min and max over rounds."""
    clients = results["clients"]
    out = {
        "aiohttp-floor": clients["c128"]["sdk-aiohttp"]["cpu_vs_floor"],
        "default-floor": clients["c128"]["sdk"]["cpu_vs_floor"],
        "default-httpx-c1": clients["c1"]["sdk"]["cpu_vs_httpx"],
        "latency-share": clients["latency"]["sdk-aiohttp"]["rate_vs_floor"],
        "decode-stats": _decode_ratio(results, "stats"),
        "decode-history": _decode_ratio(results, "history"),
    }
    if "fanout" in results:
        out["fanout-aiohttp"] = results["fanout"]["fanout-sdk-aiohttp"]["wall_vs_aiohttp"]
        out["fanout-default"] = results["fanout"]["fanout-sdk"]["wall_vs_aiohttp"]
    return out


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, str, dict[str, float], bool]]:
    """(key, measure, today, target, measured summary, met) for every target measured."""
    figures = measured(results)
    rows = []
    for key, what, today, goal, limit, at_least in TARGETS:
        if key not in figures:
            continue
        s = figures[key]
        met = s["median"] >= limit if at_least else s["median"] <= limit
        rows.append((key, what, today, goal, s, met))
    return rows


def _figure(key: str, s: dict[str, float]) -> str:
    return _share(s) if key == "latency-share" else _ratio(s)


def profile_misses(
    root: str, cpu: tuple[int | None, int | None], args: argparse.Namespace, results: dict[str, Any]
) -> dict[str, Any]:
    """A cProfile for each missed target (see PROFILE_FOR), summarised."""
    out: dict[str, Any] = {}
    regimes = {name: (path, c, pool) for name, path, c, pool in REGIMES}
    for key, *_, met in targets(results):
        if met:
            continue
        kind, what = PROFILE_FOR[key]
        if kind == "decode":
            out[key] = {"what": f"the SDK decoding {what}", **results["decode"][what]["profile"]}
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "profile")
            if kind == "client":
                column, regime = what.split("/")
                base, concurrency, pool = regimes[regime]
                client_run(
                    column,
                    root + base,
                    concurrency=concurrency,
                    cpu=cpu[1],
                    warmup=args.warmup,
                    duration=args.duration,
                    pool=pool,
                    profile=path,
                )
                shown = "latency-bound" if regime == "latency" else f"c={concurrency}"
                label = f"{LABELS[column]}, {shown} (the measured window)"
            else:
                fanout_run(root, cpu[1], args, what, profile=path)
                label = f"{FANOUT_LABELS[what]}, {args.caches:,} caches (the whole run)"
            out[key] = {"what": label, **profile_summary(pstats.Stats(path))}
        log(f"profiled {key}: {out[key]['what']}")
    return out


# --- the report -------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def _latency(s: dict[str, float]) -> str:
    # No call both started and ended inside the window (they all waited too long).
    return "—" if math.isnan(s["median"]) else f"{s['median']:.1f}"


def _spread(s: dict[str, float], fmt: str = "{:,.0f}") -> str:
    if math.isnan(s["median"]):
        return "—"
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"


def _ratio(s: dict[str, float]) -> str:
    return _spread(s, "{:.2f}").replace(" (", "× (", 1) if not math.isnan(s["median"]) else "—"


def _share(s: dict[str, float]) -> str:
    return _spread(s, "{:.0%}")


DECODER_LABELS = {
    "sdk": "SDK (msgspec path, `speedups` extra)",
    "sdk-cattrs": "SDK without msgspec (orjson + cattrs hooks)",
    "msgspec": "msgspec Structs, lax datetimes",
    "pydantic": "pydantic v2 `validate_json`",
    "orjson": "`orjson.loads` alone (no models)",
}


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    m = results["machine"]
    out: list[str] = []
    add = out.append
    add("# Benchmarks\n")
    add(
        "Generated by `benchmarks/run.py` (`nox -s bench`) — do not edit by hand; rerun it. "
        "CPU figures are `time.process_time()` of the client process, so they count the "
        "client's own work whatever else the machine does; rates, latencies and wall times "
        "are wall-clock and suffer from a busy machine. Every ratio is taken within one "
        "round (columns take turns, the order rotating) and given as the median and the "
        "min–max over rounds.\n"
    )
    add("## The run\n")
    add(f"- Date: {results['date']}")
    add(f"- Command: `{results['command']}`")
    add(f"- Machine: {m['system']}; {m['cpu']}; {m['python']}")
    add(f"- Packages: {m['packages']}")
    add(f"- Pinning: {results['pinning']}")
    loads = [x for x in results.get("load_rounds", []) if not math.isnan(x)]
    during = f"{min(loads):.2f}–{max(loads):.2f}" if loads else "n/a"
    add(
        f"- Load (1-minute load average; the machine has {os.cpu_count()} CPUs and may be "
        f"shared): {results['load_start'].split()[0]} at the start, {during} at the start "
        f"of each client round, {results['load_end'].split()[0]} at the end "
        f"(1, 5, 15 min at the end: {results['load_end']})"
    )
    add(f"- Bodies: {results['bodies']}")
    o = results["origin"]
    add(
        f"- Origin: {o['origin_cpu_us_per_request']:.1f} µs CPU per request → capacity "
        f"{o['origin_capacity_per_s']:,.0f} calls/s, {o['ratio']:.1f}× the best client's rate "
        f"({o['best_client_per_s']:,.0f}/s; it should be ≥ 3×)"
    )
    add(f"- Rounds: {args.rounds} (clients), {args.fanout_rounds} (fan-out)")
    add(f"- Whole run: {results['elapsed']:.0f} s\n")

    add("## What was compared\n")
    add(
        "- **Clients** (one process each, `stats()` of a 4-server cache in a loop by N "
        "tasks): " + "; ".join(f"`{c}`: {LABELS[c]}" for c in COLUMNS) + ". Every column has "
        "its default pool (100 connections) except `httpx-limits` (pool = concurrency); in "
        "the latency-bound regime every pool has "
        f"{LATENCY_CONCURRENCY} connections."
    )
    add(
        "- **Decode** (bytes → models, no network; history sorted by time in every column, "
        "as `history()` does): "
        + "; ".join(f"`{k}`: {v}" for k, v in DECODER_LABELS.items())
        + ". Each decoder runs with the garbage collector on (the SDK's own pause for big "
        "bodies switched off) and with it paused for all; the target takes the mode that "
        "is worse for the SDK."
    )
    add(
        f"- **Fan-out**: stats of {args.caches:,} caches at concurrency 100: `fan_out` "
        "against a raw aiohttp `gather` with a semaphore.\n"
    )

    add("## Targets (issue 14)\n")
    add("| measure | today (issue) | target | measured: median (min–max) | met |")
    add("|---|---|---|---|---|")
    for key, what, today, goal, s, met in targets(results):
        add(f"| {what} | {today} | {goal} | {_figure(key, s)} | {'yes' if met else '**no**'} |")
    add("")
    if "memory" in results:
        r = results["memory"]["rounds"]
        growth = r[2]["peak_rss"] - r[1]["peak_rss"]
        add(
            f"Other check: `watch()` over {results['memory']['caches']:,} caches, peak RSS "
            f"growth from round 2 to 3: {growth / 1e6:.2f} MB (earlier target < 1 MB: "
            f"{'met' if growth < 1e6 else '**missed**'}).\n"
        )

    profiles = results.get("profiles", {})
    if profiles:
        add("## Where the CPU goes, for each missed target\n")
        add(
            "cProfile of the SDK in the regime of the miss (a separate run; cProfile slows "
            "Python code more than C code, so shares are indicative). Own time by package, "
            "then the functions with the most own time.\n"
        )
        whats = {key: what for key, what, *_ in TARGETS}
        for key, prof in profiles.items():
            add(f"### {whats[key]}\n")
            add(f"Profiled: {prof['what']}.\n")
            add(
                "Packages: "
                + ", ".join(
                    f"{p['package']} {p['own_share']:.0%}"
                    for p in prof["packages"][:8]
                    if p["own_share"] >= 0.01
                )
                + ".\n"
            )
            add("| function | calls (a coroutine counts each resume) | own | cumulative |")
            add("|---|---|---|---|")
            for f in prof["functions"][:10]:
                name = f["function"].replace("|", "\\|")
                add(
                    f"| `{name}` | {f['calls']:,} | {f['own_share']:.1%} | "
                    f"{f['cumulative_share']:.1%} |"
                )
            add("")

    add("## Client columns\n")
    add(
        "CPU µs per call and calls/s: median (min–max) over rounds. ÷ floor and ÷ httpx: "
        "the column's CPU per call over the floor's / the hand-rolled httpx loop's in the "
        "same round. Latency: of the calls that started and ended inside the measured "
        "window (— when none did).\n"
    )
    for c in CONCURRENCY:
        add(f"### Concurrency {c}\n")
        _client_table(add, results["clients"][f"c{c}"])
    limit = LATENCY_CONCURRENCY / (LATENCY_MS / 1000)
    add(f"### Latency-bound: {LATENCY_MS:.0f} ms server delay, concurrency {LATENCY_CONCURRENCY}\n")
    add(
        f"Every pool sized to {LATENCY_CONCURRENCY} connections. Concurrency ÷ latency would "
        f"allow {limit:,.0f} calls/s, but only a client spending less than {1e6 / limit:.0f} µs "
        "of CPU per call could reach it, and none here does: the target is a share of the "
        "floor's own calls/s in the same round.\n"
    )
    add(
        "| column | calls/s | ÷ floor's calls/s | of concurrency ÷ latency | CPU µs/call "
        "| CPU busy | p50 ms | p99 ms | errors |"
    )
    add("|---|---|---|---|---|---|---|---|---|")
    for column in COLUMNS:
        r = results["clients"]["latency"][column]
        add(
            f"| {LABELS[column]} | {_spread(r['calls_per_s'])} | {_share(r['rate_vs_floor'])} | "
            f"{r['calls_per_s']['median'] / limit:.0%} | {_spread(r['cpu_us_per_call'])} | "
            f"{r['cpu_share']['median']:.0%} | {_latency(r['p50_ms'])} | "
            f"{_latency(r['p99_ms'])} | {r['errors']} |"
        )
    add("")

    add("## Decode (bytes → models, no network)\n")
    add(
        "CPU ms per decode, median over rounds; SDK ÷ decoder: median (min–max) of the "
        "per-round ratios.\n"
    )
    names = {"stats": "stats, 64 servers", "history": "history, 10,000 records, sorted"}
    for payload, data in results["decode"].items():
        add(f"### {names.get(payload, payload)} ({data['bytes'] / 1024:,.0f} KiB)\n")
        add("| decoder | ms, GC on | ms, GC paused | SDK ÷ this, GC on | SDK ÷ this, GC paused |")
        add("|---|---|---|---|---|")
        for name, label in DECODER_LABELS.items():
            on, paused = data["seconds"]["gc-on"][name], data["seconds"]["gc-paused"][name]
            if name == "sdk":
                ratios = "— | —"
            else:
                ratios = (
                    f"{_ratio(data['ratios']['gc-on'][name])} | "
                    f"{_ratio(data['ratios']['gc-paused'][name])}"
                )
            add(f"| {label} | {_ms(on)} | {_ms(paused)} | {ratios} |")
        add("")

    if "fanout" in results:
        add(f"## Fan-out: stats of {args.caches:,} caches × 4 servers, concurrency 100\n")
        add(f"Median (min–max) of {args.fanout_rounds} rounds, each in a fresh process.\n")
        add("| how | wall s | ÷ raw aiohttp (per round) | CPU s | errors |")
        add("|---|---|---|---|---|")
        for mode in FANOUT:
            r = results["fanout"][mode]
            add(
                f"| {FANOUT_LABELS[mode]} | {_spread(r['wall'], '{:.2f}')} | "
                f"{_ratio(r['wall_vs_aiohttp'])} | {_spread(r['cpu'], '{:.2f}')} | "
                f"{r['errors']} |"
            )
        add("")
    if "memory" in results:
        mem = results["memory"]
        add(f"## Memory: `watch()` over {args.poll_caches:,} caches, 4 rounds\n")
        add(
            f"Interval {mem['interval']:.1f} s (long enough for a round to finish); the loop "
            "drops each round after reading it, as an application would. Objects: what the "
            "garbage collector tracks after the round.\n"
        )
        add("| round | ok | failed | pending | peak RSS MiB | RSS MiB | objects |")
        add("|---|---|---|---|---|---|---|")
        for i, r in enumerate(mem["rounds"], 1):
            add(
                f"| {i} | {r['ok']} | {r['failed']} | {r['pending']} | "
                f"{r['peak_rss'] / 2**20:.1f} | {r['rss'] / 2**20:.1f} | {r['objects']:,} |"
            )
        add("")
    return "\n".join(out)


def _client_table(add: Any, rows: dict[str, Any]) -> None:
    add("| column | CPU µs/call | ÷ floor | ÷ httpx | calls/s | p50 ms | p99 ms | errors |")
    add("|---|---|---|---|---|---|---|---|")
    for column in COLUMNS:
        r = rows[column]
        add(
            f"| {LABELS[column]} | {_spread(r['cpu_us_per_call'])} | "
            f"{_ratio(r['cpu_vs_floor'])} | {_ratio(r['cpu_vs_httpx'])} | "
            f"{_spread(r['calls_per_s'])} | {_latency(r['p50_ms'])} | "
            f"{_latency(r['p99_ms'])} | {r['errors']} |"
        )
    add("")


# Sections other benchmarks write into RESULTS.md (exporter_bench.py), kept as they are.
_KEPT = re.compile(r"<!-- ([\w-]+): generated by .*? -->.*?<!-- /\1 -->", re.S)


def kept_sections(path: Path) -> str:
    """The sections of ``path`` that other scripts generate, to carry over unchanged."""
    if not path.exists():
        return ""
    return "".join(f"\n\n{match.group(0)}" for match in _KEPT.finditer(path.read_text()))


# --- main -------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=float, default=0.4)
    parser.add_argument("--duration", type=float, default=1.2)
    parser.add_argument("--caches", type=int, default=1000)
    parser.add_argument("--fanout-rounds", type=int, default=3)
    parser.add_argument("--poll-caches", type=int, default=10_000)
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--no-profiles", action="store_true", help="skip profiling misses")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--json", default=None, help="also write the raw results here")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 2, 0.5, 0.2
        args.fanout_rounds, args.caches, args.poll_caches = 2, 200, 1000

    started = time.monotonic()
    origin_cpu, client_cpu = cpus()
    if origin_cpu is not None and hasattr(os, "sched_setaffinity"):
        # This process mostly waits; keep it off the client's CPU.
        os.sched_setaffinity(0, {origin_cpu})
    # Recorded (or generated) once; the origin and the decode benchmark read them.
    found, source = bodies()
    shared = tempfile.mkdtemp(prefix="memcachier-bench-")
    save(found, source, shared)
    os.environ[SHARED_DIR] = shared
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python benchmarks/run.py " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "pinning": (
            f"origin on CPU {origin_cpu}, each client on CPU {client_cpu} (os.sched_setaffinity)"
            if client_cpu is not None
            else "not available on this OS"
        ),
        "load_start": load(),
        "load_rounds": [],
        "bodies": source,
    }
    log(f"{results['machine']['cpu']}; load {results['load_start']}; bodies {source}")
    cpu = (origin_cpu, client_cpu)
    try:
        with origin(origin_cpu) as root:
            results["origin"] = check_origin(root, cpu, args)
            results["clients"] = client_matrix(root, cpu, args, results["load_rounds"])
            results["decode"] = decode(client_cpu, args)
            results["fanout"] = fanout(root, client_cpu, args)
            per_call = results["fanout"]["fanout-sdk"]["wall"]["median"] / args.caches
            results["memory"] = memory(root, client_cpu, args, per_call)
            if not args.no_profiles:
                results["profiles"] = profile_misses(root, cpu, args, results)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    results["load_end"] = load()
    results["elapsed"] = time.monotonic() - started
    Path(args.out).write_text(report(results, args) + kept_sections(Path(args.out)) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    log(f"wrote {args.out} in {results['elapsed']:.0f} s")
    for key, what, _, goal, s, met in targets(results):
        log(f"  {'met ' if met else 'MISS'} {what}: {_figure(key, s)} (target {goal})")


if __name__ == "__main__":
    main()
