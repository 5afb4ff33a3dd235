package vrrp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// CheckInterface refuses virtual routers the interface cannot carry, before
// anything is sent: a VIP that is one of the node's own addresses (a backup
// would remove it and cut the node off), and a VIP group whose advert does
// not fit the interface's MTU (every peer would drop it as too long). The
// errors name the VIPs and say what to change.
func CheckInterface(ifname string, routers []RouterSpec) error {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("interface: %q: %w", ifname, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", ifname, err)
	}
	var own []netip.Prefix
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			ip, _ := netip.AddrFromSlice(n.IP)
			bits, _ := n.Mask.Size()
			own = append(own, netip.PrefixFrom(ip.Unmap(), bits))
		}
	}
	return checkRouters(ifname, ifi.MTU, own, routers)
}

// checkRouters is CheckInterface without the kernel. An interface address
// equal to a VIP as garpd adds VIPs (a host address: /32, /128), or with
// the VIP's own prefix length (as releases before added them), is taken
// for a VIP an earlier run left behind (the engine removes those); with
// another length it is the node's own address.
func checkRouters(ifname string, mtu int, own []netip.Prefix, routers []RouterSpec) error {
	var errs []error
	for _, r := range routers {
		for _, v := range r.VIPs {
			for _, o := range own {
				if o.Addr() == v.Addr() && o.Bits() != v.Bits() && o.Bits() != v.Addr().BitLen() {
					errs = append(errs, fmt.Errorf("vips: %s is an address of %s (%s), not a free virtual IP: as a backup the node would remove it and cut itself off; use an unused address", v.Addr(), ifname, o))
				}
			}
		}
		// IPv4 counts VRRPv2's trailer, whichever version runs.
		fixed := 20 + headerLen + authDataLen
		if r.V6() {
			fixed = 40 + headerLen
		}
		if size := fixed + len(r.VIPs)*addrLen(r.V6()); mtu > 0 && size > mtu {
			fit := (mtu - fixed) / addrLen(r.V6())
			errs = append(errs, fmt.Errorf("vips: VRID %d carries %d VIPs, an advert of %d bytes, more than the MTU of %s (%d): every peer would drop it; at most %d fit, so give the VIPs more VRIDs (vrrp.vrid_base, or fewer VIPs per group)", r.VRID, len(r.VIPs), size, ifname, mtu, fit))
		}
	}
	return errors.Join(errs...)
}

func addrLen(v6 bool) int {
	if v6 {
		return 16
	}
	return 4
}
