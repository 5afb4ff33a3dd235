package e2e

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// Issue 37's done-when for soft checks: keepalived's "weight -40 while the
// API is unreachable", in the dynamic mode. Every node checks its own API
// (a listener on its loopback, as kube-apiserver on a control-plane node).
// With the API down on every node no VIP moves; with it down on one node,
// only that node's VIPs move, each to its next-ranked node, and the node
// stays a ranked member; they come back when it passes, without a settle.
func TestDynamicSoftCheck(t *testing.T) {
	l := newLab(t, 3)
	const apiAddr = "127.0.0.1:16443"
	api := map[string]*lab.Proc{}
	startAPI := func(n *lab.Node) {
		t.Helper()
		p, err := l.Start(n.NS, n.Name+"-api", "python3", "-m", "http.server", "-b", "127.0.0.1", "16443")
		if err != nil {
			t.Fatal(err)
		}
		api[n.Name] = p
	}
	passing := func(n *lab.Node, want float64) {
		t.Helper()
		waitFor(t, 15*time.Second, fmt.Sprintf("%s's api check passing=%v", n.Name, want), func() (bool, string) {
			got := metricSum(t, n, "garpd_health_check_passing", `check="api"`)
			return got == want, fmt.Sprint(got)
		})
	}
	for _, n := range l.Nodes {
		startAPI(n)
	}
	check := "health:\n  checks:\n    - name: api\n      tcp: " + apiAddr + "\n      weight: -40\n      interval: 300ms\n      timeout: 200ms\n      fall: 2\n      rise: 2\n"
	startDynamic(t, l, vips6, func(string) string { return check })
	waitSpread(t, l, vips6, 30*time.Second, even)
	waitSettled(t, l, "n1", "n2", "n3")
	for _, n := range l.Nodes {
		passing(n, 1)
	}
	before, err := l.Neighbours()
	if err != nil {
		t.Fatal(err)
	}
	// oneHolderEach: every VIP on exactly one node's interface.
	oneHolderEach := func(why string) {
		t.Helper()
		for v, hs := range holders(t, l, vips6) {
			if len(hs) != 1 {
				t.Errorf("%s: %s held by %v", why, v, hs)
			}
		}
	}

	// The API down on every node, seen by each a little apart: the
	// standings fall together, and no VIP moves.
	moves := recordMoves(t, l)
	for _, n := range l.Nodes {
		api[n.Name].Stop()
		time.Sleep(250 * time.Millisecond)
	}
	for _, n := range l.Nodes {
		passing(n, 0)
	}
	time.Sleep(3 * time.Second) // the standings gossiped, and VRRP had its say
	after, _ := l.Neighbours()
	for _, v := range vips6 {
		if after[v] != before[v] {
			t.Errorf("API down everywhere: %s moved from %s to %s", v, before[v], after[v])
		}
	}
	for v, c := range moves.snapshot() {
		if c > 0 {
			t.Errorf("API down everywhere: %s moved %d times", v, c)
		}
	}
	oneHolderEach("API down everywhere")
	for _, n := range l.Nodes {
		if st, err := statusMembers(n); err != nil || !maps.Equal(st, map[string]string{"n1": "ranked", "n2": "ranked", "n3": "ranked"}) {
			t.Errorf("API down everywhere: %s shows %v (%v), want every member ranked: a soft check takes no node out", n.Name, st, err)
		}
	}

	// The API back, then down on n3 alone: n3's VIPs move, each to its
	// next-ranked node, and no other VIP moves.
	for _, n := range l.Nodes {
		startAPI(n)
	}
	for _, n := range l.Nodes {
		passing(n, 1)
	}
	time.Sleep(2 * time.Second)
	moves = recordMoves(t, l)
	n3 := l.Node("n3")
	api["n3"].Stop()
	start := time.Now()
	waitSpread(t, l, vips6, 15*time.Second, map[string]int{"n1": 3, "n2": 3, "n3": 0})
	t.Logf("API down on n3: its VIPs on the others %s after its listener closed (interval 300ms × fall 2, then gossip and VRRP)", time.Since(start).Round(10*time.Millisecond))
	time.Sleep(2 * time.Second)
	moved := moves.snapshot()
	for _, v := range vips6 {
		want := 0
		if before[v] == n3.MAC.String() {
			want = 1
		}
		if moved[v] != want {
			t.Errorf("API down on n3: %s (held by %s) moved %d times, want %d", v, l.NodeByMAC(before[v]).Name, moved[v], want)
		}
	}
	oneHolderEach("API down on n3")
	if st, err := statusMembers(l.Node("n1")); err != nil || st["n3"] != "ranked" {
		t.Errorf("n1 shows n3 %q (%v): a soft check keeps it a ranked member", st["n3"], err)
	}

	// Back: n3 takes its VIPs again once the check passes (rise), with no
	// settle, since it never left.
	startAPI(n3)
	start = time.Now()
	waitSpread(t, l, vips6, 15*time.Second, even)
	t.Logf("API back on n3: its share back %s after its listener started", time.Since(start).Round(10*time.Millisecond))
	oneHolderEach("API back on n3")
}
