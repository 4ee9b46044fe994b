#!/usr/bin/env bash
# Sign-in flood: 2,000 login attempts from 64 concurrent clients against `lethe-service serve`
# (embedded default, SQLite), twice: with the default limits (one client address: nearly all
# are refused by the per-address rate limit before any hash), and with the rate limits lifted
# (as if every attempt came from another address), so that only the bound on concurrent argon2
# hashes stands. Samples the service's RSS and times `GET /v1/me` during the flood. Writes
# bench/auth.md and the `auth-bench` section of bench/README.md.
#
# Usage: bench/auth.sh   Tunables: ATTEMPTS (2000), CLIENTS (64),
#   SERVICE_BIN (default target/release/lethe-service, built unless SKIP_BUILD=1)
# Needs: cargo, curl, jq, python3.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
ATTEMPTS=${ATTEMPTS:-2000}
CLIENTS=${CLIENTS:-64}
SERVICE_BIN=${SERVICE_BIN:-target/release/lethe-service}
OUT=$PWD/bench/out/auth
for tool in jq curl python3; do command -v "$tool" >/dev/null || { echo "bench needs $tool" >&2; exit 2; }; done
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  cargo build --release -p lethe-service >&2
fi
rm -rf "$OUT"; mkdir -p "$OUT"
PROFILE=${PROFILE:-$(basename "$(dirname "$SERVICE_BIN")")}

PID=
cleanup() { if [[ -n "$PID" ]]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi; }
trap cleanup EXIT

run() { # run NAME [ENV=VALUE...]: one flood against a fresh service; prints the JSON line
  local name=$1; shift
  local dir=$OUT/$name port api token
  mkdir -p "$dir"
  port=$(free_port)
  api="http://127.0.0.1:$port"
  (cd "$dir" && exec env LETHE__SERVER__PORT="$port" LETHE__WORKER__IN_PROCESS=false \
      LETHE__LOG__FILTER=warn "$@" "$SERVICE_BIN" serve >"$dir/service.log" 2>&1) &
  PID=$!
  for _ in $(seq 1 150); do curl -fsS -o /dev/null "$api/healthz" 2>/dev/null && break; sleep 0.2; done
  # The account whose token times /v1/me (created in the same data folder).
  printf '%s' 'bench-password-not-secret' | (cd "$dir" && "$SERVICE_BIN" user create \
      --email reader@bench.invalid --role auditor --password-stdin >/dev/null 2>&1)
  printf '%s' 'bench-password-not-secret' | (cd "$dir" && "$SERVICE_BIN" user create \
      --email admin@bench.invalid --role admin --password-stdin >/dev/null 2>&1)
  token=$(curl -fsS "$api/v1/auth/login" -H 'content-type: application/json' \
      -d '{"email":"reader@bench.invalid","password":"bench-password-not-secret"}' | jq -r .access_token)
  python3 bench/auth_flood.py "$api" "$PID" "$token" --attempts "$ATTEMPTS" --clients "$CLIENTS"
  cleanup; PID=
}

echo "== flood with the default limits" >&2
DEFAULTS=$(run defaults)
echo "== flood with the rate limits lifted (hash bound only)" >&2
LIFTED=$(run lifted LETHE__AUTH__ATTEMPTS_PER_IP_PER_MINUTE=1000000 \
  LETHE__AUTH__ATTEMPTS_PER_ACCOUNT_PER_MINUTE=1000000 LETHE__AUTH__LOCKOUT_AFTER_FAILURES=1000000)

row() { # row LABEL JSON
  jq -r --arg what "$1" '"| \($what) | \(.elapsed_s) s | \(.statuses | to_entries | map("\(.key): \(.value)") | join(", ")) | \(.login_ms_p50) / \(.login_ms_p99) ms | \(.rss_mib_before) → \(.rss_mib_peak_vmhwm) MiB (after: \(.rss_mib_after)) | \(.me_ms_p50_before) ms → \(.me_ms_p50_during) / \(.me_ms_p99_during) ms |"' <<<"$2"
}

SECTION=$(cat <<MD
## Sign-in flood (\`bench/auth.sh\`)

$ATTEMPTS \`POST /v1/auth/login\` attempts from $CLIENTS concurrent clients (keep-alive
connections, one address), half on random unknown e-mails, half with wrong passwords on one real
account, against \`lethe-service serve\` (embedded default, SQLite, $PROFILE build of commit
\`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`). RSS is the service's \`VmRSS\` before and its peak
\`VmHWM\`; \`GET /v1/me\` (one token, sampled every 100 ms) shows how other endpoints answer meanwhile.
Before the limits (issue 11) the same flood grew the service from 357 MB to 14.6 GB of RSS.

- date: $(date -u +%Y-%m-%dT%H:%MZ); machine: $(machine_line)

| limits | elapsed | answers | login p50 / p99 | RSS before → peak | \`GET /v1/me\` p50 before → during p50 / p99 |
|---|---:|---|---:|---:|---:|
$(row "defaults (30/min per address, 10/min per account, lockout after 5)" "$DEFAULTS")
$(row "rate limits lifted: only the bound of $(nproc) hashes at once" "$LIFTED")

With the defaults, one address gets its burst of 30 attempts (a few hashes, the rest wait for
a hashing slot and get 503 after 500 ms), then 429 at once, without a hash: the flood is over in
about a second, and \`GET /v1/me\` slows only while 64 clients hammer the listener at full speed.
With the rate limits lifted, at most $(nproc) hashes run at once and the rest get 503 +
\`Retry-After: 1\` after waiting 500 ms; argon2's 19 MiB work areas are reused, so RSS stays at
a few of them. Before that reuse, the allocator kept every freed area in per-thread arenas
(about 600 MiB after the same flood). The figures come from one run on a small machine shared
with other builds; they vary by tens of percent from run to run.

Raw summaries (defaults, lifted):

\`\`\`json
$DEFAULTS
$LIFTED
\`\`\`
MD
)
printf '%s\n' "$SECTION" >bench/auth.md
python3 - "$SECTION" <<'PY'
import re, sys
path = "bench/README.md"
text = open(path).read()
section = "<!-- auth-bench -->\n" + sys.argv[1] + "\n<!-- /auth-bench -->"
pattern = re.compile(r"<!-- auth-bench -->.*?<!-- /auth-bench -->", re.S)
text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section + "\n"
open(path, "w").write(text)
PY
echo "$SECTION"
