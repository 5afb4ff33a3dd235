package vrrp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

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

// NetlinkAddresses is the AddressManager for a Linux interface.
type NetlinkAddresses struct {
	link netlink.Link
}

// NewNetlinkAddresses looks the interface up once; the handle is reused.
func NewNetlinkAddresses(ifname string) (*NetlinkAddresses, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("find interface %q: %w", ifname, err)
	}
	return &NetlinkAddresses{link: l}, nil
}

func nlAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}}
	if p.Addr().Is6() {
		// A VIP must answer at once; DAD would hold it tentative, and would
		// fail outright while the old master still answers.
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// AddVIP implements AddressManager; adding an address that is present is not an error.
func (n *NetlinkAddresses) AddVIP(p netip.Prefix) error {
	err := netlink.AddrAdd(n.link, nlAddr(p))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add VIP %s to %s: %w", p, n.link.Attrs().Name, err)
	}
	return nil
}

// DelVIP implements AddressManager; removing an absent address is not an error.
func (n *NetlinkAddresses) DelVIP(p netip.Prefix) error {
	err := netlink.AddrDel(n.link, nlAddr(p))
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove VIP %s from %s: %w", p, n.link.Attrs().Name, err)
	}
	return nil
}

// HasVIP implements AddressManager.
func (n *NetlinkAddresses) HasVIP(a netip.Addr) (bool, error) {
	family := netlink.FAMILY_V4
	if a.Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := netlink.AddrList(n.link, family)
	if err != nil {
		return false, fmt.Errorf("list addresses of %s: %w", n.link.Attrs().Name, err)
	}
	for _, x := range addrs {
		if y, ok := netip.AddrFromSlice(x.IP); ok && y.Unmap() == a {
			return true, nil
		}
	}
	return false, nil
}
