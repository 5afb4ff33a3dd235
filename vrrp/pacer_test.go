package vrrp

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
)

type recordingSender struct {
	mu    sync.Mutex
	sends []sent
}

type sent struct {
	at   time.Time
	addr netip.Addr
}

func (s *recordingSender) Send(a netip.Addr) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sends = append(s.sends, sent{time.Now(), a})
	return 2, nil // request and reply
}

func (s *recordingSender) snapshot() []sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sent(nil), s.sends...)
}

func addrN(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}) }

func runPacer(t *testing.T, rate int) (*Pacer, *recordingSender, *Metrics) {
	t.Helper()
	s := &recordingSender{}
	m := NewMetrics(prometheus.NewRegistry())
	p := NewPacer(s, rate, nil, m, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return p, s, m
}

func waitSends(t *testing.T, s *recordingSender, n int, timeout time.Duration) []sent {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if got := s.snapshot(); len(got) >= n {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%d sends after %s, want %d", len(s.snapshot()), timeout, n)
	return nil
}

// No sliding one-second window carries more than max_rate packets, and
// nothing is dropped.
func TestPacerCapsRate(t *testing.T) {
	const rate = 100 // packets/s; each announcement is 2 packets
	p, s, m := runPacer(t, rate)
	for i := 1; i <= 120; i++ {
		p.Announce(addrN(i), false)
	}
	got := waitSends(t, s, 120, 5*time.Second)
	for i := range got {
		packets := 0
		for j := i; j < len(got) && got[j].at.Sub(got[i].at) < time.Second; j++ {
			packets += 2
		}
		if packets > rate {
			t.Fatalf("%d packets within one second from send %d, cap %d", packets, i, rate)
		}
	}
	// 100 packets may go at once, then 100 a second later, then 40.
	if d := got[len(got)-1].at.Sub(got[0].at); d < 1900*time.Millisecond {
		t.Fatalf("240 packets at 100/s left in %s, want about 2s", d)
	}
	if c := testutil.CollectAndCount(m.AnnounceWait); c != 1 {
		t.Fatalf("queue wait histogram not collected")
	}
}

// Takeover announcements overtake queued refreshes; a withdrawn VIP is not
// announced; a VIP queued twice for refresh goes once.
func TestPacerOrderAndWithdraw(t *testing.T) {
	p, s, _ := runPacer(t, 20) // 100 ms per announcement
	for i := 1; i <= 5; i++ {
		p.Announce(addrN(i), false)
	}
	p.Announce(addrN(3), false) // duplicate refresh
	p.Announce(addrN(99), true)
	p.Withdraw(addrN(4))
	got := waitSends(t, s, 5, 3*time.Second)
	time.Sleep(300 * time.Millisecond)
	got = s.snapshot()
	var order []netip.Addr
	for _, x := range got {
		order = append(order, x.addr)
	}
	if len(order) != 5 {
		t.Fatalf("sent %v, want 5 announcements (4 refreshes, 1 takeover)", order)
	}
	if order[1] != addrN(99) && order[0] != addrN(99) {
		t.Fatalf("takeover announcement sent at position >1: %v", order)
	}
	for _, a := range order {
		if a == addrN(4) {
			t.Fatalf("withdrawn VIP announced: %v", order)
		}
	}
}

func TestPacerWave(t *testing.T) {
	p, s, m := runPacer(t, 0) // unlimited
	p.Wave([]netip.Addr{addrN(1), addrN(2), addrN(3)})
	waitSends(t, s, 3, time.Second)
	deadline := time.Now().Add(time.Second)
	for testutil.CollectAndCount(m.WaveDuration) == 0 || histCount(t, m.WaveDuration) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("wave duration not observed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func histCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	h.Collect(ch)
	pb := &dto.Metric{}
	if err := (<-ch).Write(pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetHistogram().GetSampleCount()
}
