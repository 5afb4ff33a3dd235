package health

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/garpd/garpd/vrrp"
)

// writeHook writes an executable shell hook into dir.
func writeHook(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// Hooks hear each change once, with keepalived's arguments and the router
// in their environment; the per-state hook runs on its state alone.
func TestNotifierRunsHooks(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	exec := writeHook(t, dir, "notify", `echo "$* $GARPD_VRID $GARPD_FAMILY $GARPD_VIPS $GARPD_PREVIOUS_STATE $GARPD_INTERFACE" >> `+log)
	master := writeHook(t, dir, "master", `echo "master-hook $GARPD_INSTANCE" >> `+log)
	n := StartNotifier(NotifyConfig{NotifyHooks: NotifyHooks{Exec: []string{exec, "extra"}, Master: []string{master}}}, "eth0", NewNotifyMetrics(nil), zerolog.Nop())
	id := vrrp.RouterID{VRID: 51}
	n.Notify(vrrp.StateChange{Router: id, VIPs: []string{"192.0.2.101"}, From: "INIT", To: "BACKUP", Priority: 100})
	n.Notify(vrrp.StateChange{Router: id, VIPs: []string{"192.0.2.101"}, From: "BACKUP", To: "MASTER", Priority: 100})
	n.Notify(vrrp.StateChange{Router: id, VIPs: []string{"192.0.2.101"}, From: "MASTER", To: "STOP", Priority: 100})
	n.Stop()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	want := "extra INSTANCE garpd_ipv4_51 BACKUP 100 51 ipv4 192.0.2.101 INIT eth0\n" +
		"extra INSTANCE garpd_ipv4_51 MASTER 100 51 ipv4 192.0.2.101 BACKUP eth0\n" +
		"master-hook garpd_ipv4_51\n" +
		"extra INSTANCE garpd_ipv4_51 STOP 100 51 ipv4 192.0.2.101 MASTER eth0\n"
	if string(b) != want {
		t.Fatalf("hooks wrote\n%s\nwant\n%s", b, want)
	}
}

// A router with an instance name runs that instance's hooks, in place of
// the common ones, and they hear its name; an instance listed without
// hooks runs none (as a keepalived instance without notify scripts); the
// others run the common ones.
func TestNotifierRunsInstanceHooks(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	common := writeHook(t, dir, "common", `echo "common $3 $GARPD_INSTANCE" >> `+log)
	own := writeHook(t, dir, "own", `echo "own $2 $3 $GARPD_INSTANCE" >> `+log)
	cfg := NotifyConfig{NotifyHooks: NotifyHooks{Exec: []string{common}}, Instances: map[string]NotifyHooks{"INT": {Exec: []string{own}}, "QUIET": {}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n := StartNotifier(cfg, "eth0", NewNotifyMetrics(nil), zerolog.Nop())
	n.Notify(vrrp.StateChange{Router: vrrp.RouterID{VRID: 51}, Name: "INT", From: "INIT", To: "MASTER"})
	n.Notify(vrrp.StateChange{Router: vrrp.RouterID{VRID: 52}, Name: "EXT", From: "INIT", To: "MASTER"})
	n.Notify(vrrp.StateChange{Router: vrrp.RouterID{VRID: 53}, Name: "QUIET", From: "INIT", To: "MASTER"})
	n.Notify(vrrp.StateChange{Router: vrrp.RouterID{VRID: 54}, From: "INIT", To: "MASTER"})
	n.Stop()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	want := "own INT MASTER INT\ncommon MASTER EXT\ncommon MASTER garpd_ipv4_54\n"
	if string(b) != want {
		t.Fatalf("hooks wrote\n%s\nwant\n%s", b, want)
	}
	bad := NotifyConfig{Instances: map[string]NotifyHooks{"INT": {Exec: []string{"int.sh"}}}}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "instances.INT.exec") {
		t.Fatalf("a relative hook of an instance: %v", err)
	}
}

// A hook that hangs never holds up Notify (the engine's side), is killed
// at its timeout and counted; changes beyond the queue are dropped and
// counted, not blocked on.
func TestNotifierHungHookBlocksNothing(t *testing.T) {
	dir := t.TempDir()
	hang := writeHook(t, dir, "hang", "sleep 60")
	m := NewNotifyMetrics(nil)
	n := StartNotifier(NotifyConfig{NotifyHooks: NotifyHooks{Exec: []string{hang}}, Timeout: 200 * time.Millisecond}, "eth0", m, zerolog.Nop())
	start := time.Now()
	for range notifyQueue + 10 {
		n.Notify(vrrp.StateChange{Router: vrrp.RouterID{VRID: 1}, To: "MASTER"})
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Notify waited %s on a hung hook", d)
	}
	if got := testutil.ToFloat64(m.Dropped); got < 1 {
		t.Fatalf("dropped %v with the queue full, want some", got)
	}
	for deadline := time.Now().Add(10 * time.Second); testutil.ToFloat64(m.Runs.WithLabelValues("exec", "timeout")) < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the hung hook was not killed at its timeout")
		}
	}
	done := make(chan struct{})
	go func() { n.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not end within the hooks' timeout")
	}
}
