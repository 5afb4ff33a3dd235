package vrrp

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// AddressManager adds and removes VIPs on the interface. It is the kernel
// seam for VIPs; tests use a fake that records calls.
type AddressManager interface {
	AddVIP(p netip.Prefix) error
	DelVIP(p netip.Prefix) error
	// HasVIP reports whether the address is configured on the interface.
	HasVIP(a netip.Addr) (bool, error)
}

// NetlinkAddresses is the AddressManager for a Linux interface. A VIP
// never becomes the host's own address. It is added as a host address
// (/32, /128): an IPv4 VIP is never the primary address of its subnet nor
// the source of the subnet's route, whatever happens to the host's
// addresses, and the subnet's route leaves with the host's own address
// (an IPv6 address of the same prefix would keep it). An IPv6 VIP is
// added deprecated (preferred lifetime 0), so source selection picks the
// host's own address before it. A VIP's subnet keeps its
// on-link route: the host's, or where the host has no address in it, one
// garpd adds (RouteProtocol), from the host's own address when it has one.
type NetlinkAddresses struct {
	link netlink.Link

	mu sync.Mutex
	// held are the VIPs added and not removed since, with their prefix.
	held map[netip.Addr]netip.Prefix
	// moving counts, per VIP, the removals KeepHostFirst made: their
	// events are not someone else's.
	moving map[netip.Addr]int
}

// RouteProtocol marks the on-link routes garpd adds for VIPs in subnets
// the host has no address in (ip route's "proto 103").
const RouteProtocol netlink.RouteProtocol = 103

// NewNetlinkAddresses looks the interface up once; the handle is reused.
func NewNetlinkAddresses(ifname string) (*NetlinkAddresses, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("find interface %q: %w", ifname, err)
	}
	return &NetlinkAddresses{link: l, held: map[netip.Addr]netip.Prefix{}, moving: map[netip.Addr]int{}}, nil
}

// nlAddr is the kernel address of a VIP: a host address (/32, /128), so
// it neither becomes its subnet's primary (IPv4) nor keeps the subnet's
// route when the host's own address leaves (IPv6: an address of the same
// prefix would); IPv6 deprecated and without duplicate address detection.
func nlAddr(p netip.Prefix) *netlink.Addr {
	bits := p.Addr().BitLen()
	a := &netlink.Addr{IPNet: &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(bits, bits),
	}}
	if p.Addr().Is6() {
		// A VIP must answer at once; DAD would hold it tentative, and would
		// fail outright while the old master still answers.
		a.Flags = unix.IFA_F_NODAD
		a.ValidLft, a.PreferedLft = math.MaxUint32, 0
	}
	return a
}

// AddVIP implements AddressManager; adding an address that is present is not an error.
func (n *NetlinkAddresses) AddVIP(p netip.Prefix) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.add(p); err != nil {
		return err
	}
	n.held[p.Addr()] = p
	return n.ensureRoute(p)
}

func (n *NetlinkAddresses) add(p netip.Prefix) error {
	err := netlink.AddrAdd(n.link, nlAddr(p))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add VIP %s to %s: %w", p, n.link.Attrs().Name, err)
	}
	return nil
}

// DelVIP implements AddressManager; removing an absent address is not an
// error. It removes the address whatever its prefix length (an older
// release added IPv4 VIPs with their subnet's), and the VIP's on-link
// route once no VIP needs it.
func (n *NetlinkAddresses) DelVIP(p netip.Prefix) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.held, p.Addr())
	if err := n.del(p.Addr()); err != nil {
		return err
	}
	return n.dropRoute(p)
}

func (n *NetlinkAddresses) del(a netip.Addr) error {
	addrs, err := n.list(a.Is6())
	if err != nil {
		return err
	}
	for _, x := range addrs {
		if y, ok := netip.AddrFromSlice(x.IP); !ok || y.Unmap() != a {
			continue
		}
		err := netlink.AddrDel(n.link, &x)
		if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove VIP %s from %s: %w", a, n.link.Attrs().Name, err)
		}
	}
	return nil
}

func (n *NetlinkAddresses) list(v6 bool) ([]netlink.Addr, error) {
	family := netlink.FAMILY_V4
	if v6 {
		family = netlink.FAMILY_V6
	}
	addrs, err := netlink.AddrList(n.link, family)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", n.link.Attrs().Name, err)
	}
	return addrs, nil
}

// onLink is the subnet a VIP needs an on-link route to, if any.
func onLinkSubnet(p netip.Prefix) (netip.Prefix, bool) {
	return p.Masked(), p.Bits() < p.Addr().BitLen()
}

