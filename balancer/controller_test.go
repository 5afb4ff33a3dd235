package balancer

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/garpd/garpd/gossip"
	"github.com/garpd/garpd/vrrp"
)

// member is a live member that is healthy and settled unless said.
func member(name string, healthy bool, settled bool, digest string) gossip.Member {
	return gossip.Member{Name: name, Meta: gossip.Meta{Healthy: healthy, Settled: settled, Digest: digest}}
}

func known(names ...string) []gossip.KnownMember {
	var out []gossip.KnownMember
	for _, n := range names {
		out = append(out, gossip.KnownMember{Name: n})
	}
	return out
}

// Decide: the plan is over the known members whatever their state; the
// state only decides who VRRP elects, and the local node is a backup of
// last resort until it has settled.
func TestDecide(t *testing.T) {
	groups := mkGroups(6)
	cfg := ControllerConfig{Local: "a", Groups: groups, Digest: "d"}
	plan := mustRank(t, []string{"a", "b", "c"}, groups)
	self := gossip.Member{Name: "a", Self: true, Meta: gossip.Meta{Healthy: true, Settled: true, Digest: "d"}}
	all := []gossip.Member{self, member("b", true, true, "d"), member("c", true, true, "d")}

	d := Decide(cfg, plan, Inputs{Known: known("a", "b", "c"), Live: all, Healthy: true, Settled: true})
	for i, r := range plan.Groups {
		if want := PriorityForRank(r.RankOf("a"), 3); int(d.Specs[i].Priority) != want {
			t.Fatalf("group %d: priority %d, want %d from rank %d", i, d.Specs[i].Priority, want, r.RankOf("a"))
		}
		if d.Status.VIPs[i].Holder != r.Owner() {
			t.Fatalf("group %d: holder %s with all up, want the owner %s", i, d.Status.VIPs[i].Holder, r.Owner())
		}
	}
	if d.Resign || d.Counts[StateRanked] != 3 {
		t.Fatalf("all up: resign %v, counts %v", d.Resign, d.Counts)
	}

	// b is down (still known): same priorities for a, b's groups held by
	// their rank-1 nodes, b shown down.
	d2 := Decide(cfg, plan, Inputs{Known: known("a", "b", "c"), Live: []gossip.Member{self, all[2]}, Healthy: true, Settled: true})
	if !slices.EqualFunc(d.Specs, d2.Specs, func(x, y vrrp.RouterSpec) bool { return x.Priority == y.Priority }) {
		t.Fatal("a member going down changed this node's priorities: nothing may be re-ranked")
	}
	for i, r := range plan.Groups {
		want := r.Owner()
		if want == "b" {
			want = r.At(1)
		}
		if h := d2.Status.VIPs[i].Holder; h != want {
			t.Fatalf("b down, group %d (%v): holder %s, want %s", i, r.Ranking(), h, want)
		}
	}
	if d2.Counts[StateDown] != 1 {
		t.Fatalf("b down: counts %v", d2.Counts)
	}

	// Not settled: every priority is the last-resort one.
	d3 := Decide(cfg, plan, Inputs{Known: known("a", "b", "c"), Live: all, Healthy: true, Settled: false})
	for _, s := range d3.Specs {
		if s.Priority != UnrankedPriority {
			t.Fatalf("settling node has priority %d for VRID %d, want %d", s.Priority, s.VRID, UnrankedPriority)
		}
	}
	// Unhealthy: resign; a config-mismatched member is shown as such.
	other := []gossip.Member{self, member("b", true, true, "d"), member("c", true, true, "other")}
	d4 := Decide(cfg, plan, Inputs{Known: known("a", "b", "c"), Live: other, Healthy: false})
	if !d4.Resign || d4.Counts[StateMismatch] != 1 || d4.Counts[StateUnhealthy] != 1 {
		t.Fatalf("unhealthy with a mismatched member: resign %v counts %v", d4.Resign, d4.Counts)
	}
}

