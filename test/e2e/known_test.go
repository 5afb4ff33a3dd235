package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// failoverStats collects one measured figure per run.
type failoverStats map[string]stats

func (f failoverStats) add(what string, d time.Duration) { f[what] = append(f[what], d) }

// Issue 9, lab: 3 nodes, 6 VIPs, settle 3s. For each node in turn and
// each way of going away (SIGKILL, SIGTERM, a failing health check): the
// router goes to 3/3, only that node's 2 VIPs move, once each, and nothing
// moves in the next 10 s; when it is back, after settle, the router is
// 2/2/2 again and exactly its 2 VIPs moved back.
func TestKnownMembersEachNodeInTurn(t *testing.T) {
	l := newLab(t, 3)
	flags := map[string]string{}
	cfg := func(node string) string {
		check := fmt.Sprintf("health:\n  checks:\n    - name: flag\n      exec: [test, -f, %s]\n      interval: 1s\n      timeout: 1s\n      fall: 2\n      rise: 2\n", flags[node])
		return dynConfig(l, node, vips6, check)
	}
	procs := map[string]*lab.Proc{}
	for _, n := range l.Nodes {
		flags[n.Name] = filepath.Join(l.Dir, n.Name+"-healthy")
		if err := os.WriteFile(flags[n.Name], nil, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := n.StartGarpd(garpdBin, cfg(n.Name))
		if err != nil {
			t.Fatal(err)
		}
		procs[n.Name] = p
	}
	waitSpread(t, l, vips6, 30*time.Second, even)
	waitSettled(t, l, "n1", "n2", "n3")
	figures := failoverStats{}
	for _, mode := range []string{"SIGKILL", "SIGTERM", "health"} {
		for _, victim := range l.Nodes {
			t.Run(mode+"-"+victim.Name, func(t *testing.T) {
				before, _ := l.Neighbours()
				var victimVIPs []netip.Addr
				for _, v := range vips6 {
					if before[v] == victim.MAC.String() {
						victimVIPs = append(victimVIPs, v)
					}
				}
				if len(victimVIPs) != 2 {
					t.Fatalf("%s holds %v before, want 2 VIPs", victim.Name, victimVIPs)
				}
				moves := recordMoves(t, l)
				switch mode {
				case "SIGKILL":
					procs[victim.Name].Signal(syscall.SIGKILL)
				case "SIGTERM":
					procs[victim.Name].Signal(syscall.SIGTERM)
				case "health":
					os.Remove(flags[victim.Name])
				}
				three := map[string]int{victim.Name: 0}
				for _, n := range l.Nodes {
					if n != victim {
						three[n.Name] = 3
					}
				}
				d := waitSpread(t, l, vips6, 15*time.Second, three)
				figures.add(mode+" away", d)
				time.Sleep(10 * time.Second) // gossip notices; nothing may be re-ranked
				checkMoved(t, moves.snapshot(), victimVIPs, "while "+victim.Name+" was away")

				moves = recordMoves(t, l)
				switch mode {
				case "SIGKILL", "SIGTERM":
					procs[victim.Name].Wait(5 * time.Second)
					p, err := victim.StartGarpd(garpdBin, cfg(victim.Name))
					if err != nil {
						t.Fatal(err)
					}
					procs[victim.Name] = p
				case "health":
					os.WriteFile(flags[victim.Name], nil, 0o644)
				}
				d = waitSpread(t, l, vips6, 30*time.Second, even)
				figures.add(mode+" back", d)
				if d < 3*time.Second {
					t.Errorf("%s took its VIPs back %s after it returned, before settle (3s)", victim.Name, d)
				}
				time.Sleep(2 * time.Second)
				checkMoved(t, moves.snapshot(), victimVIPs, "when "+victim.Name+" came back")
			})
		}
	}
	for _, what := range []string{"SIGKILL away", "SIGTERM away", "health away", "SIGKILL back", "SIGTERM back", "health back"} {
		if s := figures[what]; len(s) > 0 {
			t.Logf("%-13s router even again after %s", what+":", s)
		}
	}
}

// checkMoved fails unless exactly the VIPs in want moved, once each.
func checkMoved(t *testing.T, moved map[netip.Addr]int, want []netip.Addr, when string) {
	t.Helper()
	for _, v := range vips6 {
		n := moved[v]
		if slices.Contains(want, v) && n != 1 {
			t.Errorf("%s: %s moved %d times, want once", when, v, n)
		}
		if !slices.Contains(want, v) && n != 0 {
			t.Errorf("%s: %s, not the away node's, moved %d times", when, v, n)
		}
	}
}

// dynStatus is what a node's /status says of the known members and plan.
type dynStatus struct {
	Dynamic struct {
		Known []string `json:"known"`
		VIPs  []struct {
			VIPs    []string `json:"vips"`
			Ranking []string `json:"ranking"`
		} `json:"vips"`
	} `json:"dynamic"`
}

// planView is a node's known set and rankings as one comparable string.
func planView(n *lab.Node) (known []string, view string, err error) {
	out, err := lab.Exec(n.NS, garpdBin, "status", "--json")
	if err != nil {
		return nil, "", err
	}
	var st dynStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, "", err
	}
	var b strings.Builder
	fmt.Fprintln(&b, st.Dynamic.Known)
	for _, v := range st.Dynamic.VIPs {
		fmt.Fprintln(&b, v.VIPs, v.Ranking)
	}
	return st.Dynamic.Known, b.String(), nil
}

