# garpd: see README.md. The lab targets (demo, and the e2e part of test) need root.
GO        ?= go
BIN       ?= bin/garpd
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
FUZZTIME  ?= 60s
# e2e tests SIGKILL processes and time failovers: never run lab packages in
# parallel. The e2e package takes about 25 minutes here (27 under load): 40m
# leaves a fresh machine room to build keepalived 2.4.3 and the kube tools.
TESTFLAGS ?= -count=1 -timeout 40m -p 1
# Unit-tested packages: everything but the lab.
UNITPKGS   = $(shell $(GO) list ./... | grep -v /test/)

.PHONY: all build test unit e2e faults bench kube-tools manifests demo demo-static fuzz lint deps clean deb pkgtools release images

all: build

build:
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/garpd

# Everything CI runs: lint, unit tests with the race detector, and the
# namespace-lab e2e tests (skipped with a message when not root).
test: deps lint
	$(GO) test $(TESTFLAGS) -race $(UNITPKGS)
	$(GO) test $(TESTFLAGS) -v -run 'TestClusterOf64' ./balancer/
	$(GO) test $(TESTFLAGS) ./test/...

unit:
	$(GO) test -count=1 -race $(UNITPKGS)

e2e:
	$(GO) test $(TESTFLAGS) -v ./test/...

# The fault matrix alone (it also runs in test): garpd and keepalived
# through kills, stops, link flaps, loss, blocked gossip, rogue speakers and
# a rolling restart; prints the table the README shows.
faults: deps
	$(GO) test -count=1 -timeout 30m -v -run 'TestFaultMatrix' ./test/e2e/

# Measurements, not checks (root, the lab, keepalived 2.2.7): a crash at
# 255 virtual routers beside keepalived (crash → detection → the router
# holding all 255), CPU at the protocol's ceiling beside keepalived, the
# RSS per mode at 6 and 510 virtual routers, and the send and receive
# paths' allocations. Each prints min / median / max; about 25 minutes.
BENCH_RUNS ?= 5
bench: deps
	for a in 20ms 100ms 1s; do \
		GARPD_SCALE_RUNS=$(BENCH_RUNS) GARPD_SCALE_ADVERT=$$a $(GO) test -count=1 -timeout 60m -v -run 'TestTakeoverAtScale' ./test/e2e/ || exit 1; \
	done
	GARPD_POLICED_RUNS=$(BENCH_RUNS) $(GO) test -count=1 -timeout 60m -v -run 'TestPolicedRouterTakeover' ./test/e2e/
	GARPD_CPU_RUNS=3 $(GO) test -count=1 -timeout 60m -v -run 'TestReceiveCPU' ./test/e2e/
	GARPD_CPU_RUNS=3 GARPD_CPU_VRS=510 GARPD_CPU_ADVERT=20ms $(GO) test -count=1 -timeout 60m -v -run 'TestReceiveCPU' ./test/e2e/
	GARPD_RSS_RUNS=$(BENCH_RUNS) $(GO) test -count=1 -timeout 60m -v -run 'TestFootprint' ./test/e2e/
	$(GO) test -count=1 -run '^$$' -bench . -benchmem ./vrrp/

# The Kubernetes programs for the Kubernetes tests (control plane, kubelet,
# kubectl, helm), built from the test/kube module into the user's cache
# directory (the tests build them on first use too; this only does it
# ahead, with the build's output).
# The directory is the one lab.BuildKube uses.
KUBE_DIR = $(shell echo "$${XDG_CACHE_HOME:-$$HOME/.cache}/garpd-test/kube-$$(sha256sum test/kube/go.sum | cut -c1-12)")
kube-tools:
	cd test/kube && $(GO) build -trimpath -o $(KUBE_DIR)/ ./cmd/kube-apiserver ./cmd/kube-controller-manager \
	    ./cmd/kube-scheduler ./cmd/kubelet ./cmd/kubectl helm.sh/helm/v3/cmd/helm
	@echo "built into $(KUBE_DIR)"

# The plain manifest is the Helm chart rendered with its defaults (the
# gossip key from a Secret made by hand, so nothing random is rendered);
# TestPlainManifestIsTheChart fails when they differ.
MANIFEST_HEADER = deploy/kubernetes/garpd.yaml.header
# Packaging tools, nfpm and cyclonedx-gomod, built once into the tool
# cache from test/pkgtools (by its go.sum), so only a machine's first run pays.
PKG_DIR    = $(shell echo "$${XDG_CACHE_HOME:-$$HOME/.cache}/garpd-test/pkgtools-$$(sha256sum test/pkgtools/go.sum | cut -c1-12)")
DEBVERSION ?= $(shell echo "0.1.0+git$$(git rev-parse --short HEAD 2>/dev/null || echo 0)")
GOARCH     ?= $(shell $(GO) env GOARCH)
ARCHES     ?= amd64 arm64
DIST       ?= dist
pkgtools:
	@test -x $(PKG_DIR)/nfpm -a -x $(PKG_DIR)/cyclonedx-gomod || { echo "building nfpm and cyclonedx-gomod into $(PKG_DIR) (the first time on this machine)"; \
	    cd test/pkgtools && $(GO) build -trimpath -o $(PKG_DIR)/ github.com/goreleaser/nfpm/v2/cmd/nfpm github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod; }

