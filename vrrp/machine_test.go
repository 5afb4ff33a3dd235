package vrrp

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

var (
	t0      = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	local   = netip.MustParseAddr("192.0.2.20")
	lowerIP = netip.MustParseAddr("192.0.2.10")
	upperIP = netip.MustParseAddr("192.0.2.30")
)

func newM(prio uint8, preempt bool) *Machine {
	return NewMachine(MachineConfig{Priority: prio, Interval: 100, Preempt: preempt, LocalAddr: local})
}

func adv(prio uint8, interval uint16) Advert {
	return Advert{Version: 3, VRID: 1, Priority: prio, Interval: interval,
		Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.101")}}
}

func at(d time.Duration) time.Time { return t0.Add(d) }

func wantActs(t *testing.T, got []Action, want ...Action) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("actions %v, want %v", got, want)
	}
}

func wantState(t *testing.T, m *Machine, s State) {
	t.Helper()
	if m.State() != s {
		t.Fatalf("state %s, want %s", m.State(), s)
	}
}

func TestTimerFormulas(t *testing.T) {
	// keepalived's defaults: priority 100, 1 s adverts → 3.6 s master down
	// (shared/design.md); the RFC computes in whole centiseconds.
	cases := []struct {
		prio     uint8
		interval uint16
		skew, md time.Duration
	}{
		{100, 100, 600 * time.Millisecond, 3600 * time.Millisecond},
		{150, 10, 40 * time.Millisecond, 340 * time.Millisecond},
		{254, 100, 0, 3 * time.Second},
		{1, 100, 990 * time.Millisecond, 3990 * time.Millisecond},
		{200, 1, 0, 30 * time.Millisecond},
	}
	for _, c := range cases {
		if got := SkewTime(c.prio, c.interval); got != c.skew {
			t.Errorf("SkewTime(%d, %d) = %s, want %s", c.prio, c.interval, got, c.skew)
		}
		if got := masterDownInterval(c.prio, c.interval); got != c.md {
			t.Errorf("masterDownInterval(%d, %d) = %s, want %s", c.prio, c.interval, got, c.md)
		}
	}
}

// RFC 3768 §6.1: VRRPv2's Skew_Time is (256-Priority)/256 s whatever the
// interval, so a 2 s interval does not double it as RFC 5798's would.
func TestSkewTimeV2(t *testing.T) {
	for _, c := range []struct {
		prio     uint8
		interval uint16
		skew, md time.Duration
	}{
		{100, 100, 609375 * time.Microsecond, 3609375 * time.Microsecond},
		{100, 200, 609375 * time.Microsecond, 6609375 * time.Microsecond},
		{254, 100, 7812500 * time.Nanosecond, 3007812500 * time.Nanosecond},
	} {
		m := NewMachine(MachineConfig{Priority: c.prio, Interval: c.interval, Preempt: true, LocalAddr: lowerIP, Version: 2})
		m.Startup(t0)
		if got := m.NextDeadline().Sub(t0); got != c.md {
			t.Errorf("v2 priority %d, interval %d cs: master down %s, want %s", c.prio, c.interval, got, c.md)
		}
		m.HandleAdvert(at(time.Second), upperIP, adv(0, c.interval))
		if got := m.NextDeadline().Sub(at(time.Second)); got != c.skew {
			t.Errorf("v2 priority %d: skew after a priority-0 advert %s, want %s", c.prio, got, c.skew)
		}
	}
}

// §6.4.1: Initialize, Startup with priority 255 (the address owner).
func TestInitializeStartupOwner(t *testing.T) {
	m := newM(255, true)
	wantActs(t, m.Startup(t0), ActSendAdvert, ActTakeover)
	wantState(t, m, Master)
	if m.NextDeadline() != at(time.Second) {
		t.Fatalf("adver timer %s, want +1s", m.NextDeadline().Sub(t0))
	}
}

// §6.4.1: Initialize, Startup below 255 → Backup with Master_Down_Timer.
func TestInitializeStartupBackup(t *testing.T) {
	m := newM(100, true)
	wantActs(t, m.Startup(t0))
	wantState(t, m, Backup)
	if m.NextDeadline() != at(3600*time.Millisecond) {
		t.Fatalf("master down timer %s, want 3.6s", m.NextDeadline().Sub(t0))
	}
	if m.masterAdverInterval != 100 {
		t.Fatalf("Master_Adver_Interval %d, want the configured 100", m.masterAdverInterval)
	}
}

