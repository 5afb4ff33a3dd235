package vrrp

import (
	"encoding/hex"
	"net/netip"
	"reflect"
	"testing"

	"golang.org/x/net/bpf"
)

var (
	src4 = netip.MustParseAddr("192.0.2.11")
	src6 = netip.MustParseAddr("fe80::67:61ff:fe72:7001")
)

func v4adv() Advert {
	return Advert{Version: 3, VRID: 10, Priority: 200, Interval: 100,
		Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.101"), netip.MustParseAddr("192.0.2.102")}}
}

// A VRRPv3 IPv4 advert byte for byte, checksum over the pseudo-header as
// keepalived computes it (verified against keepalived in the lab tests).
func TestEncodeV3IPv4Golden(t *testing.T) {
	b, err := Encode(Advert{Version: 3, VRID: 10, Priority: 200, Interval: 100,
		Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.101")}}, src4, GroupV4)
	if err != nil {
		t.Fatal(err)
	}
	// 3|1, vrid 10, prio 200, 1 addr, rsvd+interval 100, checksum, 192.0.2.101
	want := "310ac8010064" + "0000" + "c0000265"
	sum := checksum(mustHex(want), 3, src4, GroupV4)
	want = want[:12] + hex.EncodeToString([]byte{byte(sum >> 8), byte(sum)}) + want[16:]
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("encoded %s, want %s", got, want)
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	v2 := Advert{Version: 2, VRID: 51, Priority: 100, Interval: 300, AuthType: AuthPassword,
		AuthData: PasswordData("s3cret"), Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.7")}}
	v6 := Advert{Version: 3, VRID: 20, Priority: 1, Interval: 4095,
		Addresses: []netip.Addr{netip.MustParseAddr("2001:db8::101"), netip.MustParseAddr("2001:db8::102")}}
	cases := []struct {
		name     string
		a        Advert
		src, dst netip.Addr
	}{
		{"v3 ipv4", v4adv(), src4, GroupV4},
		{"v3 ipv4 unicast", v4adv(), src4, netip.MustParseAddr("192.0.2.12")},
		{"v2 pass", v2, src4, GroupV4},
		{"v3 ipv6", v6, src6, GroupV6},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := Encode(c.a, c.src, c.dst)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(b, c.src, c.dst, c.a.Addresses[0].Is6())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.a) {
				t.Fatalf("decoded %+v, want %+v", got, c.a)
			}
		})
	}
}

// VRRPv3's checksum covers the pseudo-header, VRRPv2's does not.
func TestChecksumCoverage(t *testing.T) {
	other := netip.MustParseAddr("192.0.2.99")
	b3, _ := Encode(v4adv(), src4, GroupV4)
	if _, err := Decode(b3, other, GroupV4, false); ReasonOf(err) != ReasonChecksum {
		t.Fatalf("v3 advert with another source: %v, want bad checksum", err)
	}
	a2 := v4adv()
	a2.Version = 2
	b2, _ := Encode(a2, src4, GroupV4)
	if _, err := Decode(b2, other, GroupV4, false); err != nil {
		t.Fatalf("v2 advert with another source: %v, want accepted", err)
	}
}

func TestDecodeRejects(t *testing.T) {
	good, _ := Encode(v4adv(), src4, GroupV4)
	mutate := func(f func(b []byte) []byte) []byte {
		b := append([]byte(nil), good...)
		return f(b)
	}
	refix := func(b []byte) []byte { // recompute the checksum after a change
		b[6], b[7] = 0, 0
		s := checksum(b, int(b[0]>>4), src4, GroupV4)
		b[6], b[7] = byte(s>>8), byte(s)
		return b
	}
	cases := []struct {
		name string
		b    []byte
		v6   bool
		want DecodeReason
	}{
		{"empty", nil, false, ReasonTooShort},
		{"short header", good[:7], false, ReasonTooShort},
		{"version 4", mutate(func(b []byte) []byte { b[0] = 0x41; return refix(b) }), false, ReasonVersion},
		{"v2 over ipv6", mutate(func(b []byte) []byte { b[0] = 0x21; return b }), true, ReasonVersion},
		{"type 2", mutate(func(b []byte) []byte { b[0] = 0x32; return refix(b) }), false, ReasonType},
		{"no addresses", mutate(func(b []byte) []byte { b[3] = 0; return refix(b) }), false, ReasonAddressCount},
		{"truncated addresses", good[:12], false, ReasonLength},
		{"bad checksum", mutate(func(b []byte) []byte { b[7] ^= 1; return b }), false, ReasonChecksum},
		{"zero interval", mutate(func(b []byte) []byte { b[4], b[5] = 0, 0; return refix(b) }), false, ReasonInterval},
		{"multicast vip", mutate(func(b []byte) []byte { b[8] = 224; return refix(b) }), false, ReasonAddressType},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.b, src4, GroupV4, c.v6)
			if ReasonOf(err) != c.want {
				t.Fatalf("Decode: %v, want reason %s", err, c.want)
			}
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	bad := []Advert{
		{Version: 4, Addresses: v4adv().Addresses, Interval: 100},
		{Version: 3, Interval: 100},
		{Version: 2, Interval: 150, Addresses: v4adv().Addresses},
		{Version: 3, Interval: 0, Addresses: v4adv().Addresses},
		{Version: 3, Interval: 4096, Addresses: v4adv().Addresses},
		{Version: 2, Interval: 100, Addresses: []netip.Addr{netip.MustParseAddr("2001:db8::1")}},
		{Version: 3, Interval: 100, Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}},
	}
	for i, a := range bad {
		if _, err := Encode(a, src4, GroupV4); err == nil {
			t.Errorf("case %d: Encode(%+v) succeeded", i, a)
		}
	}
}

