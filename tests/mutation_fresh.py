"""Run mutmut's mutants of one module, each in a fresh interpreter.

mutmut 3 runs each mutant in a process forked after the package was
imported, so a mutant in code that runs at import (``_convert``'s converter
hooks, built once by ``_build``) is never active: mutmut reports it as
surviving whatever the tests check. Here each mutant gets a new ``pytest``
process with ``MUTANT_UNDER_TEST`` set before anything is imported, so the
mutated builders run. It is slower (about 2 s of start-up per mutant), so it
can run a seeded random sample and say how far the estimate can be off.

Usage, after ``mutmut run`` has generated the mutants (``nox -s mutation``),
with the Python that has mutmut installed (the trampolines import it)::

    python tests/mutation_fresh.py mutants memcachier_async._convert \\
        --sample 150 --seed 1 --jobs 2 -- tests/test_decode_messages.py ...

A mutant is caught when the tests fail, the package no longer imports
(pytest's exit 1, 2 or 3) or the run passes ``--timeout``; exit 5 (no test
ran) or any other code stops the run.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path


def mutant_names(mutants: Path, module: str) -> list[str]:
    meta = mutants / (module.replace(".", "/") + ".py.meta")
    names = json.loads(meta.read_text())["exit_code_by_key"]
    return sorted(names)


def run_one(mutants: Path, name: str, tests: list[str], timeout: float) -> tuple[str, str]:
    env = {**os.environ, "MUTANT_UNDER_TEST": name, "PYTHONPATH": str(mutants)}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-x",
        "-q",
        "--no-cov",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        # Counts young objects: the trampolines make more.
        "--deselect=tests/test_value_ranges.py::test_a_big_decode_leaves_no_pile_of_young_objects",
        *tests,
    ]
    try:
        done = subprocess.run(
            command, cwd=mutants, env=env, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return name, "timeout"
    out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    if "No module named 'mutmut'" in out:
        # The trampolines import mutmut: this run says nothing about the mutant.
        raise RuntimeError("run this script with the Python that has mutmut installed")
    if done.returncode == 0:
        return name, "survived"
    if done.returncode in (1, 2, 3):
        # Failed tests, or a package that no longer imports (a collection
        # error, or the pytest plugin failing to load): caught either way.
        return name, "killed"
    tail = out[-2000:]
    raise RuntimeError(f"{name}: pytest exited {done.returncode}\n{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mutants", type=Path, help="mutmut's mutants/ folder")
    parser.add_argument("module", help="e.g. memcachier_async._convert")
    parser.add_argument("--sample", type=int, default=0, help="mutants to draw (0: all)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--json", type=Path, default=None, help="write each verdict here")
    parser.add_argument("tests", nargs="+")
    args = parser.parse_args()
    names = mutant_names(args.mutants, args.module)
    total = len(names)
    if args.sample and args.sample < total:
        names = sorted(random.Random(args.seed).sample(names, args.sample))
    started = time.monotonic()
    verdicts: dict[str, str] = {}
    with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(run_one, args.mutants, name, args.tests, args.timeout) for name in names
        ]
        for future in concurrent.futures.as_completed(futures):
            name, verdict = future.result()
            verdicts[name] = verdict
            print(f"{len(verdicts)}/{len(names)} {verdict:8} {name}", flush=True)
    caught = sum(v != "survived" for v in verdicts.values())
    share = caught / len(verdicts)
    # A 95 % interval for a sample's share (Wilson), so a sample says how sure it is.
    z = 1.96
    n = len(verdicts)
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    print(
        f"{args.module}: {caught} of {n} caught ({share:.1%}; 95 % interval "
        f"{centre - half:.1%}-{centre + half:.1%}) of {total} mutants, "
        f"seed {args.seed}, {time.monotonic() - started:.0f} s"
    )
    for name, verdict in sorted(verdicts.items()):
        if verdict == "survived":
            print(f"survived {name}")
    if args.json is not None:
        args.json.write_text(json.dumps(verdicts, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
