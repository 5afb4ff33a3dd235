package balancer

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/garpd/garpd/vrrp"
)

// VIP is one configured virtual IP: an address with the prefix length it is
// added with, and optionally the VRID the operator pinned it to.
type VIP struct {
	Prefix netip.Prefix
	VRID   int // 0: allocate from vrid_base
	// Prefer names the node that should own the VIP (dynamic mode): the
	// plan gives it to that node whenever it is a known member.
	Prefer string
	// Interface runs the VIP's virtual router on another interface than
	// the agent's (keepalived's vrrp_instance interface); "": the agent's.
	Interface string
	// Dev holds the address on another interface than the one its
	// virtual router advertises on, and announces it there (keepalived's
	// "dev" in virtual_ipaddress); "": the router's interface.
	Dev string
	// Name names the VIP's virtual router for its notify hooks (the
	// keepalived instance it came from): hooks hear it as INSTANCE, and
	// notify.instances picks hooks by it. "": garpd_ipv4_51.
	Name string
}

// UnmarshalYAML accepts "ADDR", "ADDR/PREFIX" or {address: ..., vrid: N,
// prefer: NODE, interface: IFACE, dev: IFACE}.
func (v *VIP) UnmarshalYAML(n *yaml.Node) error {
	var addr string
	switch n.Kind {
	case yaml.ScalarNode:
		addr = n.Value
	case yaml.MappingNode:
		var m struct {
			Address   string `yaml:"address"`
			VRID      int    `yaml:"vrid"`
			Prefer    string `yaml:"prefer"`
			Interface string `yaml:"interface"`
			Dev       string `yaml:"dev"`
			Name      string `yaml:"name"`
		}
		if err := n.Decode(&m); err != nil {
			return err
		}
		if m.Address == "" {
			return fmt.Errorf("line %d: a VIP entry needs address", n.Line)
		}
		if m.VRID < 0 || m.VRID > 255 || (m.VRID == 0 && strings.Contains(nodeText(n), "vrid")) {
			return fmt.Errorf("line %d: vrid %d for %s: VRIDs are 1..255", n.Line, m.VRID, m.Address)
		}
		if strings.ContainsAny(m.Name, " \t\n/") {
			return fmt.Errorf("line %d: name %q for %s: an instance name is one word (no blanks or slashes)", n.Line, m.Name, m.Address)
		}
		addr, v.VRID, v.Prefer, v.Interface, v.Dev, v.Name = m.Address, m.VRID, m.Prefer, m.Interface, m.Dev, m.Name
	default:
		return fmt.Errorf("line %d: a VIP is \"ADDR\", \"ADDR/PREFIX\" or {address, vrid}", n.Line)
	}
	p, err := vrrp.ParseVIP(addr)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	v.Prefix = p
	return nil
}

func nodeText(n *yaml.Node) string {
	var keys []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		keys = append(keys, n.Content[i].Value)
	}
	return strings.Join(keys, ",")
}

// Group is what one virtual router carries and what the ranking balances:
// one VIP, or several sharing a VRID when VIPs outnumber free VRIDs or the
// operator pinned them to one.
type Group struct {
	V6   bool
	VRID int
	VIPs []netip.Prefix
	// Prefer is the node that should own the group ("": the plan picks).
	Prefer string
	// Interface is the interface the group's virtual router runs on
	// ("": the agent's).
	Interface string
	// Dev maps the VIPs that live on another interface than Interface to
	// theirs.
	Dev map[netip.Addr]string
	// Name is the instance name its VIPs give it ("": garpd's own).
	Name string
}

// Spec is the group's virtual router at priority prio.
func (g Group) Spec(prio uint8) vrrp.RouterSpec {
	return vrrp.RouterSpec{VRID: uint8(g.VRID), VIPs: slices.Clone(g.VIPs), Priority: prio, Interface: g.Interface, Name: g.Name}
}

// Family names the group's address family.
func (g Group) Family() string {
	if g.V6 {
		return "ipv6"
	}
	return "ipv4"
}

// Key identifies the group for ranking; it depends only on the addresses,
// so every node computes the same key whatever order VIPs are listed in.
func (g Group) Key() string {
	s := make([]string, len(g.VIPs))
	for i, p := range g.VIPs {
		s[i] = p.Addr().String()
	}
	slices.Sort(s)
	return strings.Join(s, "+")
}

// Allocation is the result of AssignVRIDs.
type Allocation struct {
	Groups []Group
	// Grouped lists, per family, how many VIPs had to share VRIDs because
	// there were more VIPs than free VRIDs; empty when every VIP has its own.
	Grouped []string
}

