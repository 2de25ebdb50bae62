# mediabot's container image: the `mediabot` binary on Debian slim.
#
#   docker build -t mediabot:0.1.0 .
#   docker run --rm --cap-add SYS_NICE mediabot:0.1.0 --version
#
# The binary carries the file capability cap_sys_nice so that its real-time audio workers
# get SCHED_FIFO while it runs as a non-root user. Such a binary starts only where
# SYS_NICE is in the container's bounding set: add it (`docker run --cap-add SYS_NICE`; the
# Kubernetes manifests in deploy/k8s add it), or build without the capability
# (`--build-arg REALTIME_CAP=0`), in which case the workers run at normal priority.
# How to run it as a service: docs/scale-out.md.

# The build image's Debian release must match the runtime image's (glibc).
ARG RUST_VERSION=1.88
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# cmake builds the bundled libopus (see scripts/setup for the same list on a bare machine).
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin mediabot

FROM debian:${DEBIAN_RELEASE}-slim
ARG REALTIME_CAP=1
COPY --from=build /src/target/release/mediabot /usr/local/bin/mediabot
# ca-certificates: TLS to Microsoft Graph and its token service (rustls reads the system
# roots). curl: the Kubernetes preStop hook polls /calls with it. libcap2-bin only to set the
# file capability, then removed. No setuid or setgid file is left: the Kubernetes manifests
# allow privilege escalation for the file capability, so there must be nothing else to gain.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl libcap2-bin; \
    if [ "$REALTIME_CAP" = 1 ]; then setcap cap_sys_nice+ep /usr/local/bin/mediabot; fi; \
    apt-get purge -y --auto-remove libcap2-bin; \
    rm -rf /var/lib/apt/lists/*; \
    find / -xdev -type f -perm /6000 -exec chmod ug-s {} +; \
    groupadd --system --gid 10001 mediabot; \
    useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin mediabot

# Listen on every interface of the container rather than loopback (the binary's default).
# The mpUri must still name a host the calling service's media side can reach:
# set MEDIABOT_MEDIA_PUBLIC_HOST. The WebRTC ICE candidates are the container's own
# addresses, so outside a shared network namespace (docker --network host, Kubernetes
# hostNetwork) only peers that can reach the container's address get media.
ENV MEDIABOT_HTTP_BIND=0.0.0.0:8080 \
    MEDIABOT_MEDIA_BIND=0.0.0.0:8445 \
    MEDIABOT_MEDIA_PORT_RANGE=40000-40099

# HTTP (callbacks, /healthz, /readyz, /calls, /metrics), the mpUri listener, WebRTC media.
EXPOSE 8080/tcp 8445/tcp 40000-40099/udp

USER 10001:10001
# mediabot runs as PID 1: SIGTERM starts its drain, and the Kubernetes preStop hook signals
# PID 1 to start it.
ENTRYPOINT ["mediabot"]
# The calling service is always named (MEDIABOT_TARGET=sim|graph, or --target); there is no
# default target.
CMD ["bot"]
