package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// RouterSpec describes one virtual router: a VRID and the VIPs it carries
// (one VIP, or a group when VIPs outnumber VRIDs), with this node's priority.
type RouterSpec struct {
	VRID     uint8
	VIPs     []netip.Prefix // all of one family
	Priority uint8
	// Interface is the interface the router advertises on when it is not
	// the agent's first ("": the first); Stacks hands the router to that
	// interface's Stack.
	Interface string
	// Name is the instance name its notify hooks hear ("": garpd_ipv4_51).
	Name string
}

// V6 reports the router's address family.
func (r RouterSpec) V6() bool { return len(r.VIPs) > 0 && r.VIPs[0].Addr().Is6() }

func (r RouterSpec) key() routerKey { return routerKey{v6: r.V6(), vrid: r.VRID} }

// RouterID names a virtual router: a VRID of a family on an interface
// ("": the agent's first).
type RouterID struct {
	VRID      uint8
	V6        bool
	Interface string
}

// ID is the router's RouterID.
func (r RouterSpec) ID() RouterID { return RouterID{VRID: r.VRID, V6: r.V6(), Interface: r.Interface} }

func (id RouterID) key() routerKey { return routerKey{v6: id.V6, vrid: id.VRID} }

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

// router is the engine's per-VRID bookkeeping around a Machine.
type router struct {
	spec      RouterSpec
	addrs     []netip.Addr // sorted, for comparing with received adverts
	advAddrs  []netip.Addr // in the spec's order, as adverts carry them
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
	// notified is the state the notify hooks last heard of.
	notified string
	// via, while a use_vmac master holds its virtual MAC, is the socket
	// its adverts leave from (nil with vmac_xmit_base).
	via   Via
	since time.Time
	// The router's metric series, looked up once: per advert the engine
	// only increments them.
	vipLabel   string
	recv       *Series
	sent       *Series
	collisions *Series
	state      *Series
}

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
	// faults are routers kept in Initialize, with why (a failing check
	// that tracks them, keepalived's FAULT).
	faults map[routerKey]string
	// stopping: the engine is shutting down (hooks hear STOP).
	stopping bool
	// sendFails rate-limits the log of failed sends, per cause.
	sendFails map[string]*sendFail
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
	// skewLogged holds the sources whose clock drift was logged.
	skewLogged onceSet[netip.Addr]
	warLogged  onceSet[netip.Addr]
	// next is a lower bound of every router's next deadline (zero: none).
	// Events only ever pull it earlier; tick, which runs when it passes,
	// recomputes it exactly. So a packet costs no scan of all routers.
	next time.Time
	// rx is the advert every received packet is decoded into.
	rx    Advert
	drops map[dropKey]prometheus.Counter
	// auth signs and checks adverts; nil while auth_hmac is off.
	auth *auth
	// legacyKeyID: a derived key signs with its garpd 0.1 id (see
	// SetLegacyKeyID); true until the dynamic mode says otherwise.
	legacyKeyID bool
	// outbox holds a tick's adverts until flushAdverts sends them together
	// (batching: a tick is running); wire, offsets and batch are their
	// encoding, reused by every flush.
	outbox   []pendingAdvert
	batching bool
	wire     []byte
	offsets  []int
	batch    []Outgoing
	// foreignKeyed is when an advert for our VIPs last came signed with a
	// key we do not have.
	foreignKeyed time.Time
	// offLinkOK are the unicast peers whose adverts count below hop limit
	// 255 unsigned (vrrp.accept_hop_limit_from).
	offLinkOK []netip.Addr
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
	e.legacyKeyID = true
	e.setAuth(deps.Auth)
	var err error
	if e.offLinkOK, err = parseAddrs("accept_hop_limit_from", cfg.AcceptHopLimitFrom, "a unicast peer's address"); err != nil {
		return nil, err
	}
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
	k := s.key()
	if _, dup := e.routers[k]; dup {
		return fmt.Errorf("VRID %d is used twice for %s", s.VRID, k.family())
	}
	addrs := s.addrs()
	slices.SortFunc(addrs, netip.Addr.Compare)
	local := e.deps.Transport.Source(s.V6()).WithZone("")
	vrid := strconv.Itoa(int(k.vrid))
	version := e.cfg.Version // vrrp.version is IPv4's: IPv6 is always VRRPv3
	if s.V6() {
		version = 3
	}
	vipLabel := joinAddrs(addrs)
	e.routers[k] = &router{
		spec:     s,
		addrs:    addrs,
		advAddrs: s.addrs(),
		m: NewMachine(MachineConfig{
			Priority:     s.Priority,
			Interval:     e.cfg.IntervalCS(),
			Preempt:      e.cfg.Preempt == nil || *e.cfg.Preempt,
			PreemptDelay: e.cfg.PreemptDelay,
			LocalAddr:    local,
			Version:      version,
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

func (e *Engine) shutdownAll() {
	now := e.deps.Clock.Now()
	e.stopping = true
	for _, k := range e.order {
		r := e.routers[k]
		e.transition(now, k, r, func(m *Machine) []Action { return m.Shutdown(now) })
		e.notify(k, r) // one out already (FAULT) has no transition
	}
}

// later returns the later of two times.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

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
	e.batching = true
	e.answerClaims(now)
	for _, k := range e.order {
		r := e.routers[k]
		if d := r.m.NextDeadline(); !d.IsZero() && !now.Before(d) {
			e.transition(now, k, r, func(m *Machine) []Action { return m.Tick(now) })
		}
		e.announceDue(now, k, r)
		// A router's events change its own schedule only, so its deadline
		// is final here, read while the router is in the cache: a second
		// pass over 510 routers was 3 % of a master's CPU at 20 ms adverts.
		e.next = earliest(e.next, r.deadline())
	}
	e.batching = false
	e.flushAdverts()
	for _, due := range e.claims {
		e.next = earliest(e.next, due)
	}
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
			// RFC 5798 §6.4.1: the advert, then the gratuitous ARP. The
			// pacer sends the ARP from its own goroutine at once, so the
			// queued advert goes first, or the router could learn the new
			// master before the old one hears it and lets go.
			e.flushAdverts()
			e.holdVIPs(k, r)
			e.startBurst(now, r)
		case ActReassert:
			e.reassert(now, k, r)
		case ActRelease:
			e.flushAdverts() // before a virtual MAC's socket closes
			e.stopAnnouncing(r)
			e.dropVIPs(k, r)
		}
	}
}

// ErrNotRunning is what a command gets from an engine whose loop has
// stopped (or does not answer before the command's context ends).
var ErrNotRunning = errors.New("VRRP engine is not running")

// call runs f on the engine goroutine, where every router's state lives;
// ErrNotRunning if the engine has stopped or ctx ends first.
// Held lists the VIPs this node holds now (master, past its claim).
func (e *Engine) Held(ctx context.Context) ([]netip.Addr, error) {
	var out []netip.Addr
	err := e.call(ctx, func() {
		for _, k := range e.order {
			if r := e.routers[k]; r.m.Holds() {
				for _, p := range r.spec.VIPs {
					out = append(out, p.Addr())
				}
			}
		}
	})
	return out, err
}

func (e *Engine) call(ctx context.Context, f func()) error {
	ran := make(chan struct{})
	select {
	case e.cmds <- func() { f(); close(ran) }:
		<-ran
		return nil
	case <-e.done:
	case <-ctx.Done():
	}
	return ErrNotRunning
}
