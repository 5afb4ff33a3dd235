package balancer

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

func mkNodes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("node-%02d", i)
	}
	return out
}

// mkGroups makes v4 IPv4 groups and v6 IPv6 groups, one VIP each.
func mkGroupsMixed(v4, v6 int) []Group {
	var out []Group
	for i := range v4 {
		a := netip.AddrFrom4([4]byte{198, 51, byte(100 + i/256), byte(i % 256)})
		out = append(out, Group{VRID: 1 + i%255, VIPs: []netip.Prefix{netip.PrefixFrom(a, 32)}})
	}
	for i := range v6 {
		a := netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", 0x100+i))
		out = append(out, Group{V6: true, VRID: 1 + i%255, VIPs: []netip.Prefix{netip.PrefixFrom(a, 128)}})
	}
	return out
}

func mkGroups(v int) []Group { return mkGroupsMixed(v, 0) }

func mustRank(t testing.TB, nodes []string, groups []Group) Plan {
	t.Helper()
	p, err := Rank(nodes, groups)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func spread(m map[string]int) int { return ownedSpread(m) }

// cluster is one random case: 2..64 nodes, 1..510 groups over both
// families (at most 255 each).
type cluster struct {
	nodes  []string
	groups []Group
}

func (c cluster) String() string {
	v4 := 0
	for _, g := range c.groups {
		if !g.V6 {
			v4++
		}
	}
	return fmt.Sprintf("N=%d v4=%d v6=%d", len(c.nodes), v4, len(c.groups)-v4)
}

func randomCluster(r *rand.Rand) cluster {
	c := cluster{nodes: mkNodes(2 + r.IntN(63))}
	v4, v6 := r.IntN(256), r.IntN(256)
	if r.IntN(4) == 0 {
		v6 = 0 // IPv4 alone, the most common layout
	}
	if v4+v6 == 0 {
		v4 = 1
	}
	c.groups = mkGroupsMixed(v4, v6)
	return c
}

// clusters are the property tests' cases, the same on every run, plus
// the small layouts operators run most.
func clusters() []cluster {
	r := rand.New(rand.NewPCG(20, 26))
	var out []cluster
	for n := 2; n <= 5; n++ {
		for _, v := range [][2]int{{1, 0}, {2, 0}, {3, 0}, {6, 0}, {3, 3}, {1, 1}, {7, 2}, {12, 0}} {
			out = append(out, cluster{nodes: mkNodes(n), groups: mkGroupsMixed(v[0], v[1])})
		}
	}
	for range 150 {
		out = append(out, randomCluster(r))
	}
	return out
}

// checkHeld says what is wrong, if anything, with held counts (groups per
// live node, per family and in total) against shares: every node must
// hold its share of the groups, rounded down or up.
func checkHeld(nodes []string, held map[string][3]int, down map[string]bool) error {
	W := 0
	var totals [3]int
	for _, n := range nodes {
		if down[n] {
			continue
		}
		W++
		for f := range 3 {
			totals[f] += held[n][f]
		}
	}
	for _, n := range nodes {
		if down[n] {
			continue
		}
		for f, what := range []string{"ipv4", "ipv6", "total"} {
			lo, hi := totals[f]/W, (totals[f]+W-1)/W
			if h := held[n][f]; h < lo || h > hi {
				return fmt.Errorf("%s holds %d %s groups, its share is %d..%d", n, h, what, lo, hi)
			}
		}
	}
	return nil
}

// heldGroups counts the groups each live node holds: IPv4, IPv6, total.
func heldGroups(p Plan, down map[string]bool) map[string][3]int {
	out := map[string][3]int{}
	for _, r := range p.Groups {
		h := r.Holder(down)
		c := out[h]
		c[familyOf(r.Group)]++
		c[2]++
		out[h] = c
	}
	return out
}

// The same members and groups give the same ranking whatever order they
// are listed in.
func TestRankDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range clusters()[:60] {
		p := mustRank(t, c.nodes, c.groups)
		sn, sg := slices.Clone(c.nodes), slices.Clone(c.groups)
		r.Shuffle(len(sn), func(i, j int) { sn[i], sn[j] = sn[j], sn[i] })
		perm := r.Perm(len(sg))
		for i, j := range perm {
			sg[i] = c.groups[j]
		}
		q := mustRank(t, sn, sg)
		for i, j := range perm {
			if !slices.Equal(q.Groups[i].Ranking(), p.Groups[j].Ranking()) {
				t.Fatalf("%s: ranking of %s depends on input order: %v vs %v", c, c.groups[j].Key(), q.Groups[i].Ranking(), p.Groups[j].Ranking())
			}
		}
	}
}

// Every ranking lists every member once, and owners hold their share of
// each family and of all groups, rounded down or up.
func TestRankBalancedOwners(t *testing.T) {
	for _, c := range clusters() {
		p := mustRank(t, c.nodes, c.groups)
		for _, g := range p.Groups {
			rk := g.Ranking()
			if len(rk) != len(c.nodes) || len(slices.Compact(slices.Sorted(slices.Values(rk)))) != len(c.nodes) {
				t.Fatalf("%s: ranking %v is not every member once", c, rk)
			}
		}
		if err := checkHeld(c.nodes, heldGroups(p, nil), nil); err != nil {
			t.Fatalf("%s, all up: %v", c, err)
		}
	}
}

