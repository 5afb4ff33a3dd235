package vrrp

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// ParseVIP accepts "ADDR" (a host route: /32 or /128) or "ADDR/PREFIX".
func ParseVIP(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	a, err := netip.ParseAddr(s)
	p := netip.PrefixFrom(a, a.BitLen())
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s) // refuses a zone
		a = p.Addr()
	}
	switch v4net := a.Is4() && p.Bits() <= 30; {
	case err != nil:
		return netip.Prefix{}, fmt.Errorf("%q is not an address or ADDR/PREFIX", s)
	case a.Zone() != "":
		return netip.Prefix{}, fmt.Errorf("%q: a VIP has no zone", s)
	case p.Bits() < 8:
		return netip.Prefix{}, fmt.Errorf("%q: /%d would route a whole range to the VIP's interface: give the segment's prefix length, such as /24 or /64", s, p.Bits())
	case v4net && a == p.Masked().Addr():
		return netip.Prefix{}, fmt.Errorf("%q is the network address of %s: a VIP needs a host address", s, p.Masked())
	case v4net && a == broadcast(p):
		return netip.Prefix{}, fmt.Errorf("%q is the broadcast address of %s: a VIP needs a host address", s, p.Masked())
	}
	return p, checkVIPAddr(s, a)
}

// broadcast is an IPv4 prefix's broadcast address.
func broadcast(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) | (1<<(32-p.Bits()) - 1)
	return netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, v)))
}

func checkVIPAddr(s string, a netip.Addr) error {
	if a.Is4In6() {
		return fmt.Errorf("%q: write IPv4 VIPs as IPv4", s)
	}
	if !a.IsGlobalUnicast() || a.IsLinkLocalUnicast() {
		return fmt.Errorf("%q is not a unicast address a VIP can use", s)
	}
	return nil
}
