#!/usr/bin/env bash
# Usage: scripts/reliability.sh        (run by `make reliability`, after `make build`)
#
# Runs the reliability scenarios and prints one table:
#   * the fuzz properties of extraction (plugin) and event parsing (host) at
#     LLMA_FUZZ_CASES cases each (default 100000);
#   * the fault-injection scenarios of host/tests/reliability.rs on real
#     servers (ClickHouse down 30 s during a steady stream and during a burst,
#     Temporal restarted, worker SIGKILLed mid-batch, a batch holding an event
#     dated 1969, the Temporal restart 10 times with 2 slots under two busy loops);
#   * the scenarios that stress the sink (ClickHouse down, SIGKILL mid-batch, the 1969
#     event) again against ClickHouse 26.9 (scripts/clickhouse.sh, flavour modern);
#   * the scheduler's scenarios of host/tests/kafka.rs on a real broker (Temporal
#     frozen 30 s mid-stream, two schedulers in a group with one SIGKILLed);
#   * the cluster of host/tests/cluster.rs in full: 600 generations through 3
#     workers with Redis (one SIGKILLed and replaced), and the same stream
#     through 1 worker and 3 workers without Redis for the hit-rate table.
#
# Needs the variables `make test` passes (LLMA_TEST_MODELS, LLMA_TEST_PLUGIN,
# LLMA_TEST_HOSTILE_PLUGIN, LLMA_TEST_PYTHON, LLMA_TEST_REPO) and
# CARGO_TARGET_DIR / LLMA_EMBED_* as the Makefile exports them.
# Environment:
#   LLMA_FUZZ_CASES              cases per fuzz property (default 100000)
#   LLMA_RELIABILITY_SCENARIOS   filter for the fault scenarios' test names
#                                (cargo test filter; default: all)
#   LLMA_RELIABILITY_SKIP_FUZZ=1 / LLMA_RELIABILITY_SKIP_FAULTS=1 / LLMA_RELIABILITY_SKIP_MODERN=1 /
#   LLMA_RELIABILITY_SKIP_CLUSTER=1 / LLMA_RELIABILITY_SKIP_SCHEDULER=1   skip a part
# Exits non-zero when any scenario fails (the table is printed anyway).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/.."

REPORT="$(mktemp "${TMPDIR:-/tmp}/llma-reliability.XXXXXX")"
# The scheduler's rows have their own columns (events produced, rows, started twice).
SCHEDULER_REPORT="$(mktemp "${TMPDIR:-/tmp}/llma-reliability-scheduler.XXXXXX")"
trap 'rm -f "$REPORT" "$SCHEDULER_REPORT"' EXIT
export LLMA_RELIABILITY_REPORT="$REPORT"
export LLMA_RELIABILITY_SCHEDULER_REPORT="$SCHEDULER_REPORT"
export LLMA_FUZZ_CASES="${LLMA_FUZZ_CASES:-100000}"

status=0
step() {
    # step NAME COMMAND...: runs COMMAND; on failure adds a FAILED row.
    local name="$1"
    shift
    echo "==> $name" >&2
    if ! "$@"; then
        printf '%s: FAILED (see the output above)\t-\t-\t-\t-\t-\t\n' "$name" >>"$REPORT"
        status=1
    fi
}

if [ "${LLMA_RELIABILITY_SKIP_FUZZ:-0}" != 1 ]; then
    step "fuzz extraction (plugin)" \
        cargo test -p llma-sentiment-plugin -p llma-sentiment --features llma-sentiment/fault-injection --test fuzz_extract -- --nocapture --test-threads=1
    step "fuzz event parsing (host)" \
        cargo test -p llma-sentiment-plugin -p llma-sentiment --features llma-sentiment/fault-injection --test fuzz_events -- --nocapture --test-threads=1
fi
if [ "${LLMA_RELIABILITY_SKIP_FAULTS:-0}" != 1 ]; then
    # shellcheck disable=SC2086
    step "fault scenarios" \
        cargo test -p llma-sentiment-plugin -p llma-sentiment --features llma-sentiment/fault-injection --test reliability -- --ignored --nocapture --test-threads=1 \
        ${LLMA_RELIABILITY_SCENARIOS:-}
fi
if [ "${LLMA_RELIABILITY_SKIP_SCHEDULER:-0}" != 1 ]; then
    # `llma-sentiment schedule` on a real broker (nisshi, scripts/kafka.sh).
    step "scheduler scenarios" \
        cargo test -p llma-sentiment-plugin -p llma-sentiment --features llma-sentiment/fault-injection --test kafka -- --ignored --nocapture --test-threads=1
fi
if [ "${LLMA_RELIABILITY_SKIP_MODERN:-0}" != 1 ]; then
    for scenario in clickhouse_down_30s sigkill_of_the_worker a_batch_with_one_event_dated_1969; do
        step "fault scenarios on ClickHouse 26.9 ($scenario)" \
            env LLMA_TEST_CLICKHOUSE=modern \
            cargo test -p llma-sentiment-plugin -p llma-sentiment --features llma-sentiment/fault-injection --test reliability -- --ignored --nocapture --test-threads=1 \
            "$scenario"
    done
fi

if [ "${LLMA_RELIABILITY_SKIP_CLUSTER:-0}" != 1 ]; then
    step "cluster (600 generations, hit-rate table)" \
        cargo test -p llma-sentiment-plugin -p llma-sentiment --test cluster -- --ignored --nocapture --test-threads=1 \
        cluster_full_stream_and_hit_rate_table
fi

echo
echo "Reliability ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, LLMA_FUZZ_CASES=$LLMA_FUZZ_CASES)"
echo
python3 - "$REPORT" "$SCHEDULER_REPORT" <<'EOF'
import sys

def table(path, head):
    rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
    if not rows:
        return
    rows = [(r + [""] * len(head))[: len(head)] for r in rows]
    w = [max(len(x) for x in col) for col in zip(head, *rows)]
    last = len(head) - 1
    fmt = lambda r: "| " + " | ".join(c.ljust(w[i]) if i in (0, last) else c.rjust(w[i]) for i, c in enumerate(r)) + " |"
    print(fmt(head))
    print("|" + "|".join("-" * (n + 2) for n in w) + "|")
    for r in rows:
        print(fmt(r))
    print()

table(sys.argv[1], ["scenario", "tasks", "failures", "lost", "duplicated", "max RSS MB", "notes"])
table(sys.argv[2], ["scheduler scenario", "events produced", "rows", "lost", "duplicated", "started twice", "notes"])
EOF
exit "$status"
