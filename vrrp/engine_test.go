package vrrp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
)

type everySecond struct{}

func (everySecond) Next(_ netip.Addr, t time.Time) time.Time {
	return t.Truncate(time.Second).Add(time.Second)
}

func v3cfg() Config {
	return Config{Version: 3, AdvertInterval: 100 * time.Millisecond, VRIDBase: 10}.WithDefaults()
}

func TestEngineElectsAndFailsOver(t *testing.T) {
	s := newSim(t)
	a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: v3cfg(), stale: true})
	b := s.start("192.0.2.12", nodeOpts{prio: 100, cfg: v3cfg()})
	if a.kernel.holds(testVIP.Addr()) {
		t.Fatal("a VIP left by an earlier run was not removed at start")
	}
	// a's master-down interval: 3×10 + (256-200)×10/256 = 32 cs.
	s.run(310 * time.Millisecond)
	if a.kernel.holds(testVIP.Addr()) {
		t.Fatal("a took over before its master-down interval (320ms)")
	}
	// Nobody answers its claim (ClaimWindow: 25 ms at 100 ms adverts).
	s.run(10*time.Millisecond + ClaimWindow(10) - time.Millisecond)
	if a.kernel.holds(testVIP.Addr()) {
		t.Fatal("a took the VIP before its claim ran out (345ms)")
	}
	s.run(time.Millisecond)
	if !a.kernel.holds(testVIP.Addr()) || b.kernel.holds(testVIP.Addr()) {
		t.Fatalf("at 345ms: a holds %v, b holds %v; want a only", a.kernel.holds(testVIP.Addr()), b.kernel.holds(testVIP.Addr()))
	}
	s.run(3655 * time.Millisecond) // to t0+4s
	ann := slices.Clone(a.kernel.announced)
	if len(ann) != 3 {
		t.Fatalf("takeover burst announced %d times, want garp.count = 3", len(ann))
	}
	for i := 1; i < len(ann); i++ {
		if gap := ann[i].Sub(ann[i-1]); gap != 1100*time.Millisecond {
			t.Fatalf("burst gap %s, want garp.interval 1.1s", gap)
		}
	}
	// a advertised at 320ms, claimed claimAdverts-1 times more until
	// 345ms, and then every 100ms up to 4s: 37 adverts and the claims.
	if got, want := b.metrics.AdvertsRecv.WithLabelValues("ipv4", "10").Value(), float64(37+claimAdverts-1); got != want {
		t.Fatalf("b received %v adverts from a in its 3.68s as master at 100ms, want %v", got, want)
	}

	// a shuts down: it resigns, so b takes over after its skew time
	// ((256-100)×10/256 = 6 cs), not after the 3.6×interval master-down.
	s.stop(a)
	if a.kernel.holds(testVIP.Addr()) {
		t.Fatal("a kept the VIP after shutdown")
	}
	if last := a.port.sent[len(a.port.sent)-1]; last.Priority != 0 {
		t.Fatalf("a's last advert has priority %d, want 0 (resign)", last.Priority)
	}
	s.run(50 * time.Millisecond)
	if b.kernel.holds(testVIP.Addr()) {
		t.Fatal("b took over before its skew time (60ms)")
	}
	s.run(10 * time.Millisecond)
	if !b.kernel.holds(testVIP.Addr()) {
		t.Fatal("b did not take over at the skew time of a's priority-0 advert")
	}
}

// A killed master (no priority-0 advert) is replaced after the backup's
// master-down interval, 3×10 + (256-100)×10/256 = 36 cs, and its claim.
func TestEngineMasterDown(t *testing.T) {
	s := newSim(t)
	a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: v3cfg()})
	b := s.start("192.0.2.12", nodeOpts{prio: 100, cfg: v3cfg()})
	s.run(time.Second)
	if !a.kernel.holds(testVIP.Addr()) {
		t.Fatal("a is not master")
	}
	lastAdvert := a.port.last
	a.running, a.port.up = false, false
	s.run(lastAdvert.Add(350 * time.Millisecond).Sub(s.clk.Now()))
	if b.kernel.holds(testVIP.Addr()) {
		t.Fatal("b took over before master-down (360ms after a's last advert)")
	}
	s.run(10 * time.Millisecond)
	if b.kernel.holds(testVIP.Addr()) {
		t.Fatal("b took the VIP at master-down, before its claim")
	}
	s.run(ClaimWindow(10))
	if !b.kernel.holds(testVIP.Addr()) {
		t.Fatal("b did not take over at master-down and its claim")
	}
}

// peerSrc is the source of adverts the tests inject, as from another router.
var peerSrc = netip.MustParseAddr("192.0.2.50")

