package lab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// BuildGarpd builds the garpd binary into dir and returns its path. It is
// the real binary the e2e tests and the demo run in the namespaces.
func BuildGarpd(dir string) (string, error) {
	bin := filepath.Join(dir, "garpd")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/garpd/garpd/cmd/garpd").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build garpd: %w: %s", err, out)
	}
	return bin, nil
}

// BuildGarpdAt builds garpd as it was at git revision rev of this
// repository, for tests of a rolling upgrade from it; the binary is cached
// by revision, so only a machine's first run pays. It fails when the
// clone lacks rev (a shallow clone): callers skip.
func BuildGarpdAt(rev string) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find a cache directory for garpd %s: %w", rev, err)
	}
	dir := filepath.Join(cache, "garpd-test", "garpd-"+rev)
	bin := filepath.Join(dir, "garpd")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src, err := os.MkdirTemp("", "garpd-src-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(src)
	archive := exec.CommandContext(ctx, "sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", repoRoot(), rev, src)
	if out, err := archive.CombinedOutput(); err != nil {
		return "", fmt.Errorf("garpd at %s is not in this clone (a shallow clone?): %w: %s", rev, err, out)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", bin+".tmp", "./cmd/garpd")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build garpd at %s: %w: %s", rev, err, out)
	}
	return bin, os.Rename(bin+".tmp", bin)
}

// BuildRelease builds pkg (a path from the repository's root, ./cmd/garpd)
// into out the way the Dockerfile's Go stage and `make build` do: static,
// trimmed paths, no symbol table or DWARF. It is what runs in production,
// for the image and for measurements of its footprint.
func BuildRelease(ctx context.Context, out, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=lab", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Dir = repoRoot()
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %w: %s", pkg, err, b)
	}
	return nil
}

// StartGarpd writes config to the lab directory and runs `garpd agent` in
// the node's namespace. Its HTTP listener is on the node's own loopback.
func (n *Node) StartGarpd(bin, config string) (*Proc, error) {
	if err := n.WriteGarpdConfig(config); err != nil {
		return nil, err
	}
	return n.lab.Start(n.NS, n.Name+"-garpd", bin, "agent", "--config", n.GarpdConfigPath())
}

// LabAgent is the control endpoint of the lab's agents: a unix socket
// path is the whole host's, and each node's agent needs its own, so they
// listen on loopback in their namespaces (the operator's explicit choice,
// which the agent notes). The e2e tests set $GARPD_AGENT to it, so garpd
// status run in a node's namespace finds that node's agent.
const LabAgent = "127.0.0.1:9497"

var controlKey = regexp.MustCompile(`(?m)^control:`)

// WithLoopbackControl adds control.listen: LabAgent to a config that has
// no control section.
func WithLoopbackControl(config string) string {
	if controlKey.MatchString(config) {
		return config
	}
	return strings.TrimRight(config, "\n") + "\ncontrol:\n  listen: " + LabAgent + "\n"
}

// WriteGarpdConfig replaces the node's config as StartGarpd writes it,
// for reload tests (SIGHUP the agent to apply it).
func (n *Node) WriteGarpdConfig(config string) error {
	return os.WriteFile(n.GarpdConfigPath(), []byte(WithLoopbackControl(config)), 0o644)
}

// GarpdConfigPath is where StartGarpd wrote the node's config, for reload tests.
func (n *Node) GarpdConfigPath() string { return filepath.Join(n.lab.Dir, n.Name+"-garpd.yaml") }

// KeepalivedAvailable reports why keepalived cannot run, or nil.
func KeepalivedAvailable() error {
	if _, err := exec.LookPath("keepalived"); err != nil {
		return fmt.Errorf("keepalived is not installed (apt-get install keepalived)")
	}
	return nil
}

// StartKeepalived runs keepalived (VRRP only, in the foreground, logging to
// the console) with conf in the node's namespace.
func (n *Node) StartKeepalived(name, conf string) (*Proc, error) {
	return n.StartKeepalivedBinary("keepalived", name, conf)
}