# The Debian package of this machine's architecture: $(DIST)/garpd_VERSION_ARCH.deb.
deb: pkgtools
	CGO_ENABLED=0 GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/package/garpd ./cmd/garpd
	mkdir -p $(DIST)
	VERSION=$(DEBVERSION) GOARCH=$(GOARCH) $(PKG_DIR)/nfpm package --config deploy/deb/nfpm.yaml --packager deb --target $(DIST)/

# A release's files in $(DIST), for each of $(ARCHES): the static binary,
# its CycloneDX SBOM (the module graph as that build selects it) and its
# Debian package; SHA256SUMS over them all. Verify a download with
# sha256sum -c SHA256SUMS.
release: pkgtools
	mkdir -p $(DIST)
	@for a in $(ARCHES); do \
	  echo "linux/$$a"; \
	  CGO_ENABLED=0 GOARCH=$$a $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(DIST)/garpd-linux-$$a ./cmd/garpd || exit 1; \
	  CGO_ENABLED=0 GOARCH=$$a $(PKG_DIR)/cyclonedx-gomod app -json -licenses -main cmd/garpd -output $(DIST)/garpd-linux-$$a.cdx.json . || exit 1; \
	  mkdir -p bin/package && cp $(DIST)/garpd-linux-$$a bin/package/garpd && \
	  VERSION=$(DEBVERSION) GOARCH=$$a $(PKG_DIR)/nfpm package --config deploy/deb/nfpm.yaml --packager deb --target $(DIST)/ || exit 1; \
	done
	cd $(DIST) && sha256sum garpd-linux-* garpd_*.deb > SHA256SUMS

# The image for each of $(ARCHES), from one build, as one manifest list
# $(IMAGE) in buildah's storage: make release's static binary and SBOM of
# that architecture on $(BASE) (the Dockerfile's prebuilt stage), so the
# image's /usr/bin/garpd is the file SHA256SUMS lists and its SBOM is the
# one beside it. A release (RELEASE=1) pins the base by digest; the lab
# builds offline on a local base. BUILDAH runs buildah (the tests give it
# a storage of their own). Push: buildah manifest push --all IMAGE docker://IMAGE.
IMAGE   ?= ghcr.io/garpd/garpd:$(VERSION)
BASE    ?= gcr.io/distroless/static-debian12
BUILDAH ?= buildah
comma   := ,
empty   :=
space   := $(empty) $(empty)
images:
	@if [ -n "$(RELEASE)" ] && ! echo '$(BASE)' | grep -Eq '@sha256:[0-9a-f]{64}$$'; then \
	  echo "BASE=$(BASE): a release pins its base image by digest, e.g. BASE=gcr.io/distroless/static-debian12@sha256:<64 hex digits> (skopeo inspect docker://IMAGE shows the digest)"; exit 2; fi
	$(MAKE) release
	-$(BUILDAH) manifest rm $(IMAGE) >/dev/null 2>&1
	$(BUILDAH) manifest create $(IMAGE)
	$(BUILDAH) bud --platform $(subst $(space),$(comma),$(addprefix linux/,$(ARCHES))) --manifest $(IMAGE) \
	  --build-arg BINARY=prebuilt --build-arg BASE=$(BASE) --build-arg VERSION=$(VERSION) \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null) -f Dockerfile $(DIST)
	@echo "built $(IMAGE) for $(ARCHES); push it with: $(BUILDAH) manifest push --all $(IMAGE) docker://$(IMAGE)"

manifests:
	@test -x $(KUBE_DIR)/helm || $(MAKE) kube-tools
	{ cat $(MANIFEST_HEADER); $(KUBE_DIR)/helm template garpd deploy/helm/garpd --namespace garpd --set 'vips={192.0.2.101,192.0.2.102,192.0.2.103}' \
	    --set gossip.key.existingSecret=garpd-gossip-key; } > deploy/kubernetes/garpd.yaml

# The built-in lab, dynamic mode: 3 nodes share 6 VIPs 2/2/2; kill one,
# restart it, poison a router entry; about 30 s, then everything is removed.
demo: deps
	$(GO) run ./test/demo

# The static mode (hand-set priorities): 3 nodes, 3 VIPs, kill an owner.
demo-static: deps
	$(GO) run ./test/demo -static

fuzz:
	$(GO) test ./vrrp -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME)
	$(GO) test ./vrrp -run '^$$' -fuzz '^FuzzAuthCheck$$' -fuzztime $(FUZZTIME)
	$(GO) test ./vrrp -run '^$$' -fuzz '^FuzzParsePacketInfo$$' -fuzztime $(FUZZTIME)
	$(GO) test ./cmd/garpd -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME)
	$(GO) test ./gossip -run '^$$' -fuzz '^FuzzKnownSet$$' -fuzztime $(FUZZTIME)
	$(GO) test ./vrrp/keepalived -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./vrrp/keepalived -run '^$$' -fuzz '^FuzzExpand$$' -fuzztime $(FUZZTIME)
	$(GO) test ./cmd/garpd -run '^$$' -fuzz '^FuzzKeepalivedImport$$' -fuzztime $(FUZZTIME)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod or go.sum is not tidy: run 'go mod tidy'"; $(GO) mod tidy -diff; exit 1; }

# What the lab and the tests need from Debian, installed only when missing.
deps:
	@sh .ci/deps.sh

clean:
	rm -rf bin