func encodeFrom(t *testing.T, a Advert) []byte {
	t.Helper()
	b, err := Encode(a, peerSrc, GroupV4)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEngineDropsInvalid(t *testing.T) {
	s := newSim(t)
	n := s.start("192.0.2.11", nodeOpts{prio: 100, cfg: v3cfg()})
	high := Advert{Version: 3, VRID: 10, Priority: 250, Interval: 10, Addresses: []netip.Addr{testVIP.Addr()}}
	foreign := high
	foreign.Addresses = []netip.Addr{netip.MustParseAddr("192.0.2.201")}
	other := high
	other.VRID = 99
	send := func(a Advert, ttl int) {
		s.inject(n, Packet{Payload: encodeFrom(t, a), Src: peerSrc, Dst: GroupV4, TTL: ttl})
	}
	send(high, 64)
	send(foreign, 255)
	send(foreign, 255)
	send(other, 255)
	s.inject(n, Packet{Payload: []byte{0x31}, Src: peerSrc, Dst: GroupV4, TTL: 255})
	for reason, want := range map[string]float64{"bad_ttl": 1, "vip_mismatch": 2, "unknown_vrid": 1, "too_short": 1} {
		if got := testutil.ToFloat64(n.metrics.Dropped.WithLabelValues("ipv4", reason)); got != want {
			t.Errorf("dropped %s: %v, want %v", reason, got, want)
		}
	}
	if got := n.metrics.Collisions.WithLabelValues("ipv4", "10").Value(); got != 2 {
		t.Errorf("collisions %v, want 2 (one per foreign advert)", got)
	}
	// None of them counted as a master: the node still takes over.
	s.run(400 * time.Millisecond)
	if !n.kernel.holds(testVIP.Addr()) {
		t.Fatal("invalid adverts kept the node from becoming master")
	}
}

func TestEngineV2Auth(t *testing.T) {
	s := newSim(t)
	cfg := Config{Version: 2, AdvertInterval: time.Second, AuthPass: "s3cret"}.WithDefaults()
	n := s.start("192.0.2.11", nodeOpts{prio: 100, cfg: cfg})
	send := func(a Advert) {
		s.inject(n, Packet{Payload: encodeFrom(t, a), Src: peerSrc, Dst: GroupV4, TTL: 255})
	}
	base := Advert{Version: 2, VRID: 10, Priority: 200, Interval: 100, AuthType: AuthPassword,
		AuthData: PasswordData("s3cret"), Addresses: []netip.Addr{testVIP.Addr()}}
	wrong := base
	wrong.AuthData = PasswordData("nope")
	slow := base
	slow.Interval = 200
	send(wrong)
	send(slow)
	send(base)
	if got := testutil.ToFloat64(n.metrics.Dropped.WithLabelValues("ipv4", "auth_mismatch")); got != 1 {
		t.Errorf("auth_mismatch drops %v, want 1", got)
	}
	if got := testutil.ToFloat64(n.metrics.Dropped.WithLabelValues("ipv4", "interval_mismatch")); got != 1 {
		t.Errorf("interval_mismatch drops %v, want 1", got)
	}
	if got := n.metrics.AdvertsRecv.WithLabelValues("ipv4", "10").Value(); got != 1 {
		t.Errorf("accepted %v adverts, want 1", got)
	}
}

// A master re-announces its VIP on the refresh schedule after the takeover
// burst; leaving master withdraws what is queued and stops the refresh.
func TestEngineRefresh(t *testing.T) {
	s := newSim(t)
	a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: v3cfg(), refresh: everySecond{}})
	s.run(10 * time.Second)
	// Master at 0.32 s; the burst ends at 0.32 + 2×1.1 = 2.52 s; then the
	// refresh fires on every whole second: 3 s … 10 s.
	if got := len(a.kernel.refreshed); got != 8 {
		t.Fatalf("%d refreshes in the first 10s with a 1s schedule, want 8 (3s..10s)", got)
	}
	if first, lastBurst := a.kernel.refreshed[0], a.kernel.announced[len(a.kernel.announced)-1]; first.Before(lastBurst) {
		t.Fatalf("refresh at %s before the burst ended at %s", first.Sub(t0), lastBurst.Sub(t0))
	}
	// A higher-priority peer appears: a steps down.
	s.start("192.0.2.12", nodeOpts{prio: 250, cfg: v3cfg()})
	s.run(time.Second)
	if a.kernel.holds(testVIP.Addr()) {
		t.Fatal("a still holds the VIP after a higher peer took over")
	}
	before, withdrawn := len(a.kernel.refreshed), a.kernel.withdrawn
	s.run(5 * time.Second)
	if after := len(a.kernel.refreshed); withdrawn == 0 || after != before {
		t.Fatalf("after stepping down: %d withdrawals, %d more refreshes; want ≥1 and 0", withdrawn, after-before)
	}
}

// chanPort is a Transport for the Run loop test: packets arrive on a
// channel, sent adverts are recorded.
type chanPort struct {
	src  netip.Addr
	ch   chan []Packet
	sent chan Advert
}

func (p *chanPort) Destinations(bool) []netip.Addr { return []netip.Addr{GroupV4} }
func (p *chanPort) SendBatch(_ bool, _ Via, msgs []Outgoing) error {
	for _, m := range msgs {
		adv, err := decodeSent(p.src, m)
		if err != nil {
			return err
		}
		select {
		case p.sent <- adv:
		default: // the test reads only the first few and the last
		}
	}
	return nil
}
func (p *chanPort) OpenVia(bool, string) (Via, error) { return nil, nil }
func (p *chanPort) Source(bool) netip.Addr            { return p.src }
func (p *chanPort) Packets() <-chan []Packet          { return p.ch }
func (p *chanPort) Close() error                      { return nil }
func (p *chanPort) SetPeers([]netip.Addr)             {}