// FuzzDecode: the decoder never panics, and whatever it accepts re-encodes
// to a packet that decodes to the same advert.
func FuzzDecode(f *testing.F) {
	for _, a := range []Advert{v4adv(), {Version: 2, VRID: 1, Priority: 100, Interval: 100,
		AuthType: AuthPassword, AuthData: PasswordData("pw"), Addresses: v4adv().Addresses}} {
		b, _ := Encode(a, src4, GroupV4)
		f.Add(b, false)
	}
	b6, _ := Encode(Advert{Version: 3, VRID: 2, Priority: 50, Interval: 10,
		Addresses: []netip.Addr{netip.MustParseAddr("2001:db8::1")}}, src6, GroupV6)
	f.Add(b6, true)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) {
		src, dst := src4, GroupV4
		if v6 {
			src, dst = src6, GroupV6
		}
		a, err := Decode(b, src, dst, v6)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("untyped decode error: %v", err)
			}
			return
		}
		re, err := Encode(a, src, dst)
		if err != nil {
			t.Fatalf("accepted advert %+v does not re-encode: %v", a, err)
		}
		a2, err := Decode(re, src, dst, v6)
		if err != nil || !reflect.DeepEqual(a, a2) {
			t.Fatalf("re-encoded advert decodes to %+v, %v; want %+v", a2, err, a)
		}
	})
}

// The kernel filter of the IPv4 socket keeps TTL 255 only.
func TestTTLFilter(t *testing.T) {
	var insns []bpf.Instruction
	for _, r := range ttl255 {
		insns = append(insns, r.Disassemble())
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	for ttl, keep := range map[byte]bool{255: true, 254: false, 64: false, 1: false} {
		pkt := make([]byte, 40)
		pkt[0], pkt[8], pkt[9] = 0x45, ttl, IPProtocol
		n, err := vm.Run(pkt)
		if err != nil || (n > 0) != keep {
			t.Errorf("TTL %d: kept %d bytes (%v), want kept %v", ttl, n, err, keep)
		}
	}
}
