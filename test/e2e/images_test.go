package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// Done-when: both images build here, from one build. make images builds
// the amd64 and the arm64 image as one manifest list on a local base
// shaped like distroless (offline, as the lab must), and refuses a
// release whose base is not pinned by digest before it builds anything.
// Each image holds the very binary make release wrote for its
// architecture (SHA256SUMS' file) and its SBOM; the SBOM lists every
// module go version -m lists; the arm64 image's binary runs under
// qemu-user.
func TestMultiArchImages(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: buildah in a mount namespace of its own needs root")
	}
	qemu, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		t.Skip("skipping: no qemu-aarch64-static (apt-get install qemu-user-static)")
	}
	for _, tool := range []string{"buildah", "make", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: no %s (apt-get install buildah)", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	b, err := lab.NewBuildah(filepath.Join(dir, "buildah"))
	if err != nil {
		t.Fatal(err)
	}
	base, err := b.LabBase(ctx, filepath.Join(dir, "base"))
	if err != nil {
		t.Fatal(err)
	}
	dist := filepath.Join(dir, "dist")
	const image = "localhost/garpd-lab/garpd:multiarch"
	makeImages := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "make", append([]string{"-C", repoRoot(), "images", "BUILDAH=" + b.Script, "DIST=" + dist, "IMAGE=" + image}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := makeImages("RELEASE=1", "BASE="+base)
	if err == nil || !strings.Contains(out, "a release pins its base image by digest") {
		t.Fatalf("a release on a base without a digest: %v, want a refusal:\n%s", err, out)
	}
	if _, err := os.Stat(dist); err == nil {
		t.Errorf("the refused release built into %s anyway", dist)
	}
	start := time.Now()
	if out, err := makeImages("BASE=" + base); err != nil {
		t.Fatalf("make images: %v\n%s", err, out)
	}
	t.Logf("make images (amd64 and arm64, with make release): %s", time.Since(start).Round(100*time.Millisecond))
	layout := filepath.Join(dir, "layout")
	if err := b.Run(ctx, "manifest", "push", "--all", "--quiet", image, "oci:"+layout); err != nil {
		t.Fatal(err)
	}
	images := readOCIImages(t, layout, "usr/bin/garpd", "usr/share/doc/garpd/sbom.cdx.json")
	for _, arch := range []string{"amd64", "arm64"} {
		files, ok := images[arch]
		if !ok {
			t.Fatalf("the manifest list has no %s image: %v", arch, slices.Sorted(maps.Keys(images)))
		}
		bin, _ := os.ReadFile(filepath.Join(dist, "garpd-linux-"+arch))
		sbom, _ := os.ReadFile(filepath.Join(dist, "garpd-linux-"+arch+".cdx.json"))
		if len(bin) == 0 || !bytes.Equal(files["usr/bin/garpd"], bin) {
			t.Errorf("%s: the image's /usr/bin/garpd (%d bytes) is not the release's garpd-linux-%s (%d bytes)", arch, len(files["usr/bin/garpd"]), arch, len(bin))
		}
		if len(sbom) == 0 || !bytes.Equal(files["usr/share/doc/garpd/sbom.cdx.json"], sbom) {
			t.Errorf("%s: the image's SBOM is not the release's garpd-linux-%s.cdx.json", arch, arch)
		}
		missing := sbomMissesModules(t, filepath.Join(dist, "garpd-linux-"+arch), sbom)
		if len(missing) > 0 {
			t.Errorf("%s: the SBOM lacks modules go version -m lists: %v", arch, missing)
		}
	}
	arm := filepath.Join(dir, "garpd-arm64-from-image")
	if err := os.WriteFile(arm, images["arm64"]["usr/bin/garpd"], 0o755); err != nil {
		t.Fatal(err)
	}
	version, err := exec.CommandContext(ctx, qemu, arm, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(version), "garpd") {
		t.Fatalf("the arm64 image's garpd version under qemu-aarch64: %v\n%s", err, version)
	}
	t.Logf("the arm64 image's binary under qemu: %s", strings.TrimSpace(string(version)))
}

// readOCIImages reads an OCI layout of one image index: for each image's
// architecture, the named files as its layers leave them.
func readOCIImages(t *testing.T, layout string, names ...string) map[string]map[string][]byte {
	t.Helper()
	blob := func(digest string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(layout, "blobs", strings.Replace(digest, ":", "/", 1)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	type descriptor struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
	}
	var index struct{ Manifests []descriptor }
	if err := json.Unmarshal(blob(layoutIndexDigest(t, layout)), &index); err != nil {
		t.Fatal(err)
	}
	images := map[string]map[string][]byte{}
	for _, m := range index.Manifests {
		var manifest struct {
			Config descriptor
			Layers []descriptor
		}
		var config struct{ Architecture string }
		if err := json.Unmarshal(blob(m.Digest), &manifest); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(blob(manifest.Config.Digest), &config); err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{}
		for _, l := range manifest.Layers {
			var r io.Reader = bytes.NewReader(blob(l.Digest))
			if strings.HasSuffix(l.MediaType, "gzip") {
				zr, err := gzip.NewReader(r)
				if err != nil {
					t.Fatal(err)
				}
				r = zr
			}
			tr := tar.NewReader(r)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				name := strings.TrimPrefix(h.Name, "./")
				for _, want := range names {
					if name == want {
						files[name], _ = io.ReadAll(tr)
					}
				}
			}
		}
		images[config.Architecture] = files
	}
	return images
}

// layoutIndexDigest is the digest of the image index an OCI layout's
// index.json names.
func layoutIndexDigest(t *testing.T, layout string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(layout, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var top struct {
		Manifests []struct{ Digest string }
	}
	if err := json.Unmarshal(raw, &top); err != nil || len(top.Manifests) != 1 {
		t.Fatalf("index.json: %v: %s", err, raw)
	}
	return top.Manifests[0].Digest
}

// sbomMissesModules lists the modules go version -m reads from binary
// (path@version) that the CycloneDX SBOM names no component for.
func sbomMissesModules(t *testing.T, binary string, sbom []byte) []string {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", binary).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, out)
	}
	var bom struct {
		Components []struct{ Name, Version string }
	}
	if err := json.Unmarshal(sbom, &bom); err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, c := range bom.Components {
		listed[c.Name+"@"+c.Version] = true
	}
	var missing []string
	deps := 0
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "dep" {
			deps++
			if !listed[f[1]+"@"+f[2]] {
				missing = append(missing, f[1]+"@"+f[2])
			}
		}
	}
	if deps == 0 {
		t.Fatalf("go version -m lists no modules:\n%s", out)
	}
	return missing
}
