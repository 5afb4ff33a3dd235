package vrrp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// receiveBench is a backup with 255 virtual routers (the most one family
// can have) and one valid advert from the master for each of them.
type receiveBench struct {
	eng     *Engine
	adverts []Packet
}

// fullInterface is 255 virtual routers of one VIP each at prio: the most
// one family of an interface can have.
func fullInterface(prio uint8) []RouterSpec {
	var specs []RouterSpec
	for vrid := 1; vrid <= 255; vrid++ {
		vip := netip.AddrFrom4([4]byte{192, 0, 2, byte(vrid)})
		if vrid == 255 {
			vip = netip.MustParseAddr("198.51.100.1")
		}
		specs = append(specs, RouterSpec{VRID: uint8(vrid), VIPs: []netip.Prefix{netip.PrefixFrom(vip, 32)}, Priority: prio})
	}
	return specs
}

func newReceiveBench(tb testing.TB) *receiveBench {
	tb.Helper()
	specs := fullInterface(100)
	var adverts []Packet
	for _, s := range specs {
		vip := s.VIPs[0].Addr()
		b, err := Encode(Advert{Version: 3, VRID: s.VRID, Priority: 200, Interval: 10, Addresses: []netip.Addr{vip}}, peerSrc, GroupV4)
		if err != nil {
			tb.Fatal(err)
		}
		adverts = append(adverts, Packet{Payload: b, Src: peerSrc, Dst: GroupV4, TTL: 255})
	}
	clk := &fakeClock{now: t0}
	k := &fakeKernel{vips: map[netip.Addr]bool{}, clock: clk}
	eng, err := NewEngine(v3cfg(), GARPConfig{Count: 1, Interval: time.Second}, specs,
		Deps{Transport: &simPort{wire: &simWire{clock: clk}, src: netip.MustParseAddr("192.0.2.11")}, Addresses: k, Announcer: k,
			Clock: clk, Log: zerolog.Nop(), Metrics: NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		tb.Fatal(err)
	}
	if err := eng.start(); err != nil {
		tb.Fatal(err)
	}
	rb := &receiveBench{eng: eng, adverts: adverts}
	rb.receiveAll() // warm up: every router has seen its master once
	return rb
}

func (rb *receiveBench) receiveAll() {
	for _, p := range rb.adverts {
		rb.eng.handlePacket(p)
	}
}

// A backup's receive path (validate, decode, match, machine, metrics)
// allocates nothing per valid advert.
func TestReceivePathAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	rb := newReceiveBench(t)
	allocs := testing.AllocsPerRun(20, rb.receiveAll)
	if perAdvert := allocs / float64(len(rb.adverts)); perAdvert != 0 {
		t.Fatalf("%.2f allocations per valid advert, want 0", perAdvert)
	}
	for _, k := range rb.eng.order {
		if st := rb.eng.routers[k].m.State(); st != Backup {
			t.Fatalf("VRID %d is %s after hearing its master, want backup", k.vrid, st)
		}
	}
}

// BenchmarkReceiveAdvert feeds a backup with 255 virtual routers at 100 ms
// adverts, i.e. 2,550 adverts a second, one advert per op. cpu%@2550/s is
// the share of one core that rate costs on this path.
func BenchmarkReceiveAdvert(b *testing.B) {
	rb := newReceiveBench(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		rb.eng.handlePacket(rb.adverts[i%len(rb.adverts)])
	}
	perAdvert := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.ReportMetric(perAdvert*2550/1e9*100, "cpu%@2550/s")
}
