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
	"github.com/rs/zerolog"
)

// A VIP the router does not send here is re-announced after the 1st, 2nd,
// 4th, 8th … unanswered probe and then every 32nd, reported unverified
// once after 3, and reported again when the router answers.
func TestVerifyStateBacksOff(t *testing.T) {
	var st verifyState
	var repairs, flags []int
	for i := 1; i <= 100; i++ {
		repair, flag, clear := st.result(false)
		if repair {
			repairs = append(repairs, i)
		}
		if flag {
			flags = append(flags, i)
		}
		if clear {
			t.Fatalf("probe %d unanswered cleared the report", i)
		}
	}
	if want := []int{1, 2, 4, 8, 16, 32, 64, 96}; !slices.Equal(repairs, want) {
		t.Fatalf("re-announced after unanswered probes %v, want %v", repairs, want)
	}
	if !slices.Equal(flags, []int{unverifiedAfter}) {
		t.Fatalf("reported unverified after %v, want once after %d", flags, unverifiedAfter)
	}
	if _, _, clear := st.result(true); !clear {
		t.Fatal("an answer after the report did not clear it")
	}
	if _, _, clear := st.result(true); clear {
		t.Fatal("a second answer cleared again")
	}
	if repair, flag, _ := st.result(false); !repair || flag {
		t.Fatalf("the first unanswered probe after an answer: repair %v, flag %v; want a re-announcement and no report", repair, flag)
	}
}

// fakeProber answers for a VIP once its router entry is repaired.
type fakeProber struct {
	mu       sync.Mutex
	silent   bool // the router answers nobody
	wrong    map[netip.Addr]bool
	probes   map[netip.Addr]int
	repaired []netip.Addr
}

func (f *fakeProber) Probe(_ context.Context, from, _ netip.Addr, _ time.Duration) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probes[from]++
	return !f.silent && !f.wrong[from], nil
}

func (f *fakeProber) Close() error { return nil }

func (f *fakeProber) repair(a netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.repaired = append(f.repaired, a)
	delete(f.wrong, a) // the router heard it
}

// The loop probes every held VIP against the target of its family, and
// re-announces exactly the one whose router entry is wrong, which is then
// verified again. A router that answers nobody (ICMP filtered) says
// nothing of its entries: nothing is re-announced or reported.
func TestVerifierRepairsWhatTheRouterGotWrong(t *testing.T) {
	a, b, c := netip.MustParseAddr("192.0.2.101"), netip.MustParseAddr("192.0.2.102"), netip.MustParseAddr("2001:db8::101")
	for _, silent := range []bool{false, true} {
		p := &fakeProber{silent: silent, wrong: map[netip.Addr]bool{a: true}, probes: map[netip.Addr]int{}}
		verifyOnce(t, p, a, b, c)
	}
}

func verifyOnce(t *testing.T, p *fakeProber, a, b, c netip.Addr) {
	m := NewMetrics(prometheus.NewRegistry())
	v := &verifier{cfg: VerifyConfig{Interval: 100 * time.Millisecond, MaxRate: 1000}, targets: []netip.Addr{netip.MustParseAddr("192.0.2.1")},
		prober: p, held: func(context.Context) ([]netip.Addr, error) { return []netip.Addr{a, b, c}, nil },
		repair: p.repair, metrics: m, log: zerolog.Nop()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { v.run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		enough := p.probes[a] >= 3 && p.probes[b] >= 3
		p.mu.Unlock()
		if enough {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the verifier did not probe every VIP three times in 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	p.mu.Lock()
	defer p.mu.Unlock()
	want, wantRepairs := []netip.Addr{a}, 1.0
	if p.silent {
		want, wantRepairs = nil, 0
	}
	if !slices.Equal(p.repaired, want) {
		t.Fatalf("silent router %v: re-announced %v, want %v", p.silent, p.repaired, want)
	}
	if p.probes[c] != 0 {
		t.Fatalf("probed %s %d times without an IPv6 target", c, p.probes[c])
	}
	if n := testutil.ToFloat64(m.VerifyRepairs); n != wantRepairs {
		t.Fatalf("silent router %v: garpd_verify_repairs_total %v, want %v", p.silent, n, wantRepairs)
	}
	if n := testutil.ToFloat64(m.Unverified.WithLabelValues(a.String())); n != 0 {
		t.Fatalf("silent router %v: garpd_vip_unverified{vip=%s} %v, want 0", p.silent, a, n)
	}
}
