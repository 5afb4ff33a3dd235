# syntax=docker/dockerfile:1
# garpd's image: one static binary on distroless. Build:
#   docker build --build-arg VERSION=$(git describe --tags --always) -t garpd .
# Base images: Go 1.26.8 on Debian 12 (bump it with go.mod's go line), and
# the distroless static image of Debian 12, which publishes no version tags
# beyond its Debian release: a release build pins it by digest
# (--build-arg BASE=gcr.io/distroless/static-debian12@sha256:...).
# (An ARG that a FROM uses must come before the first FROM.)
ARG BASE=gcr.io/distroless/static-debian12
# The -checks variant adds a shell and curl on Debian 12, for exec checks
# that run scripts (keepalived's check_apiserver.sh):
#   docker build --target checks -t garpd:VERSION-checks .
# The chart selects it with image.flavor=checks.
ARG CHECKS_BASE=debian:12-slim
# BINARY picks where /usr/bin/garpd comes from: "build" compiles it in the
# Go stage below; "prebuilt" takes a static binary named garpd from the
# build context, so that the image builds offline, e.g. with buildah on a
# base that is already local:
#   CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o garpd ./cmd/garpd
#   buildah bud --build-arg BINARY=prebuilt --build-arg BASE=scratch -t garpd .
# (the lab's image tests do this, on a local base shaped like distroless).
ARG BINARY=build
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/garpd ./cmd/garpd

FROM scratch AS prebuilt
COPY garpd /out/garpd

# Builders build only the stages the target needs: one of the two above.
FROM ${BINARY} AS binary

FROM ${CHECKS_BASE} AS checks
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=binary /out/garpd /usr/bin/garpd
ENTRYPOINT ["/usr/bin/garpd"]
CMD ["agent", "--config", "/etc/garpd/garpd.yaml"]

# The default image: the last stage.
FROM ${BASE}
ARG BASE
ARG VERSION=dev
ARG REVISION=""
LABEL org.opencontainers.image.title="garpd" \
      org.opencontainers.image.description="Rolling-periodic GARP balancer and VIP distributor (embedded VRRP, keepalived-compatible)" \
      org.opencontainers.image.source="https://github.com/garpd/garpd" \
      org.opencontainers.image.url="https://github.com/garpd/garpd" \
      org.opencontainers.image.documentation="https://github.com/garpd/garpd#readme" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${BASE}"
COPY --from=binary /out/garpd /usr/bin/garpd
# Runs as root with only CAP_NET_ADMIN (the VIPs) and CAP_NET_RAW (VRRP,
# gratuitous ARP), on the host network: the manifests in deploy/ grant
# exactly those two and drop the rest. (A non-root user would not keep
# added capabilities in Kubernetes, which sets no ambient capabilities.)
ENTRYPOINT ["/usr/bin/garpd"]
CMD ["agent", "--config", "/etc/garpd/garpd.yaml"]
