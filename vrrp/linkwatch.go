package vrrp

import (
	"context"
	"fmt"
	"net"
	"net/netip"

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
)

func (k LinkEventKind) String() string {
	return [...]string{"down", "up", "replaced", "address removed"}[k]
}

// LinkEvent is one change of the VRRP interface.
type LinkEvent struct {
	Kind LinkEventKind
	Addr netip.Addr // AddressRemoved only
}

// WatchLink streams the changes of the named interface until ctx ends,
// from netlink subscriptions; the channel closes when the watch ends.
func WatchLink(ctx context.Context, name string) (<-chan LinkEvent, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("watch interface %q: %w", name, err)
	}
	index, up := link.Attrs().Index, linkUp(link)
	done := make(chan struct{})
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 1024)
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: func(error) {}}); err != nil {
		close(done)
		return nil, fmt.Errorf("watch interface %q: %w", name, err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: func(error) {},
		ReceiveBufferSize: 1 << 20, ReceiveBufferForceSize: true}); err != nil {
		close(done)
		return nil, fmt.Errorf("watch addresses of %q: %w", name, err)
	}
	out := make(chan LinkEvent, 64)
	go func() {
		defer close(out)
		defer close(done)
		emit := func(ev LinkEvent) bool {
			select {
			case out <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for {
			select {
			case <-ctx.Done():
				return
			case u, ok := <-links:
				if !ok {
					return
				}
				if u.Attrs().Name != name {
					continue
				}
				ev, changed := LinkEvent{}, false
				switch {
				case u.Header.Type == unix.RTM_DELLINK:
					index, up, ev, changed = 0, false, LinkEvent{Kind: LinkDown}, up
				case u.Attrs().Index != index:
					index, up = u.Attrs().Index, linkUp(u.Link)
					ev, changed = LinkEvent{Kind: LinkReplaced}, true
				case linkUp(u.Link) != up:
					up = !up
					ev, changed = LinkEvent{Kind: LinkDown}, true
					if up {
						ev.Kind = LinkUp
					}
				}
				if changed && !emit(ev) {
					return
				}
			case u, ok := <-addrs:
				if !ok {
					return
				}
				if u.NewAddr || u.LinkIndex != index {
					continue
				}
				if a, ok := netip.AddrFromSlice(u.LinkAddress.IP); ok && !emit(LinkEvent{Kind: AddressRemoved, Addr: a.Unmap()}) {
					return
				}
			}
		}
	}()
	return out, nil
}

// linkUp: administratively up with a carrier.
func linkUp(l netlink.Link) bool {
	a := l.Attrs()
	return a.Flags&net.FlagUp != 0 && a.OperState != netlink.OperDown && a.OperState != netlink.OperLowerLayerDown
}
