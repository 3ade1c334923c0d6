#!/usr/bin/env bash
# The main job, end to end on real servers (run under scripts/with-services.sh,
# which exports TEMPORAL_ADDRESS, CLICKHOUSE_URL, CLICKHOUSE_TCP_PORT):
# migrate, start the worker, submit the sample events, wait for the
# workflows, print the sentiment rows (`$ai_sentiment` or `$ai_evaluation`, as
# the profile in LLMA_SENTIMENT_CONFIG says) and one trace's sentiment, stop the worker.
set -euo pipefail

BIN="${1:?usage: $0 BIN [EVENTS_FILE]}"
EVENTS="${2:-samples/events.jsonl}"
export LLMA_SENTIMENT_TASK_QUEUE="${LLMA_SENTIMENT_TASK_QUEUE:-development-task-queue}"
LOG="$(mktemp "${TMPDIR:-/tmp}/llma-worker.XXXXXX.log")"

"$BIN" migrate

LLMA_SENTIMENT_LOG="${LLMA_SENTIMENT_LOG:-info}" "$BIN" worker >"$LOG" 2>&1 &
WORKER=$!
# shellcheck disable=SC2317  # invoked via trap
stop_worker() {
    if kill -0 "$WORKER" 2>/dev/null; then
        kill -TERM "$WORKER" 2>/dev/null || true
        wait "$WORKER" 2>/dev/null || true
    fi
}
trap stop_worker EXIT

echo "== submitting $(grep -c . "$EVENTS") events from $EVENTS (one workflow each, 10 min execution timeout)"
started=$(date +%s%N)
"$BIN" submit --wait --id-prefix "demo-$(date +%s)" "$EVENTS" >"$LOG.results"
elapsed=$(( ($(date +%s%N) - started) / 1000000 ))
python3 - "$LOG.results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{'workflow':<58} {'status':<10} result")
for r in sorted(rows, key=lambda r: r.get("workflow_id", "")):
    res = r.get("result") or {}
    ev = (res.get("events") or [{}])[0]
    what = ev.get("label") or ev.get("reason") or r.get("error", "")
    print(f"{r.get('workflow_id', ''):<58} {r.get('status', ''):<10} {ev.get('status', '')} {what}"[:160])
PY
echo "== workflows done in ${elapsed} ms"

stop_worker
trap - EXIT
echo "== worker stopped (SIGTERM); its log: $LOG"

echo "== profile: ${LLMA_SENTIMENT_CONFIG:-defaults (seed)}"
"$BIN" config | sed -n '/^\[pipeline\]/,/^$/p'

echo "== sentiment rows in ClickHouse (FINAL)"
clickhouse-client --host 127.0.0.1 --port "$CLICKHOUSE_TCP_PORT" --query "
SELECT
    event,
    if(event = '\$ai_evaluation',
       visitParamExtractString(properties, '\$ai_target_event_id'),
       visitParamExtractString(properties, '\$ai_generation_event_uuid')) AS generation,
    team_id,
    distinct_id,
    timestamp,
    visitParamExtractString(properties, '\$ai_sentiment_label') AS label,
    round(visitParamExtractFloat(properties, '\$ai_sentiment_score'), 3) AS score,
    visitParamExtractString(properties, '\$ai_sentiment_model') AS model
FROM events FINAL
WHERE event IN ('\$ai_sentiment', '\$ai_evaluation')
ORDER BY timestamp, generation
FORMAT PrettyCompactMonoBlock"

TRACE=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["properties"]["$ai_trace_id"])' "$EVENTS")
echo "== sentiment of trace $TRACE, computed when read (llma-sentiment trace)"
"$BIN" trace "$TRACE" --format table

# The Sentiment pages over these rows (`llma-sentiment serve`, loopback only).
# The samples are dated 2025-03-14: the window reaches back to them.
DAYS=$(( ( $(date +%s) - $(date -d 2025-03-01 +%s) ) / 86400 ))
SERVE_OUT="$(mktemp "${TMPDIR:-/tmp}/llma-serve.XXXXXX")"
"$BIN" serve --addr 127.0.0.1:0 --window-days "$DAYS" >"$SERVE_OUT" 2>>"$LOG" &
SERVE_PID=$!
trap 'kill "$SERVE_PID" 2>/dev/null || true; rm -f "$SERVE_OUT"' EXIT
for _ in $(seq 1 100); do
    grep -q '^Sentiment pages: ' "$SERVE_OUT" && break
    sleep 0.1
done
URL="$(sed -n 's/^Sentiment pages: //p' "$SERVE_OUT")"
URL="${URL%/}"
[ -n "$URL" ] || { echo "llma-sentiment serve did not start; its log: $LOG" >&2; exit 1; }
TRACES=$(curl -fsS --max-time 10 "$URL/api/traces?team=2&filter=all" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["traces"]))')
echo "== the Sentiment page: $URL/?team=2&filter=all ($TRACES traces of team 2)"
if [ -t 0 ] && [ -t 1 ]; then
    echo "   open it in a browser on this machine; press Enter to stop it and the servers"
    read -r _ || true
else
    echo "   (not a terminal: stopped now; \`llma-sentiment serve\` serves it over your own ClickHouse)"
fi
