# Builds both binaries; the same image runs the service (default) or a worker
# (`--entrypoint lethe-worker … run`, as docker-compose.yml does).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p lethe-service -p lethe-worker

FROM debian:bookworm-slim
# ca-certificates: TLS to S3 and PostgreSQL; curl: the health checks.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 lethe \
    && mkdir -p /var/lib/lethe/exports && chown -R lethe /var/lib/lethe
COPY --from=build /src/target/release/lethe-service /src/target/release/lethe-worker /usr/local/bin/
USER lethe
WORKDIR /var/lib/lethe
ENV LETHE__SERVER__HOST=0.0.0.0 LETHE__STORAGE__DATA_DIR=/var/lib/lethe LETHE__LOG__FORMAT=json
EXPOSE 8080
# The service and the worker finish the request / job in hand on SIGTERM.
STOPSIGNAL SIGTERM
ENTRYPOINT ["lethe-service"]
CMD ["serve"]