// AssignVRIDs gives every VIP a VRID. VIP i (in config order) gets base+i
// unless it names one; a VRID named by several VIPs of one family and
// interface groups them. When VIPs outnumber the free VRIDs from base to
// limit, the VIPs without a pinned VRID share the free ones round-robin,
// and that is reported. Each interface's VRIDs are its own: two segments
// may both use VRID 51.
func AssignVRIDs(vips []VIP, base, limit int) (Allocation, error) {
	if base < 1 || base > 255 || limit < base || limit > 255 {
		return Allocation{}, fmt.Errorf("VRID range %d..%d: VRIDs are 1..255", base, limit)
	}
	seen := map[netip.Addr]bool{}
	prefer := map[netip.Addr]string{}
	dev := map[netip.Addr]string{}
	names := map[netip.Addr]string{} // instance names, by VIP
	named := map[string]int{}        // the VRID each name went to
	type famKey struct {
		iface string
		v6    bool
	}
	type fam struct {
		pinned map[int][]netip.Prefix
		auto   []int // indexes into vips
	}
	fams := map[famKey]*fam{}
	for i, v := range vips {
		a := v.Prefix.Addr()
		if seen[a] {
			return Allocation{}, fmt.Errorf("VIP %s is listed twice", a)
		}
		seen[a] = true
		prefer[a] = v.Prefer
		if v.Name != "" {
			names[a] = v.Name
		}
		if v.Dev != "" && v.Dev != v.Interface {
			dev[a] = v.Dev
		}
		k := famKey{v.Interface, a.Is6()}
		if fams[k] == nil {
			fams[k] = &fam{pinned: map[int][]netip.Prefix{}}
		}
		f := fams[k]
		if v.VRID != 0 {
			f.pinned[v.VRID] = append(f.pinned[v.VRID], v.Prefix)
		} else {
			f.auto = append(f.auto, i)
		}
	}
	// The agent's interface first, then the others by name; IPv4 before
	// IPv6. One VRID may serve an IPv4 and an IPv6 router: they are two
	// virtual routers (RFC 5798 §7.3), each family's VRIDs apart.
	keys := slices.SortedFunc(maps.Keys(fams), func(a, b famKey) int {
		return cmp.Or(strings.Compare(a.iface, b.iface), cmp.Compare(b2i(a.v6), b2i(b.v6)))
	})
	var out Allocation
	for _, fk := range keys {
		f := fams[fk]
		family := Group{V6: fk.v6}.Family()
		if fk.iface != "" {
			family += " on " + fk.iface
		}
		byVRID := map[int][]netip.Prefix{}
		for vrid, ps := range f.pinned {
			byVRID[vrid] = slices.Clone(ps)
		}
		var free []int
		for id := base; id <= limit; id++ {
			if _, taken := f.pinned[id]; !taken {
				free = append(free, id)
			}
		}
		if len(f.auto) > 0 && len(free) == 0 {
			return Allocation{}, fmt.Errorf("no free VRID in %d..%d for %d %s VIPs: lower vrid_base or pin fewer VRIDs", base, limit, len(f.auto), family)
		}
		if len(f.auto) > len(free) {
			out.Grouped = append(out.Grouped, fmt.Sprintf("%d %s VIPs share %d free VRIDs (%d..%d): about %d VIPs per VRID move together",
				len(f.auto), family, len(free), base, limit, (len(f.auto)+len(free)-1)/len(free)))
			for j, i := range f.auto {
				id := free[j%len(free)]
				byVRID[id] = append(byVRID[id], vips[i].Prefix)
			}
		} else {
			used := map[int]bool{}
			for _, i := range f.auto {
				id := base + i
				if _, taken := f.pinned[id]; taken || id > limit || used[id] {
					id = firstUnused(free, used)
				}
				used[id] = true
				byVRID[id] = append(byVRID[id], vips[i].Prefix)
			}
		}
		for _, id := range slices.Sorted(maps.Keys(byVRID)) {
			g, err := newGroup(Group{V6: fk.v6, VRID: id, VIPs: byVRID[id], Interface: fk.iface}, prefer, dev)
			if err != nil {
				return Allocation{}, err
			}
			if g.Name, err = groupName(g, names, named); err != nil {
				return Allocation{}, err
			}
			out.Groups = append(out.Groups, g)
		}
	}
	return out, nil
}

// groupName is the instance name a group's VIPs give it: one, or none;
// named records the VRID each name went to, so no two groups share one.
func groupName(g Group, names map[netip.Addr]string, named map[string]int) (string, error) {
	name := ""
	for _, p := range g.VIPs {
		switch n := names[p.Addr()]; {
		case n == "" || n == name:
		case name == "":
			name = n
		default:
			return "", fmt.Errorf("VIPs of VRID %d are named %s and %s: one virtual router has one instance name; give them one name", g.VRID, name, n)
		}
	}
	if other, ok := named[name]; ok && name != "" {
		return "", fmt.Errorf("name %s: VRID %d and VRID %d both use it: an instance name names one virtual router; give each its own", name, other, g.VRID)
	}
	named[name] = g.VRID
	return name, nil
}

