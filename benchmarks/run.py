"""Every benchmark, side by side; writes ``benchmarks/RESULTS.md``.

Run with ``nox -s bench`` (or ``python benchmarks/run.py``; ``--quick`` for
a short smoke run). Never part of the test suite's pass/fail.

1. An origin (``origin.py``: raw asyncio, uvloop when installed) serves
   realistic bodies on 127.0.0.1, pinned to one CPU; each client runs in a
   process of its own pinned to another. Its capacity (1 / CPU per
   request) is checked against the best client's rate first.
2. Client columns (``columns.py``): floor (aiohttp + orjson), a hand-rolled
   httpx loop, the SDK, the SDK with ``http_backend="aiohttp"``; at
   concurrency 16, 128 and 512, then the latency-bound regime (20 ms
   server delay, concurrency 200, every pool sized to 200). Columns take
   turns within each round (the order rotates), over ``--rounds`` rounds;
   medians and min–max spreads are reported.
3. Decode (``decode_bench.py``): bytes → models, no network.
4. Fan-out and memory (``fanout_bench.py``): 1,000 caches through
   ``fan_out`` against a raw aiohttp gather; RSS polling 10,000 caches.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
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

COLUMNS = ["floor", "httpx", "sdk", "sdk-aiohttp"]
LABELS = {
    "floor": "aiohttp + orjson.loads (floor)",
    "httpx": "hand-rolled httpx.AsyncClient loop",
    "sdk": "AsyncAnalytics (default transport)",
    "sdk-aiohttp": 'AsyncAnalytics(http_backend="aiohttp")',
}
CONCURRENCY = [16, 128, 512]
LATENCY_MS = 20.0
LATENCY_CONCURRENCY = 200
FANOUT = ["fanout-aiohttp", "fanout-sdk", "fanout-sdk-aiohttp"]
FANOUT_LABELS = {
    "fanout-aiohttp": "raw aiohttp gather (same concurrency)",
    "fanout-sdk": "fan_out (default transport)",
    "fanout-sdk-aiohttp": "fan_out(transport=AiohttpTransport())",
}


def log(message: str) -> None:
    print(message, flush=True)


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
        for name in ("httpx", "httpcore", "aiohttp", "orjson", "msgspec", "pydantic", "uvloop")
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
) -> dict[str, Any]:
    command = [str(HERE / "columns.py"), column, base, "--concurrency", str(concurrency)]
    command += ["--warmup", str(warmup), "--duration", str(duration)]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    if pool is not None:
        command += ["--pool", str(pool)]
    return run_json(command)


# --- statistics -------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _latency_summary(values: Sequence[float]) -> dict[str, float]:
    measured = [v for v in values if not math.isnan(v)]
    return summary(measured) if measured else dict.fromkeys(("median", "min", "max"), math.nan)


def rotated(items: Sequence[str], by: int) -> list[str]:
    by %= len(items)
    return [*items[by:], *items[:by]]


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "cpu_us_per_call": summary([r["cpu_us_per_call"] for r in runs]),
        "calls_per_s": summary([r["calls_per_s"] for r in runs]),
        "p50_ms": _latency_summary([r["p50_ms"] for r in runs]),
        "p99_ms": _latency_summary([r["p99_ms"] for r in runs]),
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


def client_matrix(
    root: str, cpu: tuple[int | None, int | None], args: argparse.Namespace
) -> dict[str, Any]:
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    regimes: list[tuple[str, str, int, int | None]] = [
        (f"c{c}", root + "/s4/api/v1", c, None) for c in CONCURRENCY
    ]
    regimes.append(("latency", root + "/slow/api/v1", LATENCY_CONCURRENCY, LATENCY_CONCURRENCY))
    for round_number in range(args.rounds):
        for name, base, concurrency, pool in regimes:
            for column in rotated(COLUMNS, round_number):
                result = client_run(
                    column,
                    base,
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
    return {
        name: {column: summarize_runs(results) for column, results in by_column.items()}
        for name, by_column in runs.items()
    }


def decode(cpu: int | None, args: argparse.Namespace) -> dict[str, Any]:
    command = [str(HERE / "decode_bench.py"), "--repeat", str(max(3, args.rounds))]
    if cpu is not None:
        command += ["--cpu", str(cpu)]
    result = run_json(command, timeout=600)
    for payload, data in result.items():
        seconds = data["seconds"]
        log(f"decode {payload}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in seconds.items()))
    return result


def fanout(root: str, cpu: int | None, args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for round_number in range(args.fanout_rounds):
        for mode in rotated(FANOUT, round_number):
            command = [str(HERE / "fanout_bench.py"), mode, root + "/s4/api/v1"]
            command += ["--caches", str(args.caches), "--concurrency", "100"]
            if cpu is not None:
                command += ["--cpu", str(cpu)]
            result = run_json(command)
            runs.setdefault(mode, []).append(result)
            log(
                f"fan-out round {round_number + 1} {mode:<19} {result['wall']:.2f} s wall, "
                f"{result['cpu']:.2f} s CPU, errors {result['errors']}"
            )
    return {
        mode: {
            "wall": summary([r["wall"] for r in results]),
            "cpu": summary([r["cpu"] for r in results]),
            "errors": sum(r["errors"] for r in results),
        }
        for mode, results in runs.items()
    }


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


# --- the report -------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def _latency(s: dict[str, float]) -> str:
    # No call both started and ended inside the window (they all waited too long).
    return "—" if math.isnan(s["median"]) else f"{s['median']:.1f}"


def _spread(s: dict[str, float], fmt: str = "{:,.0f}") -> str:
    return f"{fmt.format(s['median'])} ({fmt.format(s['min'])}–{fmt.format(s['max'])})"


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    rows: list[tuple[str, str, bool]] = []
    clients = results["clients"]
    c128 = clients["c128"]

    def cpu(column: str) -> float:
        return float(c128[column]["cpu_us_per_call"]["median"])

    ratio = cpu("sdk") / cpu("httpx")
    rows.append(
        (
            "SDK default transport, c=128: CPU/call ≤ 0.5× hand-rolled httpx",
            f"{ratio:.2f}×",
            ratio <= 0.5,
        )
    )
    ratio = cpu("sdk-aiohttp") / cpu("floor")
    rows.append(
        ("SDK + aiohttp transport, c=128: CPU/call ≤ 2× floor", f"{ratio:.2f}×", ratio <= 2)
    )
    for payload, data in results["decode"].items():
        s = data["seconds"]
        vs_pydantic = s["sdk"] / s["pydantic"]
        vs_msgspec = s["sdk"] / s["msgspec"]
        rows.append(
            (
                f"decode {payload}: no slower than pydantic v2",
                f"{vs_pydantic:.2f}×",
                vs_pydantic <= 1,
            )
        )
        rows.append((f"decode {payload}: within 4× msgspec", f"{vs_msgspec:.2f}×", vs_msgspec <= 4))
    limit = LATENCY_CONCURRENCY / (LATENCY_MS / 1000)
    for column in ("sdk", "sdk-aiohttp"):
        achieved = clients["latency"][column]["calls_per_s"]["median"] / limit
        rows.append(
            (
                f"latency-bound ({LABELS[column]}): ≥ 90 % of {limit:,.0f} calls/s",
                f"{achieved:.0%}",
                achieved >= 0.9,
            )
        )
    if "fanout" in results:
        f = results["fanout"]
        base = f["fanout-aiohttp"]["wall"]["median"]
        for mode in ("fanout-sdk", "fanout-sdk-aiohttp"):
            ratio = f[mode]["wall"]["median"] / base
            rows.append(
                (
                    f"{FANOUT_LABELS[mode]}: wall ≤ 1.5× raw aiohttp gather",
                    f"{ratio:.2f}×",
                    ratio <= 1.5,
                )
            )
    if "memory" in results:
        r = results["memory"]["rounds"]
        growth = r[2]["peak_rss"] - r[1]["peak_rss"]
        rows.append(
            (
                f"watch(), {results['memory']['caches']:,} caches: "
                "peak RSS growth round 2 → 3 < 1 MB",
                f"{growth / 1e6:.2f} MB",
                growth < 1e6,
            )
        )
    return rows


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    m = results["machine"]
    out: list[str] = []
    add = out.append
    add("# Benchmarks\n")
    add(
        "Generated by `benchmarks/run.py` — do not edit by hand; rerun it. "
        "CPU figures are `time.process_time()` of the client process, so they "
        "count the client's work whatever else the machine does; rates and "
        "latencies are wall-clock and suffer from a busy machine.\n"
    )
    add(f"- Date: {results['date']}")
    add(f"- Command: `{results['command']}`")
    add(f"- Machine: {m['system']}; {m['cpu']}; {m['python']}")
    add(f"- Packages: {m['packages']}")
    add(f"- Pinning: {results['pinning']}")
    add(
        f"- Load average (1, 5, 15 min): {results['load_start']} at start, "
        f"{results['load_end']} at end"
    )
    add(f"- Bodies: {results['bodies']}")
    o = results["origin"]
    add(
        f"- Origin: {o['origin_cpu_us_per_request']:.1f} µs CPU per request → capacity "
        f"{o['origin_capacity_per_s']:,.0f} calls/s, {o['ratio']:.1f}× the best client's rate "
        f"({o['best_client_per_s']:,.0f}/s; the target is ≥ 3×)"
    )
    add(f"- Whole run: {results['elapsed']:.0f} s\n")

    add("## Targets\n")
    add("| target | measured | met |")
    add("|---|---|---|")
    for what, measured, met in targets(results):
        add(f"| {what} | {measured} | {'yes' if met else '**no**'} |")
    add("")

    add("## Client columns\n")
    add(
        f"`stats()` of a 4-server cache, {args.rounds} rounds, columns in turn (order rotating); "
        "each cell: median (min–max over rounds). ÷ floor: the column's median CPU per call "
        "over the floor's. Every column has its default pool (100 connections). "
        "Latency: of the calls that started and ended inside the measured window "
        "(— when none did).\n"
    )
    for c in CONCURRENCY:
        add(f"### Concurrency {c}\n")
        _client_table(add, results["clients"][f"c{c}"])
    limit = LATENCY_CONCURRENCY / (LATENCY_MS / 1000)
    add(f"### Latency-bound: {LATENCY_MS:.0f} ms server delay, concurrency {LATENCY_CONCURRENCY}\n")
    add(
        f"Every pool sized to {LATENCY_CONCURRENCY} connections. The limit is concurrency ÷ "
        f"latency = {limit:,.0f} calls/s; a client reaches it only if a call costs it less "
        f"than {1e6 / limit:.0f} µs of CPU.\n"
    )
    add("| column | calls/s | of the limit | CPU µs/call | CPU busy | p50 ms | p99 ms | errors |")
    add("|---|---|---|---|---|---|---|---|")
    for column in COLUMNS:
        r = results["clients"]["latency"][column]
        add(
            f"| {LABELS[column]} | {_spread(r['calls_per_s'])} | "
            f"{r['calls_per_s']['median'] / limit:.0%} | {_spread(r['cpu_us_per_call'])} | "
            f"{r['cpu_share']['median']:.0%} | {_latency(r['p50_ms'])} | "
            f"{_latency(r['p99_ms'])} | {r['errors']} |"
        )
    add("")

    add("## Decode (bytes → models, no network)\n")
    add(
        "CPU time per decode, best of the rounds. sdk: `memcachier_async._convert.decode` "
        "(orjson + the strict cattrs converter, frozen attrs models with datetimes); msgspec: "
        "`msgspec.json.Decoder(type=...)` into Structs plus the same datetime conversions; "
        "pydantic: v2 `TypeAdapter.validate_json`, same output types; "
        "orjson: `orjson.loads` alone.\n"
    )
    add(
        "| payload | size | sdk ms | msgspec ms | pydantic ms | orjson.loads ms "
        "| sdk ÷ msgspec | sdk ÷ pydantic |"
    )
    add("|---|---|---|---|---|---|---|---|")
    names = {"stats": "stats, 64 servers", "history": "history, 10,000 records"}
    for payload, data in results["decode"].items():
        s = data["seconds"]
        add(
            f"| {names.get(payload, payload)} | {data['bytes'] / 1024:,.0f} KiB | "
            f"{_ms(s['sdk'])} | {_ms(s['msgspec'])} | {_ms(s['pydantic'])} | {_ms(s['orjson'])} | "
            f"{s['sdk'] / s['msgspec']:.2f}× | {s['sdk'] / s['pydantic']:.2f}× |"
        )
    add("")

    if "fanout" in results:
        add(f"## Fan-out: stats of {args.caches:,} caches × 4 servers, concurrency 100\n")
        add(f"Median (min–max) of {args.fanout_rounds} rounds, each in a fresh process.\n")
        add("| how | wall s | ÷ raw aiohttp | CPU s | errors |")
        add("|---|---|---|---|---|")
        base = results["fanout"]["fanout-aiohttp"]["wall"]["median"]
        for mode in FANOUT:
            r = results["fanout"][mode]
            add(
                f"| {FANOUT_LABELS[mode]} | {_spread(r['wall'], '{:.2f}')} | "
                f"{r['wall']['median'] / base:.2f}× | {_spread(r['cpu'], '{:.2f}')} | "
                f"{r['errors']} |"
            )
        add("")
    if "memory" in results:
        mem = results["memory"]
        add(f"## Memory: `watch()` over {args.poll_caches:,} caches, 4 rounds\n")
        add(
            f"Interval {mem['interval']:.1f} s (long enough for a round to finish); the loop "
            "drops each round after reading it, as an application would. The target is the "
            "growth of peak RSS from round 2 to 3; round 4 shows whether it goes on. "
            "Objects: what the garbage collector tracks after the round.\n"
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
    floor = rows["floor"]["cpu_us_per_call"]["median"]
    add("| column | CPU µs/call | ÷ floor | calls/s | p50 ms | p99 ms | errors |")
    add("|---|---|---|---|---|---|---|")
    for column in COLUMNS:
        r = rows[column]
        add(
            f"| {LABELS[column]} | {_spread(r['cpu_us_per_call'])} | "
            f"{r['cpu_us_per_call']['median'] / floor:.2f}× | {_spread(r['calls_per_s'])} | "
            f"{_latency(r['p50_ms'])} | {_latency(r['p99_ms'])} | {r['errors']} |"
        )
    add("")


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
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--json", default=None, help="also write the raw results here")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 0.5, 0.2
        args.fanout_rounds, args.caches, args.poll_caches = 1, 200, 1000

    started = time.monotonic()
    origin_cpu, client_cpu = cpus()
    if origin_cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(
            0, {origin_cpu}
        )  # this process mostly waits; keep it off the client's CPU
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
        "bodies": source,
    }
    log(f"{results['machine']['cpu']}; load {results['load_start']}; bodies {source}")
    try:
        with origin(origin_cpu) as root:
            results["origin"] = check_origin(root, (origin_cpu, client_cpu), args)
            results["clients"] = client_matrix(root, (origin_cpu, client_cpu), args)
            results["decode"] = decode(client_cpu, args)
            results["fanout"] = fanout(root, client_cpu, args)
            per_call = results["fanout"]["fanout-sdk"]["wall"]["median"] / args.caches
            results["memory"] = memory(root, client_cpu, args, per_call)
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    results["load_end"] = load()
    results["elapsed"] = time.monotonic() - started
    Path(args.out).write_text(report(results, args) + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    log(f"wrote {args.out} in {results['elapsed']:.0f} s")
    for what, measured, met in targets(results):
        log(f"  {'met ' if met else 'MISS'} {what}: {measured}")


if __name__ == "__main__":
    main()