// With any one node down (each in turn), only its groups change holder,
// each to its rank-1 node, and the holders are as even as the groups allow:
// every live node holds its share rounded down or up, per family and in
// total. This is what VRRP does with no re-ranking at all.
func TestRankOneDown(t *testing.T) {
	for _, c := range clusters() {
		p := mustRank(t, c.nodes, c.groups)
		for _, dead := range c.nodes {
			down := map[string]bool{dead: true}
			for _, g := range p.Groups {
				h := g.Holder(down)
				if g.Owner() != dead && h != g.Owner() {
					t.Fatalf("%s, %s down: %s of live owner %s is held by %s", c, dead, g.Group.Key(), g.Owner(), h)
				}
			}
			if len(c.nodes) == 1 {
				continue
			}
			if err := checkHeld(c.nodes, heldGroups(p, down), down); err != nil {
				t.Fatalf("%s, %s down: %v", c, dead, err)
			}
		}
	}
}

// With any two nodes down, the holders' spread (max-min groups, equal
// nodes) is reported; the target is at most 2, and more than 3 fails.
func TestRankTwoDown(t *testing.T) {
	hist := map[int]int{}
	worst, worstCase := 0, ""
	for _, c := range clusters() {
		if len(c.nodes) < 3 {
			continue
		}
		p := mustRank(t, c.nodes, c.groups)
		for i, a := range c.nodes {
			for _, b := range c.nodes[i+1:] {
				down := map[string]bool{a: true, b: true}
				held := map[string]int{}
				hg := heldGroups(p, down)
				for _, n := range c.nodes {
					if !down[n] {
						held[n] = hg[n][2]
					}
				}
				s := spread(held)
				hist[s]++
				if s > worst {
					worst, worstCase = s, fmt.Sprintf("%s, %s and %s down: %v", c, a, b, held)
				}
			}
		}
	}
	var keys []int
	for k := range hist {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("spread %d: %d", k, hist[k]))
	}
	t.Logf("two nodes down, every pair of every equal-weight case: %s", strings.Join(parts, ", "))
	if worst > 3 {
		t.Fatalf("two down left a spread of %d: %s", worst, worstCase)
	}
}

// Priorities per group are distinct, strictly decreasing with rank, within
// 1..254, the owner's highest.
func TestRankPriorities(t *testing.T) {
	for _, c := range clusters()[:60] {
		for _, g := range mustRank(t, c.nodes, c.groups).Groups {
			pr := g.Priorities()
			if len(pr) != len(c.nodes) {
				t.Fatalf("%d priorities for %d nodes", len(pr), len(c.nodes))
			}
			prev := 255
			for _, n := range g.Ranking() {
				p := pr[n]
				if p >= prev || p < 1 || p > 254 {
					t.Fatalf("ranking %v: priority %d after %d", g.Ranking(), p, prev)
				}
				prev = p
			}
		}
	}
}

// The field case of the issue: 3 nodes, 6 VIPs; whichever node is down,
// the others hold 3 and 3. Dual stack, 3 + 3: each node owns one of each.
func TestRankSmallLayouts(t *testing.T) {
	p := mustRank(t, mkNodes(3), mkGroups(6))
	for _, n := range p.Nodes {
		down := map[string]bool{n: true}
		for m, c := range p.Held(down) {
			if m != n && c != 3 {
				t.Fatalf("%s down: %v, want 3 and 3", n, p.Held(down))
			}
		}
	}
	dual := mustRank(t, mkNodes(3), mkGroupsMixed(3, 3))
	for n, c := range heldGroups(dual, nil) {
		if c[0] != 1 || c[1] != 1 {
			t.Fatalf("dual stack 3+3 on 3 nodes: %s owns %d IPv4 and %d IPv6, want one of each", n, c[0], c[1])
		}
	}
}

func TestRankRejects(t *testing.T) {
	for _, nodes := range [][]string{
		nil,
		{"a", "a"},
		{""},
	} {
		if _, err := Rank(nodes, mkGroups(2)); err == nil {
			t.Errorf("Rank(%v) succeeded", nodes)
		}
	}
}

// The most a plan can hold: 255 groups per family over 256 nodes.
func BenchmarkRank510x256(b *testing.B) {
	nodes, groups := mkNodes(256), mkGroupsMixed(255, 255)
	for b.Loop() {
		if _, err := Rank(nodes, groups); err != nil {
			b.Fatal(err)
		}
	}
}

