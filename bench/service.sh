#!/usr/bin/env bash
# Service benchmark on the embedded default: 100 erasures filed and approved through the API
# (SQLite, a local lake), applied by one `lethe-worker run` through the job queue (plan, then
# one task per affected file), against `lethe-worker erase` of the same 100 subjects on a copy
# of the same lake. Writes the "service" section of bench/production.md.
#
# The worker is started only once every erasure is approved, and timed from its start until
# the API lists all of them completed: the work after the batch window, as an operator with
# `worker.erasure_batch_window_s` would see it.
#
# Usage: bench/service.sh   Tunables: ERASURES (100), SUBJECTS (100000), DAYS (30),
#   EVENTS_PER_DAY (1), SEED (42), SKIP_BUILD=1 to reuse target/release/lethe-{service,worker},
#   JOB_CONCURRENCY (the worker's worker.job_concurrency, 4),
#   WORKER_LOG_FILTER (e.g. "info,sqlx::query=debug" to log every statement with its time)
# Needs: cargo, jq, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ERASURES=${ERASURES:-100}
SUBJECTS=${SUBJECTS:-100000}
DAYS=${DAYS:-30}
EVENTS_PER_DAY=${EVENTS_PER_DAY:-1}
SEED=${SEED:-42}
OUT=$PWD/bench/out/service
for tool in jq curl; do command -v "$tool" >/dev/null || { echo "bench needs $tool" >&2; exit 2; }; done
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release -p lethe-service -p lethe-worker >&2
fi
rm -rf "$OUT"; mkdir -p "$OUT/bin" "$OUT/run"
cp target/release/lethe-service target/release/lethe-worker "$OUT/bin/"
SERVICE=$OUT/bin/lethe-service WORKER=$OUT/bin/lethe-worker

PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

echo "== generating the lake" >&2
"$WORKER" generate --out "$OUT/lake" --subjects "$SUBJECTS" --days "$DAYS" \
  --events-per-day "$EVENTS_PER_DAY" --seed "$SEED" --subjects-out "$OUT/subjects.txt" >"$OUT/generate.out"
GEN=$(tail -n 1 "$OUT/generate.out")
head -n "$ERASURES" "$OUT/subjects.txt" >"$OUT/erase-subjects.txt"

echo "== offline: lethe-worker erase" >&2
cp -r "$OUT/lake" "$OUT/offline"; sync
OFFLINE=$(/usr/bin/time -f '%U %S' -o "$OUT/offline.time" "$WORKER" erase --root "$OUT/offline" \
  --subject-column user_id --subjects "$OUT/erase-subjects.txt" --jobs "$(nproc)" 2>"$OUT/offline.err" | tail -n 1)
OFFLINE_CPU=$(awk '{printf "%.2f", $1 + $2}' "$OUT/offline.time")

echo "== service: file and approve $ERASURES erasures" >&2
cp -r "$OUT/lake" "$OUT/served"; sync
cd "$OUT/run"
PORT=$(free_port)
# The lake lies outside the embedded default's own lake folder: allow it (storage.allowed_roots).
export LETHE__STORAGE__ALLOWED_ROOTS="$OUT/served"
export LETHE__WORKER__IN_PROCESS=false LETHE__SERVER__PORT=$PORT LETHE__LOG__FORMAT=json \
  LETHE__WORKER__POLL_INTERVAL_MS=${POLL_MS:-200}
API="http://127.0.0.1:$PORT"
"$SERVICE" serve >"$OUT/service.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 150); do curl -fsS -o /dev/null "$API/healthz" 2>/dev/null && break; sleep 0.2; done
EMAIL=admin@bench.invalid PASSWORD=bench-password-not-secret
printf '%s' "$PASSWORD" | "$SERVICE" user create --email "$EMAIL" --role admin --password-stdin >/dev/null 2>&1
TOKEN=$(curl -fsS "$API/v1/auth/login" -H 'content-type: application/json' \
  -d "$(jq -nc --arg e "$EMAIL" --arg p "$PASSWORD" '{email: $e, password: $p}')" | jq -r .access_token)
