package vrrp

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"
)

// recordingSender records each announcement at the pacer's (fake) time.
type recordingSender struct {
	clock Clock
	mu    sync.Mutex
	sends []sent
}

type sent struct {
	at      time.Time
	addr    netip.Addr
	part    Part
	packets int
}

// Send takes an IPv4 VIP's announcement for a request and a reply, an
// IPv6 one's for one NA.
func (s *recordingSender) Send(a netip.Addr, part Part) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 2
	switch {
	case part == PartSecond && a.Is6():
		return 0, nil
	case part != PartAll || a.Is6():
		n = 1
	}
	s.sends = append(s.sends, sent{s.clock.Now(), a, part, n})
	return n, nil
}

func (s *recordingSender) snapshot() []sent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.sends)
}

func (s *recordingSender) order() []netip.Addr {
	var out []netip.Addr
	for _, x := range s.snapshot() {
		out = append(out, x.addr)
	}
	return out
}

func addrN(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}) }

// newFakePacer returns a pacer on fake time that the test drives with
// drainPacer; nothing runs in the background.
func newFakePacer(rate int) (*Pacer, *recordingSender, *fakeClock, *Metrics) {
	clk := &fakeClock{now: t0}
	s := &recordingSender{clock: clk}
	m := NewMetrics(prometheus.NewRegistry())
	return NewPacer(s, Budget{PerSecond: rate, PerTick: rate}, clk, m, zerolog.Nop()), s, clk, m
}

// drainPacer sends what is due, moving fake time on by each wait the pacer
// asks for, until the queue is empty.
func drainPacer(t *testing.T, p *Pacer, clk *fakeClock) {
	t.Helper()
	for range 10000 {
		wait := p.sendDue()
		if wait == 0 {
			return
		}
		clk.advance(wait)
	}
	t.Fatal("pacer queue never drained")
}

// No sliding one-second window carries more than max_rate packets, nothing
// is dropped, and the cap is used in full: 240 packets at 100/s leave in
// three bursts exactly one second apart.
func TestPacerCapsRate(t *testing.T) {
	const rate = 100 // packets/s; each announcement is 2 packets
	p, s, clk, m := newFakePacer(rate)
	for i := 1; i <= 120; i++ {
		p.Announce(addrN(i), false)
	}
	drainPacer(t, p, clk)
	got := s.snapshot()
	if len(got) != 120 {
		t.Fatalf("sent %d announcements, want all 120", len(got))
	}
	for i := range got {
		packets := 0
		for j := i; j < len(got) && got[j].at.Sub(got[i].at) < time.Second; j++ {
			packets += 2
		}
		if packets > rate {
			t.Fatalf("%d packets within one second from send %d, cap %d", packets, i, rate)
		}
	}
	if d := got[len(got)-1].at.Sub(got[0].at); d != 2*time.Second {
		t.Fatalf("240 packets at 100/s took %s, want exactly 2s (100, 100 and 40 packets)", d)
	}
	if c := histCount(t, m.AnnounceWait); c != 120 {
		t.Fatalf("queue wait observed %d times, want once per announcement", c)
	}
}

// Takeover announcements overtake queued refreshes; a withdrawn VIP is not
// announced; a VIP queued twice for refresh goes once.
func TestPacerOrderAndWithdraw(t *testing.T) {
	p, s, clk, _ := newFakePacer(4) // 2 announcements a second
	for i := 1; i <= 5; i++ {
		p.Announce(addrN(i), false)
	}
	p.Announce(addrN(3), false) // duplicate refresh
	p.Announce(addrN(99), true)
	p.Withdraw(addrN(4))
	drainPacer(t, p, clk)
	want := []netip.Addr{addrN(99), addrN(1), addrN(2), addrN(3), addrN(5)}
	if got := s.order(); !slices.Equal(got, want) {
		t.Fatalf("sent %v, want %v (takeover first, .3 once, withdrawn .4 never)", got, want)
	}

	// Once the cap holds the queue back, a takeover queued later still goes
	// before the refreshes that were waiting.
	p2, s2, clk2, _ := newFakePacer(2) // 1 announcement a second
	for i := 1; i <= 3; i++ {
		p2.Announce(addrN(i), false)
	}
	if wait := p2.sendDue(); wait != time.Second {
		t.Fatalf("after one announcement the pacer waits %s, want 1s", wait)
	}
	p2.Announce(addrN(99), true)
	p2.Withdraw(addrN(3))
	drainPacer(t, p2, clk2)
	want = []netip.Addr{addrN(1), addrN(99), addrN(2)}
	if got := s2.order(); !slices.Equal(got, want) {
		t.Fatalf("sent %v, want %v", got, want)
	}
}