// Run, the real loop on the real clock: an address owner (priority 255)
// is master at once, answers Status, and on cancel resigns with a
// priority-0 advert and removes its VIP before Run returns.
func TestEngineRun(t *testing.T) {
	port := &chanPort{src: netip.MustParseAddr("192.0.2.11"), ch: make(chan []Packet), sent: make(chan Advert, 1000)}
	k := &fakeKernel{vips: map[netip.Addr]bool{}, clock: SystemClock{}}
	e, err := NewEngine(v3cfg(), GARPConfig{Count: 1, Interval: time.Second},
		[]RouterSpec{{VRID: 10, VIPs: []netip.Prefix{testVIP}, Priority: 255}},
		Deps{Transport: port, Addresses: k, Announcer: k, Log: zerolog.Nop(), Metrics: NewMetrics(prometheus.NewRegistry())})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	st := e.Status(ctx)
	if len(st) != 1 || st[0].State != "master" || !k.holds(testVIP.Addr()) {
		t.Fatalf("address owner after start: %+v, holds VIP %v; want master holding it", st, k.holds(testVIP.Addr()))
	}
	select {
	case a := <-port.sent:
		if a.Priority != 255 {
			t.Fatalf("first advert priority %d, want 255", a.Priority)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no advert in 10s")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if k.holds(testVIP.Addr()) {
		t.Fatal("VIP left behind after Run returned")
	}
	var last Advert
	for len(port.sent) > 0 {
		last = <-port.sent
	}
	if last.Priority != 0 {
		t.Fatalf("last advert priority %d, want 0 (resign)", last.Priority)
	}
	if _, _, err := e.Wave(context.Background(), nil); err == nil {
		t.Fatal("Wave on a stopped engine did not fail")
	}
}

// A split brain heals on the router too: after a partition both nodes are
// master; when they hear each other again the lower one steps down and the
// higher one re-announces the VIP at once (the router may hold the lower
// one's MAC), whichever advert crosses the healed link first, and once
// more if the lower one claimed again after that. Healing at
// every 10 ms of the advert interval covers both orders.
func TestEngineSplitBrainHeals(t *testing.T) {
	for off := time.Duration(0); off < 100*time.Millisecond; off += 10 * time.Millisecond {
		s := newSim(t)
		a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: v3cfg()})
		b := s.start("192.0.2.12", nodeOpts{prio: 100, cfg: v3cfg()})
		a.port.up, b.port.up = false, false // the partition
		s.run(4*time.Second + off)          // past the takeover bursts
		if !a.kernel.holds(testVIP.Addr()) || !b.kernel.holds(testVIP.Addr()) {
			t.Fatalf("partitioned: a holds %v, b holds %v; want both", a.kernel.holds(testVIP.Addr()), b.kernel.holds(testVIP.Addr()))
		}
		before := len(a.kernel.announced)
		a.port.up, b.port.up = true, true
		s.run(150 * time.Millisecond)
		if b.kernel.holds(testVIP.Addr()) {
			t.Fatalf("heal at +%s: b still holds the VIP 150 ms after the partition ended", off)
		}
		if n := len(a.kernel.announced) - before; n != 1 {
			t.Fatalf("heal at +%s: a re-announced %d times within 150 ms, want once", off, n)
		}
		s.run(3 * time.Second)
		n := len(a.kernel.announced) - before
		if n > 2 || !a.kernel.holds(testVIP.Addr()) {
			t.Fatalf("heal at +%s: %d re-announcements in 3 s (a holds: %v), want 1, or 2 when b's adverts crossed a's", off, n, a.kernel.holds(testVIP.Addr()))
		}
		if last := a.kernel.announced[len(a.kernel.announced)-1]; last.Before(b.port.last) {
			t.Fatalf("heal at +%s: a's last re-announcement (%s) comes before b's last advert (%s)", off, last, b.port.last)
		}
	}
}

// testAdvert is a received VRRPv3 advert for testVIP's router (VRID 10,
// 100 ms) from src at prio, as a test injects it.
func testAdvert(t *testing.T, src string, prio uint8) Packet {
	t.Helper()
	from := netip.MustParseAddr(src)
	b, err := Encode(Advert{Version: 3, VRID: 10, Priority: prio, Interval: 10, Addresses: []netip.Addr{testVIP.Addr()}}, from, GroupV4)
	if err != nil {
		t.Fatal(err)
	}
	return Packet{Payload: b, Src: from, Dst: GroupV4, TTL: 255}
}

// However many losing adverts arrive (another master, or a spoofer), the
// master answers each but re-announces at most once a second.
func TestEngineReassertRateLimit(t *testing.T) {
	s := newSim(t)
	a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: v3cfg()})
	s.run(5 * time.Second) // master, past its takeover burst
	before, sentBefore := len(a.kernel.announced), len(a.port.sent)
	for range 20 {
		s.inject(a, testAdvert(t, "192.0.2.66", 100))
		s.run(50 * time.Millisecond)
	}
	// 20 adverts over 1 s: one re-announcement at the first, one a second later.
	if n := len(a.kernel.announced) - before; n != 1 && n != 2 {
		t.Fatalf("%d re-announcements for 20 losing adverts in 1 s, want at most 2", n)
	}
	if n := len(a.port.sent) - sentBefore; n < 20 {
		t.Fatalf("%d adverts sent for 20 losing adverts, want each answered", n)
	}
}

// A contest that outlasts the rate limit (another master that keeps
// claiming, as one with a stale plan does until it re-plans) ends with one
// more re-announcement once the other has been quiet for three advert
// intervals, so the router's last word is the master's, whenever in the
// interval the other stops: the other's own announcements end within an
// advert interval of its last advert.
func TestEngineReassertsAfterContest(t *testing.T) {
	for _, adverts := range []int{1, 2, 7, 15, 25} {
		s := newSim(t)
		a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: v3cfg()})
		s.run(5 * time.Second) // master, past its takeover burst
		before := len(a.kernel.announced)
		var lastClaim time.Time
		for range adverts {
			s.inject(a, testAdvert(t, "192.0.2.12", 100))
			lastClaim = s.clk.Now()
			s.run(100 * time.Millisecond)
		}
		s.run(3 * time.Second)
		got := a.kernel.announced[before:]
		if len(got) == 0 {
			t.Fatalf("%d claims: no re-announcement", adverts)
		}
		last := got[len(got)-1]
		switch {
		case adverts == 1 && len(got) != 1:
			t.Errorf("1 claim: %d re-announcements, want 1 (nothing held back)", len(got))
		case adverts > 1 && last.Sub(lastClaim) < 300*time.Millisecond:
			t.Errorf("%d claims: last re-announcement %s after the last claim, want ≥ 3 advert intervals", adverts, last.Sub(lastClaim))
		case len(got) > adverts/10+2:
			t.Errorf("%d claims over %s: %d re-announcements, want about one a second", adverts, time.Duration(adverts)*100*time.Millisecond, len(got))
		}
	}
}

