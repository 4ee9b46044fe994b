#!/usr/bin/env bash
# Starts a throwaway S3 API server (moto) on a free port and exports LETHE_TEST_S3_ENDPOINT plus
# the AWS_* variables the lake engine reads. Source it; call `stop_s3` (or set an EXIT trap).
# Installs `moto[server]` with pip when it is missing. Each test creates its own bucket.
set -euo pipefail

if ! python3 -c 'import moto, flask, flask_cors' >/dev/null 2>&1; then
    python3 -m pip install --quiet 'moto[server]'
fi
S3_DIR="$(mktemp -d /tmp/lethe-s3.XXXXXX)"
S3_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
python3 -m moto.server -H 127.0.0.1 -p "$S3_PORT" >"$S3_DIR/server.log" 2>&1 &
S3_PID=$!
stop_s3() {
    kill "$S3_PID" >/dev/null 2>&1 || true
    wait "$S3_PID" 2>/dev/null || true
    rm -rf "$S3_DIR"
}
for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$S3_PORT/moto-api/" 2>/dev/null \
        || curl -sS -o /dev/null "http://127.0.0.1:$S3_PORT/" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$S3_PID" 2>/dev/null; then
        cat "$S3_DIR/server.log" >&2
        echo "moto server did not start" >&2
        return 1 2>/dev/null || exit 1
    fi
    sleep 0.2
done
export LETHE_TEST_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
echo "S3 API (moto) ready at $LETHE_TEST_S3_ENDPOINT (log in $S3_DIR/server.log)" >&2
