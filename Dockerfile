# syntax=docker/dockerfile:1
# One image with the four binaries (ingest, validator, sheets-sync, sheets-emulator); each
# container picks its binary with its command (docker-compose.yml, deploy/kubernetes/).
#   docker build -t collect:local .
# No Docker engine runs where this was written: the deploy-check tests read this file instead
# (every service binary of the workspace built and copied, a non-root user).

# Build: the toolchain the workspace is built and tested with (sqlx 0.9 needs 1.94 or later).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
        --bin ingest --bin validator --bin sheets-sync --bin sheets-emulator \
    && mkdir -p /out \
    && cp target/release/ingest target/release/validator target/release/sheets-sync \
        target/release/sheets-emulator /out/

# Run: the same Debian as the build (glibc), CA certificates for Google's TLS, curl for the
# compose health checks; no shell tools beyond the base image's.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin collect \
    && mkdir -p /var/lib/collect \
    && chown 10001:10001 /var/lib/collect
COPY --from=build /out/ingest /out/validator /out/sheets-sync /out/sheets-emulator /usr/local/bin/
# /var/lib/collect: where the emulator writes its service-account key (a volume in compose).
WORKDIR /var/lib/collect
USER 10001:10001
ENV LOG_FORMAT=json
EXPOSE 8080 8081 8082 8090
CMD ["ingest"]