// Every change of master shows as an event naming the VIP (acquired on
// the new master, released on the old), and a non-member's or a
// colliding router's adverts as one warning per source, however many.
func TestEngineEvents(t *testing.T) {
	var events []string
	sink := func(name string) EventSink {
		return func(warning bool, reason, message string) {
			events = append(events, fmt.Sprintf("%s %v %s: %s", name, warning, reason, message))
		}
	}
	s := newSim(t)
	a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: v3cfg(), events: sink("a")})
	s.start("192.0.2.12", nodeOpts{prio: 100, cfg: v3cfg(), events: sink("b")})
	s.run(2 * time.Second)
	adm := NewAdmission()
	adm.Allow(netip.MustParseAddr("192.0.2.12"), false, 10, 250)
	a.eng.setAdmission(adm)
	for range 3 {
		s.inject(a, testAdvert(t, "192.0.2.66", 254))
		s.run(100 * time.Millisecond)
	}
	s.stop(a) // a shuts down: b takes over
	s.run(2 * time.Second)
	want := []string{
		"a false VIPAcquired: acquired 192.0.2.101: master of VRRP ipv4/10",
		"a true NonMemberAdverts: 192.0.2.66, not a member, sends VRRP ipv4/10 adverts for our VIPs: stop it (a keepalived with the same VRIDs?) or make it a member",
		"a false VIPReleased: released 192.0.2.101: no longer master of VRRP ipv4/10",
		"b false VIPAcquired: acquired 192.0.2.101: master of VRRP ipv4/10",
	}
	if !slices.Equal(events, want) {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(events, "\n"), strings.Join(want, "\n"))
	}
}

// In dynamic mode only members count, at most at their planned priority: a
// speaker outside the cluster at priority 254 takes nothing, a member above
// its plan is ignored, and a plan change in flight is tolerated for
// admissionGrace. Rejections are counted by reason, and logged once per
// source however many sources there are.
func TestEngineAdmission(t *testing.T) {
	s := newSim(t)
	a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: v3cfg()})
	member, rogue := netip.MustParseAddr("192.0.2.12"), netip.MustParseAddr("192.0.2.66")
	adm := NewAdmission()
	adm.Allow(member, false, 10, 150)
	a.eng.setAdmission(adm)
	s.run(time.Second) // a is master
	advert := func(src netip.Addr, prio uint8) Packet { return testAdvert(t, src.String(), prio) }
	dropped := func(reason string) float64 {
		return testutil.ToFloat64(a.metrics.Dropped.WithLabelValues("ipv4", reason))
	}
	for range 5 {
		s.inject(a, advert(rogue, 254))
		s.inject(a, advert(member, 250))
		s.run(100 * time.Millisecond)
	}
	if !a.kernel.holds(testVIP.Addr()) {
		t.Fatal("a non-member at 254 or a member above its plan took the VIP")
	}
	if dropped("not_member") != 5 || dropped("priority_above_plan") != 5 {
		t.Fatalf("dropped not_member %v, priority_above_plan %v; want 5 each", dropped("not_member"), dropped("priority_above_plan"))
	}
	// The plan changes: the member may now use 250. Until the grace ends
	// the old admission counts too; the new one alone admits it after.
	next := NewAdmission()
	next.Allow(member, false, 10, 250)
	a.eng.setAdmission(next)
	s.inject(a, advert(member, 250))
	s.deliver()
	if a.kernel.holds(testVIP.Addr()) {
		t.Fatal("the member at its new planned priority 250 did not take over")
	}
	// The member leaves the plan: its adverts count for the grace, then not.
	a.eng.setAdmission(NewAdmission())
	for range 120 { // adverts every 100 ms for 12 s
		s.inject(a, advert(member, 250))
		s.run(100 * time.Millisecond)
		if at := s.clk.Now(); a.kernel.holds(testVIP.Addr()) && at.Before(a.eng.prevUntil) {
			t.Fatalf("a took over %s into the grace: the previous admission did not count", admissionGrace-a.eng.prevUntil.Sub(at))
		}
	}
	if !a.kernel.holds(testVIP.Addr()) {
		t.Fatal("a did not take over once the grace ended and the member's adverts no longer counted")
	}
	// A spoofer with many sources: memory for logging stays bounded.
	for i := range 3 * maxLoggedSources {
		s.inject(a, advert(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 254))
	}
	if len(a.eng.rejected.seen) > maxLoggedSources+1 {
		t.Fatalf("%d sources remembered, want at most %d", len(a.eng.rejected.seen), maxLoggedSources+1)
	}
}

