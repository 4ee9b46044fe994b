#!/usr/bin/env bash
# Row-group surgery benchmark: an unsorted 18 M-row lake (150 files of 2 row groups, written by
# pyarrow), erase 1 subject and 100 subjects with `lethe-worker erase`, and 100 subjects with
# DuckDB (`COPY (SELECT … WHERE user_id NOT IN …) TO` per affected file), each on a fresh copy;
# writes the figures to bench/README.md between the `surgery-bench` markers.
#
# Usage: bench/surgery.sh   Tunables: FILES (150), ROWS_PER_FILE (120000), JOBS (cores + 1),
#                           SKIP_BUILD=1 to reuse target/release/lethe-worker
# Needs: cargo, jq, python3 with pyarrow and duckdb (pip install pyarrow duckdb).
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=${FILES:-150}
ROWS_PER_FILE=${ROWS_PER_FILE:-120000}
JOBS=${JOBS:-$(( $(nproc) + 1 ))}  # lethe-worker's default
OUT=bench/out/surgery
BIN=target/release/lethe-worker
PY=bench/surgery_lake.py

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release -p lethe-worker >&2
fi
rm -rf "$OUT"; mkdir -p "$OUT"
echo "== generating $FILES files x $ROWS_PER_FILE rows (unsorted)" >&2
GEN=$(python3 "$PY" generate "$OUT/lake" --files "$FILES" --rows-per-file "$ROWS_PER_FILE")
SUBJECTS="$OUT/subjects.txt"

fresh() { rm -rf "$OUT/copy"; cp -r "$OUT/lake" "$OUT/copy"; sync; }

lethe() { # lethe <n>: JSON summary of erasing the first n subjects from a fresh copy
  fresh
  head -n "$1" "$SUBJECTS" >"$OUT/subjects-$1.txt"
  /usr/bin/time -f '%M' -o "$OUT/time-$1" "$BIN" erase --root "$OUT/copy" --subject-column user_id \
    --subjects "$OUT/subjects-$1.txt" --jobs "$JOBS" 2>"$OUT/erase-$1.err" | tail -n 1
}

HOLD1=$(python3 "$PY" holding "$OUT/lake" "$SUBJECTS" 1)
ONE=$(lethe 1)
HUNDRED=$(lethe 100)
fresh
DUCK=$(python3 "$PY" duckdb "$OUT/copy" "$SUBJECTS" 100)
rm -rf "$OUT/copy"

ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }
L100=$(jq -r .elapsed_s <<<"$HUNDRED"); D100=$(jq -r .elapsed_s <<<"$DUCK")
SECTION=$(cat <<MD
# Row-group surgery against DuckDB (unsorted lake)

Produced by \`bench/surgery.sh\` (do not edit by hand; rerun it).

- date: $(date -u +%Y-%m-%dT%H:%MZ), commit \`$(git rev-parse --short HEAD)\`
- machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/{print $2}') GiB RAM
- lake: $(jq -r .rows <<<"$GEN") rows, $(jq -r .files <<<"$GEN") files, $(( $(jq -r .bytes <<<"$GEN") / 1000000 )) MB, written by pyarrow (zstd, dictionary, 2 row groups per file, user ids uniform over 1 M users, unsorted)
- Lethe: \`lethe-worker erase --jobs $JOBS\`; DuckDB $(jq -r .duckdb <<<"$DUCK"): one \`COPY (SELECT * … WHERE user_id NOT IN (…)) TO … (COMPRESSION zstd)\` per affected file, finding those files not timed

| erase | files rewritten | row groups rewritten / copied | MB re-encoded | MB copied | rows removed | elapsed | peak RSS |
|---|---:|---:|---:|---:|---:|---:|---:|
| Lethe, 1 subject | $(jq -r .files_rewritten <<<"$ONE") | $(jq -r '"\(.row_groups_rewritten) / \(.row_groups_copied)"' <<<"$ONE") | $(jq -r '.bytes_reencoded/1e6*10|round/10' <<<"$ONE") | $(jq -r '.bytes_copied/1e6*10|round/10' <<<"$ONE") | $(jq -r .rows_removed <<<"$ONE") | $(jq -r '.elapsed_s*100|round/100' <<<"$ONE") s | $(( $(cat "$OUT/time-1") / 1024 )) MiB |
| Lethe, 100 subjects | $(jq -r .files_rewritten <<<"$HUNDRED") | $(jq -r '"\(.row_groups_rewritten) / \(.row_groups_copied)"' <<<"$HUNDRED") | $(jq -r '.bytes_reencoded/1e6*10|round/10' <<<"$HUNDRED") | $(jq -r '.bytes_copied/1e6*10|round/10' <<<"$HUNDRED") | $(jq -r .rows_removed <<<"$HUNDRED") | $(jq -r '.elapsed_s*100|round/100' <<<"$HUNDRED") s | $(( $(cat "$OUT/time-100") / 1024 )) MiB |
| DuckDB, 100 subjects | $(jq -r .files_rewritten <<<"$DUCK") | – | – | – | – | $(jq -r '.elapsed_s*100|round/100' <<<"$DUCK") s | – |

- 1 subject: the row groups holding it are $(jq -r .row_groups <<<"$HOLD1") in $(jq -r .files <<<"$HOLD1") files, $(jq -r '.compressed_bytes/1e6*10|round/10' <<<"$HOLD1") MB compressed; Lethe re-encoded $(ratio "$(jq -r .bytes_reencoded <<<"$ONE")" "$(jq -r .compressed_bytes <<<"$HOLD1")") x that (target <= 1.2 x).
- 100 subjects: Lethe took $(ratio "$L100" "$D100") x DuckDB's time (target <= 0.3 x).

Raw summaries (Lethe 1, Lethe 100, DuckDB 100, row groups holding subject 1):

\`\`\`json
$ONE
$HUNDRED
$DUCK
$HOLD1
\`\`\`
MD
)
# The hand-written profile notes (where the time goes, distance to the floor) follow the figures.
if [ -f bench/surgery-profile.md ]; then
  SECTION="$SECTION

$(cat bench/surgery-profile.md)"
fi
printf '%s\n' "$SECTION" >bench/surgery.md
python3 - "$SECTION" <<'PY'
import re, sys
path = "bench/README.md"
text = open(path).read()
section = "<!-- surgery-bench -->\n" + sys.argv[1] + "\n<!-- /surgery-bench -->"
pattern = re.compile(r"<!-- surgery-bench -->.*?<!-- /surgery-bench -->", re.S)
text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
open(path, "w").write(text)
PY
echo "$SECTION"
