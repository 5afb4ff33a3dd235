package vrrp

import (
	"maps"
	"net/netip"
	"slices"
)

// byDev holds and announces each VIP on its own interface: the VRRP
// interface's by default, another for a VIP with "dev" (StackConfig.Dev),
// so the engine speaks to one AddressManager and one Sender whatever
// interface a VIP lives on.
type byDev struct {
	AddressManager // the VRRP interface's
	Sender         // the VRRP interface's
	dev            map[netip.Addr]devPort
}

// devPort is a dev interface's addresses and announcer.
type devPort struct {
	AddressManager
	Sender
}

func (b *byDev) set(vip netip.Addr, a AddressManager, s Sender) {
	if b.dev == nil {
		b.dev = map[netip.Addr]devPort{}
	}
	b.dev[vip] = devPort{a, s}
}

func (b byDev) on(a netip.Addr) AddressManager {
	if d, ok := b.dev[a]; ok {
		return d
	}
	return b.AddressManager
}

// AddVIP implements AddressManager on the VIP's interface.
func (b byDev) AddVIP(p netip.Prefix) error { return b.on(p.Addr()).AddVIP(p) }

// DelVIP implements AddressManager on the VIP's interface.
func (b byDev) DelVIP(p netip.Prefix) error { return b.on(p.Addr()).DelVIP(p) }

// HasVIP implements AddressManager on the VIP's interface.
func (b byDev) HasVIP(a netip.Addr) (bool, error) { return b.on(a).HasVIP(a) }

// Send implements Sender from the VIP's interface.
func (b byDev) Send(a netip.Addr, part Part) (int, error) {
	if d, ok := b.dev[a]; ok {
		return d.Send(a, part)
	}
	return b.Sender.Send(a, part)
}

// devNames lists the interfaces of dev once each, sorted.
func devNames(dev map[netip.Addr]string) []string {
	return slices.Compact(slices.Sorted(maps.Values(dev)))
}
