package lab

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Buildah is buildah with a storage of its own under one directory, so
// tests build images without touching the host's: a script that runs
// buildah in a mount namespace where /var/lib and /run (where buildah keeps
// a blob cache and state whatever its storage flags say) are the lab's.
// Script is what make's BUILDAH variable takes.
type Buildah struct {
	Script string
}

// NewBuildah makes the storage and the script under dir.
func NewBuildah(dir string) (*Buildah, error) {
	for _, d := range []string{"var-lib", "run", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	script := fmt.Sprintf(`#!/bin/sh
# buildah with the storage under %[1]s (made by the garpd lab).
export TMPDIR=%[1]s/tmp
exec unshare --mount --propagation private sh -c 'mount --bind %[1]s/var-lib /var/lib && mount --bind %[1]s/run /run && exec buildah --root %[1]s/root --runroot %[1]s/runroot --storage-driver vfs "$@"' sh "$@"
`, dir)
	path := filepath.Join(dir, "buildah.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		return nil, err
	}
	return &Buildah{Script: path}, nil
}

// Run runs buildah args.
func (b *Buildah) Run(ctx context.Context, args ...string) error {
	if out, err := exec.CommandContext(ctx, b.Script, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("buildah %s: %w: %s", strings.Join(args, " "), err, tail(string(out), 2000))
	}
	return nil
}

// LabBase builds the local stand-in for the Dockerfile's distroless base,
// for amd64 and arm64 (files only: no emulation needed), in dir, and
// returns its name: what the image's program can expect of
// distroless/static.
func (b *Buildah) LabBase(ctx context.Context, dir string) (string, error) {
	files := map[string]string{
		"rootfs/etc/passwd":        "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
		"rootfs/etc/group":         "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n",
		"rootfs/etc/nsswitch.conf": "hosts: files dns\n",
		"Containerfile":            "FROM scratch\nCOPY rootfs/ /\n",
	}
	for name, content := range files {
		if err := writeFile(filepath.Join(dir, name), content, 0o644); err != nil {
			return "", err
		}
	}
	for _, d := range []string{"rootfs/tmp", "rootfs/home/nonroot", "rootfs/etc/ssl/certs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "rootfs/tmp"), 0o777|fs.ModeSticky); err != nil {
		return "", err
	}
	if certs, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt"); err == nil {
		if err := writeFile(filepath.Join(dir, "rootfs/etc/ssl/certs/ca-certificates.crt"), string(certs), 0o644); err != nil {
			return "", err
		}
	}
	if err := b.Run(ctx, "manifest", "create", labBase); err != nil {
		return "", err
	}
	if err := b.Run(ctx, "bud", "--quiet", "--platform", "linux/amd64,linux/arm64", "--manifest", labBase, "-f", filepath.Join(dir, "Containerfile"), dir); err != nil {
		return "", err
	}
	return labBase, nil
}
