package vrrp

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
)

// fakeClock is a Clock whose time moves only when the test says so.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
	gen     int // number of After calls, to see the engine loop again
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), ch: ch})
	c.gen++
	return ch
}

func (c *fakeClock) generation() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// fire wakes the waiters due at or before now; it reports whether any was.
func (c *fakeClock) fire() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	fired := false
	keep := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
			fired = true
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
	return fired
}

// fakeWire joins engines' fake transports, like a shared L2 segment.
type fakeWire struct {
	mu    sync.Mutex
	ports []*fakePort
}

type fakePort struct {
	wire *fakeWire
	src  netip.Addr
	ch   chan Packet
	sent int
}

func (w *fakeWire) port(src string) *fakePort {
	p := &fakePort{wire: w, src: netip.MustParseAddr(src), ch: make(chan Packet, 1024)}
	w.mu.Lock()
	w.ports = append(w.ports, p)
	w.mu.Unlock()
	return p
}

func (p *fakePort) Send(v6 bool, build func(src, dst netip.Addr) ([]byte, error)) error {
	b, err := build(p.src, GroupV4)
	if err != nil {
		return err
	}
	p.wire.mu.Lock()
	defer p.wire.mu.Unlock()
	p.sent++
	for _, o := range p.wire.ports {
		if o != p {
			o.ch <- Packet{Payload: b, Src: p.src, Dst: GroupV4, TTL: 255}
		}
	}
	return nil
}

func (p *fakePort) Source(bool) netip.Addr { return p.src }
func (p *fakePort) Packets() <-chan Packet { return p.ch }
func (p *fakePort) Close() error           { return nil }
func (p *fakePort) SetPeers([]netip.Addr)  {}

// fakeKernel records VIPs and announcements.
type fakeKernel struct {
	mu        sync.Mutex
	vips      map[netip.Addr]bool
	announced []time.Time // takeover announcements
	refreshed []time.Time // periodic ones
	withdrawn int
	clock     *fakeClock
}

func (k *fakeKernel) AddVIP(p netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.vips[p.Addr()] = true
	return nil
}

func (k *fakeKernel) DelVIP(p netip.Prefix) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.vips, p.Addr())
	return nil
}

func (k *fakeKernel) HasVIP(a netip.Addr) (bool, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.vips[a], nil
}

func (k *fakeKernel) Announce(_ netip.Addr, urgent bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if urgent {
		k.announced = append(k.announced, k.clock.Now())
	} else {
		k.refreshed = append(k.refreshed, k.clock.Now())
	}
}

func (k *fakeKernel) Withdraw(netip.Addr) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.withdrawn++
}

func (k *fakeKernel) Wave(as []netip.Addr) {}

func (k *fakeKernel) holds(a netip.Addr) bool { h, _ := k.HasVIP(a); return h }

type testNode struct {
	eng     *Engine
	port    *fakePort
	kernel  *fakeKernel
	metrics *Metrics
	cancel  context.CancelFunc
	done    chan error
}

var testVIP = netip.MustParsePrefix("192.0.2.101/32")

type everySecond struct{}

func (everySecond) Next(_ netip.Addr, t time.Time) time.Time {
	return t.Truncate(time.Second).Add(time.Second)
}

func startNode(t *testing.T, clk *fakeClock, w *fakeWire, src string, prio uint8, cfg Config, stale bool) *testNode {
	return startNodeWith(t, clk, w, src, prio, cfg, stale, nil)
}

func startNodeWith(t *testing.T, clk *fakeClock, w *fakeWire, src string, prio uint8, cfg Config, stale bool, refresh RefreshScheduler) *testNode {
	t.Helper()
	n := &testNode{port: w.port(src), kernel: &fakeKernel{vips: map[netip.Addr]bool{}, clock: clk},
		metrics: NewMetrics(prometheus.NewRegistry()), done: make(chan error, 1)}
	if stale {
		n.kernel.vips[testVIP.Addr()] = true
	}
	var err error
	n.eng, err = NewEngine(cfg, GARPConfig{Count: 3, Interval: 1100 * time.Millisecond},
		[]RouterSpec{{VRID: 10, VIPs: []netip.Prefix{testVIP}, Priority: prio}},
		Deps{Transport: n.port, Addresses: n.kernel, Announcer: n.kernel, Refresh: refresh, Clock: clk, Log: zerolog.Nop(), Metrics: n.metrics})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	gen := clk.generation()
	go func() { n.done <- n.eng.Run(ctx) }()
	waitGen(t, clk, gen)
	return n
}

