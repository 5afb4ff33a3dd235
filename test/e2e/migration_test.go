package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// Issue 23: a running keepalived 2.2.7 cluster (3 nodes, 3 VIPs, rotated
// 200/150/50, 100 ms adverts, multicast) is replaced by dynamic-mode garpd
// one node at a time, with the configs garpd import keepalived --dynamic
// makes of its files and the steps it prints. Throughout, every VIP has one
// holder (the nodes' own addresses, from netlink): no VIP is without one
// for longer than a failover, none has two for longer than an advert
// interval; the router's table ends with each VIP on the node keepalived
// had it on.
func TestRollingMigrationFromKeepalived(t *testing.T) {
	needKeepalived(t)
	l := newLab(t, 3)
	kas := map[string]*lab.Proc{}
	var files []string
	for k, n := range l.Nodes {
		var insts []lab.KeepalivedInstance
		for i, v := range vips3 {
			insts = append(insts, lab.KeepalivedInstance{Name: fmt.Sprintf("VI_%d", i+1), Interface: "eth0", VRID: 10 + i,
				Priority: []int{200, 150, 50}[(k-i+3)%3], Advert: "0.1", VIPs: []string{v.String() + "/32"}})
		}
		p, err := n.StartKeepalived(n.Name+"-keepalived", lab.KeepalivedConfig(n.Name, 3, insts...))
		if err != nil {
			t.Fatal(err)
		}
		kas[n.Name] = p
		files = append(files, filepath.Join(l.Dir, n.Name+"-keepalived", "keepalived.conf"))
	}
	masters := map[netip.Addr]string{vips3[0]: l.Nodes[0].MAC.String(), vips3[1]: l.Nodes[1].MAC.String(), vips3[2]: l.Nodes[2].MAC.String()}
	waitNeigh(t, l, 15*time.Second, masters)

	// The import: a multicast cluster names no peers, so --join.
	dir := filepath.Join(l.Dir, "garpd")
	var join []string
	for _, n := range l.Nodes {
		join = append(join, n.IPv4.String()+":7946")
	}
	cmd := exec.Command(garpdBin, append([]string{"import", "keepalived", "--dynamic", "--join", strings.Join(join, ","), "--out", dir}, files...)...)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "one node at a time") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	config := func(name string) string { return importedConfig(t, l, dir, name) }

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	holders, err := l.WatchHolders(ctx, l.Nodes, vips3)
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	var garpd []string
	procs := map[string]*lab.Proc{}
	for _, n := range l.Nodes {
		kas[n.Name].Signal(syscall.SIGTERM)
		if _, err := kas[n.Name].Wait(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		p, err := n.StartGarpd(garpdBin, config(n.Name))
		if err != nil {
			t.Fatal(err)
		}
		procs[n.Name] = p
		garpd = append(garpd, n.Name)
		if len(garpd) == 1 {
			// Alone, it holds nothing while keepalived runs: give it the
			// time it would take to claim VIPs if it did.
			time.Sleep(3 * time.Second)
		} else {
			waitSettled(t, l, garpd...)
		}
		t.Logf("%s: keepalived replaced by garpd (%s garpd now)", n.Name, strings.Join(garpd, ", "))
	}
	waitNeigh(t, l, 20*time.Second, masters)

	// The steps after the last node, each a SIGHUP on every node in turn:
	// keepalived_peers out and auth_hmac permissive (sign, accept
	// unsigned), then auth_hmac out (the dynamic mode's enforce). Nothing
	// moves: the router keeps every VIP where it is.
	peersLine := regexp.MustCompile(`(?m)^  keepalived_peers:.*\n(    - .*\n)*`)
	authBlock := regexp.MustCompile(`(?m)^  auth_hmac:.*\n(    .*\n)*`)
	for step, edit := range []func(string) string{
		func(c string) string {
			return strings.Replace(peersLine.ReplaceAllString(c, ""), "mode: receive-only", "mode: permissive", 1)
		},
		func(c string) string { return authBlock.ReplaceAllString(c, "") },
	} {
		for _, n := range l.Nodes {
			path := n.GarpdConfigPath()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			next := edit(string(b))
			if next == string(b) {
				t.Fatalf("step %d changes nothing in %s:\n%s", step+1, path, b)
			}
			if err := os.WriteFile(path, []byte(next), 0o644); err != nil {
				t.Fatal(err)
			}
			procs[n.Name].Signal(syscall.SIGHUP)
			time.Sleep(500 * time.Millisecond) // past an advert of every node
		}
	}
	time.Sleep(time.Second)
	if now := routerOwners(t, l, vips3); now[vips3[0]] != "n1" || now[vips3[1]] != "n2" || now[vips3[2]] != "n3" {
		t.Errorf("after the last steps the router maps %v, want each VIP on its node", now)
	}
	for _, n := range l.Nodes {
		if out := procs[n.Name].Output(); !strings.Contains(out, "auth_hmac keys applied") || strings.Contains(out, "restarting the VRRP engine") {
			t.Errorf("%s did not apply the last steps in place:\n%s", n.Name, tail(out, 10))
		}
	}
	end := time.Now()

	oneHolderThroughout(t, holders, begin, end, 100*time.Millisecond, "the migration")
}

// oneHolderThroughout checks a move's holder timeline: no VIP without a
// holder for longer than two master-down intervals at a stretch (one
// failover, with room), none with two for longer than two advert
// intervals in all; and logs each VIP's figures.
func oneHolderThroughout(t *testing.T, holders *lab.HolderTimeline, begin, end time.Time, advert time.Duration, what string) {
	t.Helper()
	failover := 3*advert + advert // master-down interval, with room for the skew
	for a, s := range holders.Stats(begin, end) {
		t.Logf("%s over %s (%s): no holder %s in all (longest %s), two holders %s",
			a, what, end.Sub(begin).Round(time.Second), s.NoHolder.Round(time.Millisecond), s.MaxNoHolder.Round(time.Millisecond), s.Multi.Round(time.Millisecond))
		if s.MaxNoHolder > 2*failover {
			t.Errorf("%s had no holder for %s at a stretch: longer than a failover (%s)", a, s.MaxNoHolder, failover)
		}
		if s.Multi > 2*advert {
			t.Errorf("%s had two holders for %s: longer than two advert intervals", a, s.Multi)
		}
	}
}
