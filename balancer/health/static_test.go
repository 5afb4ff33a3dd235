package health

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/garpd/garpd/vrrp"
)

// keepalived's track_script over every combination of failing checks: a
// failing check without a weight puts exactly the routers it tracks in
// FAULT; weights shift priorities by the sum that applies, within 1..254;
// a router no check tracks keeps its priority.
func TestStaticPrioritiesEveryVerdict(t *testing.T) {
	p := func(s string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix(s)} }
	routers := []vrrp.RouterSpec{
		{VRID: 1, VIPs: p("192.0.2.101/32"), Priority: 200},
		{VRID: 2, VIPs: p("192.0.2.102/32"), Priority: 150},
		{VRID: 3, VIPs: p("192.0.2.103/32"), Priority: 5},
		{VRID: 4, VIPs: p("2001:db8::4/128"), Priority: 250},
	}
	checks := []CheckConfig{
		{Name: "api", VIPs: []string{"192.0.2.101"}},                                 // FAULT for router 1
		{Name: "ingress", Weight: -60, VIPs: []string{"192.0.2.102", "192.0.2.103"}}, // routers 2 and 3
		{Name: "bonus", Weight: 10},                                                  // every router, while passing
	}
	for mask := 0; mask < 1<<len(checks); mask++ {
		failing := map[string]bool{}
		for i, c := range checks {
			if mask&(1<<i) != 0 {
				failing[c.Name] = true
			}
		}
		got, faults := StaticPriorities(routers, checks, failing)
		for i, r := range routers {
			want := int(r.Priority)
			if !failing["bonus"] {
				want += 10
			}
			if failing["ingress"] && (r.VRID == 2 || r.VRID == 3) {
				want -= 60
			}
			want = min(max(want, 1), 254)
			if int(got[i].Priority) != want {
				t.Errorf("failing %v: router %d priority %d, want %d", failing, r.VRID, got[i].Priority, want)
			}
			why, inFault := faults[r.ID()]
			if wantFault := failing["api"] && r.VRID == 1; inFault != wantFault || (inFault && !strings.Contains(why, "api")) {
				t.Errorf("failing %v: router %d fault %q, want fault %v", failing, r.VRID, why, wantFault)
			}
		}
		if !slices.Equal(ids(got), ids(routers)) {
			t.Fatalf("routers reordered: %v", ids(got))
		}
	}
}

func ids(rs []vrrp.RouterSpec) []string {
	var out []string
	for _, r := range rs {
		out = append(out, fmt.Sprint(r.ID()))
	}
	return out
}

// fakeStaticPlane records what the static mode sets.
type fakeStaticPlane struct {
	mu     sync.Mutex
	specs  []vrrp.RouterSpec
	faults map[vrrp.RouterID]string
}

func (f *fakeStaticPlane) Update(_ context.Context, specs []vrrp.RouterSpec) error {
	f.mu.Lock()
	f.specs = slices.Clone(specs)
	f.mu.Unlock()
	return nil
}

func (f *fakeStaticPlane) SetFaults(_ context.Context, faults map[vrrp.RouterID]string) error {
	f.mu.Lock()
	f.faults = faults
	f.mu.Unlock()
	return nil
}

// The static mode starts with passing checks' weights applied, and a
// check's verdict moves the routers it tracks.
func TestStaticFollowsTheChecks(t *testing.T) {
	routers := []vrrp.RouterSpec{{VRID: 7, VIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.107/32")}, Priority: 100}}
	checks := Config{Checks: []CheckConfig{
		{Name: "plus", Exec: []string{"/bin/true"}, Weight: 20},
		{Name: "hard", Exec: []string{"/bin/true"}},
	}}
	for i := range checks.Checks {
		checks.Checks[i] = checks.Checks[i].WithDefaults()
	}
	plane := &fakeStaticPlane{}
	s, err := StartStatic(routers, checks, plane, zerolog.Nop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	plane.mu.Lock()
	if plane.specs[0].Priority != 120 || len(plane.faults) != 0 {
		t.Fatalf("at start: priority %d, faults %v; want 120 (weight +20 while passing), none", plane.specs[0].Priority, plane.faults)
	}
	plane.mu.Unlock()
	s.verdict(false, []string{"plus", "hard"})
	plane.mu.Lock()
	defer plane.mu.Unlock()
	if plane.specs[0].Priority != 100 || plane.faults[routers[0].ID()] == "" {
		t.Fatalf("both failing: priority %d, faults %v; want 100 and FAULT", plane.specs[0].Priority, plane.faults)
	}
}
