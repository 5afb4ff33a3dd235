// Package e2e runs the real garpd binary (and keepalived) in the
// network-namespace lab and checks what an operator would check: the
// router's neighbour table, failover times, logs and counters.
package e2e

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

var garpdBin string

func TestMain(m *testing.M) {
	if err := lab.Available(); err == nil {
		dir, err := os.MkdirTemp("", "garpd-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		garpdBin, err = lab.BuildGarpd(dir)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
		// The Kubernetes tools take minutes to build the first time on a
		// machine: in a run of the whole suite, build them while the other
		// tests run (they mostly wait on timers), not when the first
		// Kubernetes test needs them. (Tests run in file order: those that
		// need the tools are in kube_test.go and packaging_test.go, after
		// the long fault matrix.)
		// garpd status, forget and announce in a node's namespace reach
		// that node's agent (see lab.LabAgent).
		os.Setenv("GARPD_AGENT", lab.LabAgent)
		flag.Parse()
		if lab.EtcdAvailable() == nil && flag.Lookup("test.run").Value.String() == "" {
			go kubeOnce.Do(buildKubeTools)
		}
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// newLab creates a lab for t, or skips t with the reason it cannot run.
func newLab(t *testing.T, nodes int) *lab.Lab {
	t.Helper()
	if err := lab.Available(); err != nil {
		t.Skipf("skipping lab test: %v", err)
	}
	l, err := lab.New(nodes, t.TempDir())
	if err != nil {
		t.Fatalf("create lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(l.Dir, "*.log"))
			for _, f := range logs {
				b, _ := os.ReadFile(f)
				t.Logf("=== %s\n%s", filepath.Base(f), tail(string(b), 60))
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	return l
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, last)
}

// waitNeigh waits until the router maps every VIP to the wanted MAC.
func waitNeigh(t *testing.T, l *lab.Lab, timeout time.Duration, want map[netip.Addr]string) {
	t.Helper()
	waitFor(t, timeout, "router neighbour table", func() (bool, string) {
		got, err := l.Neighbours()
		if err != nil {
			return false, err.Error()
		}
		for a, mac := range want {
			if got[a] != mac {
				return false, fmt.Sprint(got)
			}
		}
		return true, ""
	})
}

// waitNeighChange returns how long after since the router's entry for vip
// changed to mac, or fails after timeout.
func waitNeighChange(t *testing.T, events <-chan lab.NeighEvent, vip netip.Addr, mac string, since time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("neighbour watch ended")
			}
			if ev.Addr == vip && ev.MAC == mac && ev.At.After(since) {
				return ev.At.Sub(since)
			}
		case <-deadline:
			t.Fatalf("router did not point %s at %s within %s", vip, mac, timeout)
		}
	}
}

func watch(t *testing.T, l *lab.Lab) <-chan lab.NeighEvent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ev, err := l.WatchNeighbours(ctx)
	if err != nil {
		t.Fatalf("watch router neighbours: %v", err)
	}
	return ev
}

// drain discards queued neighbour events.
func drain(ev <-chan lab.NeighEvent) {
	for {
		select {
		case <-ev:
		default:
			return
		}
	}
}

// waitMasters waits until n's agent is master of want virtual routers.
func waitMasters(t *testing.T, n *lab.Node, want int, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%s master of %d", n.Name, want), func() (bool, string) {
		out, err := lab.Exec(n.NS, garpdBin, "status")
		if err != nil {
			return false, err.Error()
		}
		c := strings.Count(out, " master ")
		return c == want, fmt.Sprintf("%d masters", c)
	})
}