// A wave is timed from its start to its last announcement, also when
// part of it is withdrawn.
func TestPacerWave(t *testing.T) {
	p, _, clk, m := newFakePacer(2) // 1 announcement a second
	p.Wave([]netip.Addr{addrN(1), addrN(2), addrN(3), addrN(4)})
	p.Withdraw(addrN(4))
	drainPacer(t, p, clk)
	if c := histCount(t, m.WaveDuration); c != 1 {
		t.Fatalf("wave duration observed %d times, want 1", c)
	}
	if sum := histSum(t, m.WaveDuration); sum != 2 {
		t.Fatalf("wave of 3 at 1/s took %vs, want 2", sum)
	}
}

// Run, the real loop, sends what is queued and ends with its context.
func TestPacerRun(t *testing.T) {
	s := &recordingSender{clock: SystemClock{}}
	p := NewPacer(s, Budget{}, nil, NewMetrics(prometheus.NewRegistry()), zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	p.Wave([]netip.Addr{addrN(1), addrN(2), addrN(3)})
	deadline := time.Now().Add(10 * time.Second)
	for len(s.snapshot()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("Run sent %d of 3 announcements in 10s", len(s.snapshot()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end with its context")
	}
	if c := testutil.CollectAndCount(p.metrics.Announcements); c != 3 {
		t.Fatalf("announcements counted for %d VIPs, want 3", c)
	}
}

func histMetric(t *testing.T, h prometheus.Histogram) *dto.Histogram {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	h.Collect(ch)
	pb := &dto.Metric{}
	if err := (<-ch).Write(pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetHistogram()
}

func histCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	return histMetric(t, h).GetSampleCount()
}

func histSum(t *testing.T, h prometheus.Histogram) float64 {
	t.Helper()
	return histMetric(t, h).GetSampleSum()
}

// A flood of urgent requests for VIPs already queued (another host's
// gratuitous ARPs, each answered) holds one announcement per VIP: the
// queue stays bounded, and a takeover queued behind the flood waits for
// at most one announcement per held VIP, not for the whole flood.
func TestPacerCoalescesUrgent(t *testing.T) {
	p, s, clk, _ := newFakePacer(2) // 1 announcement a second
	for range 2000 {
		p.Announce(addrN(1), true)
		p.Announce(addrN(2), true)
	}
	p.mu.Lock()
	n := len(p.urgent)
	p.mu.Unlock()
	if n != 2 {
		t.Fatalf("2000 claims on each of 2 VIPs queue %d announcements, want 2", n)
	}
	p.Announce(addrN(99), true) // a takeover
	drainPacer(t, p, clk)
	if got, want := s.order(), []netip.Addr{addrN(1), addrN(2), addrN(99)}; !slices.Equal(got, want) {
		t.Fatalf("sent %v, want %v", got, want)
	}
	p.Announce(addrN(1), true) // sent: it may queue again
	drainPacer(t, p, clk)
	if got := len(s.order()); got != 4 {
		t.Fatalf("a VIP announced again after its announcement went out: %d sent, want 4", got)
	}
}

// Answers to foreign claims queue behind takeovers: a flood of claims on
// held VIPs never delays the announcements of a VIP just taken over, and
// a claimed VIP is answered once, whatever the flood.
func TestPacerTakeoverBeforeDefence(t *testing.T) {
	p, s, clk, _ := newFakePacer(2) // 1 announcement a second
	for range 500 {
		for i := 1; i <= 3; i++ {
			p.Defend(addrN(i))
		}
	}
	p.Announce(addrN(50), false) // a refresh
	p.Announce(addrN(99), true)  // a takeover, queued last
	drainPacer(t, p, clk)
	want := []netip.Addr{addrN(99), addrN(1), addrN(2), addrN(3), addrN(50)}
	if got := s.order(); !slices.Equal(got, want) {
		t.Fatalf("sent %v, want %v: the takeover first, each claimed VIP answered once, the refresh last", got, want)
	}
}

// Answers (to foreign claims, to other speakers' adverts) take at most half
// the rate cap in any one-second window, so refreshes go on through a flood
// that claims every VIP; takeovers still go first; and once the flood is
// answered the refreshes use the whole cap. Every VIP count, every cap.
func TestPacerAnswersWithinBudget(t *testing.T) {
	for _, rate := range []int{4, 10, 200, 1000} {
		for _, vips := range []int{1, 16, 255} {
			p, s, clk, _ := newFakePacer(rate)
			for i := 1; i <= vips; i++ {
				p.Defend(addrN(i))
				p.Announce(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), false) // a refresh
			}
			p.Announce(addrN(0), true) // a takeover
			drainPacer(t, p, clk)
			sends := s.snapshot()
			if sends[0].addr != addrN(0) {
				t.Fatalf("rate %d, %d VIPs: first %s, want the takeover", rate, vips, sends[0].addr)
			}
			isAnswer := map[netip.Addr]bool{}
			for i := 1; i <= vips; i++ {
				isAnswer[addrN(i)] = true
			}
			budget := max(2, rate/2)
			for i, a := range sends {
				answers, refreshes := 0, 0
				for _, b := range sends[i:] {
					if !b.at.Before(a.at.Add(time.Second)) {
						break
					}
					if isAnswer[b.addr] {
						answers += 2
					} else {
						refreshes++
					}
				}
				if answers > budget {
					t.Fatalf("rate %d, %d VIPs: %d answer packets in the second from %s, budget %d", rate, vips, answers, a.at.Sub(t0), budget)
				}
			}
			if len(sends) != 2*vips+1 {
				t.Fatalf("rate %d, %d VIPs: %d sent, want %d", rate, vips, len(sends), 2*vips+1)
			}
			// The first refresh leaves within the first second.
			for _, a := range sends {
				if !isAnswer[a.addr] && a.addr != addrN(0) {
					if a.at.Sub(t0) >= time.Second && rate >= 8 {
						t.Fatalf("rate %d, %d VIPs: the first refresh waited %s behind the answers", rate, vips, a.at.Sub(t0))
					}
					break
				}
			}
		}
	}
}

// One budget for everything, over every profile: a takeover of 255 IPv4
// and 16 IPv6 VIPs sends the first kind of every VIP before the second
// kind of any, the second kinds before the rest of the bursts, and those
// before the refreshes queued earlier; no window of a second carries more
// than the profile's packets a second, nor one of 100 ms more than its
// share; nothing is dropped; and the first kinds are out within the
// budget's MoveTime (the default moves 255 VIPs in 2.5 s, open at once).
func TestPacerOneBudget(t *testing.T) {
	addr6 := func(i int) netip.Addr { return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}) }
	for name, budget := range budgets {
		clk := &fakeClock{now: t0}
		s := &recordingSender{clock: clk}
		p := NewPacer(s, budget, clk, NewMetrics(prometheus.NewRegistry()), zerolog.Nop())
		refresh := netip.MustParseAddr("192.0.2.250")
		p.Announce(refresh, false) // queued first, goes last
		var taken []netip.Addr
		for i := 1; i <= 255; i++ {
			taken = append(taken, netip.AddrFrom4([4]byte{198, 51, byte(100 + i/200), byte(i)}))
		}
		for i := 1; i <= 16; i++ {
			taken = append(taken, addr6(i))
		}
		for _, a := range taken {
			p.Takeover(a)
			p.Announce(a, true) // the burst's next announcement
		}
		drainPacer(t, p, clk)
		got := s.snapshot()
		if want := 271 + 255 + 271 + 1; len(got) != want {
			t.Fatalf("%s: sent %d announcements, want %d", name, len(got), want)
		}
		phase := func(x sent) int {
			switch {
			case x.addr == refresh:
				return 3
			case x.part == PartFirst:
				return 0
			case x.part == PartSecond:
				return 1
			}
			return 2
		}
		for i := 1; i < len(got); i++ {
			if phase(got[i]) < phase(got[i-1]) {
				t.Fatalf("%s: send %d (%s, part %d) after send %d (%s, part %d): want every first kind, then the second kinds, the bursts, the refresh",
					name, i, got[i].addr, got[i].part, i-1, got[i-1].addr, got[i-1].part)
			}
		}
		for i, a := range got {
			second, short := 0, 0
			for _, b := range got[i:] {
				if b.at.Sub(a.at) < time.Second {
					second += b.packets
				}
				if b.at.Sub(a.at) < tick {
					short += b.packets
				}
			}
			if second > budget.PerSecond || short > budget.PerTick {
				t.Fatalf("%s: from %s, %d packets in a second (budget %d) and %d in 100 ms (budget %d)",
					name, a.at.Sub(t0), second, budget.PerSecond, short, budget.PerTick)
			}
		}
		lastFirst := got[270].at.Sub(t0)
		if floor := budget.MoveTime(271); lastFirst > floor+tick {
			t.Fatalf("%s: the first kinds of 271 VIPs took %s, want at most %s", name, lastFirst, floor+tick)
		}
		t.Logf("%s: the first kind of 271 VIPs out in %s, everything in %s", name, lastFirst, got[len(got)-1].at.Sub(t0))
	}
}