// §6.4.2: Backup, Shutdown → Initialize, timers cancelled, nothing sent.
func TestBackupShutdown(t *testing.T) {
	m := newM(100, true)
	m.Startup(t0)
	wantActs(t, m.Shutdown(at(time.Second)))
	wantState(t, m, Initialize)
	if !m.NextDeadline().IsZero() {
		t.Fatal("a timer still runs in Initialize")
	}
	wantActs(t, m.Tick(at(time.Hour)))
}

// takeOver ticks a Backup through its master-down interval and its
// claim, to a Master that holds the VIPs.
func takeOver(t *testing.T, m *Machine) {
	t.Helper()
	for range 20 {
		if m.Holds() {
			return
		}
		m.Tick(m.NextDeadline())
	}
	t.Fatalf("state %s, not holding after 20 ticks", m.State())
}

// §6.4.2: Backup, Master_Down_Timer fires → advert, Master. The master
// went silent, so the VIPs are taken after the claim: claimAdverts
// adverts over ClaimWindow, each an answer's chance for a master whose
// adverts were only lost.
func TestBackupMasterDown(t *testing.T) {
	m := newM(100, true)
	m.Startup(t0)
	wantActs(t, m.Tick(at(3599*time.Millisecond)))
	wantState(t, m, Backup)
	wantActs(t, m.Tick(at(3600*time.Millisecond)), ActSendAdvert)
	wantState(t, m, Master)
	if m.Holds() {
		t.Fatal("holds the VIPs before its claim ran out")
	}
	window := ClaimWindow(100) // 1 s adverts: 50 ms
	step := window / claimAdverts
	claims := 1
	for now := at(3600 * time.Millisecond); ; {
		now = m.NextDeadline()
		acts := m.Tick(now)
		if slices.Equal(acts, []Action{ActTakeover}) {
			if want := at(3600*time.Millisecond + window); now != want {
				t.Fatalf("took over at %s, want %s", now.Sub(t0), want.Sub(t0))
			}
			break
		}
		wantActs(t, acts, ActSendAdvert)
		if want := at(3600*time.Millisecond + time.Duration(claims)*step); now != want {
			t.Fatalf("claim %d at %s, want %s", claims+1, now.Sub(t0), want.Sub(t0))
		}
		claims++
	}
	if claims != claimAdverts || !m.Holds() {
		t.Fatalf("%d claims, holds %v; want %d and holding", claims, m.Holds(), claimAdverts)
	}
	if m.NextDeadline() != at(4600*time.Millisecond) {
		t.Fatalf("adver timer at %s, want 4.6s", m.NextDeadline().Sub(t0))
	}
}

// §6.4.2: Backup, priority-0 advert → Master_Down_Timer = Skew_Time.
func TestBackupPriorityZero(t *testing.T) {
	m := newM(100, true)
	m.Startup(t0)
	wantActs(t, m.HandleAdvert(at(time.Second), upperIP, adv(0, 100)))
	if want := at(time.Second + 600*time.Millisecond); m.NextDeadline() != want {
		t.Fatalf("master down at %s, want skew 0.6s after the advert", m.NextDeadline().Sub(t0))
	}
	wantActs(t, m.Tick(at(1600*time.Millisecond)), ActSendAdvert, ActTakeover)
}

// A priority-0 advert counts only from the master a backup follows: one
// from another source (forged from a member's address, or a stale master)
// leaves the master-down timer as it was.
func TestBackupPriorityZeroOnlyFromTheMaster(t *testing.T) {
	m := newM(100, true)
	m.Startup(t0)
	wantActs(t, m.HandleAdvert(at(time.Second), upperIP, adv(200, 100)))
	before := m.NextDeadline()
	other := netip.MustParseAddr("192.0.2.99")
	wantActs(t, m.HandleAdvert(at(1100*time.Millisecond), other, adv(0, 100)))
	if m.NextDeadline() != before {
		t.Fatalf("a priority-0 advert from %s moved the master-down timer to %s", other, m.NextDeadline().Sub(t0))
	}
	wantActs(t, m.HandleAdvert(at(1200*time.Millisecond), upperIP, adv(0, 100)))
	if want := at(1200*time.Millisecond + 600*time.Millisecond); m.NextDeadline() != want {
		t.Fatalf("the master's own priority-0 advert: master down at %s, want skew 0.6s after it", m.NextDeadline().Sub(t0))
	}
}

