#!/usr/bin/env bash
# Service benchmark on the embedded default: 100 erasures filed and approved through the API
# (SQLite, a local lake), applied by one `lethe-worker run` through the job queue (plan, then
# one task per affected file), against `lethe-worker erase` of the same 100 subjects on a copy
# of the same lake. Writes the "service" section of bench/production.md.
#
# The worker is started only once every erasure is approved, and timed from its start until
# the last request's `completed_at` (read from the API afterwards): the work after the batch
# window, as an operator with `worker.erasure_batch_window_s` would see it. The harness polls
# for the end only every half second and the time is taken from the requests themselves, so
# neither the polling's granularity nor its load (curl, jq, the service answering) is counted.
# Each round uses fresh copies of the lake and a fresh service; offline and service alternate,
# and the section reports every round and the median ratio (runs on a small shared machine
# vary by tens of percent).
#
# Usage: bench/service.sh   Tunables: ERASURES (100), SUBJECTS (100000), DAYS (30),
#   EVENTS_PER_DAY (1), SEED (42), ROUNDS (3), SKIP_BUILD=1 to reuse
#   target/release/lethe-{service,worker} (or SERVICE_BIN / WORKER_BIN, built from BUILT_FROM),
#   JOB_CONCURRENCY (the worker's worker.job_concurrency; its default, 6),
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
ROUNDS=${ROUNDS:-3}
OUT=$PWD/bench/out/service
for tool in jq curl; do command -v "$tool" >/dev/null || { echo "bench needs $tool" >&2; exit 2; }; done
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release -p lethe-service -p lethe-worker >&2
fi
rm -rf "$OUT"; mkdir -p "$OUT/bin"
cp "${SERVICE_BIN:-target/release/lethe-service}" "$OUT/bin/lethe-service"
cp "${WORKER_BIN:-target/release/lethe-worker}" "$OUT/bin/lethe-worker"
SERVICE=$OUT/bin/lethe-service WORKER=$OUT/bin/lethe-worker

PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; PIDS=(); }
trap cleanup EXIT

echo "== generating the lake" >&2
"$WORKER" generate --out "$OUT/lake" --subjects "$SUBJECTS" --days "$DAYS" \
  --events-per-day "$EVENTS_PER_DAY" --seed "$SEED" --subjects-out "$OUT/subjects.txt" >"$OUT/generate.out"
GEN=$(tail -n 1 "$OUT/generate.out")
head -n "$ERASURES" "$OUT/subjects.txt" >"$OUT/erase-subjects.txt"

# offline ROUND_DIR: `lethe-worker erase` on a fresh copy; prints its summary line.
offline() {
  local dir=$1
  cp -r "$OUT/lake" "$dir/offline"; sync
  /usr/bin/time -f '%U %S' -o "$dir/offline.time" "$WORKER" erase --root "$dir/offline" \
    --subject-column user_id --subjects "$OUT/erase-subjects.txt" --jobs "$(nproc)" 2>"$dir/offline.err" | tail -n 1
}