// StartKeepalivedBinary is StartKeepalived with another keepalived binary
// (BuildKeepalived243's).
func (n *Node) StartKeepalivedBinary(bin, name, conf string) (*Proc, error) {
	dir := filepath.Join(n.lab.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	args := []string{bin, "--dont-fork", "--log-console", "--log-detail", "--use-file=" + path,
		"--pid", filepath.Join(dir, "keepalived.pid"), "--vrrp_pid", filepath.Join(dir, "vrrp.pid")}
	if bin == "keepalived" {
		// Debian's build has the checkers: VRRP alone, and their pid file
		// not the host's. One built with --disable-lvs has neither option.
		args = append(args, "--vrrp", "--checkers_pid", filepath.Join(dir, "checkers.pid"))
	}
	return n.lab.Start(n.NS, name, args...)
}

// KeepalivedInstance describes one vrrp_instance block.
type KeepalivedInstance struct {
	Name       string
	Interface  string
	VRID       int
	Priority   int
	Advert     string // keepalived advert_int, e.g. "0.1" or "1"
	VIPs       []string
	AuthPass   string       // VRRPv2 auth_type PASS
	Unicast    []netip.Addr // peers; empty for multicast
	UnicastSrc netip.Addr
	NoPreempt  bool
	Extra      string // more lines for the block, such as auth_hmac { ... }
}

// KeepalivedConfig renders a keepalived.conf for VRRP version 2 or 3.
func KeepalivedConfig(routerID string, version int, insts ...KeepalivedInstance) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n  router_id %s\n  vrrp_version %d\n  vrrp_garp_master_refresh 0\n}\n", routerID, version)
	for _, in := range insts {
		fmt.Fprintf(&b, "vrrp_instance %s {\n  state BACKUP\n  interface %s\n  virtual_router_id %d\n  priority %d\n  advert_int %s\n",
			in.Name, in.Interface, in.VRID, in.Priority, in.Advert)
		if in.NoPreempt {
			b.WriteString("  nopreempt\n")
		}
		b.WriteString(in.Extra)
		if in.AuthPass != "" {
			fmt.Fprintf(&b, "  authentication {\n    auth_type PASS\n    auth_pass %s\n  }\n", in.AuthPass)
		}
		if len(in.Unicast) > 0 {
			if in.UnicastSrc.IsValid() {
				fmt.Fprintf(&b, "  unicast_src_ip %s\n", in.UnicastSrc)
			}
			b.WriteString("  unicast_peer {\n")
			for _, p := range in.Unicast {
				fmt.Fprintf(&b, "    %s\n", p)
			}
			b.WriteString("  }\n")
		}
		b.WriteString("  virtual_ipaddress {\n")
		for _, v := range in.VIPs {
			fmt.Fprintf(&b, "    %s\n", v)
		}
		b.WriteString("  }\n}\n")
	}
	return b.String()
}

// CPUTime returns the CPU time used so far by the process pid and every
// process descended from it (keepalived runs VRRP in a child process, so
// its parent's figure alone would miss it). It sums the scheduler's
// nanosecond run time of every thread (/proc/PID/task/TID/schedstat):
// utime and stime count 10 ms ticks, too coarse for a daemon that uses a
// few milliseconds a second.
func CPUTime(pid int) (time.Duration, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	parent := map[int]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // ended meanwhile
		}
		// The fields after the command name, which may hold spaces, start
		// with state and ppid.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) < 2 {
			continue
		}
		parent[p], _ = strconv.Atoi(f[1])
	}
	if _, ok := parent[pid]; !ok {
		return 0, fmt.Errorf("process %d is not running", pid)
	}
	var total time.Duration
	for p := range parent {
		q := p
		for q > 1 && q != pid {
			next, ok := parent[q]
			if !ok {
				break
			}
			q = next
		}
		if q != pid {
			continue
		}
		tasks, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(p), "task", "*", "schedstat"))
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil {
				continue
			}
			f := strings.Fields(string(b))
			if len(f) == 0 {
				continue
			}
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			total += time.Duration(ns)
		}
	}
	return total, nil
}

// BuildForge builds vrrpforge, the lab's attacker without a key, into dir.
func BuildForge(dir string) (string, error) {
	bin := filepath.Join(dir, "vrrpforge")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/garpd/garpd/test/lab/vrrpforge").CombinedOutput(); err != nil {
		return "", fmt.Errorf("build vrrpforge: %w: %s", err, out)
	}
	return bin, nil
}
