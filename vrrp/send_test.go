package vrrp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// countingPort is a transport that counts what it is given to send and
// how many batches carried it, and keeps nothing.
type countingPort struct {
	src              netip.Addr
	sent, batches    int
	largestBatch     int
	groupDestination []netip.Addr
}

func (p *countingPort) Destinations(bool) []netip.Addr { return p.groupDestination }
func (p *countingPort) SendBatch(_ bool, _ Via, msgs []Outgoing) error {
	p.sent += len(msgs)
	p.batches++
	p.largestBatch = max(p.largestBatch, len(msgs))
	return nil
}
func (p *countingPort) OpenVia(bool, string) (Via, error) { return nil, nil }
func (p *countingPort) Source(bool) netip.Addr            { return p.src }
func (p *countingPort) Packets() <-chan []Packet          { return nil }
func (p *countingPort) Close() error                      { return nil }
func (p *countingPort) SetPeers([]netip.Addr)             {}

// sendBench is a master of 255 virtual routers (the most one family can
// have) whose adverts all fall due in the same tick.
type sendBench struct {
	eng  *Engine
	clk  *fakeClock
	port *countingPort
}

func newSendBench(tb testing.TB) *sendBench {
	tb.Helper()
	specs := fullInterface(255)
	clk := &fakeClock{now: t0}
	k := &fakeKernel{vips: map[netip.Addr]bool{}, clock: clk}
	port := &countingPort{src: netip.MustParseAddr("192.0.2.11"), groupDestination: []netip.Addr{GroupV4}}
	eng, err := NewEngine(v3cfg(), GARPConfig{Count: 1, Interval: time.Second}, specs,
		Deps{Transport: port, Addresses: k, Announcer: k, Clock: clk, Log: zerolog.Nop(), Metrics: NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		tb.Fatal(err)
	}
	if err := eng.start(); err != nil {
		tb.Fatal(err)
	}
	sb := &sendBench{eng: eng, clk: clk, port: port}
	for range 20 { // warm up: past the takeover announcements, buffers grown
		sb.tickAll()
	}
	return sb
}

// tickAll advances one advert interval and runs the tick that sends every
// router's advert.
func (sb *sendBench) tickAll() {
	sb.clk.now = sb.clk.now.Add(sb.eng.cfg.AdvertInterval)
	sb.eng.tick(sb.clk.now)
}

// A master's adverts due in one tick go out in one batch, and the send path
// (machine, encoding, batch, metrics) allocates nothing per advert.
func TestSendPathBatchesAndAllocatesNothing(t *testing.T) {
	sb := newSendBench(t)
	sent, batches := sb.port.sent, sb.port.batches
	sb.tickAll()
	if got := sb.port.sent - sent; got != 255 {
		t.Fatalf("one tick sent %d adverts, want 255", got)
	}
	if got := sb.port.batches - batches; got != 1 {
		t.Fatalf("one tick's 255 adverts went in %d batches, want 1", got)
	}
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	if allocs := testing.AllocsPerRun(20, sb.tickAll) / 255; allocs != 0 {
		t.Fatalf("%.2f allocations per advert sent, want 0", allocs)
	}
}

// BenchmarkSendAdverts runs a master of 255 virtual routers, one advert per
// op (a tick of 255 per 255 ops). cpu%@25500/s is the share of one core
// the engine's side of the protocol's ceiling costs (510 virtual routers at
// 20 ms adverts), the system calls not included.
func BenchmarkSendAdverts(b *testing.B) {
	sb := newSendBench(b)
	b.ReportAllocs()
	b.ResetTimer()
	ticks := 0
	for ticks*255 < b.N {
		sb.tickAll()
		ticks++
	}
	perAdvert := float64(b.Elapsed().Nanoseconds()) / float64(ticks*255)
	b.ReportMetric(perAdvert*25500/1e9*100, "cpu%@25500/s")
}
