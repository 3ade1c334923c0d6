#!/usr/bin/env bash
# The seed's pipeline from the events topic, end to end on real servers (run under
# scripts/with-services.sh, which exports TEMPORAL_ADDRESS, TEMPORAL_BIN, CLICKHOUSE_URL,
# CLICKHOUSE_TCP_PORT): a throwaway broker (scripts/kafka.sh), the sample events produced
# to the events topic as PostHog's ClickHouse events JSON rows (`properties` a JSON
# string), the worker and `llma-sentiment schedule`, the sentiment rows in ClickHouse.
# Everything it started is stopped on exit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${1:?usage: $0 BIN [EVENTS_FILE]}"
EVENTS="${2:-samples/events.jsonl}"
TOPIC=clickhouse_events_json
NISSHI="${LLMA_TOOLS_DIR:-/var/cache/llma-sentiment/tools}/bin/nisshi"
export LLMA_SENTIMENT_TASK_QUEUE="${LLMA_SENTIMENT_TASK_QUEUE:-development-task-queue}"
# Info: the scheduler's log names the metrics address this script reads.
export LLMA_SENTIMENT_LOG="${LLMA_SENTIMENT_LOG:-info}" LLMA_SENTIMENT_LOG_FORMAT=json
WORK="$(mktemp -d "${TMPDIR:-/tmp}/llma-kafka-demo.XXXXXX")"
WORKER="" SCHEDULER=""

# shellcheck disable=SC2317  # invoked via trap
cleanup() {
    for pid in $SCHEDULER $WORKER; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    "$HERE/kafka.sh" stop "$WORK/kafka" >/dev/null 2>&1 || true
    echo "== logs: $WORK (worker.log, schedule.log)"
}
trap cleanup EXIT

"$HERE/kafka.sh" start "$WORK/kafka" >/dev/null
# shellcheck disable=SC1091
. "$WORK/kafka/env"
"$NISSHI" topic create --broker "tcp://$KAFKA_BROKERS" --partitions 3 "$TOPIC" >/dev/null
echo "== broker nisshi on $KAFKA_BROKERS, topic $TOPIC (3 partitions)"

"$BIN" migrate 2>/dev/null
"$BIN" worker >"$WORK/worker.log" 2>&1 &
WORKER=$!
LLMA_SENTIMENT_SCHEDULE_METRICS_ADDR=127.0.0.1:0 "$BIN" schedule --brokers "$KAFKA_BROKERS" --topic "$TOPIC" --group llma-demo >"$WORK/schedule.log" 2>&1 &
SCHEDULER=$!

# The events as the topic carries them, spread over the partitions by uuid
# (nisshi's producer takes one partition per call: a JSON array of {key, value}).
python3 - "$EVENTS" "$WORK" <<'PY'
import hashlib, json, sys
rows = [[], [], []]
for line in open(sys.argv[1]):
    if not line.strip():
        continue
    e = json.loads(line)
    if not isinstance(e.get("properties"), str):
        e["properties"] = json.dumps(e.get("properties") or {})
    p = int(hashlib.md5(e["uuid"].encode()).hexdigest(), 16) % 3
    rows[p].append({"key": e["uuid"], "value": e})
for p, msgs in enumerate(rows):
    json.dump(msgs, open(f"{sys.argv[2]}/partition-{p}.json", "w"))
PY
total=$(grep -c . "$EVENTS")
for p in 0 1 2; do
    "$NISSHI" cat produce --broker "tcp://$KAFKA_BROKERS" --partition "$p" --silent "$TOPIC" "$WORK/partition-$p.json"
done
echo "== produced $total events to $TOPIC"

metrics_addr() { grep -o '"message":"metrics endpoint listening","addr":"[^"]*"' "$WORK/schedule.log" | head -1 | sed 's/.*"addr":"\([^"]*\)"/\1/'; }
metric() { curl -s --max-time 2 "http://$ADDR/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
deadline=$((SECONDS + 60))
until ADDR="$(metrics_addr)" && [ -n "$ADDR" ]; do
    [ $SECONDS -lt $deadline ] || { echo "scheduler did not start:" >&2; cat "$WORK/schedule.log" >&2; exit 1; }
    sleep 0.2
done
# Every message read and every start acknowledged, then every workflow closed.
until [ "$(metric llma_sentiment_schedule_consumed_total)" = "$total" ] && [ "$(metric llma_sentiment_schedule_in_flight)" = 0 ]; do
    [ $SECONDS -lt $deadline ] || { echo "scheduler did not read and start everything within 60 s" >&2; exit 1; }
    sleep 0.2
done
until "$TEMPORAL_BIN" workflow count --address "$TEMPORAL_ADDRESS" --query 'ExecutionStatus="Running"' | grep -q 'Total: 0'; do
    [ $SECONDS -lt $((deadline + 60)) ] || { echo "workflows still running after 120 s" >&2; exit 1; }
    sleep 0.5
done
echo "== scheduler: $(metric llma_sentiment_schedule_consumed_total) read," \
    "$(metric 'llma_sentiment_schedule_workflows_total{result="started"}') workflows started," \
    "$(metric llma_sentiment_schedule_events_started_total) events in them"

kill -TERM "$SCHEDULER" && wait "$SCHEDULER" || true
SCHEDULER=""
echo "== scheduler stopped (SIGTERM): $(grep -o '"message":"final commit"[^}]*' "$WORK/schedule.log" | head -1)"

echo "== sentiment rows in ClickHouse (FINAL)"
clickhouse-client --host 127.0.0.1 --port "$CLICKHOUSE_TCP_PORT" --query "
SELECT
    visitParamExtractString(properties, '\$ai_generation_event_uuid') AS generation,
    team_id,
    visitParamExtractString(properties, '\$ai_sentiment_label') AS label,
    round(visitParamExtractFloat(properties, '\$ai_sentiment_score'), 3) AS score
FROM events FINAL
WHERE event = '\$ai_sentiment'
ORDER BY generation
FORMAT PrettyCompactMonoBlock"