// A non-member that claims a virtual router at or above the master's
// priority no longer hears its adverts: they go to the members alone
// until it has been quiet for membersOnlyFor. One below the master's
// priority yields to multicast adverts, so they stay multicast.
func TestEngineMembersOnlyAgainstNonMember(t *testing.T) {
	s := newSim(t)
	a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: v3cfg()})
	b := s.start("192.0.2.12", nodeOpts{prio: 100, cfg: v3cfg()})
	rogue := s.wire.port("192.0.2.66") // no engine: it only listens
	for _, n := range []*simNode{a, b} {
		adm := NewAdmission()
		adm.Allow(netip.MustParseAddr("192.0.2.11"), false, 10, 200)
		adm.Allow(netip.MustParseAddr("192.0.2.12"), false, 10, 100)
		n.eng.setAdmission(adm)
	}
	s.run(time.Second)
	if !a.kernel.holds(testVIP.Addr()) {
		t.Fatal("a is not master")
	}
	heard := func(p *simPort) int {
		n := len(p.inbox)
		p.inbox = nil
		return n
	}
	heard(rogue)
	heard(b.port)
	// 2 s of a non-member below a's priority: a's adverts stay multicast.
	for range 20 {
		s.inject(a, testAdvert(t, "192.0.2.66", 150))
		s.run(100 * time.Millisecond)
	}
	if n := heard(rogue); n < 15 {
		t.Fatalf("a non-member below the master's priority heard %d adverts in 2 s, want about 20 (multicast)", n)
	}
	// 5 s of one at 254: after its first advert, a's go to b alone.
	for range 50 {
		s.inject(a, testAdvert(t, "192.0.2.66", 254))
		s.inject(b, testAdvert(t, "192.0.2.66", 254))
		s.run(100 * time.Millisecond)
		if n := heard(rogue); n != 0 {
			t.Fatalf("the non-member at 254 heard %d adverts from a", n)
		}
	}
	if !a.kernel.holds(testVIP.Addr()) || b.kernel.holds(testVIP.Addr()) {
		t.Fatal("a lost the VIP, or b took it: b no longer hears a's adverts")
	}
	// It goes quiet: a's adverts reach it again once membersOnlyFor passed.
	s.run(membersOnlyFor - 200*time.Millisecond)
	if n := heard(rogue); n != 0 {
		t.Fatalf("the non-member heard %d adverts before membersOnlyFor passed", n)
	}
	s.run(time.Second)
	if n := heard(rogue); n < 5 {
		t.Fatalf("%d adverts reached the group in the second after membersOnlyFor, want about 10", n)
	}
}

// Link down: the master releases its VIP and the backup takes over; link
// up: it starts as a backup and, with the higher priority, wins the VIP
// back (re-adding it: the kernel flushes IPv6 VIPs on link down). A VIP
// someone removes from a master is added back and announced.
func TestEngineLinkAndAddressEvents(t *testing.T) {
	s := newSim(t)
	a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: v3cfg()})
	b := s.start("192.0.2.12", nodeOpts{prio: 100, cfg: v3cfg()})
	s.run(time.Second)
	if !a.kernel.holds(testVIP.Addr()) {
		t.Fatal("a is not master")
	}
	a.eng.setLink(false)
	a.port.up = false // down: it hears nothing
	if a.kernel.holds(testVIP.Addr()) || a.eng.routers[routerKey{vrid: 10}].m.State() != Initialize {
		t.Fatal("link down: a kept its VIP or left Initialize")
	}
	s.run(time.Second)
	if !b.kernel.holds(testVIP.Addr()) {
		t.Fatal("b did not take over while a's link was down")
	}
	a.port.up = true
	a.eng.setLink(true)
	if st := a.eng.routers[routerKey{vrid: 10}].m.State(); st != Backup {
		t.Fatalf("link up: a is %s, want backup", st)
	}
	s.run(time.Second)
	if !a.kernel.holds(testVIP.Addr()) || b.kernel.holds(testVIP.Addr()) {
		t.Fatal("after link up a did not win its VIP back")
	}

	a.kernel.DelVIP(testVIP) // an operator's ip addr del
	before := len(a.kernel.announced)
	a.eng.addressRemoved(testVIP.Addr())
	if !a.kernel.holds(testVIP.Addr()) || len(a.kernel.announced) != before+1 {
		t.Fatal("a VIP removed from the master was not added back and announced")
	}
	b.kernel.DelVIP(testVIP)
	b.eng.addressRemoved(testVIP.Addr())
	if b.kernel.holds(testVIP.Addr()) {
		t.Fatal("a backup added a VIP back")
	}
}

