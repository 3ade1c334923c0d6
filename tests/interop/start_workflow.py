"""Start `llma-run-sentiment-classification` from the official Temporal Python
SDK, the way PostHog's producer does, wait for it and print its result.

PostHog's workflow input is the dataclass `SentimentClassificationInput`
(posthog/temporal/llm_analytics/sentiment/run_sentiment.py): its batch
version holds `events: list[dict]` (raw `clickhouse_events_json` rows as the
Kafka sentiment scheduler buffers them), the earlier single-event version
`event_data: dict`. The SDK's default data converter sends a dataclass as a
`json/plain` object, so the worker receives `{"events": [...]}` or
`{"event_data": {...}}`.

Usage: start_workflow.py --address HOST:PORT --task-queue Q --workflow-id ID
       --events FILE.jsonl [--single]
Prints one JSON line: {"workflow_id", "run_id", "result"}.
"""

import argparse
import asyncio
import json
import os
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.client import Client

WORKFLOW_TYPE = "llma-run-sentiment-classification"


@dataclass
class SentimentClassificationInput:
    """The batch input, as PostHog defines it."""

    events: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SingleEventInput:
    """The single-event input of PostHog's first version."""

    event_data: dict[str, Any]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with open(args.events, encoding="utf-8") as f:
        events = [json.loads(line) for line in f if line.strip()]
    if args.single:
        if len(events) != 1:
            raise SystemExit(f"--single needs exactly one event, got {len(events)}")
        payload: Any = SingleEventInput(event_data=events[0])
    else:
        payload = SentimentClassificationInput(events=events)
    client = await Client.connect(args.address, namespace=args.namespace)
    handle = await client.start_workflow(
        WORKFLOW_TYPE,
        payload,
        id=args.workflow_id,
        task_queue=args.task_queue,
        # The starter owns the workflow's 10-minute execution timeout.
        execution_timeout=timedelta(minutes=10),
    )
    result = await handle.result()
    return {"workflow_id": handle.id, "run_id": handle.result_run_id, "result": result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--task-queue", required=True)
    parser.add_argument("--workflow-id", required=True)
    parser.add_argument("--events", required=True, help="JSON lines of $ai_generation events")
    parser.add_argument("--single", action="store_true", help="send {event_data} instead of {events}")
    out = asyncio.run(run(parser.parse_args()))
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    code = main()
    # The SDK's native runtime can crash while the interpreter tears down its
    # threads (seen here as SIGSEGV after the result was printed); the work is
    # done and flushed, so leave without the teardown.
    os._exit(code)