# served ROUND_DIR: a fresh service and lake copy; files and approves the erasures, then times
# one worker applying them. Prints "elapsed_s cpu_s peak_rss_mib rows_left".
served() {
  local dir=$1
  cp -r "$OUT/lake" "$dir/served"; sync
  mkdir -p "$dir/run"
  pushd "$dir/run" >/dev/null
  local port api
  port=$(free_port)
  api="http://127.0.0.1:$port"
  # The lake lies outside the embedded default's own lake folder: allow it (storage.allowed_roots).
  LETHE__STORAGE__ALLOWED_ROOTS="$dir/served" LETHE__WORKER__IN_PROCESS=false \
    LETHE__SERVER__PORT=$port LETHE__LOG__FORMAT=json \
    LETHE__WORKER__POLL_INTERVAL_MS=${POLL_MS:-200} "$SERVICE" serve >"$dir/service.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 150); do curl -fsS -o /dev/null "$api/healthz" 2>/dev/null && break; sleep 0.2; done
  local email=admin@bench.invalid password=bench-password-not-secret token
  printf '%s' "$password" | "$SERVICE" user create --email "$email" --role admin --password-stdin >/dev/null 2>&1
  token=$(curl -fsS "$api/v1/auth/login" -H 'content-type: application/json' \
    -d "$(jq -nc --arg e "$email" --arg p "$password" '{email: $e, password: $p}')" | jq -r .access_token)
  call() { curl -fsS -X "$1" "$api$2" -H "authorization: Bearer $token" -H 'content-type: application/json' ${3:+-d "$3"}; }
  call POST /v1/datasets "$(jq -nc --arg u "$dir/served" \
    '{name: "running_events", root_url: $u, subject_column: "user_id"}')" >/dev/null
  local subject id
  while read -r subject; do
    id=$(call POST /v1/requests "$(jq -nc --arg s "$subject" \
      '{type: "erasure", subject_id: $s, verification_note: "bench: synthetic subject"}')" | jq -r .id)
    call POST "/v1/requests/$id/approve" >/dev/null
  done <"$OUT/erase-subjects.txt"

  echo "== service: one worker applies them" >&2
  local start wpid done_n=0 failed
  start=$(date +%s.%N)
  HOSTNAME=bench-w1 LETHE__LOG__FILTER=${WORKER_LOG_FILTER:-info} LETHE__WORKER__POLL_INTERVAL_MS=${POLL_MS:-200} \
    LETHE__WORKER__JOB_CONCURRENCY=${JOB_CONCURRENCY:-6} "$WORKER" run >"$dir/worker.log" 2>&1 &
  wpid=$!
  PIDS+=($wpid)
  while ((done_n < ERASURES)); do
    sleep 0.5
    done_n=$(call GET "/v1/requests?status=completed&limit=1000" | jq length)
    failed=$(call GET "/v1/requests?status=failed&limit=1000" | jq length)
    ((failed == 0)) || { echo "$failed request(s) failed; see $dir" >&2; exit 1; }
  done
  local rss cpu last
  rss=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$wpid/status" 2>/dev/null || echo 0)
  # utime + stime of the worker so far (fields 14 and 15 of /proc/PID/stat, in clock ticks).
  cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($14 + $15) / hz}' "/proc/$wpid/stat" 2>/dev/null || echo 0)
  last=$(call GET "/v1/requests?status=completed&limit=1000" | jq -r '[.[].completed_at] | max')
  cleanup
  popd >/dev/null
  local left elapsed
  left=$("$WORKER" locate --root "$dir/served" $(sed 's/^/--subject /' "$OUT/erase-subjects.txt") --json | jq .rows)
  elapsed=$(python3 -c "import datetime, sys; end = datetime.datetime.fromisoformat(sys.argv[1].replace('Z', '+00:00')).timestamp(); print(f'{end - $start:.2f}')" "$last")
  echo "$elapsed $cpu $rss $left"
}

ROWS=""
RATIOS=()
RAW=""
for round in $(seq 1 "$ROUNDS"); do
  dir=$OUT/round-$round
  mkdir -p "$dir"
  echo "== round $round: offline" >&2
  summary=$(offline "$dir")
  off_s=$(jq -r '.elapsed_s * 100 | round / 100' <<<"$summary")
  off_cpu=$(awk '{printf "%.2f", $1 + $2}' "$dir/offline.time")
  echo "== round $round: service" >&2
  served "$dir" >"$dir/served.out"
  read -r svc_s svc_cpu svc_rss left <"$dir/served.out"
  ratio=$(python3 -c "print(f'{$svc_s / $off_s:.2f}')")
  RATIOS+=("$ratio")
  ROWS+="| $round | $off_s s | $off_cpu s | $(jq -r '.peak_rss_bytes / 1048576 | round' <<<"$summary") MiB | $svc_s s | $svc_cpu s | $svc_rss MiB | $(jq -r .rows_removed <<<"$summary") / $left | $ratio x |"$'\n'
  RAW+="$summary"$'\n'
done
MEDIAN=$(printf '%s\n' "${RATIOS[@]}" | sort -n | python3 -c "import sys, statistics; print(f'{statistics.median(float(l) for l in sys.stdin):.2f}')")

BODY=$(cat <<MD
# Service: 100 erasures through the job queue (embedded default)

Produced by \`bench/service.sh\` (rerun it; do not edit by hand).

- date: $(date -u +%Y-%m-%dT%H:%MZ), release binaries built from commit \`${BUILT_FROM:-$(git rev-parse --short HEAD)}\`
- machine: $(machine_line)
- lake: $(jq -r '"\(.rows) rows, \(.files) files"' <<<"$GEN") (\`lethe-worker generate --subjects $SUBJECTS --days $DAYS --events-per-day $EVENTS_PER_DAY\`), local disk, SQLite
- service: \`lethe-service serve\` with the worker out of process; $ERASURES erasures filed and approved, then one \`lethe-worker run\` (\`worker.job_concurrency\` ${JOB_CONCURRENCY:-6}) timed from its start to the last request's \`completed_at\`
- offline: \`lethe-worker erase --jobs $(nproc)\` of the same subjects on a copy of the same lake (its own \`elapsed_s\`)
- $ROUNDS rounds, offline then service in each, every round on fresh copies and a fresh service

| round | offline elapsed | offline CPU | offline peak RSS | service elapsed | service CPU (worker) | worker peak RSS | rows removed offline / left after the service | service / offline |
|---:|---:|---:|---:|---:|---:|---:|---:|---:|
${ROWS%$'\n'}

Median service / offline: **$MEDIAN x** (target <= 1.3 x).

Offline summaries:

\`\`\`json
${RAW%$'\n'}
\`\`\`
MD
)
printf '%s\n' "$BODY" >"$OUT/section.md"
write_section service "$OUT/section.md"
echo "$BODY"
