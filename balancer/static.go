package balancer

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/garpd/garpd/vrrp"
)

// DefaultStaticPriority is the priority of a VIP the static priorities map
// does not name, as keepalived's default.
const DefaultStaticPriority = 100

// StaticRouters turns an allocation and per-VIP priorities (keyed by VIP
// address, as the config's `priorities:` map) into virtual routers: the
// hand-written keepalived.conf mode. VIPs sharing a VRID must share a
// priority, since one virtual router advertises them together.
func StaticRouters(alloc Allocation, priorities map[string]int) ([]vrrp.RouterSpec, error) {
	byAddr := map[netip.Addr]int{}
	for k, p := range priorities {
		a, err := netip.ParseAddr(strings.TrimSpace(k))
		if err != nil {
			if pf, perr := netip.ParsePrefix(k); perr == nil {
				a = pf.Addr()
			} else {
				return nil, fmt.Errorf("priorities: %q is not an IP address", k)
			}
		}
		if p < 1 || p > 254 {
			return nil, fmt.Errorf("priorities.%s: %d: use 1..254 (255 is reserved for the address owner, 0 for resigning)", k, p)
		}
		byAddr[a] = p
	}
	known := map[netip.Addr]bool{}
	var out []vrrp.RouterSpec
	for _, g := range alloc.Groups {
		prio := -1
		for _, v := range g.VIPs {
			known[v.Addr()] = true
			p, ok := byAddr[v.Addr()]
			if !ok {
				p = DefaultStaticPriority
			}
			if prio >= 0 && p != prio {
				return nil, fmt.Errorf("priorities: VIPs %s share VRID %d but have different priorities; one virtual router has one priority", g.Key(), g.VRID)
			}
			prio = p
		}
		out = append(out, g.Spec(uint8(prio)))
	}
	for a := range byAddr {
		if !known[a] {
			return nil, fmt.Errorf("priorities: %s is not one of the configured vips", a)
		}
	}
	return out, nil
}