// §6.4.2: Backup accepts a higher (or equal) priority advert: learns the
// master's interval and restarts Master_Down_Timer from it.
func TestBackupAcceptsHigher(t *testing.T) {
	for _, prio := range []uint8{100, 200} {
		m := newM(100, true)
		m.Startup(t0)
		wantActs(t, m.HandleAdvert(at(time.Second), upperIP, adv(prio, 50)))
		wantState(t, m, Backup)
		if m.masterAdverInterval != 50 {
			t.Fatalf("prio %d: learned interval %d, want 50", prio, m.masterAdverInterval)
		}
		// 3×0.5 s + ((256-100)×50/256 = 30 cs)
		if want := at(time.Second + 1800*time.Millisecond); m.NextDeadline() != want {
			t.Fatalf("prio %d: master down at %s, want 2.8s", prio, m.NextDeadline().Sub(t0))
		}
		if a, p := m.MasterAddr(); a != upperIP || p != prio {
			t.Fatalf("master %s/%d, want %s/%d", a, p, upperIP, prio)
		}
	}
}

// §6.4.2: with preemption, a lower-priority advert is discarded, so the
// backup takes over when Master_Down_Timer runs out.
func TestBackupPreemptsLower(t *testing.T) {
	m := newM(200, true)
	m.Startup(t0)
	first := m.NextDeadline()
	wantActs(t, m.HandleAdvert(at(time.Second), upperIP, adv(100, 100)))
	if m.NextDeadline() != first {
		t.Fatal("a lower-priority advert reset the master down timer despite preemption")
	}
	wantActs(t, m.Tick(first), ActSendAdvert, ActTakeover)
	wantState(t, m, Master)
}

// §6.4.2: without preemption, a lower-priority master is accepted.
func TestBackupNoPreemptAcceptsLower(t *testing.T) {
	m := newM(200, false)
	m.Startup(t0)
	m.HandleAdvert(at(time.Second), upperIP, adv(100, 100))
	if want := at(time.Second).Add(masterDownInterval(200, 100)); m.NextDeadline() != want {
		t.Fatalf("master down at %s, want %s", m.NextDeadline().Sub(t0), want.Sub(t0))
	}
}

// preempt_delay: a lower master is accepted until the delay has passed
// since it was first seen, then preempted.
func TestBackupPreemptDelay(t *testing.T) {
	m := NewMachine(MachineConfig{Priority: 200, Interval: 100, Preempt: true, PreemptDelay: 5 * time.Second, LocalAddr: local})
	m.Startup(t0)
	for s := 1; s <= 4; s++ {
		m.HandleAdvert(at(time.Duration(s)*time.Second), upperIP, adv(100, 100))
		m.Tick(at(time.Duration(s)*time.Second + 500*time.Millisecond))
		wantState(t, m, Backup)
	}
	last := m.NextDeadline()
	m.HandleAdvert(at(6*time.Second), upperIP, adv(100, 100)) // delay over: discarded
	if m.NextDeadline() != last {
		t.Fatal("advert accepted after preempt_delay ran out")
	}
	wantActs(t, m.Tick(last), ActSendAdvert, ActTakeover)
}

// §6.4.3: Master, Adver_Timer fires → advert, timer reset.
func TestMasterAdverTimer(t *testing.T) {
	m := newM(255, true)
	m.Startup(t0)
	wantActs(t, m.Tick(at(999*time.Millisecond)))
	wantActs(t, m.Tick(at(time.Second)), ActSendAdvert)
	if m.NextDeadline() != at(2*time.Second) {
		t.Fatalf("adver timer at %s, want 2s", m.NextDeadline().Sub(t0))
	}
}

// §6.4.3: Master, Shutdown → priority-0 advert, VIPs released, Initialize.
func TestMasterShutdown(t *testing.T) {
	m := newM(255, true)
	m.Startup(t0)
	wantActs(t, m.Shutdown(at(time.Second)), ActSendResign, ActRelease)
	wantState(t, m, Initialize)
}

// §6.4.3: Master, priority-0 advert → send an advert at once.
func TestMasterPriorityZero(t *testing.T) {
	m := newM(255, true)
	m.Startup(t0)
	wantActs(t, m.HandleAdvert(at(300*time.Millisecond), upperIP, adv(0, 100)), ActSendAdvert)
	wantState(t, m, Master)
	if m.NextDeadline() != at(1300*time.Millisecond) {
		t.Fatalf("adver timer at %s, want reset to 1.3s", m.NextDeadline().Sub(t0))
	}
}

