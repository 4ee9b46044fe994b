#!/usr/bin/env bash
# Workers benchmark: one erasure batch (100 subjects) on a >= 5-million-row lake in S3 (moto),
# applied by 1 and then by 3 `lethe-worker run` processes against one PostgreSQL queue, each
# run with a fresh database and a fresh copy of the bucket. Writes the "workers" section of
# bench/production.md.
#
# For each worker count it: creates a database, uploads the lake to a new bucket, starts
# `lethe-service serve` with the worker out of process, creates an admin with the CLI,
# registers `s3://<bucket>/running_events`, files and approves one erasure for each of the
# first 100 subject ids, THEN starts the workers and times them from start until the API lists
# all 100 requests as completed.
#
# Usage: bench/workers.sh
# Tunables (environment): WORKER_COUNTS ("1 3"), ERASURES (100), SUBJECTS (50000), DAYS (30),
#   EVENTS_PER_DAY (3.4), SEED (42), ROW_GROUP_ROWS (16384), TIMEOUT_S (3600),
#   SKIP_BUILD=1 to reuse target/release/lethe-{service,worker}
# Needs: cargo, jq, curl, psql + initdb/pg_ctl, python3 (moto[server] and boto3 are installed by
# .ci/s3.sh when missing). Output: bench/out/workers/ (gitignored) and bench/production.md.
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh
WORKER_COUNTS=${WORKER_COUNTS:-"1 3"}
ERASURES=${ERASURES:-100}
SUBJECTS=${SUBJECTS:-50000}
DAYS=${DAYS:-30}
EVENTS_PER_DAY=${EVENTS_PER_DAY:-3.4}
SEED=${SEED:-42}
ROW_GROUP_ROWS=${ROW_GROUP_ROWS:-16384}
TIMEOUT_S=${TIMEOUT_S:-3600}
OUT=bench/out/workers
SERVICE=$PWD/$OUT/bin/lethe-service   # copies of the release binaries, so that a rebuild in
WORKER=$PWD/$OUT/bin/lethe-worker     # the checkout meanwhile cannot change them between runs
for tool in jq curl psql python3; do
  command -v "$tool" >/dev/null || { echo "bench needs $tool" >&2; exit 2; }
done

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  echo "== building lethe-service and lethe-worker (release)" >&2
  cargo build --release -p lethe-service -p lethe-worker >&2
fi
[[ -x target/release/lethe-service && -x target/release/lethe-worker ]] \
  || { echo "no release binaries; build or unset SKIP_BUILD" >&2; exit 2; }

rm -rf "$OUT"
mkdir -p "$OUT/bin"
cp target/release/lethe-service target/release/lethe-worker "$OUT/bin/"

# ---- processes we start, stopped on any exit -----------------------------------------------
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  declare -F stop_s3 >/dev/null && stop_s3
  declare -F stop_postgres >/dev/null && stop_postgres
}
trap cleanup EXIT
trap 'exit 130' INT TERM

