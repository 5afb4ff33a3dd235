package balancer

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/garpd/garpd/balancer/health"
	"github.com/garpd/garpd/gossip"
	"github.com/garpd/garpd/vrrp"
)

// recordingPlane is a Plane that counts what the controller asks of it.
type recordingPlane struct {
	fakePlane
	mu     sync.Mutex
	calls  int
	faults map[vrrp.RouterID]string
}

func (p *recordingPlane) Update(ctx context.Context, s []vrrp.RouterSpec) error {
	p.count()
	return p.fakePlane.Update(ctx, s)
}
func (p *recordingPlane) Resign(ctx context.Context, r bool) error {
	p.count()
	return p.fakePlane.Resign(ctx, r)
}
func (p *recordingPlane) count() {
	p.mu.Lock()
	p.calls++
	p.mu.Unlock()
}
func (p *recordingPlane) n() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}
func (p *recordingPlane) Source(v6 bool) netip.Addr {
	if v6 {
		return netip.Addr{}
	}
	return netip.MustParseAddr("127.0.0.1")
}
func (p *recordingPlane) SetEvents(vrrp.EventSink) {}
func (p *recordingPlane) SetFaults(_ context.Context, f map[vrrp.RouterID]string) error {
	p.mu.Lock()
	p.faults = f
	p.mu.Unlock()
	return nil
}

func memberNames(m *gossip.Membership) []string {
	var out []string
	for _, x := range m.Members() {
		out = append(out, x.Name)
	}
	slices.Sort(out)
	return out
}

// On SIGTERM the dynamic mode hands over before it leaves: when the data
// plane resigns, the controller has stopped (no priority change can
// follow the resignation) and gossip still runs (the others still see
// this node, so they do not re-plan before VRRP has moved its VIPs); it
// leaves gossip after.
func TestDynamicStopHandsOverBeforeLeaving(t *testing.T) {
	groups := mkGroups(2)
	cfg := DynamicConfig{Node: "n1", Interface: "lo", Groups: groups, Version: "test",
		VRRP: vrrp.Config{Version: 3, AdvertInterval: 100 * time.Millisecond, VRIDBase: 10}.WithDefaults(),
		// No bind host: gossip binds the advertised address alone.
		Gossip: gossip.Config{Bind: ":0", Advertise: "127.0.0.1", Insecure: true, Settle: 50 * time.Millisecond, ForgetAfter: time.Hour},
	}
	plane := &recordingPlane{}
	d, err := StartDynamic(cfg, plane, zerolog.Nop(), DynamicMetrics{Members: NewMembersGauge(nil), Checks: health.NewGauge(nil)})
	if err != nil {
		t.Fatal(err)
	}
	// Bound to 127.0.0.1 alone: the same port on another local address
	// does not answer.
	_, port, _ := net.SplitHostPort(d.members.LocalAddr())
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.2", port), time.Second); err == nil {
		c.Close()
		t.Fatalf("gossip answers on 127.0.0.2:%s too: bound to every address, want the advertised one", port)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	peer, err := gossip.Start(ctx, gossip.Config{Bind: "127.0.0.1:0", Advertise: "127.0.0.1", ForgetAfter: time.Hour}, "n2",
		gossip.Meta{Healthy: true, Digest: Digest(groups, 3, 100*time.Millisecond)},
		gossip.Options{Discoverer: gossip.SeedList{Join: []string{d.members.LocalAddr()}}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	eventually(t, "n2 to see n1", func() bool { return slices.Equal(memberNames(peer), []string{"n1", "n2"}) })
	eventually(t, "the controller to drive the plane", func() bool { return plane.n() > 0 })

	var callsAtHandOver int
	var seenAtHandOver []string
	err = d.Stop(func() error {
		callsAtHandOver = plane.n()
		seenAtHandOver = memberNames(peer)
		d.ctrl.SetHealth([]string{"late"}) // a check that fails meanwhile moves nothing now
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seenAtHandOver, []string{"n1", "n2"}) {
		t.Errorf("at the hand-over n2 saw %v: gossip was left before VRRP handed over", seenAtHandOver)
	}
	time.Sleep(200 * time.Millisecond) // longer than the controller's debounce
	if n := plane.n(); n != callsAtHandOver {
		t.Errorf("the controller drove the plane %d times after the hand-over", n-callsAtHandOver)
	}
	eventually(t, "n1 to leave gossip after the hand-over", func() bool { return slices.Equal(memberNames(peer), []string{"n2"}) })
}

// A check that names VIPs resigns their routers alone; the node stays in
// the plan, healthy, holding the rest.
func TestDynamicScopedCheck(t *testing.T) {
	groups := mkGroups(3)
	scoped := groups[1].VIPs[0].Addr().String()
	cfg := DynamicConfig{Node: "n1", Interface: "lo", Groups: groups, Version: "test",
		VRRP:   vrrp.Config{Version: 3, AdvertInterval: 100 * time.Millisecond, VRIDBase: 10}.WithDefaults(),
		Gossip: gossip.Config{Bind: "127.0.0.1:0", Advertise: "127.0.0.1", Insecure: true, Settle: 50 * time.Millisecond, ForgetAfter: time.Hour},
		Health: health.Config{Checks: []health.CheckConfig{
			health.CheckConfig{Name: "scoped", Exec: []string{"/bin/false"}, VIPs: []string{scoped}, Interval: 100 * time.Millisecond, Fall: 1, Rise: 1}.WithDefaults(),
			health.CheckConfig{Name: "node", Exec: []string{"/bin/true"}, Interval: 100 * time.Millisecond, Fall: 1, Rise: 1}.WithDefaults(),
		}},
	}
	plane := &recordingPlane{}
	d, err := StartDynamic(cfg, plane, zerolog.Nop(), DynamicMetrics{Members: NewMembersGauge(nil), Checks: health.NewGauge(nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(func() error { return nil })
	want := vrrp.RouterID{VRID: uint8(groups[1].VRID)}
	eventually(t, "the scoped check to resign its router", func() bool {
		plane.mu.Lock()
		defer plane.mu.Unlock()
		return len(plane.faults) == 1 && plane.faults[want] != ""
	})
	time.Sleep(300 * time.Millisecond)
	if _, resigned := plane.owned(); resigned {
		t.Fatal("a check scoped to one VIP resigned the whole node")
	}
}
