#!/usr/bin/env bash
# OpenAPI-driven fuzzing of the real service (issue 11): schemathesis reads /openapi.json and
# sends generated requests (valid and invalid) to every operation as an admin, an auditor and a
# subject; the run fails on any 5xx and on any answer the document does not describe (status,
# content type, body schema). Bounded: 5 examples per operation and 75 s per role, so the run
# takes about 4 minutes on two cores once the binary is built.
#
# Env: LETHE_FUZZ_BIN (a built lethe-service; default: build the debug binary),
#      LETHE_FUZZ_EXAMPLES (examples per operation, default 5),
#      LETHE_FUZZ_SECONDS (time budget per role, default 75).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

if ! python3 -c 'import schemathesis' >/dev/null 2>&1; then
    python3 -m pip install --quiet schemathesis
fi

bin="${LETHE_FUZZ_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --quiet -p lethe-service
    bin="$root/target/debug/lethe-service"
fi

work="$(mktemp -d /tmp/lethe-fuzz.XXXXXX)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
base="http://127.0.0.1:$port"
# The embedded default (SQLite, local lake, in-process worker) with a small demo lake and its
# three accounts; generous sign-in limits (the fuzzer signs in and up too).
(
    cd "$work"
    export LETHE__SERVER__PORT="$port" LETHE__LOG__FILTER=warn \
        LETHE__AUTH__ATTEMPTS_PER_IP_PER_MINUTE=100000 LETHE__AUTH__ATTEMPTS_PER_ACCOUNT_PER_MINUTE=100000
    exec "$bin" demo --subjects 40 --days 2 >"$work/service.log" 2>&1
) &
pid=$!
cleanup() {
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

for _ in $(seq 1 240); do
    curl -sf "$base/healthz" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/service.log"; echo "the service did not start" >&2; exit 1; }
    sleep 0.5
done
curl -sf "$base/healthz" >/dev/null

token() {
    python3 - "$work/lethe-data/demo-credentials.json" "$1" "$base" <<'PY'
import json, sys, urllib.request
creds, role, base = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
email, password = creds[role]
request = urllib.request.Request(f"{base}/v1/auth/login", method="POST",
    data=json.dumps({"email": email, "password": password}).encode(),
    headers={"Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(request))["access_token"])
PY
}
# All three tokens first: the fuzzer's own sign-ins must not get in their way.
declare -A tokens
for role in admin auditor subject; do
    tokens[$role]="$(token "$role")"
done

status=0
for role in admin auditor subject; do
    echo "== schemathesis as $role"
    # Signing out, changing the password and disabling accounts would end the run's own
    # sessions, and schemathesis cannot write the ingest bodies (JSON Lines, CSV, Parquet);
    # those endpoints have their own API tests.
    schemathesis run "$base/openapi.json" --url "$base" \
        -H "Authorization: Bearer ${tokens[$role]}" \
        --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
        --exclude-path /v1/auth/logout --exclude-path /v1/auth/password \
        --exclude-path-regex '/disable$' --exclude-path '/v1/datasets/{id}/ingest' \
        --phases examples,coverage,fuzzing \
        --max-examples "${LETHE_FUZZ_EXAMPLES:-5}" --max-time "${LETHE_FUZZ_SECONDS:-75}" \
        --workers 2 --seed 11 --no-color --warnings off --generation-database none \
        --report junit --report-dir "$root/target/fuzz-$role" || status=1
done
if [ "$status" -ne 0 ]; then
    echo "== the service's log"
    tail -n 50 "$work/service.log"
fi
exit "$status"
