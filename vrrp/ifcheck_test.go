package vrrp

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheckRouters(t *testing.T) {
	v6group := func(n int) RouterSpec {
		r := RouterSpec{VRID: 7}
		for i := range n {
			r.VIPs = append(r.VIPs, netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i + 1)}), 128))
		}
		return r
	}
	own := []netip.Prefix{netip.MustParsePrefix("192.0.2.5/24"), netip.MustParsePrefix("198.51.100.9/32")}
	cases := []struct {
		name    string
		routers []RouterSpec
		want    string // "" when valid
	}{
		{"free VIP", []RouterSpec{{VRID: 1, VIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")}}}, ""},
		{"node address", []RouterSpec{{VRID: 1, VIPs: []netip.Prefix{netip.MustParsePrefix("192.0.2.5/32")}}}, "192.0.2.5 is an address of eth0 (192.0.2.5/24)"},
		{"left by an earlier run", []RouterSpec{{VRID: 1, VIPs: []netip.Prefix{netip.MustParsePrefix("198.51.100.9/32")}}}, ""},
		{"90 IPv6 VIPs fit 1500", []RouterSpec{v6group(90)}, ""},
		{"91 do not", []RouterSpec{v6group(91)}, "VRID 7 carries 91 VIPs, an advert of 1504 bytes, more than the MTU of eth0 (1500): every peer would drop it; at most 90 fit"},
	}
	for _, c := range cases {
		err := checkRouters("eth0", 1500, own, c.routers)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v; want %q", c.name, err, c.want)
		}
	}
}