// Another MAC announcing a VIP this node is master for is answered after
// claimGrace (a member's after three advert intervals), at most once per
// defendEvery; a legitimate new master's advert, which comes before its
// announcement, makes the node step down within the grace, and then it
// answers nothing.
func TestEngineDefendsAgainstForeignClaims(t *testing.T) {
	s := newSim(t)
	a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: v3cfg()})
	s.run(5 * time.Second) // master, past its takeover burst
	rogueMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x66}
	memberMAC := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x12}
	// Static mode (no admission): the last announcement stands.
	before := len(a.kernel.announced)
	a.eng.foreignClaim(testVIP.Addr(), rogueMAC)
	s.run(time.Second)
	if n := len(a.kernel.announced) - before; n != 0 {
		t.Fatalf("static mode answered a claim %d times, want none", n)
	}
	adm := NewAdmission()
	adm.Allow(netip.MustParseAddr("192.0.2.12"), false, 10, 250)
	adm.AllowMAC(memberMAC)
	a.eng.setAdmission(adm)
	// A member's announcement while this node is still master (it was
	// master for a moment, and its claiming advert was lost): answered
	// once VRRP has had its say, three advert intervals later.
	at := s.clk.Now()
	a.eng.foreignClaim(testVIP.Addr(), memberMAC)
	s.run(time.Second)
	if n := len(a.kernel.announced) - before; n != 1 || a.kernel.announced[before].Sub(at) != 3*v3cfg().AdvertInterval {
		t.Fatalf("a member's announcement: %d answers (%v after it), want 1 after 3 advert intervals", n, a.kernel.announced[before:])
	}
	before++
	s.run(5 * time.Second) // past the back-off of that answer
	// Claims seconds apart (keepalived's takeover bursts): each answered
	// after claimGrace; the rest of a burst waits for that answer.
	for range 5 {
		at := s.clk.Now()
		for range 5 {
			a.eng.foreignClaim(testVIP.Addr(), rogueMAC)
		}
		s.run(5 * time.Second)
		if n := len(a.kernel.announced) - before; n != 1 {
			t.Fatalf("%d answers to a burst of 5 claims, want 1", n)
		}
		if d := a.kernel.announced[before].Sub(at); d != claimGrace {
			t.Fatalf("answer %s after the claim, want claimGrace %s", d, claimGrace)
		}
		before++
	}
	// A host that answers each of ours 50 ms later (another defender): the
	// answers back off to one per maxDefendEvery instead of 4 a second.
	var answers []time.Time
	for end := s.clk.Now().Add(2 * time.Minute); s.clk.Now().Before(end); {
		a.eng.foreignClaim(testVIP.Addr(), rogueMAC)
		for len(a.kernel.announced) == before && s.clk.Now().Before(end) {
			s.run(10 * time.Millisecond)
		}
		if len(a.kernel.announced) > before {
			answers = append(answers, a.kernel.announced[before])
			before = len(a.kernel.announced)
			s.run(50 * time.Millisecond)
		}
	}
	if n := len(answers); n > 12 {
		t.Fatalf("%d answers in 2 min of an ARP war, want at most 12 (backing off to every %s)", n, maxDefendEvery)
	}
	for i := 2; i < len(answers); i++ {
		if gap, prev := answers[i].Sub(answers[i-1]), answers[i-1].Sub(answers[i-2]); gap < prev || gap > maxDefendEvery {
			t.Fatalf("answer gaps %s then %s: want growing, at most %s", prev, gap, maxDefendEvery)
		}
	}
	if last := answers[len(answers)-1].Sub(answers[len(answers)-2]); last != maxDefendEvery {
		t.Fatalf("last gap %s, want %s", last, maxDefendEvery)
	}
	// The other host goes quiet (its last claim is answered when due); a
	// claim of its own later is answered after claimGrace again.
	s.run(maxDefendEvery + 5*time.Second)
	before = len(a.kernel.announced)
	at = s.clk.Now()
	a.eng.foreignClaim(testVIP.Addr(), rogueMAC)
	s.run(time.Second)
	if len(a.kernel.announced) != before+1 || a.kernel.announced[before].Sub(at) != claimGrace {
		t.Fatalf("after the war: %d answers, want 1 after claimGrace", len(a.kernel.announced)-before)
	}

	// A member the plan now ranks first takes over: advert first,
	// announcement next, within the grace.
	s.run(maxDefendEvery)
	before = len(a.kernel.announced)
	a.eng.foreignClaim(testVIP.Addr(), memberMAC)
	s.run(10 * time.Millisecond)
	s.inject(a, testAdvert(t, "192.0.2.12", 250))
	s.run(100 * time.Millisecond)
	if n := len(a.kernel.announced) - before; n != 0 || a.kernel.holds(testVIP.Addr()) {
		t.Fatalf("after a legitimate takeover: %d answers, holds %v; want none and released", n, a.kernel.holds(testVIP.Addr()))
	}
}

// A router in FAULT (a failing check that tracks it) resigns at once: a
// priority-0 advert, its VIP released, the backup master within skew
// time; status and the state metric say fault; the hooks hear every move
// in keepalived's words, STOP last; cleared, it preempts back.
func TestEngineFault(t *testing.T) {
	s := newSim(t)
	var heard []string
	n1 := s.start("192.0.2.1", nodeOpts{prio: 200, cfg: v3cfg(), notify: func(c StateChange) {
		heard = append(heard, c.From+">"+c.To+":"+c.Fault)
	}})
	n2 := s.start("192.0.2.2", nodeOpts{prio: 100, cfg: v3cfg()})
	s.run(5 * time.Second)
	if !n1.kernel.holds(testVIP.Addr()) {
		t.Fatal("n1 does not hold the VIP")
	}
	sentBefore := len(n1.port.sent)
	n1.eng.setFaults(map[RouterID]string{{VRID: 10}: "check api fails"})
	if got := n1.port.sent[len(n1.port.sent)-1]; len(n1.port.sent) != sentBefore+1 || got.Priority != 0 {
		t.Fatalf("entering FAULT sent %d adverts, last at priority %d; want one priority-0 advert", len(n1.port.sent)-sentBefore, got.Priority)
	}
	if n1.kernel.holds(testVIP.Addr()) {
		t.Fatal("n1 in FAULT still holds the VIP")
	}
	s.run(time.Second)
	if !n2.kernel.holds(testVIP.Addr()) {
		t.Fatal("n2 did not take over from the router in FAULT")
	}
	st := n1.eng.statusNow()
	if st[0].State != "fault" || st[0].Fault != "check api fails" {
		t.Fatalf("status %+v, want fault with why", st[0])
	}
	if v := n1.metrics.State.WithLabelValues("ipv4", "10", testVIP.Addr().String()).Value(); v != stateFault {
		t.Fatalf("garpd_vrrp_state %v, want %d", v, stateFault)
	}
	s.run(10 * time.Second)
	if n1.kernel.holds(testVIP.Addr()) {
		t.Fatal("n1 took the VIP back while in FAULT")
	}
	n1.eng.setFaults(nil)
	s.run(5 * time.Second)
	if !n1.kernel.holds(testVIP.Addr()) {
		t.Fatal("n1 did not preempt back after its fault cleared")
	}
	s.stop(n1)
	want := []string{"INIT>BACKUP:", "BACKUP>MASTER:", "MASTER>FAULT:check api fails", "FAULT>BACKUP:", "BACKUP>MASTER:", "MASTER>STOP:"}
	if !slices.Equal(heard, want) {
		t.Fatalf("hooks heard %v, want %v", heard, want)
	}
}