// §6.4.3: Master steps down for a higher priority, or an equal one from a
// greater primary address; otherwise it keeps mastership and answers the
// losing master at once (a split brain healing).
func TestMasterPreempted(t *testing.T) {
	cases := []struct {
		name     string
		prio     uint8
		src      netip.Addr
		stepDown bool
	}{
		{"higher", 200, lowerIP, true},
		{"equal, greater address", 150, upperIP, true},
		{"equal, smaller address", 150, lowerIP, false},
		{"lower", 100, upperIP, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newM(150, true)
			m.Startup(t0)
			takeOver(t, m)
			now := at(5 * time.Second)
			got := m.HandleAdvert(now, c.src, adv(c.prio, 50))
			if !c.stepDown {
				// The other master loses: answered at once, VIPs re-announced.
				wantActs(t, got, ActSendAdvert, ActReassert)
				wantState(t, m, Master)
				return
			}
			wantActs(t, got, ActRelease, ActSendAdvert)
			wantState(t, m, Backup)
			if want := now.Add(masterDownInterval(150, 50)); m.NextDeadline() != want {
				t.Fatalf("master down at %s, want %s (learned interval)", m.NextDeadline().Sub(t0), want.Sub(t0))
			}
		})
	}
}

// Priority changes at run time: a Master advertises the new value at once;
// a Backup computes Skew_Time from it.
func TestSetPriority(t *testing.T) {
	m := newM(255, true)
	m.Startup(t0)
	wantActs(t, m.SetPriority(at(100*time.Millisecond), 50), ActSendAdvert)
	if m.Priority() != 50 {
		t.Fatalf("priority %d, want 50", m.Priority())
	}
	if _, p := m.MasterAddr(); p != 50 {
		t.Fatalf("master priority %d, want 50", p)
	}
	wantActs(t, m.SetPriority(at(200*time.Millisecond), 0)) // 0 is not a priority
	wantActs(t, m.SetPriority(at(200*time.Millisecond), 50))

	// A Backup's running master-down timer follows its new priority.
	r := newM(1, true)
	r.Startup(t0) // master down at 3×1 s + 99 cs
	r.SetPriority(at(500*time.Millisecond), 250)
	if want := t0.Add(masterDownInterval(250, 100)); r.NextDeadline() != want {
		t.Fatalf("master down after raising priority: %s, want %s", r.NextDeadline().Sub(t0), want.Sub(t0))
	}

	b := newM(100, true)
	b.Startup(t0)
	b.SetPriority(t0, 250)
	b.HandleAdvert(at(time.Second), upperIP, adv(0, 100))
	if want := at(time.Second).Add(SkewTime(250, 100)); b.NextDeadline() != want {
		t.Fatalf("skew after raising priority: %s, want %s", b.NextDeadline().Sub(t0), want.Sub(t0))
	}
}

// Events that do not apply to a state change nothing.
func TestIgnoredEvents(t *testing.T) {
	m := newM(100, true)
	wantActs(t, m.HandleAdvert(t0, upperIP, adv(200, 100))) // Initialize ignores adverts
	wantState(t, m, Initialize)
	wantActs(t, m.Tick(at(time.Hour)))
	m.Startup(t0)
	wantActs(t, m.Startup(t0)) // second Startup is a no-op
	wantState(t, m, Backup)
}

// A master answers other speakers out of turn at most once per advert
// interval to priority-0 adverts and claimAdverts times to lower-priority
// ones, whatever arrives: over any flood (every spacing, both kinds) it
// sends at most twice, or claimAdverts+1 times, its own advert rate, and
// never stops its own adverts.
func TestMasterAnswersBoundedPerInterval(t *testing.T) {
	for _, prio := range []uint8{0, 100} {
		for _, every := range []time.Duration{time.Millisecond, 10 * time.Millisecond, 300 * time.Millisecond, time.Second} {
			m := newM(200, true)
			m.Startup(t0)
			takeOver(t, m)
			start := m.NextDeadline().Add(-time.Second)
			sent, now := 1, start
			for now.Before(start.Add(10 * time.Second)) {
				now = now.Add(every)
				for !m.NextDeadline().After(now) {
					for _, a := range m.Tick(m.NextDeadline()) {
						if a == ActSendAdvert {
							sent++
						}
					}
				}
				for _, a := range m.HandleAdvert(now, lowerIP, adv(prio, 100)) {
					if a == ActSendAdvert {
						sent++
					}
				}
				wantState(t, m, Master)
			}
			// 10 s at 1 s adverts: 11 of its own at most, and claimAdverts
			// answers in each of its intervals.
			most := 22
			if prio != 0 {
				most = 11 * (claimAdverts + 1)
			}
			if sent > most || sent < 10 {
				t.Errorf("priority %d every %s: %d adverts in 10 s, want 10..%d", prio, every, sent, most)
			}
		}
	}
}

