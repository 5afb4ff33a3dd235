package balancer

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/garpd/garpd/gossip"
	"github.com/garpd/garpd/vrrp"
)

var now0 = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// member is ready since ago before now0 (ready < 0: unhealthy).
func member(name string, healthy bool, ago time.Duration, digest string) gossip.Member {
	return gossip.Member{Name: name, Meta: gossip.Meta{Healthy: healthy, ReadySince: now0.Add(-ago).UnixMilli(), Digest: digest}}
}

func TestEligible(t *testing.T) {
	const settle = 10 * time.Second
	cases := []struct {
		name    string
		members []gossip.Member
		want    []string
		next    time.Duration // after now0; 0: none waits
	}{
		{"cold start: a cohort within settle of the first is ranked at once",
			[]gossip.Member{member("a", true, 2*time.Second, "d"), member("b", true, time.Second, "d")}, []string{"a", "b"}, 0},
		{"and stays ranked when the first passes settle",
			[]gossip.Member{member("a", true, 10500*time.Millisecond, "d"), member("b", true, 10*time.Second, "d")}, []string{"a", "b"}, 0},
		{"a late joiner waits settle",
			[]gossip.Member{member("a", true, time.Hour, "d"), member("b", true, time.Hour, "d"), member("c", true, 4*time.Second, "d")},
			[]string{"a", "b"}, 6 * time.Second},
		{"unhealthy and mismatched are never ranked",
			[]gossip.Member{member("a", true, time.Hour, "d"), member("b", false, time.Hour, "d"), member("c", true, time.Hour, "other")}, []string{"a"}, 0},
	}
	for _, c := range cases {
		got, states, next := Eligible(c.members, "d", now0, settle)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: ranked %v, want %v (states %v)", c.name, got, c.want, states)
		}
		if (c.next == 0) != next.IsZero() || (c.next != 0 && next.Sub(now0) != c.next) {
			t.Errorf("%s: next %v, want %s after now", c.name, next, c.next)
		}
	}
}

func TestConfigMinority(t *testing.T) {
	three := []gossip.Member{member("a", true, 0, "new"), member("b", true, 0, "old"), member("c", true, 0, "old")}
	if !ConfigMinority(three, "new") || ConfigMinority(three, "old") {
		t.Fatal("1 vs 2: the single node must be the minority, the pair not")
	}
	two := []gossip.Member{member("a", true, 0, "aaa"), member("b", true, 0, "bbb")}
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

func TestLocalRouters(t *testing.T) {
	p := mustRank(t, mkNodes(3), mkGroups(6))
	for _, n := range p.Nodes {
		owned := 0
		for i, s := range LocalRouters(p, n.Name) {
			if want := p.Groups[i].Priorities()[n.Name]; int(s.Priority) != want {
				t.Fatalf("%s group %d: priority %d, want %d", n.Name, i, s.Priority, want)
			}
			if s.Priority == OwnerPriority {
				owned++
			}
		}
		if owned != 2 {
			t.Fatalf("%s owns %d of 6 VIPs over 3 nodes", n.Name, owned)
		}
	}
	for _, s := range LocalRouters(p, "stranger") {
		if s.Priority != UnrankedPriority {
			t.Fatalf("an unranked node gets priority %d", s.Priority)
		}
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
func (f *fakeMembers) Meta() gossip.Meta {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.self
}
func (f *fakeMembers) SetMeta(m gossip.Meta) {
	f.mu.Lock()
	f.self = m
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

type fakeEngine struct {
	mu       sync.Mutex
	specs    []vrrp.RouterSpec
	resigned bool
}

func (e *fakeEngine) Update(_ context.Context, s []vrrp.RouterSpec) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.specs = s
	return nil
}
func (e *fakeEngine) Resign(_ context.Context, r bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.resigned = r
	return nil
}
func (e *fakeEngine) SetPeers(context.Context, []netip.Addr) error { return nil }

func (e *fakeEngine) owned() (int, bool) {
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

// The controller follows membership (a peer joins: share halves), settles,
// and resigns at once when unhealthy.
func TestControllerFollowsMembersAndHealth(t *testing.T) {
	groups := mkGroups(6)
	digest := Digest(groups, 3, time.Second)
	fm := &fakeMembers{changes: make(chan struct{}, 1), self: gossip.Meta{Healthy: true, Digest: digest}}
	fm.list = []gossip.Member{{Name: "a", Self: true}}
	fe := &fakeEngine{}
	c := NewController(ControllerConfig{Local: "a", Groups: groups, Digest: digest, Settle: 200 * time.Millisecond, Debounce: 10 * time.Millisecond},
		fm, fe, zerolog.Nop(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx)
	eventually(t, "a alone to own all 6", func() bool { n, _ := fe.owned(); return n == 6 })

	// b, ready long ago, joins: 3/3.
	b := gossip.Member{Name: "b", Meta: gossip.Meta{Healthy: true, ReadySince: time.Now().Add(-time.Hour).UnixMilli(), Digest: digest}}
	fm.set([]gossip.Member{{Name: "a", Self: true}, b})
	eventually(t, "a to own 3 with b ranked", func() bool { n, _ := fe.owned(); return n == 3 })

	c.SetHealthy(false)
	eventually(t, "resign on failing health", func() bool { _, r := fe.owned(); return r })
	if m := fm.Meta(); m.Healthy || m.ReadySince != 0 {
		t.Fatalf("unhealthy node gossips %+v", m)
	}
	recovered := time.Now()
	c.SetHealthy(true)
	eventually(t, "back after health returns", func() bool { _, r := fe.owned(); return !r })
	// Ready again from now on: it gossips so, and Eligible (tested above)
	// holds it back until settle has passed since then.
	if m := fm.Meta(); !m.Healthy || m.ReadySince < recovered.UnixMilli() {
		t.Fatalf("recovered node gossips %+v, want healthy and ready since %d or later", m, recovered.UnixMilli())
	}
	eventually(t, "a to own its share after settle", func() bool { n, _ := fe.owned(); return n == 3 })
}
