package health

import (
	"os"
	"path/filepath"
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
	n := StartNotifier(NotifyConfig{Exec: []string{exec, "extra"}, Master: []string{master}}, "eth0", NewNotifyMetrics(nil), zerolog.Nop())
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

// A hook that hangs never holds up Notify (the engine's side), is killed
// at its timeout and counted; changes beyond the queue are dropped and
// counted, not blocked on.
func TestNotifierHungHookBlocksNothing(t *testing.T) {
	dir := t.TempDir()
	hang := writeHook(t, dir, "hang", "sleep 60")
	m := NewNotifyMetrics(nil)
	n := StartNotifier(NotifyConfig{Exec: []string{hang}, Timeout: 200 * time.Millisecond}, "eth0", m, zerolog.Nop())
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
