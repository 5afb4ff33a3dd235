# syntax=docker/dockerfile:1
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/garpd ./cmd/garpd

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/garpd /usr/bin/garpd
# Needs the host network and CAP_NET_ADMIN + CAP_NET_RAW (see deploy/).
ENTRYPOINT ["/usr/bin/garpd"]
CMD ["agent", "--config", "/etc/garpd/garpd.yaml"]
