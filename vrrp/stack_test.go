package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// stackLog records what a fake kernel's parts were asked to do, in order.
type stackLog struct {
	mu    sync.Mutex
	steps []string
}

func (l *stackLog) add(format string, a ...any) {
	l.mu.Lock()
	l.steps = append(l.steps, fmt.Sprintf(format, a...))
	l.mu.Unlock()
}

func (l *stackLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.steps)
}

// stackKernel is a Kernel whose parts log to one stackLog; failAt names
// the step that fails.
type stackKernel struct {
	log    *stackLog
	failAt string
	link   chan LinkEvent
	// devLink, when set, feeds the watches of the other interfaces than
	// eth0; link feeds them otherwise.
	devLink chan LinkEvent
}

func (k *stackKernel) step(name string) error {
	k.log.add("open %s", name)
	if name == k.failAt {
		return errors.New(name + " failed")
	}
	return nil
}

// on names a part of another interface than the test's eth0.
func on(what, ifname string) string {
	if ifname == "eth0" || ifname == "on eth0" {
		return what
	}
	return what + " " + ifname
}

func (k *stackKernel) CheckInterface(ifname string, _ []RouterSpec) error {
	return k.step(on("check", ifname))
}

func (k *stackKernel) Listen(cfg TransportConfig) (Transport, error) {
	if err := k.step(on("transport", cfg.Interface)); err != nil {
		return nil, err
	}
	return &stackTransport{log: k.log, name: on("transport", cfg.Interface), packets: make(chan []Packet)}, nil
}

func (k *stackKernel) Addresses(ifname string) (AddressManager, error) {
	if err := k.step(on("addresses", ifname)); err != nil {
		return nil, err
	}
	return stackAddrs{k.log, ifname}, nil
}

func (k *stackKernel) Announcer(ifname string, _ AnnounceMode) (LinkAnnouncer, error) {
	if err := k.step(on("announcer", ifname)); err != nil {
		return nil, err
	}
	return &stackAnnouncer{log: k.log, name: on("announcer", ifname)}, nil
}

func (k *stackKernel) VirtualMACs(string, LinkAnnouncer, zerolog.Logger) (LinkVMACs, error) {
	if err := k.step("vmacs"); err != nil {
		return nil, err
	}
	return &stackVMACs{stackAnnouncer{log: k.log, name: "vmacs"}}, nil
}

func (k *stackKernel) WatchLink(ctx context.Context, ifname string, _ func(error)) (<-chan LinkEvent, error) {
	if err := k.step(on("link watch", ifname)); err != nil {
		return nil, err
	}
	in := k.link
	if ifname != "eth0" && k.devLink != nil {
		in = k.devLink
	}
	out := make(chan LinkEvent)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-in:
				out <- ev
			}
		}
	}()
	return out, nil
}

func (k *stackKernel) WatchForeignClaims(ctx context.Context, ifname string) (<-chan ForeignClaim, error) {
	if err := k.step(on("claim watch", ifname)); err != nil {
		return nil, err
	}
	out := make(chan ForeignClaim)
	go func() { <-ctx.Done(); close(out) }()
	return out, nil
}

type stackTransport struct {
	log     *stackLog
	name    string
	packets chan []Packet
	once    sync.Once
}

func (t *stackTransport) Destinations(bool) []netip.Addr { return []netip.Addr{GroupV4} }
func (t *stackTransport) SendBatch(_ bool, _ Via, msgs []Outgoing) error {
	for _, m := range msgs {
		adv, err := decodeSent(netip.MustParseAddr("192.0.2.11"), m)
		if err != nil {
			return err
		}
		if adv.Priority == 0 {
			t.log.add("resign")
		}
	}
	return nil
}
func (t *stackTransport) OpenVia(bool, string) (Via, error) { return nil, nil }
func (t *stackTransport) Source(v6 bool) netip.Addr {
	if v6 {
		return netip.Addr{}
	}
	return netip.MustParseAddr("192.0.2.11")
}
func (t *stackTransport) SetPeers([]netip.Addr)    {}
func (t *stackTransport) Packets() <-chan []Packet { return t.packets }
func (t *stackTransport) Close() error {
	t.once.Do(func() { t.log.add("close %s", t.name); close(t.packets) })
	return nil
}

type stackAddrs struct {
	log    *stackLog
	ifname string
}

func (a stackAddrs) AddVIP(p netip.Prefix) error {
	a.log.add("%s", on("add "+p.Addr().String(), "on "+a.ifname))
	return nil
}
func (a stackAddrs) DelVIP(p netip.Prefix) error {
	a.log.add("%s", on("del "+p.Addr().String(), "on "+a.ifname))
	return nil
}
func (a stackAddrs) HasVIP(netip.Addr) (bool, error) { return false, nil }

type stackAnnouncer struct {
	log  *stackLog
	name string
}