source .ci/postgres.sh
source .ci/s3.sh
export AWS_ENDPOINT_URL=$LETHE_TEST_S3_ENDPOINT
PG_BASE=${LETHE_TEST_POSTGRES_URL%/*}

# ---- the lake --------------------------------------------------------------------------------
echo "== generating the lake: $SUBJECTS subjects x $DAYS days x ~$EVENTS_PER_DAY events/day" >&2
"$WORKER" generate --out "$OUT/lake/running_events" --subjects "$SUBJECTS" --days "$DAYS" \
  --events-per-day "$EVENTS_PER_DAY" --seed "$SEED" --row-group-rows "$ROW_GROUP_ROWS" \
  --subjects-out "$OUT/subjects.txt" >"$OUT/generate.out"
GEN=$(tail -n 1 "$OUT/generate.out")
ROWS=$(jq -r .rows <<<"$GEN")
((ROWS >= 5000000)) || echo "warning: the lake has only $ROWS rows" >&2
head -n "$ERASURES" "$OUT/subjects.txt" >"$OUT/erase-subjects.txt"
# Ten subjects that are not erased: their rows must survive every run untouched.
sed -n "$((ERASURES + 1)),$((ERASURES + 10))p" "$OUT/subjects.txt" >"$OUT/keep-subjects.txt"
locate_rows() { # locate_rows <lake root> <subjects file>: rows of those subjects in the lake
  local args=() s
  while read -r s; do args+=(--subject "$s"); done <"$2"
  "$WORKER" locate --root "$1" "${args[@]}" --json | jq .rows
}
KEEP_ROWS=$(locate_rows "$OUT/lake/running_events" "$OUT/keep-subjects.txt")
ERASE_ROWS=$(locate_rows "$OUT/lake/running_events" "$OUT/erase-subjects.txt")

s3() { # s3 upload|drop|download <bucket> [dest]: a fresh bucket holding the lake, delete one, or copy it out
  python3 - "$1" "$2" "$OUT/lake" "${3:-}" <<'PY'
import os, sys, time
from concurrent.futures import ThreadPoolExecutor
import boto3
action, bucket, root = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=os.environ["LETHE_TEST_S3_ENDPOINT"], region_name="us-east-1")
if action == "download":
    dest = sys.argv[4]
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            path = os.path.join(dest, o["Key"])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            s3.download_file(bucket, o["Key"], path)
    sys.exit(0)
if action == "drop":
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    s3.delete_bucket(Bucket=bucket)
    sys.exit(0)
s3.create_bucket(Bucket=bucket)
files = [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
t = time.time()
def put(path):
    s3.upload_file(path, bucket, os.path.relpath(path, root).replace(os.sep, "/"))
    return os.path.getsize(path)
with ThreadPoolExecutor(4) as pool:
    size = sum(pool.map(put, files))
print(f"uploaded {len(files)} objects, {size / 1e6:.0f} MB in {time.time() - t:.1f} s", file=sys.stderr)
PY
}

rss_mib() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$1/status" 2>/dev/null || echo 0; }

# ---- one run ------------------------------------------------------------------------------
bench() { # bench <workers>: writes the run's JSON summary to $OUT/result-<workers>.json
  local n=$1 run="$OUT/run-$1" db="lethe_workers_$1_$$" bucket="lethe-bench-$1-$$"
  mkdir -p "$run/data"
  psql "$LETHE_TEST_POSTGRES_URL" -qc "CREATE DATABASE $db" >&2
  local dburl="$PG_BASE/$db"
  echo "== [$n worker(s)] uploading the lake to s3://$bucket" >&2
  s3 upload "$bucket"

  local port
  port=$(free_port)
  export LETHE__STORAGE__ALLOWED_ROOTS="s3://$bucket/"
  export LETHE__DATABASE__URL=$dburl LETHE__STORAGE__DATA_DIR=$PWD/$run/data \
    LETHE__WORKER__IN_PROCESS=false LETHE__SERVER__PORT=$port LETHE__LOG__FORMAT=json \
    LETHE__WORKER__POLL_INTERVAL_MS=${POLL_MS:-200}
  local api="http://127.0.0.1:$port"
  "$SERVICE" serve >"$run/service.log" 2>&1 &
  local service_pid=$!
  PIDS+=("$service_pid")
  for _ in $(seq 1 150); do
    curl -fsS -o /dev/null "$api/healthz" 2>/dev/null && break
    kill -0 "$service_pid" 2>/dev/null || { tail -n 20 "$run/service.log" >&2; return 1; }
    sleep 0.2
  done

  local email=admin@bench.invalid password=bench-password-not-secret
  printf '%s' "$password" | "$SERVICE" user create --email "$email" --role admin --password-stdin \
    >"$run/user.out" 2>&1
  local token token_at=0
  login() {
    token=$(curl -fsS "$api/v1/auth/login" -H 'content-type: application/json' \
      -d "$(jq -nc --arg e "$email" --arg p "$password" '{email: $e, password: $p}')" | jq -r .access_token)
    token_at=$SECONDS
  }
  login
  call() { # call METHOD PATH [JSON]
    ((SECONDS - token_at < 600)) || login
    curl -fsS -X "$1" "$api$2" -H "authorization: Bearer $token" -H 'content-type: application/json' \
      ${3:+-d "$3"}
  }
  call POST /v1/datasets "$(jq -nc --arg u "s3://$bucket/running_events" \
    '{name: "running_events", root_url: $u, subject_column: "user_id"}')" >"$run/dataset.json"

  echo "== [$n worker(s)] filing and approving $ERASURES erasures" >&2
  local subject id
  while read -r subject; do
    id=$(call POST /v1/requests "$(jq -nc --arg s "$subject" \
      '{type: "erasure", subject_id: $s, verification_note: "bench: synthetic subject"}')" | jq -r .id)
    call POST "/v1/requests/$id/approve" >/dev/null
    echo "$id" >>"$run/requests.txt"
  done <"$OUT/erase-subjects.txt"

  echo "== [$n worker(s)] starting the workers" >&2
  local start worker_pids=() i done_count=0 failed=0 moto_peak=0 rss
  start=$(date +%s.%N)
  for i in $(seq 1 "$n"); do
    HOSTNAME=bench-w$i "$WORKER" run >"$run/worker-$i.log" 2>&1 &
    worker_pids+=($!)
    PIDS+=($!)
  done
  while ((done_count < ERASURES)); do
    sleep 0.5
    done_count=$(call GET "/v1/requests?status=completed&limit=1000" | jq length)
    failed=$(call GET "/v1/requests?status=failed&limit=1000" | jq length)
    rss=$(rss_mib "$S3_PID"); ((rss > moto_peak)) && moto_peak=$rss
    ((failed == 0)) || { echo "$failed request(s) failed; see $run" >&2; return 1; }
    (($(date +%s) - ${start%.*} < TIMEOUT_S)) || { echo "timed out after $TIMEOUT_S s" >&2; return 1; }
  done
  local end
  end=$(date +%s.%N)
  local worker_rss=()
  for i in "${worker_pids[@]}"; do
    worker_rss+=("$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$i/status" 2>/dev/null || echo 0)")
    kill "$i" 2>/dev/null || true
  done
  for i in "${worker_pids[@]}"; do wait "$i" 2>/dev/null || true; done

  local q="psql $dburl -Atc"
  local tasks rewritten rows bytes_read bytes_written plans attempts per_worker
  tasks=$($q "SELECT count(*) FROM jobs WHERE kind = 'erase_file'")
  rewritten=$($q "SELECT count(*) FROM jobs WHERE kind = 'erase_file' AND status = 'succeeded' AND result::json->>'status' = 'rewritten'")
  rows=$($q "SELECT coalesce(sum((result::json->>'rows_removed')::bigint), 0) FROM jobs WHERE kind = 'erase_file'")
  bytes_read=$($q "SELECT coalesce(sum((result::json->>'bytes_read')::bigint), 0) FROM jobs WHERE kind = 'erase_file'")
  bytes_written=$($q "SELECT coalesce(sum((result::json->>'bytes_written')::bigint), 0) FROM jobs WHERE kind = 'erase_file'")
  plans=$($q "SELECT count(*) FROM jobs WHERE kind = 'erasure' AND status = 'succeeded'")
  attempts=$($q "SELECT coalesce(sum(attempts), 0) FROM jobs")
  per_worker=$($q "SELECT string_agg(n::text, ' / ' ORDER BY actor) FROM (SELECT actor, count(*) AS n FROM audit_log WHERE action = 'file.erased' GROUP BY actor) t")
  # Seconds from starting the workers until the plan had fanned out its tasks (serial part).
  local plan_s
  plan_s=$($q "SELECT extract(epoch FROM min(created_at::timestamptz)) - $start FROM jobs WHERE kind = 'erase_file'")

  # How many plans fanned out tasks (a batch each), and how many requests each carried.
  local batches batch_sizes
  batches=$($q "SELECT count(DISTINCT parent_id) FROM jobs WHERE kind = 'erase_file'")
  batch_sizes=$($q "SELECT string_agg(json_array_length(payload::json->'batch')::text, ' + ' ORDER BY created_at) FROM jobs WHERE id IN (SELECT parent_id FROM jobs WHERE kind = 'erase_file')")

  # Check the lake itself: the erased subjects are gone, the others are untouched.
  echo "== [$n worker(s)] checking the bucket" >&2
  s3 download "$bucket" "$run/lake-after"
  local left kept
  left=$(locate_rows "$run/lake-after/running_events" "$OUT/erase-subjects.txt")
  kept=$(locate_rows "$run/lake-after/running_events" "$OUT/keep-subjects.txt")
  rm -rf "$run/lake-after"
  if ((left != 0 || kept != KEEP_ROWS)); then
    echo "LAKE CHECK FAILED: $left rows of erased subjects left; $kept of $KEEP_ROWS rows of 10 other subjects" >&2
  fi

  kill "$service_pid" 2>/dev/null || true
  wait "$service_pid" 2>/dev/null || true
  unset LETHE__STORAGE__ALLOWED_ROOTS LETHE__DATABASE__URL LETHE__STORAGE__DATA_DIR LETHE__WORKER__IN_PROCESS LETHE__SERVER__PORT \
    LETHE__LOG__FORMAT LETHE__WORKER__POLL_INTERVAL_MS
  s3 drop "$bucket"

  jq -nc --argjson workers "$n" --argjson start "$start" --argjson stop "$end" \
    --argjson completed "$done_count" --argjson tasks "$tasks" --argjson rewritten "$rewritten" \
    --argjson rows "$rows" --argjson br "$bytes_read" --argjson bw "$bytes_written" \
    --argjson plans "$plans" --argjson attempts "$attempts" --arg per_worker "$per_worker" \
    --arg worker_rss "${worker_rss[*]}" --argjson moto_peak "$moto_peak" --argjson plan_s "$plan_s" \
    --argjson batches "$batches" --arg batch_sizes "$batch_sizes" --argjson left "$left" \
    --argjson kept "$kept" --argjson keep_rows "$KEEP_ROWS" --argjson erase_rows "$ERASE_ROWS" '{
      workers: $workers, wall_s: ($stop - $start), plan_s: $plan_s, requests_completed: $completed,
      erasure_jobs_succeeded: $plans, batches: $batches, batch_sizes: $batch_sizes,
      erased_subjects_rows_before: $erase_rows, erased_subjects_rows_left: $left,
      other_subjects_rows_before: $keep_rows, other_subjects_rows_after: $kept, tasks: $tasks, files_rewritten: $rewritten, rows_removed: $rows,
      bytes_read: $br, bytes_written: $bw, job_attempts: $attempts,
      tasks_per_worker: $per_worker, worker_peak_rss_mib: $worker_rss,
      moto_rss_peak_mib: $moto_peak }' >"$OUT/result-$n.json"
}

RESULTS=()
for n in $WORKER_COUNTS; do
  bench "$n"   # not in $(…): the EXIT trap must see the processes it starts
  cat "$OUT/result-$n.json" >&2
  RESULTS+=("$(cat "$OUT/result-$n.json")")
done

# ---- report -----------------------------------------------------------------------------------
BASE_WALL=$(jq -r .wall_s <<<"${RESULTS[0]}")
table=""
for r in "${RESULTS[@]}"; do
  table+=$(jq -r --argjson base "$BASE_WALL" '
    def r1: (. * 10 | round) / 10;
    def r2: (. * 100 | round) / 100;
    "| \(.workers) | **\(.wall_s | r1) s** | \($base / .wall_s | r2)× | \(.plan_s | r1) s | \(.requests_completed) | \(.batches) (\(.batch_sizes)) | \(.tasks) / \(.files_rewritten) | \(.rows_removed) | \(.bytes_read / 1e6 | round) / \(.bytes_written / 1e6 | round) | \(.job_attempts) | \(.tasks_per_worker) | \(.worker_peak_rss_mib | split(" ") | join(" / ")) MiB | \(.moto_rss_peak_mib) MiB | \(.erased_subjects_rows_left) / \(.other_subjects_rows_after) of \(.other_subjects_rows_before) |"' <<<"$r")
  table+=$'\n'
done

BODY=$OUT/section.md
cat >"$BODY" <<EOT
## Workers: one 100-subject erasure batch on S3, 1 vs 3 workers

\`bench/workers.sh\` generates the lake with the offline bench's options, uploads it to a bucket
on **moto** (an S3 emulator, \`.ci/s3.sh\`), starts \`lethe-service serve\` with
\`LETHE__WORKER__IN_PROCESS=false\` on a fresh PostgreSQL database (\`.ci/postgres.sh\`), creates
an admin with \`lethe-service user create\`, registers \`s3://<bucket>/running_events\`, files and
approves $ERASURES erasures (the first $ERASURES subject ids of the lake) through the API, and only then starts N
\`lethe-worker run\` processes. Wall time runs from starting the workers until
\`GET /v1/requests?status=completed\` lists all $ERASURES requests (polled every 0.5 s). Each worker count
gets a fresh database and a fresh bucket. The batch is one \`erasure\` plan (it absorbs the other
99 approved erasures, locates the subjects in every file by footer statistics and bloom filters,
and fans out one \`erase_file\` task per affected file), then the tasks, shared by the workers.

- date: $(date -u +%Y-%m-%dT%H:%MZ), commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`
- machine: $(machine_line); PostgreSQL, moto, the service and all workers on this one machine
- lake: $(jq -r '"\(.rows) rows, \(.files) files, \(.bytes / 1e6 | round) MB"' <<<"$GEN"); $SUBJECTS subjects x $DAYS days x ~$EVENTS_PER_DAY runs/day, 3 regions, seed $SEED, row groups of $ROW_GROUP_ROWS rows
- S3: moto $(python3 -c 'import moto; print(moto.__version__)') (\`python3 -m moto.server\`, one process), path-style over HTTP on 127.0.0.1
- workers: default settings (\`worker.file_concurrency\` 2, lease 60 s), poll interval ${POLL_MS:-200} ms

| workers | wall time | speed-up | plan phase | requests completed | batches (requests each) | tasks / files rewritten | rows removed | MB read / written | job claims | tasks per worker | worker peak RSS | moto RSS (peak seen) | lake check: erased rows left / other rows kept |
|---:|---:|---:|---:|---:|---|---|---:|---|---:|---|---|---:|---|
$table
"Plan phase": from starting the workers until the plan's tasks existed (one worker claims the
plan, locates the subjects and fans out; the others wait), the part extra workers cannot shorten.
"Job claims" sums \`attempts\` over every job: the plans that ran plus the tasks, more only on
retries (absorbed plans are never claimed). "Lake check": after the run the bucket is copied out
and \`lethe-worker locate\` counts the rows of the $ERASURES erased subjects (must be 0; $ERASE_ROWS before)
and of the next 10 subject ids, which were not erased (must be unchanged). "Tasks per worker" counts \`file.erased\` audit entries per worker.

Raw summaries:

\`\`\`json
$(printf '%s\n' "${RESULTS[@]}")
\`\`\`
EOT
write_section workers "$BODY"
cat "$BODY"
