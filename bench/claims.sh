#!/usr/bin/env bash
# Job-queue benchmark: claims per second with concurrent claimers, on a throwaway PostgreSQL
# (.ci/postgres.sh) and on SQLite, via core/examples/claim_bench.rs. Writes the "claims"
# section of bench/production.md.
#
# Usage: bench/claims.sh
# Tunables (environment): BENCH_JOBS (20000), BENCH_CLAIMERS (8), SKIP_BUILD=1 to reuse
#                         target/release/examples/claim_bench
# Needs: cargo, jq, initdb/pg_ctl (PostgreSQL server binaries), python3.
set -euo pipefail

cd "$(dirname "$0")/.."
source bench/lib.sh
export BENCH_JOBS=${BENCH_JOBS:-20000} BENCH_CLAIMERS=${BENCH_CLAIMERS:-8}
OUT=bench/out/claims
BIN=target/release/examples/claim_bench
command -v jq >/dev/null || { echo "bench needs jq" >&2; exit 2; }

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  echo "== building claim_bench (release)" >&2
  cargo build --release -p lethe-core --example claim_bench >&2
fi
[[ -x "$BIN" ]] || { echo "no $BIN; build it or unset SKIP_BUILD" >&2; exit 2; }
rm -rf "$OUT"
mkdir -p "$OUT"

source .ci/postgres.sh
trap stop_postgres EXIT

run() { # run <label> <url>
  echo "== $1" >&2
  LETHE_BENCH_DATABASE_URL=$2 "$BIN" >"$OUT/$1.out" 2>"$OUT/$1.err" \
    || { cat "$OUT/$1.err" >&2; exit 1; }
  cat "$OUT/$1.err" >&2
  tail -n 1 "$OUT/$1.out"
}
PG=$(run postgres "$LETHE_TEST_POSTGRES_URL")
LITE=$(run sqlite "sqlite:")
PG_VERSION=$(psql "$LETHE_TEST_POSTGRES_URL" -Atc 'SHOW server_version')

row() { # row <label> <json>
  jq -r --arg name "$1" '
    def r1: (. * 10 | round) / 10;
    def r2: (. * 100 | round) / 100;
    "| \($name) | \(.jobs) | \(.claimers) | \(.elapsed_s | r2) s | **\(.claims_per_s | round)** | \(.claim_ms.p50 | r2) / \(.claim_ms.p99 | r2) / \(.claim_ms.max | r1) ms | \(.finish_ms.p50 | r2) / \(.finish_ms.p99 | r2) ms | \(.succeeded) succeeded, \(.duplicates) claimed twice, \(.attempts_not_1) with attempts ≠ 1 → \(if .exactly_once then "ok" else "FAILED" end) | \(.per_claimer | map(tostring) | join(" / ")) |"
  ' <<<"$2"
}

BODY=$OUT/section.md
cat >"$BODY" <<EOT
## Job queue: claims per second

\`bench/claims.sh\` runs \`core/examples/claim_bench.rs\` (\`cargo run --release -p lethe-core
--example claim_bench\` with \`LETHE_BENCH_DATABASE_URL\`): it creates a fresh database, enqueues
$BENCH_JOBS \`access\` jobs (no request; batched \`INSERT\`s of 500 rows), then $BENCH_CLAIMERS tokio tasks
over one pool of $BENCH_CLAIMERS connections each loop \`Store::claim_job\` + \`Store::finish_job(Succeeded)\`
until a claim finds the queue empty. A "claim" below is one claim + finish round trip pair;
latencies are per call, measured in the client.

- date: $(date -u +%Y-%m-%dT%H:%MZ), commit \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`
- machine: $(machine_line); the bench client, and the database server, on the same machine
- PostgreSQL $PG_VERSION: throwaway cluster from \`.ci/postgres.sh\` (\`fsync=off\`, otherwise default settings), reached over TCP on 127.0.0.1
- SQLite: a file in a temporary folder, WAL mode, \`synchronous=NORMAL\`, \`busy_timeout=15000\` (the store's settings)

| backend | jobs | claimers | wall time | claims/s | claim p50 / p99 / max | finish p50 / p99 | exactly once | jobs per claimer |
|---|---:|---:|---:|---:|---|---|---|---|
$(row "PostgreSQL" "$PG")
$(row "SQLite" "$LITE")

"Exactly once": every claimed id was distinct, the table holds $BENCH_JOBS jobs all \`succeeded\`,
and none has \`attempts\` other than 1 (no job was claimed twice, not even after a lost lease).
\`fsync=off\` flatters PostgreSQL's commit latency compared with a production server with durable
commits (each claim and each finish is its own commit). Both the claimers and the database share
this machine's cores, so the claimers' CPU competes with the server's. Single run; expect tens of
percent of variation on a shared machine.

Raw summaries:

\`\`\`json
$PG
$LITE
\`\`\`
EOT
write_section claims "$BODY"
cat "$BODY"
