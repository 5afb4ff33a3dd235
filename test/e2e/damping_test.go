package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// TestFlappingMemberIsDamped: 3 nodes in the dynamic mode, 6 VIPs, the
// default settle (10 s). n3 crashes (SIGKILL) and comes back every 20 s
// for 3 minutes. The other members count its returns and hold it out
// longer each time (move damping), so no VIP moves more than 4 times in
// the whole 3 minutes (EVPN duplicate detection freezes a MAC/IP that
// moves 5 times in 180 s), the hold-down and its reason show in the
// others' status, and no VIP is ever without a holder for longer than a
// failover.
func TestFlappingMemberIsDamped(t *testing.T) {
	l := newLab(t, 3)
	cfg := func(node string) string {
		return strings.Replace(dynConfig(l, node, vips6, ""), "  settle: 3s\n", "", 1)
	}
	procs := startAll(t, l, cfg)
	waitSpread(t, l, vips6, 60*time.Second, even)
	waitSettled(t, l, "n1", "n2", "n3")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	moves, err := l.CountMoves(ctx)
	if err != nil {
		t.Fatal(err)
	}
	holders, err := l.WatchHolders(ctx, l.Nodes, vips6)
	if err != nil {
		t.Fatal(err)
	}
	n1, n3 := l.Node("n1"), l.Node("n3")
	start := time.Now()
	heldShown := ""
	for i := 0; time.Since(start) < 180*time.Second; i++ {
		crash := time.Now()
		procs["n3"].Signal(syscall.SIGKILL)
		procs["n3"].Wait(5 * time.Second)
		p, err := n3.StartGarpd(garpdBin, cfg("n3"))
		if err != nil {
			t.Fatal(err)
		}
		procs["n3"] = p
		for time.Since(crash) < 20*time.Second {
			if heldShown == "" {
				if out, err := lab.Exec(n1.NS, garpdBin, "status"); err == nil && strings.Contains(out, "held_down") {
					for _, line := range strings.Split(out, "\n") {
						if strings.HasPrefix(line, "member n3 ") {
							heldShown = line
						}
					}
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	time.Sleep(2 * time.Second)
	stats := holders.Stats(start, time.Now())
	counts := moves.Snapshot()
	t.Logf("n3 crashed and came back every 20 s for %s: moves per VIP %v", time.Since(start).Round(time.Second), counts)
	for _, v := range vips6 {
		if counts[v] > 4 {
			t.Errorf("%s moved %d times in 3 minutes, want at most 4", v, counts[v])
		}
		if st := stats[v]; st.MaxNoHolder > 2*time.Second {
			t.Errorf("%s was without a holder for %s at a stretch, want no longer than a failover", v, st.MaxNoHolder)
		}
	}
	if heldShown == "" {
		t.Error("n1's status never showed n3 held down")
	} else {
		t.Logf("n1's status: %s", heldShown)
	}
}
