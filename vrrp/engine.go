package vrrp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Clock is the engine's time source, injected so tests run on fake time.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real Clock.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() time.Time { return time.Now() }

// After implements Clock.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RefreshScheduler says when a VIP this node is master for is next
// re-announced (the balancer's rolling schedule).
type RefreshScheduler interface {
	Next(vip netip.Addr, after time.Time) time.Time
}

// RouterSpec describes one virtual router: a VRID and the VIPs it carries
// (one VIP, or a group when VIPs outnumber VRIDs), with this node's priority.
type RouterSpec struct {
	VRID     uint8
	VIPs     []netip.Prefix // all of one family
	Priority uint8
}

// V6 reports the router's address family.
func (r RouterSpec) V6() bool { return len(r.VIPs) > 0 && r.VIPs[0].Addr().Is6() }

func (r RouterSpec) key() routerKey { return routerKey{v6: r.V6(), vrid: r.VRID} }

func (r RouterSpec) addrs() []netip.Addr {
	out := make([]netip.Addr, len(r.VIPs))
	for i, p := range r.VIPs {
		out[i] = p.Addr()
	}
	return out
}

type routerKey struct {
	v6   bool
	vrid uint8
}

func (k routerKey) family() string {
	if k.v6 {
		return "ipv6"
	}
	return "ipv4"
}

func (k routerKey) String() string { return k.family() + "/" + strconv.Itoa(int(k.vrid)) }

// lateTick is how late a timer may fire before the engine suspects it was
// paused; readerCatchUp is how long it then gives the socket reader to
// deliver what arrived meanwhile (more than readCoalesce).
const (
	lateTick      = 50 * time.Millisecond
	readerCatchUp = 20 * time.Millisecond
)

// reassertEvery is how often at most a master re-announces its VIPs to
// win back the router from another master it heard.
const reassertEvery = time.Second

// router is the engine's per-VRID bookkeeping around a Machine.
type router struct {
	spec      RouterSpec
	addrs     []netip.Addr // sorted, for comparing with received adverts
	m         *Machine
	burstLeft int
	nextBurst time.Time
	// lastReassert rate-limits split-brain re-announcements; reassertDue,
	// when set, is the one still owed for a contest the limit held back.
	lastReassert time.Time
	reassertDue  time.Time
	// membersOnlyUntil: adverts go to the members alone until then (a
	// speaker outside the cluster claims this virtual router).
	membersOnlyUntil time.Time
	refresh          []time.Time // per VIP, while master; zero when refresh is off
	since            time.Time
	// The router's metric children, looked up once: per advert the engine
	// only increments them.
	vipLabel   string
	recv       prometheus.Counter
	sent       prometheus.Counter
	collisions prometheus.Counter
	state      prometheus.Gauge
}

// Deps are the engine's seams to the outside world.
type Deps struct {
	Transport Transport
	Addresses AddressManager
	// VMACs, when set (use_vmac), holds a master's VIPs on its virtual MAC
	// interface instead of Addresses on the interface itself.
	VMACs     VirtualMACs
	Announcer Announcer
	// Refresh schedules periodic re-announcement; nil turns it off.
	Refresh RefreshScheduler
	Clock   Clock
	Log     zerolog.Logger
	Metrics *Metrics
	// Events, when set, hears what an operator follows on the node's
	// event stream (Kubernetes Events): VIPs acquired and released, and
	// the warnings. It is called on the engine goroutine: it must not
	// block.
	Events EventSink
}

// EventSink records one event: a reason in CamelCase and a message that
// repeats word for word when the same thing happens again, so the
// recorder can fold repeats into one event with a count.
type EventSink func(warning bool, reason, message string)

// event records an event if there is a sink.
func (e *Engine) event(warning bool, reason, message string) {
	if e.deps.Events != nil {
		e.deps.Events(warning, reason, message)
	}
}

// Engine runs every virtual router on one interface from one goroutine:
// packets, timers and commands are handled in turn, so machines need no locks.
type Engine struct {
	cfg     Config
	garp    GARPConfig
	deps    Deps
	routers map[routerKey]*router
	order   []routerKey
	cmds    chan func()
	done    chan struct{}
	// resigned: routers stay in Initialize (local health failed).
	resigned bool
	// linkDown: the interface is down; routers stay in Initialize.
	linkDown bool
	// admit, when set, limits adverts to members at their planned
	// priorities; prevAdmit still counts until prevUntil.
	admit, prevAdmit *Admission
	prevUntil        time.Time
	// rejected holds the sources already logged for a rejected advert.
	rejected onceSet[netip.Addr]
	// claims are VIPs another MAC announced, to be answered when due if
	// this node is still their master; defended says when each was last
	// and how often it may be now.
	claims      map[netip.Addr]time.Time
	defended    map[netip.Addr]defense
	claimLogged onceSet[string]
	warLogged   onceSet[netip.Addr]
	// next is a lower bound of every router's next deadline (zero: none).
	// Events only ever pull it earlier; tick, which runs when it passes,
	// recomputes it exactly. So a packet costs no scan of all routers.
	next time.Time
	// rx is the advert every received packet is decoded into.
	rx    Advert
	drops map[dropKey]prometheus.Counter
}

type dropKey struct {
	v6     bool
	reason string
}

