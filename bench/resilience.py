"""Fault drills on the supervised scale-out stack (`ragline stack up`).

Starts the stack (broker, Milvus server, Redis, workers per stage, two API replicas
behind a balancer; extractive answers unless --llm), then for each scenario loads it
with documents and questions, kill -9's one process (supervisord restarts it) and
counts what was accepted, lost, duplicated and failed, and how long answers stopped.

    python bench/resilience.py [--workers 2] [--scenario NAME ...] [--milvus-uri URI] [--llm]
    python bench/resilience.py --broker-restarts 20

Prints {"scenarios": {NAME: {"accepted", "lost", "duplicated", "failed_requests",
"recovery_s", ...}}}; see src/ragline/ops/drills.py for what each figure means. With
--broker-restarts N: the broker killed and restarted empty N times on one stack under
load, {"restarts", "healed_within_10s", "lost", "lost_accepted_after_recovery",
"duplicated", "per_restart": [{"healed_s", "lost", ...}]} (healed: answers back within
10 s of the broker answering again, and every document accepted after that readable).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

from _common import report

from ragline.ops.drills import SCENARIOS, run_scenarios
from ragline.ops.stack import Stack


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2, help="workers per stage")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), help="default: all")
    parser.add_argument("--milvus-uri", default=None, help="an existing Milvus server (default: start one)")
    parser.add_argument("--llm", action="store_true", help="answers by the LLM server (default: extractive)")
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--run-s", type=float, default=15.0, help="seconds of load per scenario")
    parser.add_argument("--broker-restarts", type=int, default=0, help="restart the broker this many times instead")
    parser.add_argument("--keep-logs", action="store_true", help="keep the stack's logs even after a clean run")
    args = parser.parse_args()
    if args.broker_restarts:
        broker_restarts(args)
        return
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
        if bad or not result["scenarios"] or args.keep_logs:
            print(f"resilience: logs of this run kept in {tmp}/logs ({', '.join(bad) or 'no result'})", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    report({"workers_per_stage": args.workers, **result})


def broker_restarts(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ragline-broker-restarts-"))
    stack = Stack(tmp, args.port, args.workers, milvus_uri=args.milvus_uri, llm=args.llm)
    runs: list[dict] = []

    def record(name: str, result: dict) -> None:
        runs.append(result)
        print(f"restart {len(runs)}: {result}", file=sys.stderr, flush=True)

    try:
        stack.up()

        async def drills() -> None:
            for _ in range(args.broker_restarts):
                await run_scenarios(stack, ["broker_restart_empty"], run_s=args.run_s, on_result=record)

        asyncio.run(drills())
    finally:
        stack.down()
    healed = [
        r
        for r in runs
        if r["recovery_s"] is not None and r["recovery_s"] <= 10 and not r["lost_accepted_after_recovery"]
    ]
    if len(healed) < len(runs) or any(r["duplicated"] or r["failed_requests"] for r in runs) or args.keep_logs:
        print(f"resilience: logs of this run kept in {tmp}/logs", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    report(
        {
            "restarts": len(runs),
            "healed_within_10s": len(healed),
            "lost": sum(r["lost"] for r in runs),
            "lost_accepted_before_fault": sum(r["lost_accepted_before_fault"] for r in runs),
            "lost_accepted_after_recovery": sum(r["lost_accepted_after_recovery"] for r in runs),
            "duplicated": sum(r["duplicated"] for r in runs),
            "failed_requests": sum(r["failed_requests"] for r in runs),
            "per_restart": [
                {
                    "healed_s": r["recovery_s"],
                    "back_after_s": r["back_after_s"],
                    "lost": r["lost"],
                    "lost_accepted_before_fault": r["lost_accepted_before_fault"],
                    "duplicated": r["duplicated"],
                    "failed_requests": r["failed_requests"],
                    "refused_503": r["refused_503"],
                }
                for r in runs
            ],
        }
    )


if __name__ == "__main__":
    main()
