package vrrp

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

var tBase = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func vipN(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}) }

// Every VIP is due exactly once per period, at the same phase each time,
// and slots are spread over the period rather than bunched.
func TestPeriodicSchedule(t *testing.T) {
	p := Periodic{Period: 10 * time.Second}
	perSecond := make([]int, 10)
	for i := 1; i <= 200; i++ {
		v := vipN(i)
		a := p.Next(v, tBase)
		b := p.Next(v, a)
		if !a.After(tBase) || a.Sub(tBase) > 10*time.Second || b.Sub(a) != 10*time.Second {
			t.Fatalf("%s: slots %s then %s", v, a.Sub(tBase), b.Sub(tBase))
		}
		if got := p.Next(v, a.Add(-time.Nanosecond)); !got.Equal(a) {
			t.Fatalf("%s: Next just before a slot is %s, want the slot %s", v, got, a)
		}
		perSecond[int(a.Sub(tBase)/time.Second)%10]++
	}
	for s, n := range perSecond {
		if n > 40 { // mean 20; a hash spreads them
			t.Errorf("second %d has %d of 200 VIPs: not spread", s, n)
		}
	}
	// Anchored to the epoch: the same slots whenever the node started.
	v := vipN(7)
	if a, b := p.Next(v, tBase), p.Next(v, tBase.Add(-30*time.Second)); (a.Sub(b))%(10*time.Second) != 0 {
		t.Fatalf("slots depend on the start time: %s vs %s", a, b)
	}
}

// "@every 5s" gives each VIP one announcement per 5 s, like refresh: 5s.
func TestCronWavesEvery(t *testing.T) {
	c, err := NewCronWaves("@every 5s")
	if err != nil {
		t.Fatal(err)
	}
	next := map[netip.Addr]time.Time{}
	for i := 1; i <= 50; i++ {
		next[vipN(i)] = c.Next(vipN(i), tBase)
	}
	counts := map[netip.Addr]int{}
	for now := tBase; now.Before(tBase.Add(60 * time.Second)); now = now.Add(10 * time.Millisecond) {
		for v, at := range next {
			if !now.Before(at) {
				counts[v]++
				n := c.Next(v, now)
				if gap := n.Sub(at); gap < 4*time.Second || gap > 6*time.Second {
					t.Fatalf("%s: gap %s between announcements, want about 5s", v, gap)
				}
				next[v] = n
			}
		}
	}
	for v, n := range counts {
		if n < 11 || n > 12 {
			t.Errorf("%s announced %d times in 60s, want 12", v, n)
		}
	}
}

func TestGARPScheduler(t *testing.T) {
	if s, err := (GARPConfig{}).Scheduler(); s != nil || err != nil {
		t.Fatalf("zero config: %v, %v; want refresh off", s, err)
	}
	if _, err := (GARPConfig{Schedule: "every five"}).Scheduler(); err == nil {
		t.Fatal("bad cron accepted")
	}
	if _, err := (GARPConfig{Refresh: 100 * time.Millisecond}).Scheduler(); err == nil {
		t.Fatal("sub-second refresh accepted")
	}
	if s, err := (GARPConfig{Refresh: time.Minute, Schedule: "*/5 * * * *"}).Scheduler(); err != nil {
		t.Fatal(err)
	} else if _, ok := s.(*CronWaves); !ok {
		t.Fatalf("schedule did not take precedence over refresh: %T", s)
	}
}

// A schedule that never fires is refused up front: before, the first
// takeover looped forever looking for its next wave.
func TestScheduleThatNeverFires(t *testing.T) {
	for _, spec := range []string{"0 0 30 2 *", "0 0 31 4 *"} {
		_, err := GARPConfig{Schedule: spec}.Scheduler()
		if err == nil || !strings.Contains(err.Error(), "never fires") || !strings.Contains(err.Error(), "schedule") {
			t.Errorf("%q: %v; want an error naming the schedule that never fires", spec, err)
		}
	}
}

// stopsAt is a cron schedule that fires every second until last, then never.
type stopsAt struct{ last time.Time }

func (s stopsAt) Next(t time.Time) time.Time {
	n := t.Truncate(time.Second).Add(time.Second)
	if n.After(s.last) {
		return time.Time{}
	}
	return n
}

// A schedule that runs out (cron gives up after five years) makes Next
// return the zero time, "no refresh", instead of looping.
func TestCronWavesRunOut(t *testing.T) {
	c := &CronWaves{sched: stopsAt{last: tBase.Add(3 * time.Second)}}
	v := vipN(1)
	at, n := tBase, 0
	for ; n < 10; n++ {
		next := c.Next(v, at)
		if next.IsZero() {
			break
		}
		if !next.After(at) {
			t.Fatalf("Next(%v) = %v, not after", at, next)
		}
		at = next
	}
	if n == 0 || n >= 10 {
		t.Fatalf("%d announcements before the schedule ran out; want a few, then none", n)
	}
}