// TestJoinForgetReport measures what a join and a forget re-plan: the
// groups whose holder changes, against the minimum (the newcomer's share,
// or the forgotten node's groups, which have already moved). A measurement:
// GARPD_BALANCER_REPORT=1 go test -run JoinForgetReport -v ./balancer.
func TestJoinForgetReport(t *testing.T) {
	if os.Getenv("GARPD_BALANCER_REPORT") == "" {
		t.Skip("measurement; set GARPD_BALANCER_REPORT=1 to run")
	}
	start := time.Now()
	var joinMoved, joinMin, forgetMoved, groups, cases int
	for _, c := range clusters() {
		if len(c.nodes) < 3 {
			continue
		}
		cases++
		groups += len(c.groups)
		p := mustRank(t, c.nodes, c.groups)
		joined := mustRank(t, append(slices.Clone(c.nodes), "newcomer"), c.groups)
		joinMoved += len(Moves(p, joined, nil))
		joinMin += len(c.groups) / (len(c.nodes) + 1)
		// Forget: the node has been down for forget_after, so its groups
		// sit on their rank-1 nodes; what moves is everything else.
		gone := c.nodes[0]
		forgotten := mustRank(t, without(c.nodes, gone), c.groups)
		forgetMoved += len(Moves(p, forgotten, map[string]bool{gone: true}))
	}
	t.Logf("%d equal-weight cases, %d groups in all (%s):", cases, groups, time.Since(start).Round(time.Millisecond))
	t.Logf("  join:   %d groups changed holder (%.1f%% of all groups); the newcomer's share alone is %d (%.1f%%)",
		joinMoved, 100*float64(joinMoved)/float64(groups), joinMin, 100*float64(joinMin)/float64(groups))
	t.Logf("  forget: %d groups of live nodes changed holder (%.1f%% of all groups); the minimum is 0",
		forgetMoved, 100*float64(forgetMoved)/float64(groups))
}

// without returns nodes minus the named node.
func without(nodes []string, name string) []string {
	return slices.DeleteFunc(slices.Clone(nodes), func(n string) bool { return n == name })
}

// Preferences the shares allow: over the property clusters, with a random
// third of the groups preferring a random node (each node preferred by at
// most its share rounded down), the preferred node owns each, the owners
// are as balanced as without preferences, and with any one node down only
// its groups move, the survivors within their shares.
func TestRankPreferences(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 7))
	for _, c := range clusters() {
		W := len(c.nodes)
		var famCount [families]int
		for _, g := range c.groups {
			famCount[familyOf(g)]++
		}
		var prefCount [families]map[string]int
		prefTotal := map[string]int{}
		for f := range prefCount {
			prefCount[f] = map[string]int{}
		}
		groups := slices.Clone(c.groups)
		want := map[string]string{}
		for i := range groups {
			if r.IntN(3) != 0 {
				continue
			}
			n := c.nodes[r.IntN(len(c.nodes))]
			f := familyOf(groups[i])
			if prefCount[f][n]+1 > famCount[f]/W || prefTotal[n]+1 > len(groups)/W {
				continue
			}
			prefCount[f][n]++
			prefTotal[n]++
			groups[i].Prefer = n
			want[groups[i].Key()] = n
		}
		p := mustRank(t, c.nodes, groups)
		for _, g := range p.Groups {
			if w, ok := want[g.Group.Key()]; ok && g.Owner() != w {
				t.Fatalf("%s: %s prefers %s, owned by %s", c, g.Group.Key(), w, g.Owner())
			}
		}
		if err := checkHeld(c.nodes, heldGroups(p, nil), nil); err != nil {
			t.Fatalf("%s with %d preferences, all up: %v", c, len(want), err)
		}
		for _, dead := range c.nodes {
			down := map[string]bool{dead: true}
			for _, g := range p.Groups {
				if g.Owner() != dead && g.Holder(down) != g.Owner() {
					t.Fatalf("%s, %s down: %s of live owner %s moved", c, dead, g.Group.Key(), g.Owner())
				}
			}
			if err := checkHeld(c.nodes, heldGroups(p, down), down); err != nil {
				t.Fatalf("%s with %d preferences, %s down: %v", c, len(want), dead, err)
			}
		}
	}
}

// Preferences beyond a node's share are honoured and cost balance: every
// group preferring one node is owned by it; the plan still ranks every
// member, and a preference for an unknown node is ignored.
func TestRankPreferencesBeyondShare(t *testing.T) {
	nodes := mkNodes(3)
	groups := mkGroups(6)
	for i := range groups {
		groups[i].Prefer = nodes[0]
	}
	groups[5].Prefer = "gone"
	p := mustRank(t, nodes, groups)
	for _, g := range p.Groups[:5] {
		if g.Owner() != nodes[0] {
			t.Fatalf("%s owned by %s, prefers %s", g.Group.Key(), g.Owner(), nodes[0])
		}
	}
	if o := p.Owned(); o[nodes[0]] != 5 {
		t.Fatalf("owned %v", o)
	}
	with, without, err := PreferenceCost(nodes, groups)
	if err != nil || with <= without || without != 0 {
		t.Fatalf("preference cost: spread %d with, %d without (%v); want more with, 0 without", with, without, err)
	}
}
