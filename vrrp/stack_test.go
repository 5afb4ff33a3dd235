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
}

func (k *stackKernel) step(name string) error {
	k.log.add("open %s", name)
	if name == k.failAt {
		return errors.New(name + " failed")
	}
	return nil
}

func (k *stackKernel) CheckInterface(string, []RouterSpec) error { return k.step("check") }

func (k *stackKernel) Listen(TransportConfig) (Transport, error) {
	if err := k.step("transport"); err != nil {
		return nil, err
	}
	return &stackTransport{log: k.log, packets: make(chan []Packet)}, nil
}

func (k *stackKernel) Addresses(string) (AddressManager, error) {
	if err := k.step("addresses"); err != nil {
		return nil, err
	}
	return stackAddrs{k.log}, nil
}

func (k *stackKernel) Announcer(string, AnnounceMode) (LinkAnnouncer, error) {
	if err := k.step("announcer"); err != nil {
		return nil, err
	}
	return &stackAnnouncer{log: k.log, name: "announcer"}, nil
}

func (k *stackKernel) VirtualMACs(string, LinkAnnouncer, zerolog.Logger) (LinkVMACs, error) {
	if err := k.step("vmacs"); err != nil {
		return nil, err
	}
	return &stackVMACs{stackAnnouncer{log: k.log, name: "vmacs"}}, nil
}

func (k *stackKernel) WatchLink(ctx context.Context, _ string, _ func(error)) (<-chan LinkEvent, error) {
	if err := k.step("link watch"); err != nil {
		return nil, err
	}
	out := make(chan LinkEvent)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-k.link:
				out <- ev
			}
		}
	}()
	return out, nil
}

func (k *stackKernel) WatchForeignClaims(ctx context.Context, _ string) (<-chan ForeignClaim, error) {
	if err := k.step("claim watch"); err != nil {
		return nil, err
	}
	out := make(chan ForeignClaim)
	go func() { <-ctx.Done(); close(out) }()
	return out, nil
}

type stackTransport struct {
	log     *stackLog
	packets chan []Packet
	once    sync.Once
}

func (t *stackTransport) Send(_ bool, _ Via, _ []netip.Addr, build func(src, dst netip.Addr) ([]byte, error)) error {
	_, adv, err := buildAdvert(netip.MustParseAddr("192.0.2.11"), build)
	if err == nil && adv.Priority == 0 {
		t.log.add("resign")
	}
	return err
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
	t.once.Do(func() { t.log.add("close transport"); close(t.packets) })
	return nil
}

type stackAddrs struct{ log *stackLog }

func (a stackAddrs) AddVIP(p netip.Prefix) error     { a.log.add("add %s", p.Addr()); return nil }
func (a stackAddrs) DelVIP(p netip.Prefix) error     { a.log.add("del %s", p.Addr()); return nil }
func (a stackAddrs) HasVIP(netip.Addr) (bool, error) { return false, nil }

type stackAnnouncer struct {
	log  *stackLog
	name string
}

func (a *stackAnnouncer) Send(netip.Addr) (int, error) { return 2, nil }
func (a *stackAnnouncer) Mode() AnnounceMode           { return AnnounceBoth }
func (a *stackAnnouncer) SetMode(AnnounceMode)         {}
func (a *stackAnnouncer) Close() error                 { a.log.add("close %s", a.name); return nil }

type stackVMACs struct{ stackAnnouncer }

func (v *stackVMACs) Up(vrid uint8, _ bool, _ []netip.Prefix) error {
	v.log.add("vmac up %d", vrid)
	return nil
}
func (v *stackVMACs) Down(vrid uint8, _ bool) error { v.log.add("vmac down %d", vrid); return nil }

func stackConfig(vmac bool) StackConfig {
	cfg := v3cfg()
	cfg.UseVMAC = vmac
	return StackConfig{Interface: "eth0", VRRP: cfg, GARP: GARPConfig{Count: 1, Interval: time.Second, MaxRate: 100, Mode: "both"},
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

func (k *stackKernel) kernel() Kernel {
	return Kernel{CheckInterface: k.CheckInterface, Listen: k.Listen, Addresses: k.Addresses, Announcer: k.Announcer,
		VirtualMACs: k.VirtualMACs, WatchLink: k.WatchLink, WatchForeignClaims: k.WatchForeignClaims}
}
