package vrrp

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeNetlink hands out subscriptions the test controls.
type fakeNetlink struct {
	mu    sync.Mutex
	subs  []fakeSub
	index int
	up    bool
}

type fakeSub struct {
	links chan netlink.LinkUpdate
	addrs chan netlink.AddrUpdate
	errs  chan error
}

func (f *fakeNetlink) subscribe(done <-chan struct{}) (<-chan netlink.LinkUpdate, <-chan netlink.AddrUpdate, <-chan error, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := fakeSub{make(chan netlink.LinkUpdate, 8), make(chan netlink.AddrUpdate, 8), make(chan error, 1)}
	f.subs = append(f.subs, s)
	return s.links, s.addrs, s.errs, nil
}

func (f *fakeNetlink) state(string) (int, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.index, f.up, nil
}

func (f *fakeNetlink) sub(i int) fakeSub {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.subs[i]
}

func nextEvent(t *testing.T, events <-chan LinkEvent) LinkEvent {
	t.Helper()
	select {
	case ev := <-events:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return LinkEvent{}
}

// A subscription that fails (ENOBUFS) is reported, renewed and followed by
// a resync: the link's state read afresh (here it was recreated
// meanwhile) and Resynced, so the engine checks its VIPs; events then flow
// from the new subscription. Before, the watch ended for good, silently.
func TestLinkWatchResubscribes(t *testing.T) {
	f := &fakeNetlink{index: 7, up: true}
	var causes []error
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := watchLink(ctx, "eth0", f.subscribe, f.state, func(err error) { mu.Lock(); causes = append(causes, err); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	first := f.sub(0)
	first.addrs <- netlink.AddrUpdate{LinkIndex: 7, LinkAddress: *netlink.NewIPNet(netip.MustParseAddr("192.0.2.101").AsSlice())}
	if ev := nextEvent(t, events); ev.Kind != AddressRemoved || ev.Addr != netip.MustParseAddr("192.0.2.101") {
		t.Fatalf("first event %+v, want the address removed", ev)
	}
	f.mu.Lock()
	f.index = 9 // recreated while the watch was deaf
	f.mu.Unlock()
	first.errs <- unix.ENOBUFS
	close(first.links)
	if ev := nextEvent(t, events); ev.Kind != LinkReplaced {
		t.Fatalf("after the resync: %+v, want the recreated link", ev)
	}
	if ev := nextEvent(t, events); ev.Kind != Resynced {
		t.Fatalf("then %+v, want Resynced", ev)
	}
	mu.Lock()
	if len(causes) != 1 || !errors.Is(causes[0], unix.ENOBUFS) {
		t.Fatalf("reported %v, want ENOBUFS once", causes)
	}
	mu.Unlock()
	second := f.sub(1)
	second.links <- netlink.LinkUpdate{Link: &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", Index: 9}}}
	if ev := nextEvent(t, events); ev.Kind != LinkDown {
		t.Fatalf("from the new subscription: %+v, want the link down", ev)
	}
}
