package balancer

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"testing"
)

func mkNodes(n int) []Node {
	out := make([]Node, n)
	for i := range out {
		out[i] = Node{Name: fmt.Sprintf("node-%02d", i), Weight: 1}
	}
	return out
}

func mkGroups(v int) []Group {
	out := make([]Group, v)
	for i := range out {
		a := netip.AddrFrom4([4]byte{198, 51, byte(100 + i/256), byte(i % 256)})
		out[i] = Group{VRID: 1 + i%255, VIPs: []netip.Prefix{netip.PrefixFrom(a, 32)}}
	}
	return out
}

func mustRank(t testing.TB, nodes []Node, groups []Group) Plan {
	t.Helper()
	p, err := Rank(nodes, groups)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func spread(m map[string]int) int {
	lo, hi := -1, 0
	for _, v := range m {
		if lo < 0 || v < lo {
			lo = v
		}
		hi = max(hi, v)
	}
	return hi - lo
}

// randomCase draws N in 3..64 and V in 1..maxV from r.
func randomCase(r *rand.Rand, maxV int) ([]Node, []Group) {
	return mkNodes(3 + r.IntN(62)), mkGroups(1 + r.IntN(maxV))
}

// Property 1: the same member and VIP sets give the same ranking whatever
// order they are listed in.
func TestRankDeterministic(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 50 {
		nodes, groups := randomCase(r, 300)
		p := mustRank(t, nodes, groups)
		sn, sg := slices.Clone(nodes), slices.Clone(groups)
		r.Shuffle(len(sn), func(i, j int) { sn[i], sn[j] = sn[j], sn[i] })
		perm := r.Perm(len(sg))
		for i, j := range perm {
			sg[i] = groups[j]
		}
		q := mustRank(t, sn, sg)
		for i, j := range perm {
			if !slices.Equal(q.Groups[i].Ranking(), p.Groups[j].Ranking()) {
				t.Fatalf("N=%d V=%d: ranking of %s depends on input order: %v vs %v",
					len(nodes), len(groups), groups[j].Key(), q.Groups[i].Ranking(), p.Groups[j].Ranking())
			}
		}
	}
}

// Property 2: every node owns floor(V/N) or ceil(V/N); with weights, its
// proportional share rounded, within one.
func TestRankBalancedOwners(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		nodes, groups := randomCase(r, 4096)
		p := mustRank(t, nodes, groups)
		if s := spread(p.Owned()); s > 1 {
			t.Fatalf("N=%d V=%d: owned counts spread %d: %v", len(nodes), len(groups), s, p.Owned())
		}
	}
	for range 100 {
		nodes, groups := randomCase(r, 2000)
		total := 0
		for i := range nodes {
			nodes[i].Weight = 1 + r.IntN(5)
			total += nodes[i].Weight
		}
		owned := mustRank(t, nodes, groups).Owned()
		for _, n := range nodes {
			share := float64(len(groups)*n.Weight) / float64(total)
			if d := float64(owned[n.Name]) - share; d <= -1 || d >= 1 {
				t.Fatalf("N=%d V=%d: %s (weight %d) owns %d, share %.2f", len(nodes), len(groups), n.Name, n.Weight, owned[n.Name], share)
			}
		}
	}
}

// Property 3: when any one node dies, VRRP's rank-1 failover leaves the
// survivors within 2 of each other, and re-ranking within 1.
func TestRankBalancedFailover(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 60 {
		nodes, groups := randomCase(r, 2048)
		p := mustRank(t, nodes, groups)
		for _, dead := range []string{nodes[r.IntN(len(nodes))].Name, nodes[0].Name} {
			rep, _, err := Fail(p, dead)
			if err != nil {
				t.Fatal(err)
			}
			if s := spread(rep.OwnedAfterFailover); s > 2 {
				t.Fatalf("N=%d V=%d, %s dies: survivors spread %d right after failover", len(nodes), len(groups), dead, s)
			}
			if s := spread(rep.OwnedAfterRerank); s > 1 {
				t.Fatalf("N=%d V=%d, %s dies: survivors spread %d after re-ranking", len(nodes), len(groups), dead, s)
			}
		}
	}
}

