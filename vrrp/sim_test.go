package vrrp

import (
	"io"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// The engine tests run engines as a discrete-event simulation: one test
// goroutine delivers packets and fires deadlines in time order on a fake
// clock, calling the same handlers Run calls. Nothing depends on how the
// machine schedules goroutines, so counts and orders are exact.

// simWire joins simulated engines like a shared L2 segment.
type simWire struct {
	clock Clock
	ports []*simPort
}

// simPort is an engine's Transport on a simWire. Sent packets wait in the
// other ports' inboxes until the simulation delivers them.
type simPort struct {
	wire  *simWire
	src   netip.Addr
	up    bool
	inbox []Packet
	sent  []Advert  // every advert this port sent, decoded
	last  time.Time // when it sent the last one
	// viaSent counts adverts sent from another interface (Transport.OpenVia).
	viaSent     int
	lastPayload []byte // the last advert as it went on the wire
	fail        error  // when set, every Send fails with it
	// lose, when set, says whether a packet sent to this port is lost.
	lose func() bool
	// unicast, when set, are the destinations instead of the group.
	unicast []netip.Addr
}

func (w *simWire) port(src string) *simPort {
	p := &simPort{wire: w, src: netip.MustParseAddr(src), up: true}
	w.ports = append(w.ports, p)
	return p
}

// decodeSent decodes a payload a fake transport was given to send.
func decodeSent(src netip.Addr, m Outgoing) (Advert, error) {
	return Decode(m.Payload, src, m.Dst, m.Dst.Is6())
}

// Destinations is the group, which every port hears, or the unicast peers.
func (p *simPort) Destinations(bool) []netip.Addr {
	if p.unicast != nil {
		return p.unicast
	}
	return []netip.Addr{GroupV4}
}

// SendBatch reaches every port for the group, or the port a payload is
// addressed to.
func (p *simPort) SendBatch(_ bool, via Via, msgs []Outgoing) error {
	if p.fail != nil {
		return p.fail
	}
	for i, m := range msgs {
		if via != nil {
			p.viaSent++
		}
		adv, err := decodeSent(p.src, m)
		if err != nil {
			msgs[i].Err = err
			continue
		}
		b := slices.Clone(m.Payload) // the engine reuses its buffer
		p.sent = append(p.sent, adv)
		p.last, p.lastPayload = p.wire.clock.Now(), b
		for _, o := range p.wire.ports {
			if o != p && o.up && (m.Dst == GroupV4 || m.Dst == o.src) && (o.lose == nil || !o.lose()) {
				o.inbox = append(o.inbox, Packet{Payload: b, Src: p.src, Dst: m.Dst, TTL: 255})
			}
		}
	}
	return nil
}

// OpenVia hands out a socket that only counts what it sent.
func (p *simPort) OpenVia(bool, string) (Via, error) { return simVia{}, nil }

type simVia struct{}

func (simVia) Close() error { return nil }

func (p *simPort) Source(bool) netip.Addr   { return p.src }
func (p *simPort) Packets() <-chan []Packet { return nil }
func (p *simPort) Close() error             { return nil }
func (p *simPort) SetPeers([]netip.Addr)    {}

// fakeKernel records VIPs and announcements.
type fakeKernel struct {
	mu        sync.Mutex
	vips      map[netip.Addr]bool
	announced []time.Time // takeover announcements
	refreshed []time.Time // periodic ones
	withdrawn int
	clock     Clock
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

// Takeover counts as an urgent announcement.
func (k *fakeKernel) Takeover(a netip.Addr) { k.Announce(a, true) }

// Defend counts as an urgent announcement: the tests time answers.
func (k *fakeKernel) Defend(a netip.Addr) { k.Announce(a, true) }

func (k *fakeKernel) Withdraw(netip.Addr) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.withdrawn++
}

func (k *fakeKernel) Wave([]netip.Addr) {}

func (k *fakeKernel) holds(a netip.Addr) bool { h, _ := k.HasVIP(a); return h }

// fakeVMACs records which virtual MAC interfaces are up, and the calls.
type fakeVMACs struct {
	up    map[routerKey][]netip.Prefix
	calls []string
}

func (f *fakeVMACs) Up(vrid uint8, v6 bool, vips []netip.Prefix) error {
	k := routerKey{v6: v6, vrid: vrid}
	f.up[k] = vips
	f.calls = append(f.calls, "up "+k.String())
	return nil
}

func (f *fakeVMACs) Down(vrid uint8, v6 bool) error {
	k := routerKey{v6: v6, vrid: vrid}
	delete(f.up, k)
	f.calls = append(f.calls, "down "+k.String())
	return nil
}

// sim is the simulation: a fake clock, a wire and the engines on it.
type sim struct {
	t     *testing.T
	clk   *fakeClock
	wire  *simWire
	nodes []*simNode
}

type simNode struct {
	eng     *Engine
	port    *simPort
	kernel  *fakeKernel
	vmacs   *fakeVMACs // nil without use_vmac
	metrics *Metrics
	running bool
}

func newSim(t *testing.T) *sim {
	clk := &fakeClock{now: t0}
	return &sim{t: t, clk: clk, wire: &simWire{clock: clk}}
}

var testVIP = netip.MustParsePrefix("192.0.2.101/32")

// nodeOpts are what the tests vary between simulated nodes.
type nodeOpts struct {
	prio    uint8
	cfg     Config
	stale   bool // testVIP was left on the interface by an earlier run
	refresh RefreshScheduler
	events  EventSink
	vmac    bool // use_vmac: VIPs go to a fakeVMACs
	auth    AuthKeys
	notify  func(StateChange)
	log     io.Writer // nil: discarded
}

// start creates an engine with one virtual router (VRID 10, testVIP) and
// starts it, as Run does before its loop.
func (s *sim) start(src string, o nodeOpts) *simNode {
	s.t.Helper()
	n := &simNode{port: s.wire.port(src), kernel: &fakeKernel{vips: map[netip.Addr]bool{}, clock: s.clk},
		metrics: NewMetrics(prometheus.NewRegistry())}
	if o.stale {
		n.kernel.vips[testVIP.Addr()] = true
	}
	log := zerolog.Nop()
	if o.log != nil {
		log = zerolog.New(o.log)
	}
	deps := Deps{Transport: n.port, Addresses: n.kernel, Announcer: n.kernel, Refresh: o.refresh, Clock: s.clk, Log: log, Metrics: n.metrics, Events: o.events, Auth: o.auth, Notify: o.notify}
	if o.vmac {
		n.vmacs = &fakeVMACs{up: map[routerKey][]netip.Prefix{}}
		deps.VMACs = n.vmacs
	}
	var err error
	n.eng, err = NewEngine(o.cfg, GARPConfig{Count: 3, Interval: 1100 * time.Millisecond},
		[]RouterSpec{{VRID: 10, VIPs: []netip.Prefix{testVIP}, Priority: o.prio}}, deps)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := n.eng.start(); err != nil {
		s.t.Fatal(err)
	}
	n.running = true
	s.nodes = append(s.nodes, n)
	return n
}

// stop shuts n down as a cancelled Run does: masters resign.
func (s *sim) stop(n *simNode) {
	n.eng.shutdownAll()
	n.running, n.port.up = false, false
	n.port.inbox = nil
}

// deliver hands every packet on the wire to its engine, until none is left.
func (s *sim) deliver() {
	s.t.Helper()
	for range 100000 {
		idle := true
		for _, n := range s.nodes {
			if !n.running || len(n.port.inbox) == 0 {
				continue
			}
			p := n.port.inbox[0]
			n.port.inbox = n.port.inbox[1:]
			n.eng.handlePacket(p)
			idle = false
		}
		if idle {
			return
		}
	}
	s.t.Fatal("packets never stopped flowing")
}

// inject hands p to n as if received.
func (s *sim) inject(n *simNode, p Packet) { n.eng.handlePacket(p) }

// run moves fake time forward by d: packets are delivered at once, and
// each engine's tick runs at the deadline Run would have woken it for.
func (s *sim) run(d time.Duration) {
	s.t.Helper()
	end := s.clk.Now().Add(d)
	for range 1000000 {
		s.deliver()
		var next time.Time
		for _, n := range s.nodes {
			if n.running {
				next = earliest(next, n.eng.next)
			}
		}
		if next.IsZero() || next.After(end) {
			s.clk.set(end)
			return
		}
		now := s.clk.Now()
		if next.After(now) {
			s.clk.set(next)
			now = next
		}
		for _, n := range s.nodes {
			if n.running && !n.eng.next.IsZero() && !n.eng.next.After(now) {
				n.eng.tick(now)
			}
		}
	}
	s.t.Fatal("simulation never reached its end time")
}
