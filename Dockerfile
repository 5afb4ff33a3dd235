# syntax=docker/dockerfile:1
# garpd's image: one static binary and its SBOM on distroless, for amd64
# and arm64. Build:
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=$(git describe --tags --always) -t garpd .
# Base images: Go 1.26.8 on Debian 12 (bump it with go.mod's go line), and
# the distroless static image of Debian 12, which publishes no version tags
# beyond its Debian release: a release build pins it by digest
# (--build-arg BASE=gcr.io/distroless/static-debian12@sha256:...; make
# images RELEASE=1 refuses a base without one).
# (An ARG that a FROM uses must come before the first FROM.)
ARG BASE=gcr.io/distroless/static-debian12
# The -checks variant adds a shell and curl on Debian 12, for exec checks
# that run scripts (keepalived's check_apiserver.sh):
#   docker build --target checks -t garpd:VERSION-checks .
# The chart selects it with image.flavor=checks.
ARG CHECKS_BASE=debian:12-slim
# BINARY picks where /usr/bin/garpd and its SBOM come from: "build"
# compiles them in the Go stage below; "prebuilt" takes make release's
# files from the build context (garpd-linux-ARCH and its CycloneDX SBOM
# garpd-linux-ARCH.cdx.json), so that the image builds offline and holds
# the very binary the release's SHA256SUMS lists. make images does that
# for every architecture at once:
#   make images BASE=gcr.io/distroless/static-debian12@sha256:... RELEASE=1
# (the lab's image tests do it on a local base shaped like distroless).
ARG BINARY=build
# The Go stage runs on the builder's own platform and cross-compiles, so an
# arm64 image builds on amd64 without emulation.
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download && go install github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0
COPY . .
ARG VERSION=dev
ARG TARGETARCH
RUN CGO_ENABLED=0 GOARCH=$TARGETARCH go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/garpd ./cmd/garpd && \
    CGO_ENABLED=0 GOARCH=$TARGETARCH cyclonedx-gomod app -json -licenses -main cmd/garpd -output /out/garpd.cdx.json .

FROM scratch AS prebuilt
ARG TARGETARCH
COPY garpd-linux-${TARGETARCH} /out/garpd
COPY garpd-linux-${TARGETARCH}.cdx.json /out/garpd.cdx.json

# Builders build only the stages the target needs: one of the two above.
FROM ${BINARY} AS binary

FROM ${CHECKS_BASE} AS checks
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=binary /out/garpd /usr/bin/garpd
COPY --from=binary /out/garpd.cdx.json /usr/share/doc/garpd/sbom.cdx.json
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
# What the binary is built from, module by module (CycloneDX): scanners
# read it in the image, and it is the file beside the release.
COPY --from=binary /out/garpd.cdx.json /usr/share/doc/garpd/sbom.cdx.json
# Runs as root with only CAP_NET_ADMIN (the VIPs) and CAP_NET_RAW (VRRP,
# gratuitous ARP), on the host network: the manifests in deploy/ grant
# exactly those two and drop the rest. (A non-root user would not keep
# added capabilities in Kubernetes, which sets no ambient capabilities.)
ENTRYPOINT ["/usr/bin/garpd"]
CMD ["agent", "--config", "/etc/garpd/garpd.yaml"]
