# The gateway as a container image: a build stage with the toolchain and the C build
# prerequisites (cmake for Pingora's zlib-ng, protoc for the skywalking crate), then a
# slim runtime with the binary and a non-root user.
#   docker build -t gateway:0.1.0 .
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake protobuf-compiler libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The release profile is fat LTO: slow to build, what the benchmarks measure.
RUN cargo build --release --locked -p gateway --bin gateway \
 && cp target/release/gateway /gateway

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 65532 --user-group --no-create-home --shell /usr/sbin/nologin gateway \
 && mkdir -p /var/cache/gateway && chown 65532:65532 /var/cache/gateway
COPY --from=build /gateway /usr/local/bin/gateway
USER 65532:65532
# HTTP, cluster-local HTTP (KIngress ClusterLocal), HTTPS, stats (/stats/prometheus,
# /healthz/ready); admin stays on loopback.
EXPOSE 8080 8081 8443 15020
ENTRYPOINT ["/usr/local/bin/gateway"]
CMD ["run", "--kube"]