// waitGen waits until the engines have looped (asked the clock again).
func waitGen(t *testing.T, clk *fakeClock, gen int) {
	t.Helper()
	if !loopedWithin(clk, gen, 2*time.Second) {
		t.Fatal("engine did not loop")
	}
}

func loopedWithin(clk *fakeClock, gen int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for clk.generation() <= gen {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Microsecond)
	}
	return true
}

// advance moves fake time forward in 10 ms steps, letting engines run
// after each step that woke one of them.
func advance(t *testing.T, clk *fakeClock, d time.Duration) {
	t.Helper()
	for step := time.Duration(0); step < d; step += 10 * time.Millisecond {
		clk.mu.Lock()
		clk.now = clk.now.Add(10 * time.Millisecond)
		clk.mu.Unlock()
		gen := clk.generation()
		if clk.fire() {
			// A waiter of an engine that has stopped wakes nobody.
			loopedWithin(clk, gen, 50*time.Millisecond)
			time.Sleep(2 * time.Millisecond) // let packets cross the wire
		}
	}
}

func v3cfg() Config {
	return Config{Version: 3, AdvertInterval: 100 * time.Millisecond, VRIDBase: 10}.WithDefaults()
}

func TestEngineElectsAndFailsOver(t *testing.T) {
	clk := &fakeClock{now: t0}
	w := &fakeWire{}
	a := startNode(t, clk, w, "192.0.2.11", 200, v3cfg(), true)
	b := startNode(t, clk, w, "192.0.2.12", 100, v3cfg(), false)
	if a.kernel.holds(testVIP.Addr()) {
		t.Fatal("a VIP left by an earlier run was not removed at start")
	}
	advance(t, clk, time.Second)
	if !a.kernel.holds(testVIP.Addr()) || b.kernel.holds(testVIP.Addr()) {
		t.Fatalf("after 1s: a holds %v, b holds %v; want a only", a.kernel.holds(testVIP.Addr()), b.kernel.holds(testVIP.Addr()))
	}
	advance(t, clk, 3*time.Second)
	a.kernel.mu.Lock()
	ann := slices.Clone(a.kernel.announced)
	a.kernel.mu.Unlock()
	if len(ann) != 3 {
		t.Fatalf("takeover burst announced %d times, want garp.count = 3", len(ann))
	}
	for i := 1; i < len(ann); i++ {
		if gap := ann[i].Sub(ann[i-1]); gap < 1100*time.Millisecond || gap > 1110*time.Millisecond {
			t.Fatalf("burst gap %s, want garp.interval 1.1s", gap)
		}
	}
	if got := testutil.ToFloat64(b.metrics.AdvertsRecv.WithLabelValues("ipv4", "10")); got < 30 {
		t.Fatalf("b received %v adverts in 4s at 100ms, want ~40", got)
	}

	// a shuts down: it resigns, so b takes over after its skew time
	// ((256-100)×10/256 = 6 cs), not after the 3.6×interval master-down.
	a.cancel()
	if err := <-a.done; err != nil {
		t.Fatal(err)
	}
	if a.kernel.holds(testVIP.Addr()) {
		t.Fatal("a kept the VIP after shutdown")
	}
	time.Sleep(5 * time.Millisecond)
	advance(t, clk, 70*time.Millisecond)
	if !b.kernel.holds(testVIP.Addr()) {
		t.Fatal("b did not take over within skew time of a's priority-0 advert")
	}
	b.cancel()
	<-b.done
}

// peerSrc is the source of adverts the tests inject, as from another router.
var peerSrc = netip.MustParseAddr("192.0.2.50")

// injectPacket hands p to the node as if received, and waits until the
// engine has handled it.
func injectPacket(t *testing.T, clk *fakeClock, n *testNode, p Packet) {
	t.Helper()
	gen := clk.generation()
	n.port.ch <- p
	waitGen(t, clk, gen)
}

// injectAdvert encodes a from peerSrc to the VRRP group and injects it.
func injectAdvert(t *testing.T, clk *fakeClock, n *testNode, a Advert, ttl int) {
	t.Helper()
	b, err := Encode(a, peerSrc, GroupV4)
	if err != nil {
		t.Fatal(err)
	}
	injectPacket(t, clk, n, Packet{Payload: b, Src: peerSrc, Dst: GroupV4, TTL: ttl})
}

