package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"
)

// keepalivedTarball is keepalived 2.4.3's release source in the shared
// directory beside the repository: the first release with auth_hmac.
func keepalivedTarball() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "keepalived-2.4.3.tar.gz")
}

// Keepalived243Available reports why keepalived 2.4.3 cannot be built
// here, or nil: its source is the shared directory's, beside the
// repository (CI has it; a lone clone does not).
func Keepalived243Available() error {
	if _, err := os.Stat(keepalivedTarball()); err != nil {
		return fmt.Errorf("keepalived 2.4.3's release source is not beside the repository (%w)", err)
	}
	return nil
}

// Keepalived243Tools are the Debian packages the build needs; .ci/deps.sh
// installs them.
const Keepalived243Tools = "build-essential autoconf automake libtool pkg-config libssl-dev libnl-3-dev libnl-genl-3-dev"

// BuildKeepalived243 builds keepalived 2.4.3 from the shared release
// source, or reuses an earlier build: the binary is cached under the
// user's cache directory, keyed by the tarball's hash, so only the first
// build on a machine (a few minutes on 2 cores) pays. progress gets a line
// before a long build.
func BuildKeepalived243(progress func(string)) (string, error) {
	tarball := keepalivedTarball()
	src, err := os.ReadFile(tarball)
	if err != nil {
		return "", fmt.Errorf("keepalived 2.4.3's source: %w", err)
	}
	h := sha256.Sum256(src)
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find a cache directory for keepalived 2.4.3: %w", err)
	}
	dir := filepath.Join(cache, "garpd-test", "keepalived-"+hex.EncodeToString(h[:6]))
	bin := filepath.Join(dir, "keepalived")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	for _, tool := range []string{"autoreconf", "make", "cc", "pkg-config"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("%s is missing to build keepalived 2.4.3 (apt-get install %s)", tool, Keepalived243Tools)
		}
	}
	progress(fmt.Sprintf("building keepalived 2.4.3 into %s (the first time on this machine takes a few minutes)", dir))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// In a temporary directory first: an interrupted build leaves no
	// half-written binary that a later run would take for a cached one.
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	tree := filepath.Join(tmp, "keepalived-2.4.3")
	for _, step := range []struct {
		dir  string
		args []string
	}{
		{tmp, []string{"tar", "xzf", tarball}},
		{tree, []string{"autoreconf", "-fi"}},
		{tree, []string{"./configure", "--disable-lvs"}},
		{tree, []string{"make", fmt.Sprintf("-j%d", runtime.NumCPU())}},
	} {
		cmd := exec.CommandContext(ctx, step.args[0], step.args[1:]...)
		cmd.Dir = step.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			tail := out[max(0, len(out)-2000):]
			return "", fmt.Errorf("build keepalived 2.4.3: %v: %w: %s", step.args, err, tail)
		}
	}
	if err := os.Rename(filepath.Join(tree, "keepalived", "keepalived"), bin); err != nil {
		return "", err
	}
	progress(fmt.Sprintf("built keepalived 2.4.3 in %s", time.Since(start).Round(time.Second)))
	return bin, nil
}
