#!/usr/bin/env bash
# Offline erase benchmark: generate a demo lake of >= 5 million rows, erase 1 subject and then
# 100 subjects (each on a fresh copy of the lake), and write the figures to bench/README.md.
#
# Usage: bench/run.sh            (from anywhere; takes a few minutes after the release build)
# Tunables (environment): SUBJECTS (50000), DAYS (30), EVENTS_PER_DAY (3.4), SEED (42),
#                         JOBS (number of cores), ROW_GROUP_ROWS (16384),
#                         SKIP_BUILD=1 to reuse an existing target/release/lethe-worker
# Needs: cargo, jq. Output: bench/out/ (gitignored) and bench/README.md.
set -euo pipefail

cd "$(dirname "$0")/.."
SUBJECTS=${SUBJECTS:-50000}
DAYS=${DAYS:-30}
EVENTS_PER_DAY=${EVENTS_PER_DAY:-3.4}
SEED=${SEED:-42}
JOBS=${JOBS:-$(nproc)}
ROW_GROUP_ROWS=${ROW_GROUP_ROWS:-16384}
OUT=bench/out
README=bench/README.md
BIN=target/release/lethe-worker

command -v jq >/dev/null || { echo "bench needs jq" >&2; exit 2; }

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  echo "== building lethe-worker (release)" >&2
  cargo build --release -p lethe-worker >&2
fi
[[ -x "$BIN" ]] || { echo "no $BIN; build it or unset SKIP_BUILD" >&2; exit 2; }

rm -rf "$OUT"
mkdir -p "$OUT"

echo "== generating the lake: $SUBJECTS subjects x $DAYS days x ~$EVENTS_PER_DAY events/day" >&2
"$BIN" generate --out "$OUT/lake" --subjects "$SUBJECTS" --days "$DAYS" \
  --events-per-day "$EVENTS_PER_DAY" --seed "$SEED" --row-group-rows "$ROW_GROUP_ROWS" \
  --subjects-out "$OUT/subjects.txt" >"$OUT/generate.out"
GEN=$(tail -n 1 "$OUT/generate.out")
ROWS=$(jq -r .rows <<<"$GEN")
if ((ROWS < 5000000)); then
  echo "lake has only $ROWS rows; raise SUBJECTS or EVENTS_PER_DAY" >&2
  exit 1
fi

erase() { # erase <n>: erase the first n subjects from a fresh copy; prints the JSON summary
  local n=$1 lake="$OUT/lake-erase-$1"
  rm -rf "$lake"
  cp -r "$OUT/lake" "$lake"
  head -n "$n" "$OUT/subjects.txt" >"$OUT/subjects-$n.txt"
  echo "== erasing $n subject(s) with --jobs $JOBS" >&2
  local rc=0
  "$BIN" erase --root "$lake" --subject-column user_id --subjects "$OUT/subjects-$n.txt" \
    --jobs "$JOBS" >"$OUT/erase-$n.out" 2>"$OUT/erase-$n.err" || rc=$?
  if ((rc != 0)); then
    echo "erase of $n subjects exited $rc; see $OUT/erase-$n.err" >&2
    exit 1
  fi
  tail -n 1 "$OUT/erase-$n.out"
  rm -rf "$lake"
}
E1=$(erase 1)
E100=$(erase 100)

row() { # row <label> <json>
  jq -r --arg name "$1" '
    def mb: . / 1e6;
    def r1: (. * 10 | round) / 10;
    "| \($name) | \(.rows_scanned) | \(.rows_removed) | \(.files_scanned) / \(.files_rewritten) / \(.files_failed) | \(.row_groups_rewritten) / \(.row_groups_copied) | \(.elapsed_s | r1) s | \(.rows_per_s | round) | \(.bytes_read / .elapsed_s | mb | r1) | \(.bytes_written / .elapsed_s | mb | r1) | \(.bytes_read | mb | r1) / \(.bytes_written | mb | r1) | \(if .peak_rss_bytes then (.peak_rss_bytes / 1048576 | r1 | tostring) + " MiB" else "n/a" end) |"
  ' <<<"$2"
}

R1=$(row "1 subject" "$E1")
R100=$(row "100 subjects" "$E100")
CPU=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
MEM=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

{
  cat <<EOF
# Offline erase benchmark

The job queue on PostgreSQL and workers against S3 are measured separately, by
\`bench/claims.sh\` and \`bench/workers.sh\`: see [\`production.md\`](production.md).

Produced by \`bench/run.sh\` (do not edit by hand; rerun it). It builds \`lethe-worker\` in release
mode, generates the demo lake with \`lethe-worker generate\`, then runs \`lethe-worker erase\`
for the first subject and for the first 100 subjects of the lake, each on a fresh copy, and
reads the JSON summary each prints as its last stdout line.

- date: $(date -u +%Y-%m-%dT%H:%MZ), commit \`$COMMIT\`
- machine: $(nproc) CPUs ($CPU), $MEM RAM, Linux $(uname -r)
- lake: $(jq -r '"\(.rows) rows, \(.files) files, \(.bytes / 1e6 | round) MB"' <<<"$GEN") (ZSTD, row groups of $ROW_GROUP_ROWS rows, sorted by \`user_id\`, bloom filter on \`user_id\`); $SUBJECTS subjects x $DAYS days x ~$EVENTS_PER_DAY runs/day, 3 regions, seed $SEED; generated in $(jq -r '.elapsed_s * 10 | round / 10' <<<"$GEN") s
- erase: \`--jobs $JOBS\`, local disk (\`file://\`)

| erase | rows scanned | rows removed | files scanned / rewritten / failed | row groups rewritten / copied | elapsed | rows scanned/s | MB/s read | MB/s written | MB read / written | peak RSS |
|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|
$R1
$R100

"Rows scanned" counts every row of every file examined (footer counts), including files the
engine skipped without reading their data because statistics and bloom filters showed the
subjects are not in them; "MB read" is what was actually fetched (footers, bloom filters, column
chunks). Peak RSS is the erase process's \`VmHWM\`. Each 100-subject erase rewrites every file
(the subjects span all regions and days). In a rewritten file only the row groups holding a
subject's rows are decoded and encoded again; the others are copied as encoded bytes (row-group
surgery): the lake is sorted by subject, so a 1-subject erase decodes one row group per file it
touches. Figures are from a single run; on a small shared machine they vary by tens of percent
from run to run.

Raw summaries:

\`\`\`json
$E1
$E100
\`\`\`
EOF
} >"$README"

# The ingest / locate / shred figures (bench/ingest.sh) follow, kept across reruns.
if [ -f bench/ingest.md ]; then
  { echo; echo "<!-- ingest-bench -->"; cat bench/ingest.md; } >>"$README"
fi

# The row-group surgery figures (bench/surgery.sh) follow, kept across reruns.
if [ -f bench/surgery.md ]; then
  { echo; echo "<!-- surgery-bench -->"; cat bench/surgery.md; echo "<!-- /surgery-bench -->"; } >>"$README"
fi

# The sign-in flood figures (bench/auth.sh) follow, kept across reruns.
if [ -f bench/auth.md ]; then
  { echo; echo "<!-- auth-bench -->"; cat bench/auth.md; echo "<!-- /auth-bench -->"; } >>"$README"
fi

cat "$README"
