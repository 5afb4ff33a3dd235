package balancer

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/garpd/garpd/vrrp"
)

func vip(s string, vrid int) VIP {
	p, err := vrrp.ParseVIP(s)
	if err != nil {
		panic(err)
	}
	return VIP{Prefix: p, VRID: vrid}
}

func TestAssignVRIDs(t *testing.T) {
	a, err := AssignVRIDs([]VIP{vip("192.0.2.1", 0), vip("2001:db8::1", 20), vip("192.0.2.2", 0), vip("192.0.2.3", 11)}, 10, 255)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, g := range a.Groups {
		for _, p := range g.VIPs {
			got[p.Addr().String()] = g.VRID
		}
	}
	// VIP i gets base+i; 192.0.2.2 (i=2) gets 12; 192.0.2.3 pins 11.
	want := map[string]int{"192.0.2.1": 10, "2001:db8::1": 20, "192.0.2.2": 12, "192.0.2.3": 11}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: VRID %d, want %d", k, got[k], v)
		}
	}
	if len(a.Grouped) != 0 {
		t.Errorf("grouping reported without need: %v", a.Grouped)
	}
}

// VIP i's base+i is taken by a pinned VRID: it gets the next free one, and
// VRIDs stay unique per family.
func TestAssignVRIDsAvoidsPinned(t *testing.T) {
	a, err := AssignVRIDs([]VIP{vip("192.0.2.1", 11), vip("192.0.2.2", 0)}, 10, 255)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, g := range a.Groups {
		if seen[g.VRID] || len(g.VIPs) != 1 {
			t.Fatalf("VRID %d reused: %+v", g.VRID, a.Groups)
		}
		seen[g.VRID] = true
	}
}

// More VIPs than free VRIDs: they share VRIDs round-robin as groups, every
// VIP appears once, and the grouping is reported.
func TestAssignVRIDsGroups(t *testing.T) {
	var vips []VIP
	ps, _ := ParseRange("198.51.100.1-198.51.100.250")
	for _, p := range ps {
		vips = append(vips, VIP{Prefix: p})
	}
	a, err := AssignVRIDs(vips, 200, 255)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Groups) != 56 || len(a.Grouped) != 1 || !strings.Contains(a.Grouped[0], "250 ipv4 VIPs share 56") {
		t.Fatalf("%d groups, report %v", len(a.Groups), a.Grouped)
	}
	seen := map[netip.Addr]bool{}
	for _, g := range a.Groups {
		if len(g.VIPs) < 4 || len(g.VIPs) > 5 {
			t.Fatalf("group of %d VIPs, want 4 or 5", len(g.VIPs))
		}
		for _, p := range g.VIPs {
			if seen[p.Addr()] {
				t.Fatalf("%s in two groups", p)
			}
			seen[p.Addr()] = true
		}
	}
	if len(seen) != 250 {
		t.Fatalf("%d VIPs grouped, want 250", len(seen))
	}
}

func TestAssignVRIDsErrors(t *testing.T) {
	cases := []struct {
		vips []VIP
		want string
	}{
		{[]VIP{vip("192.0.2.1", 0), vip("192.0.2.1", 0)}, "twice"},
		{[]VIP{vip("192.0.2.1", 10), vip("192.0.2.2", 0)}, "no free VRID"},
	}
	for _, c := range cases {
		_, err := AssignVRIDs(c.vips, 10, 10)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("AssignVRIDs(%v): %v, want %q", c.vips, err, c.want)
		}
	}
	if _, err := AssignVRIDs(nil, 0, 255); err == nil {
		t.Error("VRID base 0 accepted")
	}
}

