package balancer

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/garpd/garpd/gossip"
	"github.com/garpd/garpd/vrrp"
)

// holders are each group's holder with every member up.
func holders(p Plan) []string {
	out := make([]string, len(p.Groups))
	for i, r := range p.Groups {
		out[i] = r.Holder(nil)
	}
	return out
}

// everyGroup is a node's standings with every group at v.
func everyGroup(v int) map[string]int { return map[string]int{standingAll: v} }

// A soft check that fails on every node moves nothing; failing on one
// node, it moves that node's VIPs alone, each to its rank-1 node, and
// the others' VIPs stay where they are. Over every case, every node in
// turn.
func TestStandingsMoveOnlyTheFailingNodesVIPs(t *testing.T) {
	for _, c := range clusters() {
		if len(c.nodes) > 16 {
			continue // every node in turn, each group's whole ranking: the larger cases add time, not cases
		}
		plan := mustRank(t, c.nodes, c.groups)
		base := holders(plan)
		all := plan.WithStandings(func(string) map[string]int { return everyGroup(-40) })
		for i, r := range all.Groups {
			if !slices.Equal(r.Ranking(), plan.Groups[i].Ranking()) {
				t.Fatalf("%v: the check failing everywhere reordered group %d: %v, plan %v", c, i, r.Ranking(), plan.Groups[i].Ranking())
			}
		}
		for _, x := range c.nodes {
			moved := plan.WithStandings(func(n string) map[string]int {
				if n == x {
					return everyGroup(-40)
				}
				return nil
			})
			for i, r := range moved.Groups {
				want := base[i]
				if want == x {
					want = plan.Groups[i].At(1)
				}
				if got := r.Holder(nil); got != want {
					t.Fatalf("%v: %s failing: group %d held by %s, want %s (plan %v)", c, x, i, got, want, plan.Groups[i].Ranking())
				}
				if rk := r.RankOf(x); rk != r.Len()-1 || r.At(rk) != x {
					t.Fatalf("%v: %s failing: rank %d of %d in group %d", c, x, rk, r.Len(), i)
				}
				// The others keep the plan's order among themselves.
				if !slices.Equal(without(r.Ranking(), x), without(plan.Groups[i].Ranking(), x)) {
					t.Fatalf("%v: %s failing: group %d ranks %v, plan %v", c, x, i, r.Ranking(), plan.Groups[i].Ranking())
				}
			}
		}
	}
}

// A positive weight lifts a node over those without it; a standing for
// some groups moves those alone; and RankOf, At, Ranking and Priorities
// agree on one order.
func TestStandingsOrderRankings(t *testing.T) {
	groups := mkGroupsMixed(6, 3)
	plan := mustRank(t, mkNodes(4), groups)
	lifted := plan.WithStandings(func(n string) map[string]int {
		if n == "node-03" {
			return everyGroup(10)
		}
		return nil
	})
	for _, r := range lifted.Groups {
		if r.Owner() != "node-03" || r.Holder(nil) != "node-03" || r.Priorities()["node-03"] != OwnerPriority {
			t.Fatalf("node-03 lifted by +10: owner %s, holder %s, ranking %v", r.Owner(), r.Holder(nil), r.Ranking())
		}
	}
	scoped := StandingKey(groups[7])
	one := plan.WithStandings(func(n string) map[string]int {
		return map[string]int{scoped: -5}
	})
	for i, r := range one.Groups {
		if !slices.Equal(r.Ranking(), plan.Groups[i].Ranking()) {
			t.Fatalf("every node at -5 for %s only reordered group %d", scoped, i)
		}
	}
	x := plan.Groups[7].Owner()
	scopedOn := plan.WithStandings(func(n string) map[string]int {
		if n == x {
			return map[string]int{scoped: -5}
		}
		return nil
	})
	for i, r := range scopedOn.Groups {
		moved := !slices.Equal(r.Ranking(), plan.Groups[i].Ranking())
		if moved != (i == 7) {
			t.Fatalf("%s at -5 for %s: group %d moved %v", x, scoped, i, moved)
		}
		for k, n := range r.Ranking() {
			if r.RankOf(n) != k || r.At(k) != n || r.Priorities()[n] != PriorityForRank(k, r.Len()) {
				t.Fatalf("group %d: %s at %d of %v: RankOf %d, At %s", i, n, k, r.Ranking(), r.RankOf(n), r.At(k))
			}
		}
	}
	// Down members: the holder is the first up in the new order.
	down := map[string]bool{scopedOn.Groups[7].Owner(): true}
	if h := scopedOn.Groups[7].Holder(down); h != scopedOn.Groups[7].At(1) {
		t.Fatalf("holder %s with %v down, want %s", h, down, scopedOn.Groups[7].At(1))
	}
}