// A cause that fails every advert (an IPv6 source still tentative) is
// logged once per sendFailEvery, not once per advert: 30 s of 100 ms
// adverts that all fail log 3 lines, not 300.
func TestSendFailuresLoggedOncePerCause(t *testing.T) {
	s := newSim(t)
	var log bytes.Buffer
	n := s.start("192.0.2.1", nodeOpts{prio: 200, cfg: v3cfg(), log: &log})
	n.port.fail = errors.New("sendmsg: cannot assign requested address")
	s.run(30 * time.Second)
	if lines := strings.Count(log.String(), "cannot send advert"); lines < 1 || lines > 4 {
		t.Fatalf("%d log lines for 30 s of failing adverts, want 3 (once per %s)", lines, sendFailEvery)
	}
}

// With a quarter of the adverts each node receives lost, backups keep
// finding the master silent (three lost in a row) and become master; the
// master answers their claims, so they step down before taking the VIP:
// the router never learns a backup's MAC. Without the claim every such
// backup announced the VIP, and the master re-announced it.
func TestLossyBackupsClaimAndStepDown(t *testing.T) {
	s := newSim(t)
	a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: v3cfg()})
	b := s.start("192.0.2.12", nodeOpts{prio: 150, cfg: v3cfg()})
	c := s.start("192.0.2.13", nodeOpts{prio: 50, cfg: v3cfg()})
	s.run(2 * time.Second)
	if !a.kernel.holds(testVIP.Addr()) {
		t.Fatal("a is not master")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range s.nodes {
		n.port.lose = func() bool { return rng.IntN(4) == 0 }
	}
	masters := func() float64 {
		var sum float64
		for _, n := range []*simNode{b, c} {
			sum += n.metrics.Transitions.WithLabelValues("ipv4", "10", "master").Value()
		}
		return sum
	}
	before, announced := masters(), len(b.kernel.announced)+len(c.kernel.announced)
	for range 300 {
		s.run(100 * time.Millisecond)
		if b.kernel.holds(testVIP.Addr()) || c.kernel.holds(testVIP.Addr()) {
			t.Fatalf("at %s a backup holds the VIP", s.clk.Now().Sub(t0))
		}
	}
	claims := masters() - before
	if claims < 3 {
		t.Fatalf("backups became master %v times in 30 s of 25 %% loss: the test exercises nothing", claims)
	}
	if got := len(b.kernel.announced) + len(c.kernel.announced) - announced; got != 0 {
		t.Fatalf("backups announced the VIP %d times", got)
	}
	t.Logf("backups claimed %v times, took nothing", claims)
}

// A refused advert above the master's priority (a forgery: its priority
// is not authenticated) never cuts off the keepalived nodes of a
// migration (vrrp.keepalived_peers): on the multicast group the master's
// adverts stay there, since keepalived drops unicast ones in multicast
// mode; with unicast peers, the members-only list names them too.
func TestEngineRefusalKeepsKeepalivedPeers(t *testing.T) {
	for _, unicast := range []bool{false, true} {
		s := newSim(t)
		a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: v3cfg()})
		b := s.start("192.0.2.12", nodeOpts{prio: 100, cfg: v3cfg()})
		ka := s.wire.port("192.0.2.13") // a keepalived node: it only listens
		rogue := s.wire.port("192.0.2.66")
		kaAddr := netip.MustParseAddr("192.0.2.13")
		if unicast {
			a.port.unicast = []netip.Addr{netip.MustParseAddr("192.0.2.12"), kaAddr}
			b.port.unicast = []netip.Addr{netip.MustParseAddr("192.0.2.11"), kaAddr}
		}
		for _, n := range []*simNode{a, b} {
			adm := NewAdmission()
			adm.Allow(netip.MustParseAddr("192.0.2.11"), false, 10, 200)
			adm.Allow(netip.MustParseAddr("192.0.2.12"), false, 10, 100)
			adm.AllowAny(kaAddr)
			n.eng.setAdmission(adm)
		}
		s.run(time.Second)
		if !a.kernel.holds(testVIP.Addr()) {
			t.Fatal("a is not master")
		}
		ka.inbox, rogue.inbox = nil, nil
		for range 20 {
			s.inject(a, testAdvert(t, "192.0.2.66", 254))
			s.inject(b, testAdvert(t, "192.0.2.66", 254))
			s.run(100 * time.Millisecond)
		}
		if n := len(ka.inbox); n < 15 {
			t.Errorf("unicast %v: the keepalived peer heard %d of the master's adverts in 2 s of forged ones, want about 20", unicast, n)
		}
		if !a.kernel.holds(testVIP.Addr()) || b.kernel.holds(testVIP.Addr()) {
			t.Errorf("unicast %v: a lost the VIP, or b took it", unicast)
		}
		if !unicast && len(rogue.inbox) < 15 {
			t.Errorf("the adverts left the group (the forger heard %d): a refusal changed where they go", len(rogue.inbox))
		}
	}
}

