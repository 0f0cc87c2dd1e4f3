"""Fault drills on the supervised scale-out stack (`ragline stack up`).

Starts the stack (broker, Milvus server, Redis, workers per stage, two API replicas
behind a balancer; extractive answers unless --llm), then for each scenario loads it
with documents and questions, kill -9's one process (supervisord restarts it) and
counts what was accepted, lost, duplicated and failed, and how long answers stopped.

    python bench/resilience.py [--workers 2] [--scenario NAME ...] [--milvus-uri URI] [--llm]

Prints {"scenarios": {NAME: {"accepted", "lost", "duplicated", "failed_requests",
"recovery_s", ...}}}; see src/ragline/drills.py for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from _common import report

from ragline.drills import SCENARIOS, run_scenarios
from ragline.stack import Stack


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2, help="workers per stage")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="default: all")
    parser.add_argument("--milvus-uri", default=None, help="an existing Milvus server (default: start one)")
    parser.add_argument("--llm", action="store_true", help="answers by the LLM server (default: extractive)")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--run-s", type=float, default=15.0, help="seconds of load per scenario")
    args = parser.parse_args()
    # The stack's directory (supervisord's and every process's logs) is removed after a
    # clean run and kept, with its path on stderr, when a scenario lost or duplicated
    # something or got a 5xx: a flaky fault is diagnosed from the run that showed it.
    tmp = Path(tempfile.mkdtemp(prefix="ragline-resilience-"))
    stack = Stack(tmp, args.port, args.workers, milvus_uri=args.milvus_uri, llm=args.llm)
    result: dict = {"scenarios": {}}
    try:
        stack.up()
        result = asyncio.run(run_scenarios(stack, args.scenario, run_s=args.run_s))
    finally:
        stack.down()
        bad = [  # requests in flight on a killed API replica fail with it: expected
            name
            for name, r in result["scenarios"].items()
            if r["lost"] or r["duplicated"] or any(" 5" in kind for kind in r["failures"])
        ]
        if bad or not result["scenarios"]:
            print(f"resilience: logs of this run kept in {tmp}/logs ({', '.join(bad) or 'no result'})", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report({"workers_per_stage": args.workers, **result})


if __name__ == "__main__":
    main()