// ensureRoute adds the on-link route to p's subnet unless someone else's
// is there (the kernel's, from a host address in it), from the host's
// own address when the interface has one (IPv4), and with that source
// when it came back since. An IPv6 subnet gets none while the interface
// has no global address of the host's: with the VIPs alone, source
// selection would pick a VIP, deprecated or not (a re-plug's gap); the
// host's address brings the route back when it comes (KeepHostFirst).
func (n *NetlinkAddresses) ensureRoute(p netip.Prefix) error {
	subnet, ok := onLinkSubnet(p)
	if !ok {
		return nil
	}
	host, err := n.hostAddr(subnet.Addr().Is6())
	if err != nil {
		return err
	}
	if subnet.Addr().Is6() && host == nil {
		return nil
	}
	routes, err := n.routes(subnet)
	if err != nil {
		return err
	}
	want := n.route(subnet)
	if subnet.Addr().Is4() {
		want.Src = host
	}
	for _, r := range routes {
		if r.Protocol != RouteProtocol || r.Src.Equal(want.Src) {
			return nil // someone else's, or ours as it should be
		}
	}
	if err := netlink.RouteReplace(want); err != nil {
		return fmt.Errorf("add the on-link route to %s on %s (the host has no address in the VIPs' subnet): %w", subnet, n.link.Attrs().Name, err)
	}
	return nil
}

// hostAddr is the interface's first address of the family that is not a
// VIP (IPv6: a global one); nil if it has none.
func (n *NetlinkAddresses) hostAddr(v6 bool) (net.IP, error) {
	addrs, err := n.list(v6)
	if err != nil {
		return nil, err
	}
	for _, x := range addrs {
		if a, ok := netip.AddrFromSlice(x.IP); ok && (!v6 || a.IsGlobalUnicast()) {
			if _, vip := n.held[a.Unmap()]; !vip {
				return x.IP, nil
			}
		}
	}
	return nil, nil
}

// dropRoute removes garpd's on-link route to p's subnet once no held VIP
// is in it.
func (n *NetlinkAddresses) dropRoute(p netip.Prefix) error {
	subnet, ok := onLinkSubnet(p)
	if !ok {
		return nil
	}
	for _, q := range n.held {
		if s, ok := onLinkSubnet(q); ok && s == subnet {
			return nil
		}
	}
	routes, err := n.routes(subnet)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if r.Protocol != RouteProtocol {
			continue
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("remove the on-link route to %s from %s: %w", subnet, n.link.Attrs().Name, err)
		}
	}
	return nil
}

func (n *NetlinkAddresses) route(subnet netip.Prefix) *netlink.Route {
	return &netlink.Route{LinkIndex: n.link.Attrs().Index, Scope: netlink.SCOPE_LINK, Protocol: RouteProtocol,
		Dst: &net.IPNet{IP: subnet.Addr().AsSlice(), Mask: net.CIDRMask(subnet.Bits(), subnet.Addr().BitLen())}}
}

// routes lists the main table's routes to exactly subnet on the interface.
func (n *NetlinkAddresses) routes(subnet netip.Prefix) ([]netlink.Route, error) {
	family := netlink.FAMILY_V4
	if subnet.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	routes, err := netlink.RouteListFiltered(family, n.route(subnet), netlink.RT_FILTER_OIF|netlink.RT_FILTER_DST)
	if err != nil {
		return nil, fmt.Errorf("list the routes to %s on %s: %w", subnet, n.link.Attrs().Name, err)
	}
	return routes, nil
}

// HasVIP implements AddressManager.
func (n *NetlinkAddresses) HasVIP(a netip.Addr) (bool, error) {
	addrs, err := n.list(a.Is6())
	if err != nil {
		return false, err
	}
	for _, x := range addrs {
		if y, ok := netip.AddrFromSlice(x.IP); ok && y.Unmap() == a {
			return true, nil
		}
	}
	return false, nil
}

// KeepHostFirst puts the host's own IPv4 address first again: when it is
// added back after VIPs (a cable re-plug, a DHCP renewal), it comes after
// them, and the VIPs before it are removed and added again, behind it.
// added is the address that came; a VIP's coming changes nothing. It
// returns the VIPs it moved.
func (n *NetlinkAddresses) KeepHostFirst(added netip.Addr) ([]netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, vip := n.held[added]; vip || len(n.held) == 0 {
		return nil, nil
	}
	addrs, err := n.list(false)
	if err != nil {
		return nil, err
	}
	var before []netip.Addr
	host := false
	for _, x := range addrs {
		a, ok := netip.AddrFromSlice(x.IP)
		if !ok {
			continue
		}
		if _, vip := n.held[a.Unmap()]; !vip {
			host = true
			break
		}
		before = append(before, a.Unmap())
	}
	if !host {
		return nil, nil // only VIPs: nothing to put first
	}
	for _, a := range before {
		n.moving[a]++
		if err := n.del(a); err != nil {
			return nil, err
		}
		if err := n.add(n.held[a]); err != nil {
			return nil, err
		}
	}
	// The kernel removed the on-link routes from the host's address with
	// it; they come back from the address that came.
	var errs []error
	for _, p := range n.held {
		errs = append(errs, n.ensureRoute(p))
	}
	return before, errors.Join(errs...)
}

// Moved reports whether the removal of a was KeepHostFirst's, once per
// removal it made.
func (n *NetlinkAddresses) Moved(a netip.Addr) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.moving[a] == 0 {
		return false
	}
	n.moving[a]--
	if n.moving[a] == 0 {
		delete(n.moving, a)
	}
	return true
}
