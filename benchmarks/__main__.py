"""`python -m benchmarks [--quick] [--only NAME ...] [--output FILE]`: runs the benchmarks, prints a
table per benchmark and writes the figures with the machine's facts to benchmarks/results/latest.json."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks import (
    assembly_render,
    claim_throughput,
    fairness,
    idle,
    makespan,
    notion_efficiency,
    operator_latency,
    script_overhead,
)
from benchmarks.harness import RESULTS, Context, log_to_file, machine_facts, pg_reachable

BENCHMARKS: dict[str, ModuleType] = {
    m.NAME: m
    for m in (
        makespan,
        claim_throughput,
        script_overhead,
        assembly_render,
        notion_efficiency,
        operator_latency,
        fairness,
        idle,
    )
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes: the CI smoke (under a minute)")
    p.add_argument(
        "--only", action="append", choices=sorted(BENCHMARKS), help="run only this benchmark (repeatable)"
    )
    p.add_argument(
        "--output",
        type=Path,
        help="JSON file to write (default: benchmarks/results/latest.json, or quick.json with --quick)",
    )
    return p


async def run_all(names: list[str], quick: bool, output: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nvd-bench-") as tmp:
        log_to_file(Path(tmp) / "daemon.log")
        ctx = Context(quick=quick, tmp=Path(tmp), pg_ok=await pg_reachable())
        if not ctx.pg_ok:
            ctx.notes.append("PostgreSQL unreachable: PostgreSQL figures are missing")
        # Before the run: the run itself rewrites tracked files (the makespan pictures).
        machine = await machine_facts()
        previous = _previous(output) if len(names) < len(BENCHMARKS) else {}
        results: dict[str, Any] = dict(previous.get("benchmarks", {}))
        for name in names:
            module = BENCHMARKS[name]
            started = time.perf_counter()
            print(f"[{name}] running ...", file=sys.stderr, flush=True)
            result = await module.run(ctx)
            result["wall_s"] = round(time.perf_counter() - started, 1)
            results[name] = result
            print(module.render(result), flush=True)
        document = {
            "machine": machine,
            "quick": quick,
            "benchmarks": {n: results[n] for n in BENCHMARKS if n in results},
            "notes": ctx.notes,
        }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {output}", flush=True)
    return document


def _previous(path: Path) -> dict[str, Any]:
    """With --only, the other benchmarks' figures are kept from the file being updated."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # The daemons measured here listen on no HTTP port unless a benchmark gives one (HTTP_PORT):
    # the default port may be taken on the machine, and is not what is measured.
    os.environ.setdefault("HTTP_PORT", "0")
    names = args.only or list(BENCHMARKS)
    output = args.output or RESULTS / ("quick.json" if args.quick else "latest.json")
    asyncio.run(run_all(names, args.quick, output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