// A backup that finds the master silent claims the router before it takes
// the VIPs: a master that was only unheard (its adverts lost) answers, and
// the claimant steps down having taken and announced nothing.
func TestClaimAnsweredTakesNothing(t *testing.T) {
	m := newM(100, true)
	m.Startup(t0)
	wantActs(t, m.HandleAdvert(at(time.Second), upperIP, adv(200, 100)))
	down := m.NextDeadline()
	wantActs(t, m.Tick(down), ActSendAdvert)
	// A lower speaker is answered, with nothing to re-announce yet.
	wantActs(t, m.HandleAdvert(down.Add(time.Millisecond), lowerIP, adv(50, 100)), ActSendAdvert)
	wantActs(t, m.HandleAdvert(down.Add(2*time.Millisecond), upperIP, adv(200, 100)))
	wantState(t, m, Backup)
	if m.Holds() {
		t.Fatal("a backup holds")
	}
	if want := down.Add(2*time.Millisecond + masterDownInterval(100, 100)); m.NextDeadline() != want {
		t.Fatalf("master down at %s, want %s", m.NextDeadline().Sub(t0), want.Sub(t0))
	}
	// Shut down mid-claim: it resigns, with nothing to release.
	m2 := newM(100, true)
	m2.Startup(t0)
	m2.Tick(m2.NextDeadline())
	wantActs(t, m2.Shutdown(m2.NextDeadline()), ActSendResign)
}

// Only a silent master is claimed: a backup that preempts a lower master
// (it discards that master's adverts), or follows a master's resignation,
// takes the VIPs at once.
func TestPreemptAndResignTakeOverAtOnce(t *testing.T) {
	m := newM(200, true)
	m.Startup(t0)
	wantActs(t, m.HandleAdvert(at(time.Second), upperIP, adv(100, 100))) // discarded
	wantActs(t, m.Tick(m.NextDeadline()), ActSendAdvert, ActTakeover)
	if !m.Holds() {
		t.Fatal("a preempting backup does not hold at once")
	}
	m = newM(100, true)
	m.Startup(t0)
	wantActs(t, m.HandleAdvert(at(time.Second), upperIP, adv(200, 100)))
	wantActs(t, m.HandleAdvert(at(2*time.Second), upperIP, adv(0, 100)))
	wantActs(t, m.Tick(m.NextDeadline()), ActSendAdvert, ActTakeover)
	// A master heard again after a resignation is a master like any.
	m = newM(100, true)
	m.Startup(t0)
	wantActs(t, m.HandleAdvert(at(time.Second), upperIP, adv(0, 100)))
	wantActs(t, m.HandleAdvert(at(1100*time.Millisecond), upperIP, adv(200, 100)))
	wantActs(t, m.Tick(m.NextDeadline()), ActSendAdvert)
}

// A master answers each claim of a backup that found it silent, up to
// claimAdverts in one of its advert intervals: every claim has its chance.
func TestMasterAnswersEveryClaim(t *testing.T) {
	m := newM(200, true)
	m.Startup(t0)
	takeOver(t, m)
	now := m.NextDeadline().Add(-500 * time.Millisecond)
	step := ClaimWindow(100) / claimAdverts
	for i := range claimAdverts {
		wantActs(t, m.HandleAdvert(now.Add(time.Duration(i)*step), lowerIP, adv(100, 100)), ActSendAdvert, ActReassert)
	}
	wantActs(t, m.HandleAdvert(now.Add(claimAdverts*step), lowerIP, adv(100, 100)), ActReassert)
}

// masterDownInterval is RFC 5798's 3 * Master_Adver_Interval + Skew_Time,
// computed apart from the machine's own.
func masterDownInterval(priority uint8, masterAdverInterval uint16) time.Duration {
	return cs(3*int(masterAdverInterval)) + SkewTime(priority, masterAdverInterval)
}