// NewEngine checks the specs and prepares an engine; Run starts it.
func NewEngine(cfg Config, garp GARPConfig, specs []RouterSpec, deps Deps) (*Engine, error) {
	if deps.Clock == nil {
		deps.Clock = SystemClock{}
	}
	if deps.Metrics == nil {
		deps.Metrics = NewMetrics(nil)
	}
	e := &Engine{cfg: cfg, garp: garp, deps: deps, routers: map[routerKey]*router{},
		claims: map[netip.Addr]time.Time{}, defended: map[netip.Addr]defense{},
		cmds: make(chan func()), done: make(chan struct{}), drops: map[dropKey]prometheus.Counter{}}
	for _, s := range specs {
		if err := e.addRouter(s); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *Engine) addRouter(s RouterSpec) error {
	if len(s.VIPs) == 0 {
		return fmt.Errorf("VRID %d has no VIPs", s.VRID)
	}
	if s.VRID == 0 {
		return fmt.Errorf("VRID 0 for %s: VRIDs are 1..255", s.VIPs[0])
	}
	if s.Priority == 0 {
		return fmt.Errorf("VRID %d: priority 0 is reserved for resigning", s.VRID)
	}
	for _, p := range s.VIPs {
		if p.Addr().Is6() != s.V6() {
			return fmt.Errorf("VRID %d mixes IPv4 and IPv6 VIPs", s.VRID)
		}
	}
	if s.V6() && e.cfg.Version != 3 {
		return fmt.Errorf("VRID %d carries IPv6 VIPs, which need VRRP version 3", s.VRID)
	}
	k := s.key()
	if _, dup := e.routers[k]; dup {
		return fmt.Errorf("VRID %d is used twice for %s", s.VRID, k.family())
	}
	addrs := s.addrs()
	slices.SortFunc(addrs, netip.Addr.Compare)
	local := e.deps.Transport.Source(s.V6()).WithZone("")
	vrid := strconv.Itoa(int(k.vrid))
	vipLabel := joinAddrs(addrs)
	e.routers[k] = &router{
		spec:  s,
		addrs: addrs,
		m: NewMachine(MachineConfig{
			Priority:     s.Priority,
			Interval:     e.cfg.IntervalCS(),
			Preempt:      e.cfg.Preempt == nil || *e.cfg.Preempt,
			PreemptDelay: e.cfg.PreemptDelay,
			LocalAddr:    local,
			Version:      e.cfg.Version,
		}),
		vipLabel:   vipLabel,
		recv:       e.deps.Metrics.AdvertsRecv.WithLabelValues(k.family(), vrid),
		sent:       e.deps.Metrics.AdvertsSent.WithLabelValues(k.family(), vrid),
		collisions: e.deps.Metrics.Collisions.WithLabelValues(k.family(), vrid),
		state:      e.deps.Metrics.State.WithLabelValues(k.family(), vrid, vipLabel),
	}
	e.order = append(e.order, k)
	slices.SortFunc(e.order, func(a, b routerKey) int {
		if a.v6 != b.v6 {
			if a.v6 {
				return 1
			}
			return -1
		}
		return int(a.vrid) - int(b.vrid)
	})
	return nil
}

// Run removes VIPs a crashed earlier run left behind, starts every router
// and serves until ctx ends; then every Master resigns with a priority-0
// advert and VIPs are removed before Run returns.
func (e *Engine) Run(ctx context.Context) error {
	defer close(e.done)
	if err := e.start(); err != nil {
		return err
	}
	packets := e.deps.Transport.Packets()
	var wake <-chan time.Time
	var armed time.Time // the deadline wake was set for
	var heldBack bool   // a late tick already waited for the reader once
	for {
		if !e.next.Equal(armed) {
			armed, wake = e.next, nil
			if !armed.IsZero() {
				wake = e.deps.Clock.After(max(armed.Sub(e.deps.Clock.Now()), 0))
			}
		}
		select {
		case <-ctx.Done():
			e.shutdownAll()
			return nil
		case batch, ok := <-packets:
			if !ok {
				e.shutdownAll()
				return errors.New("VRRP transport closed")
			}
			for _, p := range batch {
				e.handlePacket(p)
			}
		case <-wake:
			now := e.deps.Clock.Now()
			// Woken much later than asked (the process was stopped or
			// starved): adverts that arrived meanwhile wait in the socket.
			// Let the reader hand them over before deciding a master is
			// down, or this node takes over VIPs from masters that never
			// stopped.
			if late := now.Sub(armed); late > lateTick && !heldBack {
				heldBack = true
				wake = e.deps.Clock.After(readerCatchUp)
				continue
			}
			heldBack = false
			armed, wake = time.Time{}, nil
			e.tick(now)
		case f := <-e.cmds:
			f()
		}
	}
}

// start removes VIPs a crashed earlier run left behind and starts every
// router (RFC 5798 Startup event).
func (e *Engine) start() error {
	if err := e.removeStaleVIPs(); err != nil {
		return err
	}
	now := e.deps.Clock.Now()
	for _, k := range e.order {
		for _, reason := range dropReasons {
			e.dropCounter(k.v6, reason)
		}
	}
	for _, k := range e.order {
		r := e.routers[k]
		r.since = now
		e.transition(now, k, r, func(m *Machine) []Action { return m.Startup(now) })
	}
	return nil
}

func (e *Engine) removeStaleVIPs() error {
	for _, k := range e.order {
		for _, p := range e.routers[k].spec.VIPs {
			has, err := e.deps.Addresses.HasVIP(p.Addr())
			if err != nil {
				return err
			}
			if has {
				e.deps.Log.Warn().Str("vip", p.String()).Msg("VIP was left on the interface by an earlier run; removing it before the first advert")
				if err := e.deps.Addresses.DelVIP(p); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (e *Engine) shutdownAll() {
	now := e.deps.Clock.Now()
	for _, k := range e.order {
		e.transition(now, k, e.routers[k], func(m *Machine) []Action { return m.Shutdown(now) })
	}
}

// later returns the later of two times.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// contestQuiet is how long another master must have been silent before
// the owed re-announcement (see ActReassert): three advert intervals, by
// which time it has either yielded or is gone.
func (e *Engine) contestQuiet() time.Duration { return 3 * e.cfg.AdvertInterval }

// earliest returns the earlier of two deadlines, zero meaning none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// deadline is the router's next deadline: its machine's timer, the next
// burst announcement or a VIP's refresh.
func (r *router) deadline() time.Time {
	next := r.m.NextDeadline()
	if r.burstLeft > 0 {
		next = earliest(next, r.nextBurst)
	}
	for _, t := range r.refresh {
		next = earliest(next, t)
	}
	return earliest(next, r.reassertDue)
}

// tick runs everything due at now and recomputes the next deadline.
func (e *Engine) tick(now time.Time) {
	e.next = time.Time{}
	defer func() {
		for _, r := range e.routers {
			e.next = earliest(e.next, r.deadline())
		}
		for _, due := range e.claims {
			e.next = earliest(e.next, due)
		}
	}()
	for a, due := range e.claims {
		if now.Before(due) {
			continue
		}
		delete(e.claims, a)
		if r := e.masterOf(a); r != nil {
			d := e.defended[a]
			d.last = now
			e.defended[a] = d
			e.deps.Announcer.Announce(a, true)
		}
	}
	for _, k := range e.order {
		r := e.routers[k]
		if d := r.m.NextDeadline(); !d.IsZero() && !now.Before(d) {
			e.transition(now, k, r, func(m *Machine) []Action { return m.Tick(now) })
		}
		if r.burstLeft > 0 && !now.Before(r.nextBurst) {
			e.announce(r, true)
			r.burstLeft--
			r.nextBurst = now.Add(e.garp.Interval)
		}
		if !r.reassertDue.IsZero() && !now.Before(r.reassertDue) {
			r.reassertDue = time.Time{}
			if r.m.State() == Master {
				r.lastReassert = now
				e.deps.Log.Info().Str("vrid", k.String()).Msg("the other speaker has been quiet since: re-announcing the VIPs once more, so the router's last word is ours")
				e.announce(r, true)
			}
		}
		for i, t := range r.refresh {
			if !t.IsZero() && !now.Before(t) {
				a := r.spec.VIPs[i].Addr()
				e.deps.Announcer.Announce(a, false)
				r.refresh[i] = e.deps.Refresh.Next(a, now)
			}
		}
	}
}

// dropReasons are the drops after a packet decoded, which dashboards and
// alerts name: each is exported at 0 from the start, so increase() sees
// the first one.
var dropReasons = [...]string{"bad_ttl", "version_mismatch", "unknown_vrid", "auth_mismatch", "interval_mismatch",
	"vip_mismatch", "not_member", "priority_above_plan"}

// dropCounter is the counter of one family's drops for reason.
func (e *Engine) dropCounter(v6 bool, reason string) prometheus.Counter {
	k := dropKey{v6: v6, reason: reason}
	c, ok := e.drops[k]
	if !ok {
		c = e.deps.Metrics.Dropped.WithLabelValues(routerKey{v6: v6}.family(), reason)
		e.drops[k] = c
	}
	return c
}

// drop counts a rejected packet.
func (e *Engine) drop(v6 bool, reason string) {
	e.dropCounter(v6, reason).Inc()
}

// handlePacket validates a received packet (RFC 5798 §7.1, RFC 3768 §7.1)
// and hands it to its virtual router.
func (e *Engine) handlePacket(p Packet) {
	if p.TTL != 255 {
		e.drop(p.V6, "bad_ttl")
		return
	}
	adv := &e.rx
	if err := DecodeInto(adv, p.Payload, p.Src, p.Dst, p.V6); err != nil {
		e.drop(p.V6, string(ReasonOf(err)))
		return
	}
	if adv.Version != e.cfg.Version && !p.V6 {
		e.drop(p.V6, "version_mismatch")
		return
	}
	k := routerKey{v6: p.V6, vrid: adv.VRID}
	r, ok := e.routers[k]
	if !ok {
		e.drop(p.V6, "unknown_vrid")
		return
	}
	if adv.Version == 2 {
		want := AuthNone
		if e.cfg.AuthPass != "" {
			want = AuthPassword
		}
		if adv.AuthType != want || (want == AuthPassword && adv.AuthData != PasswordData(e.cfg.AuthPass)) {
			e.drop(p.V6, "auth_mismatch")
			return
		}
		if adv.Interval != e.cfg.IntervalCS() {
			e.drop(p.V6, "interval_mismatch")
			return
		}
	}
	got := adv.Addresses // e.rx's own storage: sorting it in place is free
	slices.SortFunc(got, netip.Addr.Compare)
	if !slices.Equal(got, r.addrs) {
		e.drop(p.V6, "vip_mismatch")
		r.collisions.Inc()
		if e.firstRejection(p.Src) {
			e.deps.Log.Error().Str("vrid", k.String()).Str("source", p.Src.String()).
				Str("their_vips", joinAddrs(got)).Str("our_vips", joinAddrs(r.addrs)).
				Msg("VRID collision: another VRRP router uses this VRID with a different VIP list; ignoring its adverts. Another cluster on this segment probably uses the same VRID: give one side a different vrid_base (run `garpd scan` to list the VRIDs in use)")
			e.event(true, "VRIDCollision", fmt.Sprintf("%s uses VRRP %s for %s, ours is %s: give one side another vrid_base (garpd scan lists the VRIDs in use)",
				p.Src, k, joinAddrs(got), joinAddrs(r.addrs)))
		}
		return
	}
	now := e.deps.Clock.Now()
	if reason := e.admission(now, p.Src, k, adv.Priority); reason != "" {
		e.drop(p.V6, reason)
		if e.firstRejection(p.Src) {
			hint := "a VRRP speaker that is not a member of this garpd cluster uses our VRIDs and VIPs; ignoring it. Find it by its source address (a keepalived with the same VRIDs?) and stop it, or make it a member"
			if reason == "priority_above_plan" {
				hint = "a member sends adverts above the priority the plan gives it (another config or version?); ignoring them. Compare garpd status on both nodes"
			}
			e.deps.Log.Error().Str("vrid", k.String()).Str("source", p.Src.String()).Int("priority", int(adv.Priority)).
				Str("reason", reason).Msg(hint)
			if reason == "priority_above_plan" {
				e.event(true, "AdvertsAbovePlan", fmt.Sprintf("member %s sends VRRP %s adverts above its planned priority: compare garpd status on both nodes", p.Src, k))
			} else {
				e.event(true, "NonMemberAdverts", fmt.Sprintf("%s, not a member, sends VRRP %s adverts for our VIPs: stop it (a keepalived with the same VRIDs?) or make it a member", p.Src, k))
			}
		}
		if r.m.State() == Master {
			if reason == "not_member" && adv.Priority >= r.m.Priority() {
				// It will not yield to our adverts; hearing them, it
				// would only answer with announcements of its own.
				if !now.Before(r.membersOnlyUntil) {
					e.deps.Log.Info().Str("vrid", k.String()).Str("source", p.Src.String()).
						Dur("for_at_least", membersOnlyFor).Msg("a non-member claims this virtual router: sending its adverts to the members only, so it cannot answer them")
				}
				r.membersOnlyUntil = now.Add(membersOnlyFor)
			}
			if k.v6 {
				// The speaker may be announcing our VIPs: win the router
				// back (rate-limited like any re-announcement). IPv4
				// answers its gratuitous ARPs themselves (ForeignClaim),
				// and backs off from one that answers back.
				e.apply(now, k, r, []Action{ActReassert})
			}
		}
		return
	}
	r.recv.Inc()
	e.transition(now, k, r, func(m *Machine) []Action { return m.HandleAdvert(now, p.Src, *adv) })
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// transition runs one machine event, carries out the actions it returns,
// and records (logs, counts) a change of state.
func (e *Engine) transition(now time.Time, k routerKey, r *router, event func(*Machine) []Action) {
	prev := r.m.State()
	e.apply(now, k, r, event(r.m))
	e.recordState(k, r, prev)
	e.next = earliest(e.next, r.deadline())
}

// apply carries out a machine's actions.
func (e *Engine) apply(now time.Time, k routerKey, r *router, acts []Action) {
	for _, a := range acts {
		switch a {
		case ActSendAdvert:
			e.sendAdvert(k, r, r.m.Priority())
		case ActSendResign:
			e.sendAdvert(k, r, 0)
		case ActTakeover:
			e.holdVIPs(k, r)
			r.burstLeft = e.garp.Count
			r.lastReassert = now // the burst does what a re-announcement would
			e.announce(r, true)
			r.burstLeft--
			r.nextBurst = now.Add(e.garp.Interval)
			if e.deps.Refresh != nil {
				// After the burst, the VIP keeps its own phase.
				burstEnd := now.Add(time.Duration(e.garp.Count-1) * e.garp.Interval)
				r.refresh = make([]time.Time, len(r.spec.VIPs))
				for i, p := range r.spec.VIPs {
					r.refresh[i] = e.deps.Refresh.Next(p.Addr(), burstEnd)
				}
			}
		case ActReassert:
			// Once per second at most, however many adverts the other
			// master (or a spoofer) sends. A contest the limit holds back
			// is owed one more re-announcement once the other has been
			// quiet for contestQuiet: its announcements stop within an
			// advert interval of its last advert, so ours comes last.
			if now.Sub(r.lastReassert) < reassertEvery {
				r.reassertDue = later(now.Add(e.contestQuiet()), r.lastReassert.Add(reassertEvery))
				continue
			}
			r.lastReassert = now
			r.reassertDue = time.Time{}
			e.deps.Log.Info().Str("vrid", k.String()).Msg("another speaker claims this VRID (a split brain healing, or a speaker outside the cluster): re-announcing the VIPs, the router may have learnt its MAC")
			e.announce(r, true)
		case ActRelease:
			r.burstLeft = 0
			r.reassertDue = time.Time{}
			r.refresh = nil
			for _, p := range r.spec.VIPs {
				e.deps.Announcer.Withdraw(p.Addr())
			}
			e.dropVIPs(k, r)
		}
	}
}

// holdVIPs puts a new master's VIPs on the interface, or on its virtual
// MAC interface with use_vmac. A VIP that cannot be added is logged; the
// router stays master, as keepalived does, so an operator sees the error
// rather than a failover loop.
func (e *Engine) holdVIPs(k routerKey, r *router) {
	if e.deps.VMACs != nil {
		if err := e.deps.VMACs.Up(k.vrid, k.v6, r.spec.VIPs); err != nil {
			e.deps.Log.Error().Err(err).Str("vrid", k.String()).Msg("cannot put the VIPs on the virtual MAC")
		}
		return
	}
	for _, p := range r.spec.VIPs {
		if err := e.deps.Addresses.AddVIP(p); err != nil {
			e.deps.Log.Error().Err(err).Str("vrid", k.String()).Msg("cannot add VIP")
		}
	}
}

// dropVIPs removes what holdVIPs added.
func (e *Engine) dropVIPs(k routerKey, r *router) {
	if e.deps.VMACs != nil {
		if err := e.deps.VMACs.Down(k.vrid, k.v6); err != nil {
			e.deps.Log.Error().Err(err).Str("vrid", k.String()).Msg("cannot remove the virtual MAC")
		}
		return
	}
	for _, p := range r.spec.VIPs {
		if err := e.deps.Addresses.DelVIP(p); err != nil {
			e.deps.Log.Error().Err(err).Str("vrid", k.String()).Msg("cannot remove VIP")
		}
	}
}

func (e *Engine) sendAdvert(k routerKey, r *router, prio uint8) {
	adv := Advert{
		Version:   e.cfg.Version,
		VRID:      k.vrid,
		Priority:  prio,
		Interval:  e.cfg.IntervalCS(),
		Addresses: r.spec.addrs(),
	}
	if k.v6 {
		adv.Version = 3
	}
	if adv.Version == 2 && e.cfg.AuthPass != "" {
		adv.AuthType = AuthPassword
		adv.AuthData = PasswordData(e.cfg.AuthPass)
	}
	build := func(src, dst netip.Addr) ([]byte, error) { return Encode(adv, src, dst) }
	var err error
	if e.deps.Clock.Now().Before(r.membersOnlyUntil) {
		err = e.deps.Transport.SendTo(k.v6, e.memberPeers(k.v6), build)
	} else {
		err = e.deps.Transport.Send(k.v6, build)
	}
	if err != nil {
		e.deps.Log.Warn().Err(err).Str("vrid", k.String()).Msg("cannot send advert")
		return
	}
	r.sent.Inc()
}

func (e *Engine) announce(r *router, urgent bool) {
	for _, p := range r.spec.VIPs {
		e.deps.Announcer.Announce(p.Addr(), urgent)
	}
}

// Wave starts an on-demand announcement wave for the VIPs this node is
// master for: all of them, or those in only. It returns what was queued and
// what was asked for but is not held here.
func (e *Engine) Wave(ctx context.Context, only []netip.Addr) (queued, notHeld []netip.Addr, err error) {
	ok := e.do(ctx, func() {
		held := map[netip.Addr]bool{}
		for _, k := range e.order {
			r := e.routers[k]
			if r.m.State() != Master {
				continue
			}
			for _, p := range r.spec.VIPs {
				held[p.Addr()] = true
				if len(only) == 0 {
					queued = append(queued, p.Addr())
				}
			}
		}
		for _, a := range only {
			if held[a] {
				queued = append(queued, a)
			} else {
				notHeld = append(notHeld, a)
			}
		}
		e.deps.Announcer.Wave(queued)
	})
	if !ok {
		return nil, nil, errors.New("VRRP engine is not running")
	}
	e.deps.Log.Info().Int("vips", len(queued)).Int("not_held", len(notHeld)).Msg("announcement wave started")
	return queued, notHeld, nil
}

func (e *Engine) recordState(k routerKey, r *router, prev State) {
	st := r.m.State()
	if st == prev {
		return
	}
	r.state.Set(float64(st))
	r.since = e.deps.Clock.Now()
	e.deps.Metrics.Transitions.WithLabelValues(k.family(), strconv.Itoa(int(k.vrid)), st.String()).Inc()
	master, mprio := r.m.MasterAddr()
	masterStr := "unknown"
	if master.IsValid() {
		masterStr = master.String()
	}
	ev := e.deps.Log.Info()
	if st == Master {
		ev = e.deps.Log.Warn()
	}
	ev.Str("vrid", k.String()).Str("vips", joinAddrs(r.addrs)).Str("from", prev.String()).Str("to", st.String()).
		Int("priority", int(r.m.Priority())).Str("master", masterStr).Int("master_priority", int(mprio)).
		Msg("VRRP state change")
	switch {
	case st == Master:
		e.event(false, "VIPAcquired", fmt.Sprintf("acquired %s: master of VRRP %s", joinAddrs(r.addrs), k))
	case prev == Master:
		e.event(false, "VIPReleased", fmt.Sprintf("released %s: no longer master of VRRP %s", joinAddrs(r.addrs), k))
	}
}

// do runs f on the engine goroutine; false if the engine has stopped.
func (e *Engine) do(ctx context.Context, f func()) bool {
	ran := make(chan struct{})
	select {
	case e.cmds <- func() { f(); close(ran) }:
		<-ran
		return true
	case <-e.done:
		return false
	case <-ctx.Done():
		return false
	}
}

// SetAdmission limits the adverts the engine accepts to a's (nil accepts
// all). The previous admission still counts for admissionGrace, while the
// members apply the same plan change.
func (e *Engine) SetAdmission(ctx context.Context, a *Admission) error {
	if !e.do(ctx, func() { e.setAdmission(a) }) {
		return errors.New("VRRP engine is not running")
	}
	return nil
}

func (e *Engine) setAdmission(a *Admission) {
	e.prevAdmit, e.prevUntil = e.admit, e.deps.Clock.Now().Add(admissionGrace)
	e.admit = a
}

// admission is "" when the advert may be processed, else the drop reason.
func (e *Engine) admission(now time.Time, src netip.Addr, k routerKey, prio uint8) string {
	if e.admit == nil {
		return ""
	}
	reason := e.admit.verdict(src, k, prio)
	if prev := e.previousAdmission(now); reason != "" && prev != nil && prev.verdict(src, k, prio) == "" {
		return ""
	}
	return reason
}

// previousAdmission is the admission before the current one while its
// grace lasts, else nil.
func (e *Engine) previousAdmission(now time.Time) *Admission {
	if e.prevAdmit != nil && now.Before(e.prevUntil) {
		return e.prevAdmit
	}
	return nil
}

// memberPeers are the members of one family an advert goes to when it
// must reach them alone: the admitted sources (also those of the previous
// admission while its grace lasts), this node's own excepted.
func (e *Engine) memberPeers(v6 bool) []netip.Addr {
	var out []netip.Addr
	if e.admit != nil {
		out = e.admit.members(v6)
	}
	if prev := e.previousAdmission(e.deps.Clock.Now()); prev != nil {
		out = append(out, prev.members(v6)...)
	}
	self := e.deps.Transport.Source(v6).WithZone("")
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.DeleteFunc(slices.Compact(out), func(a netip.Addr) bool { return a == self })
}

// firstRejection reports whether src is rejected for the first time, so
// it is logged once.
func (e *Engine) firstRejection(src netip.Addr) bool {
	first, overflow := e.rejected.first(src)
	if overflow {
		e.deps.Log.Error().Int("sources", maxLoggedSources).Msg("adverts rejected from many sources: not logging further ones (see garpd_vrrp_packets_dropped_total)")
	}
	return first
}

// Responsive reports whether the engine's loop runs and answers within
// ctx: what a liveness probe should see, rather than the HTTP server's own
// health.
func (e *Engine) Responsive(ctx context.Context) bool { return e.do(ctx, func() {}) }

// RouterStatus is one virtual router's state as /status reports it.
type RouterStatus struct {
	Family         string    `json:"family"`
	VRID           int       `json:"vrid"`
	VIPs           []string  `json:"vips"`
	State          string    `json:"state"`
	Priority       int       `json:"priority"`
	Master         string    `json:"master,omitempty"`
	MasterPriority int       `json:"master_priority"`
	Since          time.Time `json:"since"`
}

// Status returns a snapshot of every virtual router.
func (e *Engine) Status(ctx context.Context) []RouterStatus {
	var out []RouterStatus
	e.do(ctx, func() {
		for _, k := range e.order {
			r := e.routers[k]
			master, mprio := r.m.MasterAddr()
			rs := RouterStatus{Family: k.family(), VRID: int(k.vrid), State: r.m.State().String(),
				Priority: int(r.m.Priority()), MasterPriority: int(mprio), Since: r.since}
			if master.IsValid() {
				rs.Master = master.String()
			}
			for _, p := range r.spec.VIPs {
				rs.VIPs = append(rs.VIPs, p.String())
			}
			out = append(out, rs)
		}
	})
	return out
}

// Resign takes every virtual router out of VRRP (a Master sends a
// priority-0 advert and releases its VIPs, so a backup takes over within
// skew time) or brings them back as backups. Used when local health fails.
func (e *Engine) Resign(ctx context.Context, resigned bool) error {
	if !e.do(ctx, func() { e.resigned = resigned; e.participate() }) {
		return errors.New("VRRP engine is not running")
	}
	return nil
}

// SetGARP changes the announcement settings in place (a reload): the
// takeover burst, and the refresh schedule (nil: off), which masters follow
// from now on.
func (e *Engine) SetGARP(ctx context.Context, garp GARPConfig, refresh RefreshScheduler) error {
	if !e.do(ctx, func() { e.setGARP(garp, refresh) }) {
		return errors.New("VRRP engine is not running")
	}
	return nil
}

func (e *Engine) setGARP(garp GARPConfig, refresh RefreshScheduler) {
	e.garp, e.deps.Refresh = garp, refresh
	now := e.deps.Clock.Now()
	for _, k := range e.order {
		r := e.routers[k]
		if r.m.State() != Master {
			continue
		}
		r.refresh = nil
		if refresh != nil {
			r.refresh = make([]time.Time, len(r.spec.VIPs))
			for i, p := range r.spec.VIPs {
				r.refresh[i] = refresh.Next(p.Addr(), now)
			}
		}
	}
	e.next = now // recompute the deadline at the next loop
}

// SetLink tells the engine its interface went down or came back. Down,
// nothing can be sent or heard: every router goes to Initialize and
// releases its VIPs (the kernel flushes IPv6 ones anyway), so a peer takes
// over cleanly. Up, they start again as backups and win back what the plan
// gives them, re-adding the VIPs.
func (e *Engine) SetLink(ctx context.Context, up bool) error {
	if !e.do(ctx, func() { e.setLink(up) }) {
		return errors.New("VRRP engine is not running")
	}
	return nil
}

func (e *Engine) setLink(up bool) {
	if e.linkDown == !up {
		return
	}
	e.linkDown = !up
	if up {
		e.deps.Log.Warn().Msg("interface is up again: virtual routers start as backups")
	} else {
		e.deps.Log.Warn().Msg("interface is down: every virtual router goes to Initialize and releases its VIPs")
	}
	e.participate()
}

// participate puts every router in Initialize while the node is out of
// VRRP (resigned, or its link down) and starts it otherwise.
func (e *Engine) participate() {
	now := e.deps.Clock.Now()
	out := e.resigned || e.linkDown
	for _, k := range e.order {
		e.transition(now, k, e.routers[k], func(m *Machine) []Action {
			if out {
				return m.Shutdown(now)
			}
			return m.Startup(now) // a no-op unless in Initialize
		})
	}
}

// claimGrace is how long a master waits before it answers another MAC's
// announcement of its VIP: a legitimate new master's advert, which it
// sends before its announcement, makes this node step down meanwhile.
// defendEvery rate-limits the answers per VIP. A claim that comes within
// answeredWithin of an answer is the other host answering ours: it
// defends the address too (another garpd, an address-conflict daemon),
// and answering at once would be an ARP war that floods the segment and
// flips the router's entry several times a second. The interval doubles
// with each such round, up to maxDefendEvery, and is back at defendEvery
// once a claim comes on its own (keepalived's takeover bursts, seconds
// apart, are each answered after claimGrace).
const (
	claimGrace     = 50 * time.Millisecond
	defendEvery    = 250 * time.Millisecond
	answeredWithin = time.Second
	maxDefendEvery = 32 * time.Second
)

// defense is a VIP's answers to other MACs' announcements.
type defense struct {
	last  time.Time     // the last answer
	every time.Duration // the least time to the next one
}

// ForeignClaim tells the engine that another MAC announced address a (a
// gratuitous ARP). In dynamic mode, if this node is, and stays, master for
// a, it answers with its own announcement: a speaker outside the cluster
// cannot keep the router's entry (answered after claimGrace), and neither
// can a member that was master for a moment because it missed our adverts
// and yielded at the next one, whose claiming advert we never heard
// (answered after contestQuiet, when VRRP has had its say: a member that
// is the rightful master by then has made this node a backup). The static
// mode, like keepalived, answers none.
func (e *Engine) ForeignClaim(ctx context.Context, a netip.Addr, mac net.HardwareAddr) error {
	if !e.do(ctx, func() { e.foreignClaim(a, mac) }) {
		return errors.New("VRRP engine is not running")
	}
	return nil
}

func (e *Engine) foreignClaim(a netip.Addr, mac net.HardwareAddr) {
	if _, pending := e.claims[a]; pending || e.admit == nil {
		return
	}
	r := e.masterOf(a)
	if r == nil {
		return
	}
	// A claim from this router's virtual MAC is another master of it (our
	// own announcements never reach here: the watcher hears only frames
	// that arrive). The router's entry is the same, but the switch now
	// sends the MAC to that master's port. VRRP has its say first, as with
	// a member.
	member := !e.stranger(mac) || (e.deps.VMACs != nil && bytes.Equal(mac, VirtualMAC(r.spec.VRID, r.spec.V6())))
	now := e.deps.Clock.Now()
	d := e.defended[a]
	if !d.last.IsZero() && now.Sub(d.last) < answeredWithin {
		// An answer follows a claim, which set every: never below defendEvery.
		d.every = min(2*d.every, maxDefendEvery)
		if first, _ := e.warLogged.first(a); first && member {
			e.deps.Log.Warn().Str("vip", a.String()).Str("mac", mac.String()).Dur("at_most_every", maxDefendEvery).
				Msg("a member answers our announcements of this VIP: both are master (VRRP between us cut: check the firewall for protocol 112); answering less and less often until VRRP heals")
		} else if first {
			e.deps.Log.Warn().Str("vip", a.String()).Str("mac", mac.String()).Dur("at_most_every", maxDefendEvery).
				Msg("another host answers our announcements of this VIP (it defends the address too): answering less and less often instead of an ARP war. The router follows whoever announced last: find the host by its MAC and remove the address there")
		}
	} else {
		d.every = defendEvery
	}
	e.defended[a] = d
	grace := claimGrace
	if member {
		grace = e.contestQuiet()
	}
	due := now.Add(grace)
	if next := d.last.Add(d.every); !d.last.IsZero() && next.After(due) {
		due = next
	}
	e.claims[a] = due
	e.next = earliest(e.next, due)
	if first, _ := e.claimLogged.first(mac.String()); !first {
		return
	}
	if member {
		e.deps.Log.Info().Str("vip", a.String()).Str("mac", mac.String()).Dur("after", grace).
			Msg("a member announced a VIP this node is master for (it missed our adverts for a moment, or VRRP between us is cut): announcing it again once VRRP has had its say")
	} else {
		e.deps.Log.Warn().Str("vip", a.String()).Str("mac", mac.String()).
			Msg("another MAC announces a VIP this node is master for: answering each such announcement (a host outside the cluster? find it by its MAC)")
	}
}

// stranger reports whether mac belongs to no member, by the admission or
// the one before it (dynamic mode; the static mode knows no members).
func (e *Engine) stranger(mac net.HardwareAddr) bool {
	if e.admit == nil || e.admit.MemberMAC(mac) {
		return false
	}
	prev := e.previousAdmission(e.deps.Clock.Now())
	return prev == nil || !prev.MemberMAC(mac)
}

// masterOf returns the router that carries a if it is master, else nil.
func (e *Engine) masterOf(a netip.Addr) *router {
	for _, k := range e.order {
		r := e.routers[k]
		if r.m.State() != Master {
			continue
		}
		for _, p := range r.spec.VIPs {
			if p.Addr() == a {
				return r
			}
		}
	}
	return nil
}

// AddressRemoved tells the engine an address left its interface. A VIP of
// a router that is master was removed by someone else (an operator, a
// network manager): it is added back and announced.
func (e *Engine) AddressRemoved(ctx context.Context, a netip.Addr) error {
	if !e.do(ctx, func() { e.addressRemoved(a) }) {
		return errors.New("VRRP engine is not running")
	}
	return nil
}

func (e *Engine) addressRemoved(a netip.Addr) {
	for _, k := range e.order {
		r := e.routers[k]
		if r.m.State() != Master {
			continue
		}
		for _, p := range r.spec.VIPs {
			if p.Addr() != a {
				continue
			}
			var err error
			if e.deps.VMACs != nil {
				err = e.deps.VMACs.Up(k.vrid, k.v6, r.spec.VIPs)
			} else {
				err = e.deps.Addresses.AddVIP(p)
			}
			if err != nil {
				e.deps.Log.Error().Err(err).Str("vrid", k.String()).Str("vip", a.String()).Msg("a VIP this node is master for was removed, and cannot be added back")
				return
			}
			e.deps.Log.Warn().Str("vrid", k.String()).Str("vip", a.String()).Msg("a VIP this node is master for was removed from the interface by someone else: added back and announced")
			e.deps.Announcer.Announce(a, true)
			return
		}
	}
}

// SetPeers replaces the unicast peer list (unicast_peers: auto).
func (e *Engine) SetPeers(ctx context.Context, peers []netip.Addr) error {
	if !e.do(ctx, func() { e.deps.Transport.SetPeers(peers) }) {
		return errors.New("VRRP engine is not running")
	}
	return nil
}

// Update moves the engine to a new set of routers without a restart:
// priority changes take effect at once, new routers start, removed ones
// resign, and a router whose VIP list changed restarts alone.
func (e *Engine) Update(ctx context.Context, specs []RouterSpec) error {
	var err error
	ok := e.do(ctx, func() { err = e.update(specs) })
	if !ok {
		return errors.New("VRRP engine is not running")
	}
	return err
}

func (e *Engine) update(specs []RouterSpec) error {
	// Validate everything on a scratch engine first: nothing half-applied.
	scratchDeps := e.deps
	scratchDeps.Metrics = NewMetrics(nil) // unregistered: nothing to clean up
	scratch := &Engine{cfg: e.cfg, deps: scratchDeps, routers: map[routerKey]*router{}}
	for _, s := range specs {
		if err := scratch.addRouter(s); err != nil {
			return err
		}
	}
	now := e.deps.Clock.Now()
	for _, k := range slices.Clone(e.order) {
		r := e.routers[k]
		nr, keep := scratch.routers[k]
		if keep && slices.Equal(nr.addrs, r.addrs) && slices.Equal(nr.spec.VIPs, r.spec.VIPs) {
			if nr.spec.Priority != r.spec.Priority {
				e.deps.Log.Info().Str("vrid", k.String()).Int("from", int(r.spec.Priority)).Int("to", int(nr.spec.Priority)).Msg("priority changed")
				r.spec.Priority = nr.spec.Priority
				e.transition(now, k, r, func(m *Machine) []Action { return m.SetPriority(now, nr.spec.Priority) })
			}
			delete(scratch.routers, k)
			continue
		}
		e.transition(now, k, r, func(m *Machine) []Action { return m.Shutdown(now) })
		e.deps.Metrics.State.DeleteLabelValues(k.family(), strconv.Itoa(int(k.vrid)), r.vipLabel)
		delete(e.routers, k)
		e.order = slices.DeleteFunc(e.order, func(x routerKey) bool { return x == k })
	}
	for _, k := range scratch.order {
		nr, ok := scratch.routers[k]
		if !ok {
			continue
		}
		if err := e.addRouter(nr.spec); err != nil {
			return err
		}
		r := e.routers[k]
		r.since = now
		if !e.resigned && !e.linkDown {
			e.transition(now, k, r, func(m *Machine) []Action { return m.Startup(now) })
		}
	}
	return nil
}
