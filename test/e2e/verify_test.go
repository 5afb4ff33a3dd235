package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestVerificationRepairsRouterEntry: a node master of an IPv4 and an IPv6
// VIP, refresh off (garp.refresh: 0s), so nothing but verification ever
// announces again once the takeover burst is over. The router's entry for
// each VIP is overwritten with another MAC (a stale or poisoned cache):
// with verification (an echo from the VIP to the router, answered only
// while the entry is ours) the node finds it and re-announces, and the
// router holds the node's MAC again within seconds; without it (verify
// off) the entry stays wrong. GARPD_VERIFY_RUNS=5 repeats the repair for
// the figures:
//
//	GARPD_VERIFY_RUNS=5 go test ./test/e2e -run TestVerificationRepairsRouterEntry -v
func TestVerificationRepairsRouterEntry(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("GARPD_VERIFY_RUNS"))
	runs = max(runs, 1)
	vips := []netip.Addr{netip.MustParseAddr("192.0.2.101"), netip.MustParseAddr("2001:db8::101")}
	const other = "02:00:5e:00:99:99" // nobody's
	for _, verify := range []bool{false, true} {
		t.Run(fmt.Sprintf("verify=%v", verify), func(t *testing.T) {
			l := newLab(t, 1)
			n1 := l.Node("n1")
			cfg := fmt.Sprintf("node: n1\ninterface: eth0\nvips: [%s, \"%s/64\"]\npriorities: {%s: 200, \"%s\": 200}\n"+
				"vrrp:\n  advert_interval: 100ms\ngarp:\n  refresh: 0s\n  verify:\n    enabled: %v\n    targets: [%s, \"%s\"]\n",
				vips[0], vips[1], vips[0], vips[1], verify, "192.0.2.1", "2001:db8::1")
			p, err := n1.StartGarpd(garpdBin, cfg)
			if err != nil {
				t.Fatal(err)
			}
			mine := onNode(n1, vips)
			waitNeigh(t, l, 15*time.Second, mine)
			time.Sleep(4 * time.Second) // past the takeover burst (3 × 1.1 s)
			var took durations
			for run := range runs {
				for _, v := range vips {
					if err := l.SetNeighbour(v, other); err != nil {
						t.Fatal(err)
					}
				}
				start := time.Now()
				if !verify {
					time.Sleep(5 * time.Second)
					got, err := l.Neighbours()
					if err != nil {
						t.Fatal(err)
					}
					for _, v := range vips {
						if got[v] != other {
							t.Fatalf("without verification the router's entry for %s changed to %s: something else announces (refresh is off)", v, got[v])
						}
					}
					return
				}
				waitNeigh(t, l, 15*time.Second, mine)
				took = append(took, time.Since(start))
				t.Logf("run %d: both router entries repaired %s after they were overwritten", run+1, time.Since(start).Round(time.Millisecond))
				time.Sleep(2 * time.Second)
			}
			t.Logf("overwritten router entries repaired by verification: %s", took)
			out := p.Output()
			if !strings.Contains(out, "verifying that the router sends each held VIP") {
				t.Errorf("the agent does not say it verifies:\n%s", tail(out, 20))
			}
		})
	}
}