call() { curl -fsS -X "$1" "$API$2" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' ${3:+-d "$3"}; }
call POST /v1/datasets "$(jq -nc --arg u "$OUT/served" \
  '{name: "running_events", root_url: $u, subject_column: "user_id"}')" >/dev/null
while read -r subject; do
  id=$(call POST /v1/requests "$(jq -nc --arg s "$subject" \
    '{type: "erasure", subject_id: $s, verification_note: "bench: synthetic subject"}')" | jq -r .id)
  call POST "/v1/requests/$id/approve" >/dev/null
done <"$OUT/erase-subjects.txt"

echo "== service: one worker applies them" >&2
START=$(date +%s.%N)
HOSTNAME=bench-w1 LETHE__LOG__FILTER=${WORKER_LOG_FILTER:-info} \
  LETHE__WORKER__JOB_CONCURRENCY=${JOB_CONCURRENCY:-4} "$WORKER" run >"$OUT/worker.log" 2>&1 &
WPID=$!
PIDS+=($WPID)
DONE=0
while ((DONE < ERASURES)); do
  sleep 0.1
  DONE=$(call GET "/v1/requests?status=completed&limit=1000" | jq length)
  FAILED=$(call GET "/v1/requests?status=failed&limit=1000" | jq length)
  ((FAILED == 0)) || { echo "$FAILED request(s) failed; see $OUT" >&2; exit 1; }
done
END=$(date +%s.%N)
WORKER_RSS=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$WPID/status" 2>/dev/null || echo 0)
# utime + stime of the worker so far (fields 14 and 15 of /proc/PID/stat, in clock ticks).
WORKER_CPU=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$WPID/stat" 2>/dev/null || echo 0)
cd - >/dev/null
LEFT=$("$WORKER" locate --root "$OUT/served" $(sed 's/^/--subject /' "$OUT/erase-subjects.txt") --json | jq .rows)

SERVICE_S=$(python3 -c "print(f'{$END - $START:.2f}')")
OFFLINE_S=$(jq -r '.elapsed_s * 100 | round / 100' <<<"$OFFLINE")
BODY=$(cat <<MD
# Service: 100 erasures through the job queue (embedded default)

Produced by \`bench/service.sh\` (rerun it; do not edit by hand).

- date: $(date -u +%Y-%m-%dT%H:%MZ), commit \`$(git rev-parse --short HEAD)\`
- machine: $(machine_line)
- lake: $(jq -r '"\(.rows) rows, \(.files) files"' <<<"$GEN") (\`lethe-worker generate --subjects $SUBJECTS --days $DAYS --events-per-day $EVENTS_PER_DAY\`), local disk, SQLite
- service: \`lethe-service serve\` with the worker out of process; $ERASURES erasures filed and approved, then one \`lethe-worker run\` (\`worker.job_concurrency\` ${JOB_CONCURRENCY:-4}) timed from its start until all are completed
- offline: \`lethe-worker erase --jobs $(nproc)\` of the same subjects on a copy of the same lake

| path | elapsed | CPU (user + sys) | rows removed | files rewritten | worker peak RSS |
|---|---:|---:|---:|---:|---:|
| offline \`lethe-worker erase\` | $OFFLINE_S s | $OFFLINE_CPU s | $(jq -r .rows_removed <<<"$OFFLINE") | $(jq -r .files_rewritten <<<"$OFFLINE") | $(jq -r '.peak_rss_bytes / 1048576 | round' <<<"$OFFLINE") MiB |
| service (plan + per-file tasks) | $SERVICE_S s | $WORKER_CPU s | (rows of the erased subjects left in the lake: $LEFT) | – | $WORKER_RSS MiB |

Service / offline: $(python3 -c "print(f'{$SERVICE_S / $OFFLINE_S:.2f}')") x (target <= 1.3 x).
MD
)
printf '%s\n' "$BODY" >"$OUT/section.md"
write_section service "$OUT/section.md"
echo "$BODY"