func TestEngineDropsInvalid(t *testing.T) {
	clk := &fakeClock{now: t0}
	w := &fakeWire{}
	n := startNode(t, clk, w, "192.0.2.11", 100, v3cfg(), false)
	high := Advert{Version: 3, VRID: 10, Priority: 250, Interval: 10, Addresses: []netip.Addr{testVIP.Addr()}}
	foreign := high
	foreign.Addresses = []netip.Addr{netip.MustParseAddr("192.0.2.201")}
	other := high
	other.VRID = 99
	injectAdvert(t, clk, n, high, 64)
	injectAdvert(t, clk, n, foreign, 255)
	injectAdvert(t, clk, n, foreign, 255)
	injectAdvert(t, clk, n, other, 255)
	injectPacket(t, clk, n, Packet{Payload: []byte{0x31}, Src: peerSrc, Dst: GroupV4, TTL: 255})
	for reason, want := range map[string]float64{"bad_ttl": 1, "vip_mismatch": 2, "unknown_vrid": 1, "too_short": 1} {
		if got := testutil.ToFloat64(n.metrics.Dropped.WithLabelValues("ipv4", reason)); got != want {
			t.Errorf("dropped %s: %v, want %v", reason, got, want)
		}
	}
	// None of them counted as a master: the node still takes over.
	advance(t, clk, 400*time.Millisecond)
	if !n.kernel.holds(testVIP.Addr()) {
		t.Fatal("invalid adverts kept the node from becoming master")
	}
	n.cancel()
	<-n.done
}

func TestEngineV2Auth(t *testing.T) {
	clk := &fakeClock{now: t0}
	cfg := Config{Version: 2, AdvertInterval: time.Second, AuthPass: "s3cret"}.WithDefaults()
	n := startNode(t, clk, &fakeWire{}, "192.0.2.11", 100, cfg, false)
	send := func(a Advert) { injectAdvert(t, clk, n, a, 255) }
	base := Advert{Version: 2, VRID: 10, Priority: 200, Interval: 100, AuthType: AuthPassword,
		AuthData: PasswordData("s3cret"), Addresses: []netip.Addr{testVIP.Addr()}}
	wrong := base
	wrong.AuthData = PasswordData("nope")
	slow := base
	slow.Interval = 200
	send(wrong)
	send(slow)
	send(base)
	if got := testutil.ToFloat64(n.metrics.Dropped.WithLabelValues("ipv4", "auth_mismatch")); got != 1 {
		t.Errorf("auth_mismatch drops %v, want 1", got)
	}
	if got := testutil.ToFloat64(n.metrics.Dropped.WithLabelValues("ipv4", "interval_mismatch")); got != 1 {
		t.Errorf("interval_mismatch drops %v, want 1", got)
	}
	if got := testutil.ToFloat64(n.metrics.AdvertsRecv.WithLabelValues("ipv4", "10")); got != 1 {
		t.Errorf("accepted %v adverts, want 1", got)
	}
	n.cancel()
	<-n.done
}

// A master re-announces its VIP on the refresh schedule after the takeover
// burst; leaving master withdraws what is queued and stops the refresh.
func TestEngineRefresh(t *testing.T) {
	clk := &fakeClock{now: t0}
	w := &fakeWire{}
	a := startNodeWith(t, clk, w, "192.0.2.11", 200, v3cfg(), false, everySecond{})
	advance(t, clk, 10*time.Second)
	a.kernel.mu.Lock()
	refreshed := len(a.kernel.refreshed)
	a.kernel.mu.Unlock()
	// Master at ~0.3 s; refresh starts after the burst (2 × 1.1 s) and then
	// fires every second: 7 or 8 in the first 10 s.
	if refreshed < 7 || refreshed > 8 {
		t.Fatalf("%d refreshes in 10s of mastership with a 1s schedule, want 7-8", refreshed)
	}
	a.kernel.mu.Lock()
	firstRefresh, lastBurst := a.kernel.refreshed[0], a.kernel.announced[len(a.kernel.announced)-1]
	a.kernel.mu.Unlock()
	if firstRefresh.Before(lastBurst) {
		t.Fatalf("refresh at %s before the burst ended at %s", firstRefresh.Sub(t0), lastBurst.Sub(t0))
	}
	// A higher-priority peer appears: a steps down.
	b := startNode(t, clk, w, "192.0.2.12", 250, v3cfg(), false)
	advance(t, clk, time.Second)
	if a.kernel.holds(testVIP.Addr()) {
		t.Fatal("a still holds the VIP after a higher peer took over")
	}
	a.kernel.mu.Lock()
	before, withdrawn := len(a.kernel.refreshed), a.kernel.withdrawn
	a.kernel.mu.Unlock()
	advance(t, clk, 5*time.Second)
	a.kernel.mu.Lock()
	after := len(a.kernel.refreshed)
	a.kernel.mu.Unlock()
	if withdrawn == 0 || after != before {
		t.Fatalf("after stepping down: %d withdrawals, %d more refreshes; want ≥1 and 0", withdrawn, after-before)
	}
	a.cancel()
	b.cancel()
	<-a.done
	<-b.done
}