// newGroup completes a group with its VIPs' owner preference and dev
// interfaces, refusing what one virtual router cannot carry.
func newGroup(g Group, prefer, dev map[netip.Addr]string) (Group, error) {
	if len(g.VIPs) > 255 {
		return g, fmt.Errorf("VRID %d would carry %d VIPs: an advert lists at most 255 addresses; give them more VRIDs (lower vrid_base) or fewer VIPs", g.VRID, len(g.VIPs))
	}
	for _, p := range g.VIPs {
		switch pr := prefer[p.Addr()]; {
		case pr == "" || pr == g.Prefer:
		case g.Prefer == "":
			g.Prefer = pr
		default:
			return g, fmt.Errorf("VIPs of VRID %d prefer %s and %s: one virtual router has one owner; give them one prefer", g.VRID, g.Prefer, pr)
		}
		if d, ok := dev[p.Addr()]; ok {
			if g.Dev == nil {
				g.Dev = map[netip.Addr]string{}
			}
			g.Dev[p.Addr()] = d
		}
	}
	return g, nil
}

func firstUnused(free []int, used map[int]bool) int {
	for _, id := range free {
		if !used[id] {
			return id
		}
	}
	return free[0] // unreachable: callers ensure len(auto) <= len(free)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// VIPList is the config's vips: list. Besides a VIP's own forms, an
// entry may name a range, "FIRST-LAST" or "FIRST-LAST/PREFIX", bare or as
// {address: FIRST-LAST, ...}: every address of it becomes a VIP with the
// entry's settings (a pool of VIPs for round-robin DNS, written once).
type VIPList []VIP

// UnmarshalYAML expands ranges in place.
func (l *VIPList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return fmt.Errorf("line %d: vips is a list of addresses, ranges (FIRST-LAST) or {address, vrid, prefer, interface, dev}", n.Line)
	}
	var out VIPList
	for _, e := range n.Content {
		addr := e // the node that holds the address
		if e.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(e.Content); i += 2 {
				if e.Content[i].Value == "address" {
					addr = e.Content[i+1]
				}
			}
		}
		if addr.Kind != yaml.ScalarNode || !strings.Contains(addr.Value, "-") {
			var v VIP
			if err := e.Decode(&v); err != nil {
				return err
			}
			out = append(out, v)
			continue
		}
		text, bits, hasBits := strings.Cut(addr.Value, "/")
		ps, err := ParseRange(text)
		if err != nil {
			return fmt.Errorf("line %d: %w", addr.Line, err)
		}
		for _, p := range ps {
			one := p.Addr().String()
			if hasBits {
				one += "/" + bits
			}
			saved := addr.Value
			addr.Value = one
			var v VIP
			err := e.Decode(&v)
			addr.Value = saved
			if err != nil {
				return err
			}
			out = append(out, v)
		}
	}
	*l = out
	return nil
}

// MaxRange caps a VIP range, so a typo cannot ask for millions of VIPs.
const MaxRange = 65536

// ParseRange expands "FIRST-LAST" (inclusive, one family) into host VIPs;
// LAST may be an IPv4 address's last octet alone, as ipfailover writes
// ranges (192.0.2.100-105).
func ParseRange(s string) ([]netip.Prefix, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "-")
	if !ok {
		return nil, fmt.Errorf("range %q: want FIRST-LAST, e.g. 192.0.2.101-192.0.2.200", s)
	}
	first, err1 := netip.ParseAddr(strings.TrimSpace(a))
	last, err2 := netip.ParseAddr(strings.TrimSpace(b))
	if octet, err := strconv.Atoi(strings.TrimSpace(b)); err == nil && err1 == nil && first.Is4() && octet >= 0 && octet <= 255 {
		// ipfailover's OPENSHIFT_HA_VIRTUAL_IPS form: 192.0.2.100-105.
		four := first.As4()
		four[3] = byte(octet)
		last, err2 = netip.AddrFrom4(four), nil
	}
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("range %q: both ends must be IP addresses", s)
	}
	if first.Is4() != last.Is4() {
		return nil, fmt.Errorf("range %q mixes IPv4 and IPv6", s)
	}
	if last.Less(first) {
		return nil, fmt.Errorf("range %q ends before it starts", s)
	}
	var out []netip.Prefix
	for a := first; ; a = a.Next() {
		if len(out) == MaxRange {
			return nil, fmt.Errorf("range %q has more than %d addresses", s, MaxRange)
		}
		p, err := vrrp.ParseVIP(a.String())
		if err != nil {
			return nil, fmt.Errorf("range %q: %w", s, err)
		}
		out = append(out, p)
		if a == last {
			return out, nil
		}
	}
}