// Once settled, only known members of this config count as VRRP speakers,
// at the addresses they last gossiped, each up to the priority its rank
// gives it; before, anyone does.
func TestDecideAdmission(t *testing.T) {
	groups := mkGroups(6)
	cfg := ControllerConfig{Local: "a", Groups: groups, Digest: "d"}
	plan := mustRank(t, []string{"a", "b", "c"}, groups)
	src := map[string]netip.Addr{"b": netip.MustParseAddr("192.0.2.12"), "c": netip.MustParseAddr("192.0.2.13")}
	mac := map[string]net.HardwareAddr{"b": {2, 0, 0, 0, 0, 0x12}, "c": {2, 0, 0, 0, 0, 0x13}}
	live := []gossip.Member{{Name: "a", Self: true, Meta: gossip.Meta{Healthy: true, Settled: true, Digest: "d"}}}
	for _, n := range []string{"b", "c"} {
		m := member(n, true, false, "d")
		m.Meta.VRRP4 = src[n].String()
		m.Meta.MAC = mac[n].String()
		live = append(live, m)
	}
	live[2].Meta.Digest = "other" // c runs another config
	last := map[string]gossip.Meta{}
	for _, m := range live {
		last[m.Name] = m.Meta
	}
	// b is down in gossip (a blocked port): still known, still admitted.
	in := Inputs{Known: known("a", "b", "c"), Live: live[:1], Healthy: true, LastMeta: last}
	if d := Decide(cfg, plan, in); d.Admit != nil {
		t.Fatal("a node that has not settled restricts VRRP speakers: gossip may not show every member yet")
	}
	in.Settled = true
	d := Decide(cfg, plan, in)
	if d.Admit == nil {
		t.Fatal("settled: no admission")
	}
	// Members' announcements are VRRP's to settle; others' are answered.
	if !d.Admit.MemberMAC(mac["b"]) || d.Admit.MemberMAC(mac["c"]) {
		t.Fatal("member MACs: want b's (a member) and not c's (another config)")
	}
	for _, r := range plan.Groups {
		vrid := uint8(r.Group.VRID)
		want := uint8(PriorityForRank(r.RankOf("b"), r.Len()))
		if !d.Admit.Admits(src["b"], false, vrid, want) || d.Admit.Admits(src["b"], false, vrid, want+1) {
			t.Fatalf("VRID %d: b (rank %d) admitted wrongly around its planned priority %d", vrid, r.RankOf("b"), want)
		}
		if d.Admit.Admits(src["c"], false, vrid, 1) {
			t.Fatalf("VRID %d: c, of another config, admitted", vrid)
		}
		if d.Admit.Admits(netip.MustParseAddr("192.0.2.66"), false, vrid, 1) {
			t.Fatalf("VRID %d: a non-member admitted", vrid)
		}
	}
}

// A node alone that never knew another member, and that hears adverts for
// its VIPs signed with a key it does not have (its gossip key is not the
// cluster's), stays out of VRRP: it cannot hear the cluster's masters, so
// as a backup it would take every VIP. One that knew members keeps its
// ranks whatever it hears; without that evidence it is a backup of last
// resort.
func TestDecideOtherKey(t *testing.T) {
	groups := mkGroups(6)
	cfg := ControllerConfig{Local: "a", Groups: groups, Digest: "d", HasSeeds: true}
	self := gossip.Member{Name: "a", Self: true, Meta: gossip.Meta{Healthy: true, Digest: "d"}}
	alone := Inputs{Known: known("a"), Live: []gossip.Member{self}, Healthy: true, Settled: true, ForeignKeyed: true}
	if d := Decide(cfg, mustRank(t, []string{"a"}, groups), alone); !d.OtherKey || !d.Resign {
		t.Fatalf("alone, never knew a member, another key heard: other key %v resign %v, want both", d.OtherKey, d.Resign)
	}
	alone.ForeignKeyed = false
	if d := Decide(cfg, mustRank(t, []string{"a"}, groups), alone); d.OtherKey || d.Resign {
		t.Fatalf("alone, nothing heard: other key %v resign %v, want a backup of last resort", d.OtherKey, d.Resign)
	}
	knew := Inputs{Known: known("a", "b"), Live: []gossip.Member{self}, Healthy: true, Settled: true, ForeignKeyed: true}
	if d := Decide(cfg, mustRank(t, []string{"a", "b"}, groups), knew); d.OtherKey || d.Resign {
		t.Fatalf("cut off after knowing b: other key %v resign %v, want its ranks kept", d.OtherKey, d.Resign)
	}
}

