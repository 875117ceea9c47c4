# MIMServe container: build with the Swift toolchain, run on a slim Debian with only the
# shared libraries. Data (SQLite, checkpoints, dataset folders) lives on the /data volume;
# -e MIMSERVE_DATABASE=postgres://… keeps the job store in PostgreSQL instead.
#   docker build -t mimserve .
#   docker run -p 8080:8080 -e MIMSERVE_TOKEN=change-me -v mimserve-data:/data mimserve
# The command defaults to `serve`; `… mimserve worker` runs a worker (docker-compose.cluster.yml).

FROM swift:6.3-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas-dev libsqlite3-dev libssl-dev libpng-dev libjpeg-dev \
    zlib1g-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
# Portable x86-64 code: the image may run on CPUs without AVX2 (no MIMSERVE_TARGET_CPU).
RUN swift build -c release --product mimserve --static-swift-stdlib \
 && mkdir -p /out/bin \
 && cp "$(swift build -c release --show-bin-path)/mimserve" /out/bin/

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopenblas0-pthread libsqlite3-0 libpng16-16 libjpeg62-turbo zlib1g \
    libcurl4 libxml2 ca-certificates curl tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /home/mimserve --uid 10001 mimserve \
 && mkdir -p /data && chown mimserve /data
COPY --from=build /out/bin/mimserve /usr/local/bin/mimserve
# Found by mimserve in ../share/mimserve beside its binary.
COPY Public /usr/local/share/mimserve/Public
# Both dialects: Migrations/sqlite/ and Migrations/postgres/.
COPY Migrations /usr/local/share/mimserve/Migrations
USER 10001
ENV MIMSERVE_HOST=0.0.0.0 MIMSERVE_PORT=8080 MIMSERVE_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 8080
# On whichever port the node listens: the server's, or a worker's probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["sh", "-c", "curl -fs \"http://127.0.0.1:${MIMSERVE_PORT}/healthz\" || exit 1"]
# Binding to 0.0.0.0 needs MIMSERVE_TOKEN: the server refuses to start without it. A worker
# (`worker`, with MIMSERVE_PORT=9090, say) serves only probes and needs none.
ENTRYPOINT ["mimserve"]
CMD ["serve"]
