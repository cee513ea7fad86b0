"""What a cProfile says, in two short tables: the top functions and the packages.

Used to explain a missed target in RESULTS.md: where the client's CPU goes.
cProfile slows Python code more than C code, so shares are indicative; the
benchmark figures themselves are always measured without it.
"""

from __future__ import annotations

import pstats
from typing import Any

# Own time is attributed to the package a function's file lives in.
PACKAGES = (
    "memcachier_async",
    "httpcore",
    "httpx",
    "anyio",
    "sniffio",
    "h11",
    "aiohttp",
    "yarl",
    "multidict",
    "msgspec",
    "orjson",
    "cattrs",
    "attrs",
    "asyncio",
    "ssl",
)


def load(path: str) -> pstats.Stats:
    return pstats.Stats(path)


def _short(filename: str) -> str:
    at = filename.find("site-packages/")
    if at >= 0:
        return filename[at + len("site-packages/") :]
    at = filename.find("memcachier_async/")
    if at >= 0:
        return filename[at:]
    at = filename.find("/lib/python3")
    if at >= 0:  # the standard library: "asyncio/events.py", "contextlib.py"
        return "stdlib:" + filename[at:].split("/", 3)[-1]
    return filename


def _package(filename: str, function: str) -> str:
    if filename == "~":  # a built-in: name it by what it is
        for name in ("msgspec", "orjson", "select", "socket", "gc"):
            if name in function:
                return f"built-in ({name})"
        return "built-in (other)"
    if "attrs generated" in filename:
        return "attrs-generated __init__"
    short = _short(filename)
    if short.startswith("stdlib:"):
        module = short[len("stdlib:") :].split("/")[0].removesuffix(".py")
        return module if module == "asyncio" else f"stdlib ({module})"
    top = short.split("/")[0].removesuffix(".py")
    return top if top in PACKAGES else "other"


def summary(stats: pstats.Stats, top: int = 10) -> dict[str, Any]:
    """``{"functions": [...top by own time], "packages": [...by own time]}`` with shares."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in raw.values()) or 1.0
    functions = []
    packages: dict[str, float] = {}
    for (filename, line, function), (_, calls, own, cumulative, _) in raw.items():
        functions.append(
            {
                "function": f"{_short(filename)}:{line}({function})",
                "calls": calls,
                "own_share": own / total,
                "cumulative_share": cumulative / total,
            }
        )
        name = _package(filename, function)
        packages[name] = packages.get(name, 0.0) + own
    functions.sort(key=lambda r: r["own_share"], reverse=True)
    return {
        "functions": functions[:top],
        "packages": [
            {"package": name, "own_share": own / total}
            for name, own in sorted(packages.items(), key=lambda kv: kv[1], reverse=True)
        ],
    }