// A starting node with seeds that sees nobody stays out of VRRP for the
// join grace: it must not take VIPs from a cluster it has not heard yet.
// After the grace, alone, it is a backup of last resort.
func TestDecideJoining(t *testing.T) {
	groups := mkGroups(6)
	cfg := ControllerConfig{Local: "a", Groups: groups, Digest: "d", HasSeeds: true}
	plan := mustRank(t, []string{"a", "b"}, groups)
	self := gossip.Member{Name: "a", Self: true, Meta: gossip.Meta{Healthy: true, Digest: "d"}}
	in := Inputs{Known: known("a", "b"), Live: []gossip.Member{self}, Healthy: true, Starting: true}
	if d := Decide(cfg, plan, in); !d.Joining || !d.Resign {
		t.Fatalf("starting alone: joining %v resign %v, want both", d.Joining, d.Resign)
	}
	in.Live = append(in.Live, member("b", true, true, "d"))
	if d := Decide(cfg, plan, in); d.Joining || d.Resign {
		t.Fatalf("starting, b seen: joining %v resign %v, want neither", d.Joining, d.Resign)
	}
	in.Live, in.Starting = in.Live[:1], false
	d := Decide(cfg, plan, in)
	if d.Joining || d.Resign || d.Specs[0].Priority != UnrankedPriority {
		t.Fatalf("alone after the grace: joining %v resign %v priority %d, want a backup of last resort", d.Joining, d.Resign, d.Specs[0].Priority)
	}
	// Settled and then cut off from gossip: the known members' plan still
	// holds, so the ranks stay; a node that never knew anyone else is a
	// backup of last resort.
	in.Settled = true
	d = Decide(cfg, plan, in)
	if want := PriorityForRank(plan.Groups[0].RankOf("a"), 2); !d.Alone || int(d.Specs[0].Priority) != want {
		t.Fatalf("settled, cut off: alone %v priority %d, want its rank's %d", d.Alone, d.Specs[0].Priority, want)
	}
	in.Known = known("a")
	if d := Decide(cfg, plan, in); d.Specs[0].Priority != UnrankedPriority {
		t.Fatalf("alone, never knew another member: priority %d, want %d", d.Specs[0].Priority, UnrankedPriority)
	}
	in.Known, in.Settled = known("a", "b"), false
	cfg.HasSeeds = false
	in.Starting = true
	if d := Decide(cfg, plan, in); d.Resign {
		t.Fatal("a node without seeds (a one-node cluster) resigned while starting")
	}
}

func TestConfigMinority(t *testing.T) {
	three := []gossip.Member{member("a", true, true, "new"), member("b", true, true, "old"), member("c", true, true, "old")}
	if !ConfigMinority(three, "new") || ConfigMinority(three, "old") {
		t.Fatal("1 vs 2: the single node must be the minority, the pair not")
	}
	two := []gossip.Member{member("a", true, true, "aaa"), member("b", true, true, "bbb")}
	if ConfigMinority(two, "aaa") || !ConfigMinority(two, "bbb") {
		t.Fatal("1 vs 1: exactly one side (the larger digest) must yield")
	}
	if ConfigMinority(two[:1], "aaa") {
		t.Fatal("alone is not a minority")
	}
}

func TestDigest(t *testing.T) {
	a := Digest(mkGroups(3), 3, time.Second)
	g := mkGroups(3)
	slices.Reverse(g)
	if Digest(g, 3, time.Second) != a {
		t.Fatal("digest depends on group order")
	}
	if Digest(mkGroups(3), 2, time.Second) == a || Digest(mkGroups(3), 3, 100*time.Millisecond) == a || Digest(mkGroups(4), 3, time.Second) == a {
		t.Fatal("digest ignores version, interval or VIPs")
	}
}

type fakeMembers struct {
	mu      sync.Mutex
	list    []gossip.Member
	self    gossip.Meta
	changes chan struct{}
}

func (f *fakeMembers) Members() []gossip.Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.list)
	for i := range out {
		if out[i].Self {
			out[i].Meta = f.self
		}
	}
	return out
}
func (f *fakeMembers) Changes() <-chan struct{} { return f.changes }
func (f *fakeMembers) Known() []gossip.KnownMember {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []gossip.KnownMember
	for _, m := range f.list {
		out = append(out, gossip.KnownMember{Name: m.Name})
	}
	return out
}
func (f *fakeMembers) Meta() gossip.Meta {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.self
}
func (f *fakeMembers) UpdateMeta(change func(*gossip.Meta)) {
	f.mu.Lock()
	change(&f.self)
	f.mu.Unlock()
	f.poke()
}
func (f *fakeMembers) set(list []gossip.Member) {
	f.mu.Lock()
	f.list = list
	f.mu.Unlock()
	f.poke()
}
func (f *fakeMembers) poke() {
	select {
	case f.changes <- struct{}{}:
	default:
	}
}