// Issue 9, lab: 4 nodes, 12 VIPs. n4 is down while a fifth node joins;
// when n4 comes back every node lists the same known set and the same
// plan. Then n5 goes away for good and is forgotten after forget_after on
// every node, within a few seconds of each other.
func TestKnownMembersJoinWhileDownAndForget(t *testing.T) {
	l := newLab(t, 5)
	var vips12 []netip.Addr
	for i := 101; i <= 112; i++ {
		vips12 = append(vips12, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
	}
	const forgetAfter = 30 * time.Second
	cfg := func(node string) string {
		return insertAfter(dynConfig(l, node, vips12, ""), "  settle: 3s\n", fmt.Sprintf("  forget_after: %s\n", forgetAfter))
	}
	procs := map[string]*lab.Proc{}
	start := func(name string) {
		t.Helper()
		p, err := l.Node(name).StartGarpd(garpdBin, cfg(name))
		if err != nil {
			t.Fatal(err)
		}
		procs[name] = p
	}
	for _, name := range []string{"n1", "n2", "n3", "n4"} {
		start(name)
	}
	waitSpread(t, l, vips12, 30*time.Second, map[string]int{"n1": 3, "n2": 3, "n3": 3, "n4": 3})
	waitSettled(t, l, "n1", "n2", "n3", "n4")

	procs["n4"].Signal(syscall.SIGKILL)
	procs["n4"].Wait(5 * time.Second)
	waitSpread(t, l, vips12, 15*time.Second, map[string]int{"n1": 4, "n2": 4, "n3": 4, "n4": 0})
	start("n5")
	all := []string{"n1", "n2", "n3", "n4", "n5"}
	samePlan := func(names []string, wantKnown []string) func() (bool, string) {
		return func() (bool, string) {
			first := ""
			for _, name := range names {
				known, view, err := planView(l.Node(name))
				if err != nil {
					return false, err.Error()
				}
				if !slices.Equal(known, wantKnown) {
					return false, fmt.Sprintf("%s knows %v", name, known)
				}
				if first == "" {
					first = view
				} else if view != first {
					return false, name + " has another plan"
				}
			}
			return true, ""
		}
	}
	waitFor(t, 30*time.Second, "n1, n2, n3, n5 to agree on the plan over all five", samePlan([]string{"n1", "n2", "n3", "n5"}, all))
	start("n4")
	waitFor(t, 30*time.Second, "n4 back on the same plan as everyone", samePlan(all, all))
	waitFor(t, 30*time.Second, "12 VIPs over 5 nodes: 2 or 3 each", func() (bool, string) {
		c, ok := spread(t, l, vips12)
		for _, name := range all {
			ok = ok && (c[name] == 2 || c[name] == 3)
		}
		return ok, fmt.Sprint(c)
	})

	// n5 goes away for good: forgotten on every node after forget_after.
	procs["n5"].Signal(syscall.SIGKILL)
	gone := time.Now()
	forgotAt := map[string]time.Duration{}
	deadline := gone.Add(forgetAfter + 60*time.Second)
	for len(forgotAt) < 4 && time.Now().Before(deadline) {
		for _, name := range all[:4] {
			if _, done := forgotAt[name]; done {
				continue
			}
			known, _, err := planView(l.Node(name))
			if err == nil && !slices.Contains(known, "n5") {
				forgotAt[name] = time.Since(gone)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(forgotAt) < 4 {
		t.Fatalf("n5 forgotten by %v only, %s after it went (forget_after %s)", forgotAt, time.Since(gone).Round(time.Second), forgetAfter)
	}
	var times stats
	for _, d := range forgotAt {
		times = append(times, d)
	}
	slices.Sort(times)
	t.Logf("n5 forgotten by the four nodes within %s of each other, %s after it went (forget_after %s, plus failure detection)",
		(times[len(times)-1] - times[0]).Round(time.Millisecond), times, forgetAfter)
	if times[0] < forgetAfter {
		t.Errorf("n5 forgotten %s after it went, before forget_after (%s)", times[0], forgetAfter)
	}
	if spreadOf := times[len(times)-1] - times[0]; spreadOf > 10*time.Second {
		t.Errorf("nodes forgot n5 %s apart, want within a few seconds", spreadOf)
	}
	waitFor(t, 30*time.Second, "the four to agree on the plan without n5", samePlan(all[:4], all[:4]))
	waitSpread(t, l, vips12, 30*time.Second, map[string]int{"n1": 3, "n2": 3, "n3": 3, "n4": 3})
}