// Property 5: per VIP, priorities are distinct, strictly decreasing with
// rank, within 1..254, the owner's highest (for up to 250 nodes).
func TestRankPriorities(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 30 {
		nodes, groups := randomCase(r, 200)
		for _, g := range mustRank(t, nodes, groups).Groups {
			pr := g.Priorities()
			if len(pr) != len(nodes) {
				t.Fatalf("%d priorities for %d nodes", len(pr), len(nodes))
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

func TestRankExample(t *testing.T) {
	// Small fixed case: 3 nodes, 3 VIPs → one each, and all rankings full.
	p := mustRank(t, mkNodes(3), mkGroups(3))
	for n, c := range p.Owned() {
		if c != 1 {
			t.Fatalf("%s owns %d, want 1: %v", n, c, p.Owned())
		}
	}
	for _, g := range p.Groups {
		if g.Len() != 3 || g.At(0) == g.At(1) {
			t.Fatalf("bad ranking %v", g.Ranking())
		}
	}
	if _, _, err := Fail(p, "nope"); err == nil {
		t.Fatal("Fail of a non-member succeeded")
	}
}

func TestRankRejects(t *testing.T) {
	for _, nodes := range [][]Node{
		nil,
		{{Name: "a", Weight: 1}, {Name: "a", Weight: 1}},
		{{Name: "a", Weight: 0}},
		{{Name: "", Weight: 1}},
	} {
		if _, err := Rank(nodes, mkGroups(2)); err == nil {
			t.Errorf("Rank(%v) succeeded", nodes)
		}
	}
}

// Property 7: ranking 4096 VIPs over 256 nodes in under 20 ms.
func BenchmarkRank4096x256(b *testing.B) {
	nodes, groups := mkNodes(256), mkGroups(4096)
	for b.Loop() {
		if _, err := Rank(nodes, groups); err != nil {
			b.Fatal(err)
		}
	}
}

// rendezvous is plain rendezvous hashing (MetalLB-style): every group ranks
// nodes by score alone, so owner and first backup are its two best.
func rendezvous(nodes []Node, groups []Group) Plan {
	ns := slices.Clone(nodes)
	slices.SortFunc(ns, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) })
	ctx := &rankContext{nodes: ns, nh: make([]uint64, len(ns))}
	for i, n := range ns {
		ctx.nh[i] = hash64(n.Name)
	}
	p := Plan{Nodes: ns, Groups: make([]Ranked, len(groups))}
	for gi, g := range groups {
		gh := hash64(g.Key())
		best, second := -1, -1
		for i := range ns {
			switch {
			case best < 0 || ctx.key(gh, i) > ctx.key(gh, best):
				best, second = i, best
			case second < 0 || ctx.key(gh, i) > ctx.key(gh, second):
				second = i
			}
		}
		p.Groups[gi] = Ranked{Group: g, owner: best, second: second, gh: gh, ctx: ctx}
	}
	return p
}

type agg struct {
	sum, worst float64
	n          int
}

func (a *agg) add(v float64, worse func(a, b float64) bool) {
	a.sum += v
	a.n++
	if a.n == 1 || worse(v, a.worst) {
		a.worst = v
	}
}

func (a agg) String() string { return fmt.Sprintf("avg %.3f worst %.3f", a.sum/float64(a.n), a.worst) }

func higher(a, b float64) bool { return a > b }
func lower(a, b float64) bool  { return a < b }

// TestAgreementReport measures property 4 (and 2, 3) against plain
// rendezvous hashing over random cases. It is a measurement, run with
// GARPD_BALANCER_REPORT=1 go test -run AgreementReport -v ./balancer.
func TestAgreementReport(t *testing.T) {
	if os.Getenv("GARPD_BALANCER_REPORT") == "" {
		t.Skip("measurement; set GARPD_BALANCER_REPORT=1 to run")
	}
	r := rand.New(rand.NewPCG(9, 10))
	type stats struct{ ownSpread, failSpread, agree, othersMoved, joinTaken, joinOthers agg }
	var ours, rv stats
	for range 200 {
		nodes, groups := randomCase(r, 4096)
		V, N := float64(len(groups)), float64(len(nodes))
		dead := nodes[r.IntN(len(nodes))].Name
		joiner := append(slices.Clone(nodes), Node{Name: "joiner", Weight: 1})
		for _, alg := range []struct {
			s    *stats
			rank func([]Node, []Group) Plan
		}{
			{&ours, func(n []Node, g []Group) Plan { return mustRank(t, n, g) }},
			{&rv, rendezvous},
		} {
			p := alg.rank(nodes, groups)
			alg.s.ownSpread.add(float64(spread(p.Owned())), higher)
			after := alg.rank(Without(nodes, dead), groups)
			imm := map[string]int{}
			for _, n := range Without(nodes, dead) {
				imm[n.Name] = 0
			}
			deadGroups, agree, others := 0, 0, 0
			for i, g := range p.Groups {
				if g.Owner() == dead {
					deadGroups++
					imm[g.At(1)]++
					if after.Groups[i].Owner() == g.At(1) {
						agree++
					}
				} else {
					imm[g.Owner()]++
					if after.Groups[i].Owner() != g.Owner() {
						others++
					}
				}
			}
			alg.s.failSpread.add(float64(spread(imm)), higher)
			if deadGroups > 0 {
				alg.s.agree.add(float64(agree)/float64(deadGroups), lower)
			}
			alg.s.othersMoved.add(float64(others)/V, higher)
			j := alg.rank(joiner, groups)
			taken, elsewhere := 0, 0
			for i, g := range j.Groups {
				switch {
				case g.Owner() == "joiner":
					taken++
				case g.Owner() != p.Groups[i].Owner():
					elsewhere++
				}
			}
			alg.s.joinTaken.add(float64(taken)/(V/(N+1)), higher)
			alg.s.joinOthers.add(float64(elsewhere)/V, higher)
		}
	}
	for _, row := range []struct {
		name string
		a, b agg
	}{
		{"owned spread (max-min VIPs)", ours.ownSpread, rv.ownSpread},
		{"spread right after one death", ours.failSpread, rv.failSpread},
		{"dead node's VIPs where re-rank agrees with VRRP", ours.agree, rv.agree},
		{"survivors' VIPs moved by re-rank (fraction of V)", ours.othersMoved, rv.othersMoved},
		{"join: VIPs taken by the new node / (V/(N+1))", ours.joinTaken, rv.joinTaken},
		{"join: VIPs moved between old nodes (fraction of V)", ours.joinOthers, rv.joinOthers},
	} {
		t.Logf("%-52s garpd: %-26s rendezvous: %s", row.name, row.a, row.b)
	}
}