func (a *stackAnnouncer) Send(netip.Addr, Part) (int, error) { return 2, nil }
func (a *stackAnnouncer) Mode() AnnounceMode                 { return AnnounceBoth }
func (a *stackAnnouncer) SetMode(AnnounceMode)               {}
func (a *stackAnnouncer) Close() error                       { a.log.add("close %s", a.name); return nil }

type stackVMACs struct{ stackAnnouncer }

func (v *stackVMACs) Up(vrid uint8, _ bool, _ []netip.Prefix) error {
	v.log.add("vmac up %d", vrid)
	return nil
}
func (v *stackVMACs) Down(vrid uint8, _ bool) error { v.log.add("vmac down %d", vrid); return nil }

func stackConfig(vmac bool) StackConfig {
	cfg := v3cfg()
	cfg.UseVMAC = vmac
	return StackConfig{Interface: "eth0", VRRP: cfg, GARP: GARPConfig{Count: 1, Interval: time.Second, MaxRate: 100, TakeoverRate: 1000, Mode: "both"},
		Routers:      []RouterSpec{{VRID: 10, VIPs: []netip.Prefix{testVIP}, Priority: 255}},
		DefendClaims: true, Metrics: NewMetrics(nil), Log: zerolog.Nop()}
}

// waitStep polls the log until it holds step; the stack's goroutines run
// on the real clock.
func waitStep(t *testing.T, l *stackLog, step string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !slices.Contains(l.all(), step) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within 5s: %q", step, l.all())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// The stack opens its parts in one order and, on Stop, resigns the
// master before it removes the VIPs, then closes the parts in the reverse
// order: the virtual MACs before the transport, the announcer last.
func TestStackStartAndStopOrder(t *testing.T) {
	for _, vmac := range []bool{false, true} {
		l := &stackLog{}
		k := &stackKernel{log: l, link: make(chan LinkEvent)}
		s, err := StartStack(stackConfig(vmac), k.kernel())
		if err != nil {
			t.Fatal(err)
		}
		hold := "add 192.0.2.101"
		if vmac {
			hold = "vmac up 10"
		}
		waitStep(t, l, hold) // priority 255: master at once
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
		want := []string{"open check", "open transport", "open addresses", "open announcer"}
		if vmac {
			want = append(want, "open vmacs")
		}
		want = append(want, "open link watch", "open claim watch", hold, "resign")
		if vmac {
			want = append(want, "vmac down 10", "close vmacs")
		} else {
			want = append(want, "del 192.0.2.101")
		}
		want = append(want, "close announcer", "close transport")
		if got := l.all(); !slices.Equal(got, want) {
			t.Errorf("use_vmac %v:\n got %q\nwant %q", vmac, got, want)
		}
	}
}

// A step that fails closes what the steps before it opened, and nothing
// else; the error says which step.
func TestStackStartFailureClosesWhatWasOpened(t *testing.T) {
	for _, c := range []struct {
		failAt string
		closed []string
	}{
		{"check", nil},
		{"transport", nil},
		{"addresses", []string{"close transport"}},
		{"announcer", []string{"close transport"}},
		{"vmacs", []string{"close announcer", "close transport"}},
	} {
		l := &stackLog{}
		_, err := StartStack(stackConfig(true), (&stackKernel{log: l, failAt: c.failAt}).kernel())
		if err == nil || !strings.Contains(err.Error(), c.failAt+" failed") {
			t.Fatalf("%s fails: %v", c.failAt, err)
		}
		var closed []string
		for _, s := range l.all() {
			if strings.HasPrefix(s, "close ") {
				closed = append(closed, s)
			}
		}
		if !slices.Equal(closed, c.closed) {
			t.Errorf("%s fails: closed %q, want %q", c.failAt, closed, c.closed)
		}
	}
}

// A config the interface cannot carry is a ConfigError (the agent exits
// 2); a host that fails is not.
func TestStackConfigErrors(t *testing.T) {
	var ce *ConfigError
	if _, err := StartStack(stackConfig(false), (&stackKernel{log: &stackLog{}, failAt: "check"}).kernel()); !errors.As(err, &ce) {
		t.Errorf("a failing interface check: %v, want a ConfigError", err)
	}
	if _, err := StartStack(stackConfig(false), (&stackKernel{log: &stackLog{}, failAt: "transport"}).kernel()); errors.As(err, &ce) {
		t.Errorf("a transport that cannot open: %v, want no ConfigError", err)
	}
}

// A recreated interface ends the stack with ErrInterfaceReplaced, after
// it has released the VIPs and closed its parts; Stop then returns nil.
func TestStackEndsWhenTheInterfaceIsReplaced(t *testing.T) {
	l := &stackLog{}
	k := &stackKernel{log: l, link: make(chan LinkEvent)}
	s, err := StartStack(stackConfig(false), k.kernel())
	if err != nil {
		t.Fatal(err)
	}
	waitStep(t, l, "add 192.0.2.101")
	k.link <- LinkEvent{Kind: LinkReplaced}
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the stack did not end on a replaced interface")
	}
	if !errors.Is(s.Err(), ErrInterfaceReplaced) {
		t.Fatalf("Err %v, want ErrInterfaceReplaced", s.Err())
	}
	if got := l.all(); !slices.Contains(got, "del 192.0.2.101") || !slices.Contains(got, "close transport") {
		t.Fatalf("ended without releasing and closing: %q", got)
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("Stop after the end: %v", err)
	}
}