// RFC 5798 §7.1 drops adverts below hop limit 255: a forger off the link
// cannot claim a VIP. keepalived sends IPv6 unicast adverts with hop
// limit 64, so a unicast peer's count below 255 where auth_hmac enforces
// (the HMAC keeps forgers out instead) or where the operator lists the
// peer in vrrp.accept_hop_limit_from; nothing else does: not a source
// outside the peers, not a multicast one, not an unsigned one while
// auth_hmac enforces.
func TestEngineOffLinkAdvertsOnlyFromUnicastPeers(t *testing.T) {
	peer := netip.MustParseAddr("192.0.2.50")
	keys := AuthKeys{Keys: map[uint8][]byte{1: bytes.Repeat([]byte{7}, 32)}, Active: 1, Mode: AuthEnforce, Window: 5 * time.Second}
	cases := []struct {
		name    string
		lax     []string
		auth    bool
		signed  bool
		src     netip.Addr
		group   bool
		counted bool
		reason  string
	}{
		{name: "unlisted", src: peer, reason: "bad_ttl"},
		{name: "listed", lax: []string{"192.0.2.50"}, src: peer, counted: true},
		{name: "listed, another source", lax: []string{"192.0.2.50"}, src: netip.MustParseAddr("192.0.2.51"), reason: "bad_ttl"},
		{name: "listed, to the group", lax: []string{"192.0.2.50"}, src: peer, group: true, reason: "bad_ttl"},
		{name: "enforced, signed", auth: true, signed: true, src: peer, counted: true},
		{name: "enforced, unsigned", auth: true, src: peer, reason: authMissing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSim(t)
			cfg := v3cfg()
			cfg.AcceptHopLimitFrom = c.lax
			o := nodeOpts{prio: 100, cfg: cfg}
			if c.auth {
				o.auth = keys
			}
			n := s.start("192.0.2.11", o)
			n.port.unicast = []netip.Addr{peer}
			adv := Advert{Version: 3, VRID: 10, Priority: 200, Interval: 10, Addresses: []netip.Addr{testVIP.Addr()}}
			dst := netip.MustParseAddr("192.0.2.11")
			if c.group {
				dst = GroupV4
			}
			if c.signed { // as sendAdvert signs
				pdu, err := Encode(adv, c.src, c.src)
				if err != nil {
					t.Fatal(err)
				}
				adv.Signed, adv.Trailer = true, newAuth(keys).sign(s.clk.Now(), pdu, false, c.src)
			}
			b, err := Encode(adv, c.src, dst)
			if err != nil {
				t.Fatal(err)
			}
			s.inject(n, Packet{Payload: b, Src: c.src, Dst: dst, TTL: 64})
			got := n.metrics.AdvertsRecv.WithLabelValues("ipv4", "10").Value()
			off := testutil.ToFloat64(n.metrics.OffLink.WithLabelValues("ipv4"))
			if c.counted != (got == 1) || c.counted != (off == 1) {
				t.Fatalf("counted %v, off-link %v; want counted %v", got, off, c.counted)
			}
			if c.reason != "" {
				if d := testutil.ToFloat64(n.metrics.Dropped.WithLabelValues("ipv4", c.reason)); d != 1 {
					t.Fatalf("dropped as %s: %v, want 1", c.reason, d)
				}
			}
		})
	}
}

// A peer whose clock drifts past half the auth_hmac time window is still
// heard, and said once (log and Event), before its adverts turn stale;
// one within half the window is not.
func TestEngineWarnsOfClockSkew(t *testing.T) {
	keys := AuthKeys{Keys: map[uint8][]byte{1: bytes.Repeat([]byte{7}, 32)}, Active: 1, Mode: AuthEnforce, Window: 6 * time.Second}
	for _, c := range []struct {
		skew time.Duration
		warn bool
	}{{2 * time.Second, false}, {4 * time.Second, true}, {-4 * time.Second, true}} {
		var events []string
		s := newSim(t)
		n := s.start("192.0.2.11", nodeOpts{prio: 100, cfg: v3cfg(), auth: keys, events: func(_ bool, reason, _ string) { events = append(events, reason) }})
		src := netip.MustParseAddr("192.0.2.50")
		for range 3 {
			adv := Advert{Version: 3, VRID: 10, Priority: 200, Interval: 10, Addresses: []netip.Addr{testVIP.Addr()}}
			pdu, err := Encode(adv, src, src)
			if err != nil {
				t.Fatal(err)
			}
			adv.Signed, adv.Trailer = true, newAuth(keys).sign(s.clk.Now().Add(-c.skew), pdu, false, src)
			b, err := Encode(adv, src, GroupV4)
			if err != nil {
				t.Fatal(err)
			}
			s.inject(n, Packet{Payload: b, Src: src, Dst: GroupV4, TTL: 255})
			s.clk.advance(100 * time.Millisecond)
		}
		if got := n.metrics.AdvertsRecv.WithLabelValues("ipv4", "10").Value(); got != 3 {
			t.Fatalf("skew %s: %v adverts counted, want 3", c.skew, got)
		}
		warned := 0
		for _, e := range events {
			if e == "ClockSkew" {
				warned++
			}
		}
		if c.warn && warned != 1 || !c.warn && warned != 0 {
			t.Fatalf("skew %s of a 6 s window: %d ClockSkew events, want %v", c.skew, warned, c.warn)
		}
	}
}