func TestParseVIPAndRange(t *testing.T) {
	for in, want := range map[string]string{"192.0.2.1": "192.0.2.1/32", "192.0.2.1/24": "192.0.2.1/24", "2001:db8::1": "2001:db8::1/128"} {
		p, err := vrrp.ParseVIP(in)
		if err != nil || p.String() != want {
			t.Errorf("vrrp.ParseVIP(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "x", "224.0.0.1", "fe80::1", "127.0.0.1", "0.0.0.0", "::ffff:192.0.2.1", "fe80::1%eth0"} {
		if _, err := vrrp.ParseVIP(bad); err == nil {
			t.Errorf("vrrp.ParseVIP(%q) accepted", bad)
		}
	}
	ps, err := ParseRange("2001:db8::fe-2001:db8::101")
	if err != nil || len(ps) != 4 {
		t.Fatalf("IPv6 range: %v, %v", ps, err)
	}
	if _, err := ParseRange("10.0.0.0-10.255.255.255"); err == nil {
		t.Error("a range of 16M addresses was accepted")
	}
}

// An advert lists at most 255 addresses: a VRID that would carry more is
// refused, naming it.
func TestAssignVRIDsCapsAddressesPerVRID(t *testing.T) {
	var vips []VIP
	for i := range 300 {
		a := netip.MustParseAddr("2001:db8::").As16()
		a[14], a[15] = byte((i+1)>>8), byte(i+1)
		vips = append(vips, VIP{Prefix: netip.PrefixFrom(netip.AddrFrom16(a), 128), VRID: 5})
	}
	if _, err := AssignVRIDs(vips, 10, 255); err == nil || !strings.Contains(err.Error(), "VRID 5 would carry 300 VIPs") {
		t.Fatalf("300 VIPs on VRID 5: %v", err)
	}
}

// Each interface's VRIDs are its own: one pinned VRID on two interfaces is
// two virtual routers, not one group; the agent's interface comes first;
// a VIP held on another interface (dev) stays in its router's group.
func TestAssignVRIDsPerInterface(t *testing.T) {
	vips := []VIP{
		{Prefix: netip.MustParsePrefix("192.0.2.1/32"), VRID: 51},
		{Prefix: netip.MustParsePrefix("198.51.100.1/24"), VRID: 51, Interface: "eth1"},
		{Prefix: netip.MustParsePrefix("198.51.100.2/24"), VRID: 51, Dev: "eth1"},
		{Prefix: netip.MustParsePrefix("198.51.100.3/24"), Interface: "eth1"},
	}
	a, err := AssignVRIDs(vips, 10, 255)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		iface string
		vrid  int
		vips  int
		dev   string
	}
	var gs []got
	for _, g := range a.Groups {
		gs = append(gs, got{g.Interface, g.VRID, len(g.VIPs), g.Dev[netip.MustParseAddr("198.51.100.2")]})
	}
	want := []got{{"", 51, 2, "eth1"}, {"eth1", 13, 1, ""}, {"eth1", 51, 1, ""}}
	if fmt.Sprint(gs) != fmt.Sprint(want) {
		t.Errorf("groups %+v, want %+v", gs, want)
	}
}

// A vips: entry may name a range: bare, with a prefix length, or as a
// map whose settings every address of it takes; errors name the range.
func TestVIPListRanges(t *testing.T) {
	var l VIPList
	doc := `
- 192.0.2.1
- 192.0.2.10-192.0.2.12
- 198.51.100.5-198.51.100.6/24
- {address: 2001:db8::a-2001:db8::b, vrid: 9, prefer: n2}
- {address: 2001:db8::1/64, vrid: 3}
- 198.51.100.20-21
`
	if err := yaml.Unmarshal([]byte(doc), &l); err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.1/32", "192.0.2.10/32", "192.0.2.11/32", "192.0.2.12/32", "198.51.100.5/24", "198.51.100.6/24",
		"2001:db8::a/128", "2001:db8::b/128", "2001:db8::1/64", "198.51.100.20/32", "198.51.100.21/32"}
	if len(l) != len(want) {
		t.Fatalf("%d VIPs, want %d: %+v", len(l), len(want), l)
	}
	for i, w := range want {
		if l[i].Prefix.String() != w {
			t.Errorf("VIP %d: %s, want %s", i, l[i].Prefix, w)
		}
	}
	if l[6].VRID != 9 || l[7].VRID != 9 || l[7].Prefer != "n2" || l[8].VRID != 3 || l[1].VRID != 0 {
		t.Errorf("a range's settings not on every address: %+v", l)
	}
	for doc, wantErr := range map[string]string{
		"[192.0.2.9-192.0.2.1]":                       `range "192.0.2.9-192.0.2.1" ends before it starts`,
		"[192.0.2.1-2001:db8::1]":                     "mixes IPv4 and IPv6",
		"[{address: 192.0.2.1-192.0.2.2, vrid: 300}]": "vrid 300",
		"[192.0.2.1-192.0.2.x]":                       "both ends must be IP addresses",
		"[192.0.2.1-192.0.2.2/99]":                    "192.0.2.1/99",
		"vips: 192.0.2.1":                             "vips is a list",
	} {
		var l VIPList
		if err := yaml.Unmarshal([]byte(doc), &l); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: error %v, want one with %q", doc, err, wantErr)
		}
	}
}

// A group's VIPs give it one instance name, which no other group shares.
func TestAssignVRIDsNames(t *testing.T) {
	named := func(s string, vrid int, name string) VIP { v := vip(s, vrid); v.Name = name; return v }
	a, err := AssignVRIDs([]VIP{named("192.0.2.1", 5, "INT"), named("192.0.2.2", 5, ""), named("192.0.2.3", 6, "EXT"), vip("192.0.2.4", 0)}, 10, 255)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]string{}
	for _, g := range a.Groups {
		got[g.VRID] = g.Name
		if g.Spec(100).Name != g.Name {
			t.Fatalf("the router of VRID %d is not named %q", g.VRID, g.Name)
		}
	}
	if got[5] != "INT" || got[6] != "EXT" || got[13] != "" {
		t.Fatalf("names %v", got)
	}
	for vips, want := range map[string][]VIP{
		"named INT and EXT":      {named("192.0.2.1", 5, "INT"), named("192.0.2.2", 5, "EXT")},
		"VRID 5 and VRID 6 both": {named("192.0.2.1", 5, "INT"), named("192.0.2.2", 6, "INT")},
	} {
		if _, err := AssignVRIDs(want, 10, 255); err == nil || !strings.Contains(err.Error(), vips) {
			t.Errorf("%v: %v, want an error with %q", want, err, vips)
		}
	}
}