// CompactStandings loses nothing: every group reads back its standing,
// whatever the mix of values, and all zeros gossip nothing.
func TestCompactStandings(t *testing.T) {
	groups := mkGroupsMixed(40, 40)
	groups[3].Interface = "eth1" // its own interface: its own key
	r := rand.New(rand.NewPCG(37, 3))
	if got := CompactStandings(groups, map[string]int{}); got != nil {
		t.Fatalf("all zero: %v, want nil", got)
	}
	for range 500 {
		byKey := map[string]int{}
		values := []int{0, -40, 10, -253}[:1+r.IntN(4)]
		for _, g := range groups {
			byKey[StandingKey(g)] = values[r.IntN(len(values))]
		}
		c := CompactStandings(groups, byKey)
		for _, g := range groups {
			if got := standingIn(c, g); got != byKey[StandingKey(g)] {
				t.Fatalf("%s: %d, want %d (compact %v)", StandingKey(g), got, byKey[StandingKey(g)], c)
			}
		}
		counts := map[int]int{}
		for _, v := range byKey {
			counts[v]++
		}
		most := 0
		for _, n := range counts {
			most = max(most, n)
		}
		if len(c) > len(groups)-most+1 {
			t.Fatalf("compact standings not compact: %d entries for %d groups, %d of one value: %s", len(c), len(groups), most, fmt.Sprint(c))
		}
	}
	// The common case, one soft check over the whole node: one entry.
	byKey := map[string]int{}
	for _, g := range groups {
		byKey[StandingKey(g)] = -40
	}
	if c := CompactStandings(groups, byKey); len(c) != 1 || c[standingAll] != -40 {
		t.Fatalf("every group at -40: %v", c)
	}
}

// Decide orders by the standings it is given, this node's included: the
// priorities and the admission follow the reordered rankings.
func TestDecideStandings(t *testing.T) {
	groups := mkGroups(6)
	cfg := ControllerConfig{Local: "a", Groups: groups, Digest: "d"}
	plan := mustRank(t, []string{"a", "b", "c"}, groups)
	self := gossip.Member{Name: "a", Self: true, Meta: gossip.Meta{Healthy: true, Settled: true, Digest: "d"}}
	b, c := member("b", true, true, "d"), member("c", true, true, "d")
	in := Inputs{Known: known("a", "b", "c"), Live: []gossip.Member{self, b, c}, Healthy: true, Settled: true,
		LastMeta: map[string]gossip.Meta{"b": {Digest: "d", VRRP4: "192.0.2.12"}, "c": {Digest: "d", VRRP4: "192.0.2.13"}}}
	base := Decide(cfg, plan, in)

	in.Standings = map[string]map[string]int{"a": everyGroup(-40)}
	d := Decide(cfg, plan, in)
	for i := range groups {
		if d.Specs[i].Priority != uint8(PriorityForRank(2, 3)) {
			t.Fatalf("a at -40: group %d priority %d, want the last rank's", i, d.Specs[i].Priority)
		}
		if d.Status.VIPs[i].Holder == "a" {
			t.Fatalf("a at -40 still holds group %d", i)
		}
	}
	if reflect.DeepEqual(d.Admit, base.Admit) {
		t.Fatal("the admission did not follow the reordered rankings")
	}
	// Every node's fails: nothing changes.
	in.Standings = map[string]map[string]int{"a": everyGroup(-40), "b": everyGroup(-40), "c": everyGroup(-40)}
	if d := Decide(cfg, plan, in); !slices.EqualFunc(d.Specs, base.Specs, func(x, y vrrp.RouterSpec) bool { return x.Priority == y.Priority }) ||
		!reflect.DeepEqual(d.Admit, base.Admit) {
		t.Fatal("a check failing on every node changed this node's priorities or admission")
	}
}

// The members' standings apply once they held still for the quiet
// period: a check failing on every node, seen on each a little apart,
// applies once, all together; standings that keep changing apply after
// four quiet periods at most. On a fake clock.
func TestStandingHold(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	h := standingHold{quiet: 2 * time.Second}
	x := map[string]map[string]int{"x": everyGroup(-40)}
	xy := map[string]map[string]int{"x": everyGroup(-40), "y": everyGroup(-40)}
	if h.observe(at(0), nil) {
		t.Fatal("nothing to apply, applied")
	}
	if h.observe(at(0), x) || h.observe(at(300*time.Millisecond), xy) || h.observe(at(2200*time.Millisecond), xy) {
		t.Fatal("applied before the standings held still for 2s")
	}
	if due, ok := h.due(); !ok || !due.Equal(at(2300*time.Millisecond)) {
		t.Fatalf("due %v %v, want 2.3s", due, ok)
	}
	if !h.observe(at(2300*time.Millisecond), xy) || !reflect.DeepEqual(h.applied, xy) {
		t.Fatalf("not applied once quiet: %v", h.applied)
	}
	if h.observe(at(3*time.Second), xy) {
		t.Fatal("applied again without a change")
	}
	if _, ok := h.due(); ok {
		t.Fatal("due with nothing to apply")
	}
	// Flapping: a change every second applies after 4 quiet periods.
	applied := time.Duration(-1)
	for i := range 20 {
		now := 10*time.Second + time.Duration(i)*time.Second
		st := x
		if i%2 == 1 {
			st = nil
		}
		if h.observe(at(now), st) {
			applied = now - 10*time.Second
			break
		}
	}
	if applied != 8*time.Second {
		t.Fatalf("flapping standings applied after %v, want 8s (4 × quiet)", applied)
	}
	// Back to what is applied: nothing pending.
	if h.observe(at(30*time.Second), h.applied); h.first != (time.Time{}) {
		t.Fatal("pending with the applied standings back")
	}
}
