package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LinkEventKind says what happened to the VRRP interface.
type LinkEventKind int

// Link events.
const (
	// LinkDown: the interface is down, lost its carrier, or was deleted.
	LinkDown LinkEventKind = iota
	// LinkUp: it is up again.
	LinkUp
	// LinkReplaced: an interface of the same name came back with a new
	// index (a VLAN deleted and recreated): sockets bound to the old one
	// are deaf and must be reopened.
	LinkReplaced
	// AddressRemoved: an address left the interface.
	AddressRemoved
	// AddressAdded: an IPv4 address came to the interface.
	AddressAdded
	// Resynced: the watch lost events and subscribed again: what it may
	// have missed is to be checked (the VIPs of every master).
	Resynced
)

func (k LinkEventKind) String() string {
	return [...]string{"down", "up", "replaced", "address removed", "address added", "resynced"}[k]
}

// LinkEvent is one change of the VRRP interface.
type LinkEvent struct {
	Kind LinkEventKind
	Addr netip.Addr // AddressRemoved and AddressAdded only
}

// WatchLink streams the changes of the named interface until ctx ends,
// from netlink subscriptions; the channel closes when the watch ends. A
// subscription that fails (ENOBUFS on a busy host, when the kernel drops
// events the watch could not take in time) is never the watch's end: it
// reports the failure to resynced, subscribes again, reads the link's
// state afresh and sends Resynced, so the engine checks what it may have
// missed.
func WatchLink(ctx context.Context, name string, resynced func(error)) (<-chan LinkEvent, error) {
	return watchLink(ctx, name, netlinkSubscribe, netlinkState, resynced)
}

// linkSubscriber subscribes to link and address changes until done is
// closed; the channels close when the subscription fails.
type linkSubscriber func(done <-chan struct{}) (<-chan netlink.LinkUpdate, <-chan netlink.AddrUpdate, <-chan error, error)

// linkState reads a link's index and whether it is up.
type linkState func(name string) (index int, up bool, err error)

func netlinkSubscribe(done <-chan struct{}) (<-chan netlink.LinkUpdate, <-chan netlink.AddrUpdate, <-chan error, error) {
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 1024)
	errs := make(chan error, 2)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: report}); err != nil {
		return nil, nil, nil, err
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: report,
		ReceiveBufferSize: 1 << 20, ReceiveBufferForceSize: true}); err != nil {
		return nil, nil, nil, err
	}
	return links, addrs, errs, nil
}

func netlinkState(name string) (int, bool, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return 0, false, err
	}
	return l.Attrs().Index, linkUp(l), nil
}

// resubscribeMax bounds the wait between attempts to subscribe again.
const resubscribeMax = 5 * time.Second

func watchLink(ctx context.Context, name string, subscribe linkSubscriber, state linkState, resynced func(error)) (<-chan LinkEvent, error) {
	index, up, err := state(name)
	if err != nil {
		return nil, fmt.Errorf("watch interface %q: %w", name, err)
	}
	done := make(chan struct{})
	links, addrs, errs, err := subscribe(done)
	if err != nil {
		close(done)
		return nil, fmt.Errorf("watch interface %q: %w", name, err)
	}
	out := make(chan LinkEvent, 64)
	emit := func(ev LinkEvent) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	// linkChanged is the event, if any, of the link now at (i, u).
	linkChanged := func(i int, u bool) (LinkEvent, bool) {
		switch {
		case i == 0 && index != 0:
			index, up = 0, false
			return LinkEvent{Kind: LinkDown}, true
		case i != 0 && i != index:
			index, up = i, u
			return LinkEvent{Kind: LinkReplaced}, true
		case u != up:
			up = u
			if u {
				return LinkEvent{Kind: LinkUp}, true
			}
			return LinkEvent{Kind: LinkDown}, true
		}
		return LinkEvent{}, false
	}
	go func() {
		defer close(out)
		for {
			lost := follow(ctx, name, links, addrs, &index, linkChanged, emit)
			close(done)
			if !lost {
				return
			}
			var cause error
			select {
			case cause = <-errs:
			default:
				cause = errors.New("the netlink subscription ended")
			}
			for wait := 100 * time.Millisecond; ; wait = min(2*wait, resubscribeMax) {
				resynced(cause)
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
				done = make(chan struct{})
				if links, addrs, errs, cause = subscribe(done); cause == nil {
					break
				}
				close(done)
			}
			i, u, err := state(name)
			if err != nil {
				i, u = 0, false // gone: as a deleted link
			}
			if ev, changed := linkChanged(i, u); changed && !emit(ev) {
				return
			}
			if !emit(LinkEvent{Kind: Resynced}) {
				return
			}
		}
	}()
	return out, nil
}

// follow hands the subscription's events on until ctx ends (false) or
// the subscription does (true: lost, subscribe again).
func follow(ctx context.Context, name string, links <-chan netlink.LinkUpdate, addrs <-chan netlink.AddrUpdate, index *int,
	linkChanged func(int, bool) (LinkEvent, bool), emit func(LinkEvent) bool) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case u, ok := <-links:
			if !ok {
				return true
			}
			if u.Attrs().Name != name {
				continue
			}
			i, up := u.Attrs().Index, linkUp(u.Link)
			if u.Header.Type == unix.RTM_DELLINK {
				i, up = 0, false
			}
			if ev, changed := linkChanged(i, up); changed && !emit(ev) {
				return false
			}
		case u, ok := <-addrs:
			if !ok {
				return true
			}
			a, ok := netip.AddrFromSlice(u.LinkAddress.IP)
			if !ok || u.LinkIndex != *index {
				continue
			}
			kind := AddressRemoved
			if u.NewAddr {
				if !a.Unmap().Is4() {
					continue
				}
				kind = AddressAdded
			}
			if !emit(LinkEvent{Kind: kind, Addr: a.Unmap()}) {
				return false
			}
		}
	}
}

// linkUp: administratively up with a carrier.
func linkUp(l netlink.Link) bool {
	a := l.Attrs()
	return a.Flags&net.FlagUp != 0 && a.OperState != netlink.OperDown && a.OperState != netlink.OperLowerLayerDown
}