// A dev interface carries VIPs, not the virtual routers: a VIP removed
// there by hand is added again, but its link going down leaves the master
// as it is. The routers' own interface going down makes them let go.
func TestStackFollowsADevsVIPsNotItsLink(t *testing.T) {
	l := &stackLog{}
	k := &stackKernel{log: l, link: make(chan LinkEvent), devLink: make(chan LinkEvent)}
	cfg := stackConfig(false)
	devVIP := netip.MustParsePrefix("198.51.100.102/24")
	cfg.Routers[0].VIPs = append(cfg.Routers[0].VIPs, devVIP)
	cfg.Dev = map[netip.Addr]string{devVIP.Addr(): "eth1"}
	s, err := StartStack(cfg, k.kernel())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	added := "add 198.51.100.102 on eth1"
	waitStep(t, l, added)
	state := func() string {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return s.Status(ctx)[0].State
	}
	// The dev follower takes events in order: once the removed VIP is
	// back, the link-down before it has been handled.
	k.devLink <- LinkEvent{Kind: LinkDown}
	k.devLink <- LinkEvent{Kind: AddressRemoved, Addr: devVIP.Addr()}
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(strings.Join(l.all(), "\n"), added) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the VIP removed on the dev was not added again (state %s): %q", state(), l.all())
		}
		time.Sleep(2 * time.Millisecond)
	}
	if st := state(); st != Master.String() {
		t.Fatalf("after the dev's link went down: %s, want %s", st, Master)
	}
	k.link <- LinkEvent{Kind: LinkDown}
	for st := state(); st == Master.String(); st = state() {
		if time.Now().After(deadline) {
			t.Fatalf("the routers' interface went down and the router is still %s", st)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (k *stackKernel) kernel() Kernel {
	return Kernel{CheckInterface: k.CheckInterface, Listen: k.Listen, Addresses: k.Addresses, Announcer: k.Announcer,
		VirtualMACs: k.VirtualMACs, WatchLink: k.WatchLink, WatchForeignClaims: k.WatchForeignClaims}
}

// An agent on two interfaces, one VIP held on a third (dev): each
// interface's Stack opens its own parts, the dev VIP is added on its
// interface while its router advertises on eth0, a router is handed to
// the Stack of its interface, and Stop stops both.
func TestStacksOverInterfaces(t *testing.T) {
	l := &stackLog{}
	k := &stackKernel{log: l, link: make(chan LinkEvent)}
	cfg := stackConfig(false)
	devVIP := netip.MustParsePrefix("198.51.100.102/24")
	cfg.Routers = []RouterSpec{
		{VRID: 10, VIPs: []netip.Prefix{testVIP, devVIP}, Priority: 255},
		{VRID: 10, VIPs: []netip.Prefix{netip.MustParsePrefix("203.0.113.10/24")}, Priority: 255, Interface: "eth2"},
	}
	cfg.Dev = map[netip.Addr]string{devVIP.Addr(): "eth1"}
	ss, err := StartStacks(cfg, k.kernel())
	if err != nil {
		t.Fatal(err)
	}
	waitStep(t, l, "add 198.51.100.102 on eth1")
	waitStep(t, l, "add 203.0.113.10 on eth2")
	got := l.all()
	for _, want := range []string{"open transport", "open transport eth2", "open addresses eth1", "open announcer eth1",
		"open link watch eth1", "open claim watch eth1", "add 192.0.2.101"} {
		if !slices.Contains(got, want) {
			t.Errorf("no %q in %q", want, got)
		}
	}
	if slices.Contains(got, "open transport eth1") || strings.Count(strings.Join(got, "\n"), "open addresses eth1") != 1 {
		t.Errorf("a dev interface got VRRP sockets, or a Stack another's dev: %q", got)
	}
	if st := ss.Status(context.Background()); len(st) != 2 || st[0].Interface != "eth0" || st[1].Interface != "eth2" {
		t.Errorf("status %+v, want eth0's router, then eth2's", st)
	}
	if err := ss.Update(context.Background(), []RouterSpec{{VRID: 11, VIPs: []netip.Prefix{testVIP}, Interface: "eth9"}}); err == nil {
		t.Error("a router on an interface no Stack runs on was taken without a restart")
	}
	if err := ss.Stop(); err != nil {
		t.Fatal(err)
	}
	got = l.all()
	for _, want := range []string{"del 198.51.100.102 on eth1", "del 203.0.113.10 on eth2", "close announcer eth1", "close transport eth2", "close transport"} {
		if !slices.Contains(got, want) {
			t.Errorf("Stop: no %q in %q", want, got)
		}
	}
	select {
	case <-ss.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after Stop")
	}
}
