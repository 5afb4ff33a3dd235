package vrrp

import (
	"net/netip"
	"testing"
	"time"
)

// Two routers on one VRID (a collision) and a second advert from one of
// them: two rows, the advert counted, the latest priority kept.
func TestHeardTable(t *testing.T) {
	table := map[string]*HeardRouter{}
	a := netip.MustParseAddr("192.0.2.11")
	b := netip.MustParseAddr("192.0.2.12")
	add := func(src netip.Addr, prio uint8, vip string) {
		adv := Advert{Version: 3, VRID: 10, Priority: prio, Interval: 100, Addresses: []netip.Addr{netip.MustParseAddr(vip)}}
		payload, err := Encode(adv, src, GroupV4)
		if err != nil {
			t.Fatal(err)
		}
		Heard(table, Packet{Payload: payload, Src: src, Dst: GroupV4, TTL: 255}, time.Now())
	}
	add(a, 100, "192.0.2.101")
	add(a, 150, "192.0.2.101")
	add(b, 250, "192.0.2.201")
	Heard(table, Packet{Payload: []byte{1, 2, 3}, Src: b, Dst: GroupV4}, time.Now()) // not VRRP
	rows := collect(table)
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2: %+v", len(rows), rows)
	}
	if rows[0].Source != a.String() || rows[0].Adverts != 2 || rows[0].Priority != 150 || rows[0].Interval != "1s" {
		t.Fatalf("first row %+v", rows[0])
	}
	if rows[1].VIPs[0] != "192.0.2.201" {
		t.Fatalf("second row %+v", rows[1])
	}
}