type fakePlane struct {
	mu       sync.Mutex
	specs    []vrrp.RouterSpec
	resigned bool
}

func (e *fakePlane) Update(_ context.Context, s []vrrp.RouterSpec) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.specs = s
	return nil
}
func (e *fakePlane) Resign(_ context.Context, r bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.resigned = r
	return nil
}
func (e *fakePlane) SetPeers(context.Context, []netip.Addr) error { return nil }
func (e *fakePlane) SetLegacyKeyID(context.Context, bool) error   { return nil }
func (e *fakePlane) SetFaults(context.Context, map[vrrp.RouterID]string) error {
	return nil
}
func (e *fakePlane) SetAdmission(context.Context, *vrrp.Admission) error { return nil }
func (e *fakePlane) LastForeignKeyed(context.Context) time.Time          { return time.Time{} }
func (e *fakePlane) Source(bool) netip.Addr                              { return netip.Addr{} }
func (e *fakePlane) SetEvents(vrrp.EventSink)                            {}

func (e *fakePlane) owned() (int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, s := range e.specs {
		if s.Priority == OwnerPriority {
			n++
		}
	}
	return n, e.resigned
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The controller follows the known members (a peer joins: the plan halves
// this node's share), settles before it owns anything, and resigns at once
// when unhealthy.
func TestControllerFollowsMembersAndHealth(t *testing.T) {
	groups := mkGroups(6)
	digest := Digest(groups, 3, time.Second)
	fm := &fakeMembers{changes: make(chan struct{}, 1), self: gossip.Meta{Healthy: true, Digest: digest}}
	fm.list = []gossip.Member{{Name: "a", Self: true}}
	fe := &fakePlane{}
	c := NewController(ControllerConfig{Local: "a", Groups: groups, Digest: digest, Settle: 200 * time.Millisecond, Debounce: 10 * time.Millisecond},
		fm, fe, zerolog.Nop(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	eventually(t, "a alone to own all 6 once settled", func() bool { n, _ := fe.owned(); return n == 6 })
	if m := fm.Meta(); !m.Settled {
		t.Fatalf("settled node gossips %+v", m)
	}

	// b joins: the plan is over a and b, 3/3.
	fm.set([]gossip.Member{{Name: "a", Self: true}, member("b", true, true, digest)})
	eventually(t, "a to own 3 with b known", func() bool { n, _ := fe.owned(); return n == 3 })

	c.SetHealth([]string{"ingress"})
	eventually(t, "resign on failing health", func() bool { _, r := fe.owned(); return r })
	if m := fm.Meta(); m.Healthy || m.Settled || !slices.Equal(m.Failing, []string{"ingress"}) {
		t.Fatalf("unhealthy node gossips %+v", m)
	}
	c.SetHealth(nil)
	eventually(t, "back after health returns", func() bool { _, r := fe.owned(); return !r })
	eventually(t, "a to own its share after settle", func() bool { n, _ := fe.owned(); return n == 3 })

	// A soft check fails: a stays in VRRP, healthy and settled, gossips
	// its standing, and owns nothing while b stands higher; back to its
	// share when it passes, with no settle (it never left).
	c.SetStandings(map[string]int{"*": -40}, 50*time.Millisecond)
	eventually(t, "a to own nothing while its soft check fails", func() bool { n, r := fe.owned(); return n == 0 && !r })
	if m := fm.Meta(); !m.Healthy || !m.Settled || m.Standing["*"] != -40 {
		t.Fatalf("node with a failing soft check gossips %+v", m)
	}
	c.SetStandings(nil, 50*time.Millisecond)
	eventually(t, "a to own its share once its soft check passes", func() bool { n, _ := fe.owned(); return n == 3 })
	if m := fm.Meta(); m.Standing != nil {
		t.Fatalf("standings gossiped after the check passed: %+v", m)
	}

	// Kubernetes excludes the Node: the same as a failing check, and the
	// reason is gossiped as it is, not as a check.
	const why = "label node.kubernetes.io/exclude-from-external-load-balancers"
	c.SetEligible(why)
	eventually(t, "resign while excluded", func() bool { _, r := fe.owned(); return r })
	eventually(t, "the reason gossiped", func() bool { m := fm.Meta(); return !m.Healthy && m.Excluded == why && len(m.Failing) == 0 })
	c.SetEligible("")
	eventually(t, "back once eligible", func() bool { _, r := fe.owned(); return !r })

	// Another node runs under this name and started first: out too.
	c.SetDuplicate("duplicate name: 192.0.2.99:7946 runs as a")
	eventually(t, "resign as the second of two under one name", func() bool { _, r := fe.owned(); return r })
	eventually(t, "the duplicate gossiped", func() bool { return strings.Contains(fm.Meta().Excluded, "duplicate name") })
	c.SetDuplicate("")
	eventually(t, "back once the name is its own", func() bool { _, r := fe.owned(); return !r })
	// Back in VRRP, but settling: Decide (tested above) gives it the
	// last-resort priority until settle has passed on its own clock.
	eventually(t, "a to own its share after settle", func() bool { n, _ := fe.owned(); return n == 3 })
}

// Nodes sign with a derived key's garpd 0.1 id while a known member, live
// or as last seen, may know no other; with its own once all say they do.
func TestDecideLegacyKeyID(t *testing.T) {
	groups := mkGroups(3)
	plan := mustRank(t, []string{"a", "b", "c"}, groups)
	cfg := ControllerConfig{Local: "a", Groups: groups, Digest: "d"}
	known := []gossip.KnownMember{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	meta := func(k2 bool) gossip.Meta { return gossip.Meta{Healthy: true, Settled: true, Digest: "d", KeyID2: k2} }
	for _, c := range []struct {
		desc   string
		live   []gossip.Member
		last   map[string]gossip.Meta
		legacy bool
	}{
		{"every member new", []gossip.Member{{Name: "a", Meta: meta(true)}, {Name: "b", Meta: meta(true)}, {Name: "c", Meta: meta(true)}}, nil, false},
		{"c runs the old release", []gossip.Member{{Name: "a", Meta: meta(true)}, {Name: "b", Meta: meta(true)}, {Name: "c", Meta: meta(false)}}, nil, true},
		{"c down, last seen new", []gossip.Member{{Name: "a", Meta: meta(true)}, {Name: "b", Meta: meta(true)}}, map[string]gossip.Meta{"c": meta(true)}, false},
		{"c down, last seen old", []gossip.Member{{Name: "a", Meta: meta(true)}, {Name: "b", Meta: meta(true)}}, map[string]gossip.Meta{"c": meta(false)}, true},
		{"c down, never seen", []gossip.Member{{Name: "a", Meta: meta(true)}, {Name: "b", Meta: meta(true)}}, nil, true},
	} {
		d := Decide(cfg, plan, Inputs{Known: known, Live: c.live, LastMeta: c.last, Healthy: true, Settled: true})
		if d.LegacyKeyID != c.legacy {
			t.Errorf("%s: legacy key id %v, want %v", c.desc, d.LegacyKeyID, c.legacy)
		}
	}
}

// PlanDigest is equal for equal rankings and differs when any group's
// ranking, VIPs or VRID differ; nothing to rank has none.
func TestPlanDigest(t *testing.T) {
	base := []VIPStatus{{VIPs: []string{"192.0.2.101"}, VRID: 10, Ranking: []string{"a", "b", "c"}, Holder: "a", Priority: 250},
		{VIPs: []string{"192.0.2.102"}, VRID: 11, Ranking: []string{"b", "c", "a"}}}
	d := PlanDigest(base)
	if len(d) != 16 {
		t.Fatalf("digest %q, want 16 hex digits", d)
	}
	local := slices.Clone(base)
	local[0].Holder, local[0].Priority = "b", 1 // this node's view, not the plan
	if PlanDigest(local) != d {
		t.Error("the holder or this node's priority changed the digest")
	}
	for name, change := range map[string]func([]VIPStatus){
		"ranking": func(v []VIPStatus) { v[1].Ranking = []string{"c", "b", "a"} },
		"VIPs":    func(v []VIPStatus) { v[0].VIPs = []string{"192.0.2.103"} },
		"VRID":    func(v []VIPStatus) { v[0].VRID = 12 },
	} {
		other := slices.Clone(base)
		change(other)
		if PlanDigest(other) == d {
			t.Errorf("another %s, the same digest", name)
		}
	}
	if PlanDigest(nil) != "" {
		t.Error("no groups, a digest")
	}
}
