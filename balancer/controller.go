package balancer

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/garpd/garpd/gossip"
	"github.com/garpd/garpd/vrrp"
)

// Digest fingerprints the cluster-wide part of the config: the VIP groups
// with their VRIDs, and the VRRP version and interval. Members must agree
// on it to be ranked together.
func Digest(groups []Group, version int, interval time.Duration) string {
	h := sha256.New()
	fmt.Fprintf(h, "v%d/%d\n", version, interval.Milliseconds())
	keys := make([]string, len(groups))
	for i, g := range groups {
		ps := make([]string, len(g.VIPs))
		for j, p := range g.VIPs {
			ps[j] = p.String()
		}
		slices.Sort(ps)
		keys[i] = fmt.Sprintf("%s/%d=%s", g.Family(), g.VRID, strings.Join(ps, ","))
		if g.Prefer != "" {
			keys[i] += ">" + g.Prefer
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintln(h, k)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// MemberState is what a known member is doing, as this node sees it.
type MemberState string

// Member states, as /status and the members metric show them. Every known
// member is in the ranking whatever its state; the state says whether it
// takes part in VRRP now.
const (
	StateRanked   MemberState = "ranked"   // up, healthy, settled: holds its share
	StateSettling MemberState = "settling" // up and healthy, not settled yet
	// StateHeld: up and healthy, held out of its VIPs for coming back
	// too often (move damping).
	StateHeld      MemberState = "held_down"
	StateDown      MemberState = "down" // known, not alive
	StateUnhealthy MemberState = "unhealthy"
	StateMismatch  MemberState = "config_mismatch"
)

var memberStates = []MemberState{StateRanked, StateSettling, StateHeld, StateDown, StateUnhealthy, StateMismatch}

// ConfigMinority reports whether the members sharing digest are outnumbered
// by the members of another digest (a tie goes to the smaller digest), so
// that during a config change exactly one side keeps the VIPs.
func ConfigMinority(members []gossip.Member, digest string) bool {
	count := map[string]int{}
	for _, m := range members {
		count[m.Meta.Digest]++
	}
	for d, n := range count {
		if d != digest && (n > count[digest] || (n == count[digest] && d < digest)) {
			return true
		}
	}
	return false
}

// UnrankedPriority is this node's priority for every VIP while it has not
// settled (or is cut off): a backup of last resort, never an owner.
const UnrankedPriority = 1

// Members is the part of the membership the controller reads and writes.
type Members interface {
	Members() []gossip.Member
	Known() []gossip.KnownMember
	Changes() <-chan struct{}
	Meta() gossip.Meta
	UpdateMeta(func(*gossip.Meta))
}

// ControllerConfig configures the dynamic mode.
type ControllerConfig struct {
	Local       string
	Groups      []Group
	Digest      string
	Settle      time.Duration
	Debounce    time.Duration // coalesce bursts of membership events; default 100ms
	UnicastAuto bool          // VRRP peers are the members
	// HasSeeds: join seeds are configured, so being alone means being cut
	// off (wrong key, blocked port), not a one-node cluster.
	HasSeeds bool
	// JoinGrace is how long a starting node with seeds that sees no member
	// stays out of VRRP: it must not take VIPs from a running cluster only
	// because it has not heard it yet. Default: settle, at least 5 s.
	JoinGrace time.Duration
	// Events, when set, hears the warnings an operator follows on the
	// node's event stream (a member with another config).
	Events vrrp.EventSink
	// KeepalivedPeers are admitted at any priority (vrrp.keepalived_peers:
	// a migration from keepalived).
	KeepalivedPeers []netip.Addr
}

// Inputs are everything a decision depends on.
type Inputs struct {
	Known   []gossip.KnownMember
	Live    []gossip.Member
	Healthy bool // this node's checks pass
	Settled bool // and have for settle
	// Starting: within JoinGrace of the start.
	Starting bool
	// ForeignKeyed: adverts for our VIPs came lately signed with another
	// key: a cluster is there, and this node has another key than it.
	ForeignKeyed bool
	// LastMeta is the last metadata seen from each known member, live or
	// not: a member that gossip lost may still speak VRRP.
	LastMeta map[string]gossip.Meta
	// Holds are the hold-downs this node imposes on members that keep
	// coming back; SelfHeld: this node is held out (by the others) now.
	Holds    map[string]Hold
	SelfHeld bool
	// Standings are the members' soft-check standings (CompactStandings)
	// by name, this node's included, as the controller applies them: once
	// they have been quiet for a while (standingQuiet).
	Standings map[string]map[string]int
}

// Decision is what this node does, and what it shows, for one set of
// inputs.
type Decision struct {
	Specs    []vrrp.RouterSpec // this node's virtual routers
	Resign   bool              // out of VRRP: unhealthy, or the config minority
	Minority bool
	Alone    bool // cut off from the cluster although it has seeds
	// Joining: starting and alone, so out of VRRP until it sees the
	// cluster or JoinGrace ends.
	Joining bool
	// OtherKey: alone, never knew another member, and hears a cluster
	// whose adverts it cannot authenticate: out of VRRP, since it would
	// take every VIP it cannot hear a master of.
	OtherKey bool
	Peers    []netip.Addr
	// Admit limits the adverts this node accepts to the members, each at
	// most at its planned priority; nil (accept all) until this node has
	// settled, when gossip has had time to show every member.
	Admit *vrrp.Admission
	// LegacyKeyID: a known member may accept a key derived from the
	// gossip key only under garpd 0.1's id (its metadata, live or last
	// seen, lacks KeyID2, or was never seen), so this node signs with it.
	LegacyKeyID bool
	Counts      map[MemberState]int
	Status      ControllerStatus
}

// Decide is the controller's logic as a pure function: the plan over the
// known members, this node's priorities from it, and each member's state.
// A node that is not settled (or is cut off) is a backup of last resort
// for every group; members' states never change the plan, only who VRRP
// elects.
func Decide(cfg ControllerConfig, plan Plan, in Inputs) Decision {
	d := Decision{Counts: map[MemberState]int{}}
	plan = plan.WithStandings(func(name string) map[string]int { return in.Standings[name] })
	live := map[string]gossip.Member{}
	for _, m := range in.Live {
		live[m.Name] = m
	}
	for _, k := range in.Known { // down members as last seen: they come back as they were
		m, alive := live[k.Name]
		meta, seen := m.Meta, alive
		if !alive {
			meta, seen = in.LastMeta[k.Name]
		}
		d.LegacyKeyID = d.LegacyKeyID || (k.Name != cfg.Local && (!seen || !meta.KeyID2))
	}
	states := map[string]MemberState{}
	for _, k := range in.Known {
		m, alive := live[k.Name]
		st := StateDown
		switch {
		case k.Name == cfg.Local:
			st = localState(in)
		case !alive:
		case m.Meta.Digest != cfg.Digest:
			st = StateMismatch
		case !m.Meta.Healthy:
			st = StateUnhealthy
		case !m.Meta.Settled && in.Holds[k.Name].Returns > 0:
			st = StateHeld
		case !m.Meta.Settled:
			st = StateSettling
		default:
			st = StateRanked
		}
		states[k.Name] = st
		d.Counts[st]++
		ms := MemberStatus{Name: k.Name, State: st}
		if h, ok := in.Holds[k.Name]; ok {
			ms.HeldUntil, ms.HoldReason = h.Until.UTC().Format(time.RFC3339), h.Reason()
		}
		if alive {
			ms.Addr, ms.Failing, ms.Excluded, ms.Digest, ms.Version = m.Addr.String(), m.Meta.Failing, m.Meta.Excluded, m.Meta.Digest, m.Meta.Version
		}
		if !k.DownSince.IsZero() && st == StateDown {
			ms.DownSince = k.DownSince.UTC().Format(time.RFC3339)
		}
		d.Status.Members = append(d.Status.Members, ms)
		d.Status.Known = append(d.Status.Known, k.Name)
		if !m.Self && alive && m.Meta.Digest == cfg.Digest {
			for _, a := range []string{m.Meta.VRRP4, m.Meta.VRRP6} {
				if p, err := netip.ParseAddr(a); err == nil {
					d.Peers = append(d.Peers, p)
				}
			}
		}
	}
	// Live members of another config are not in our plan; show them.
	for _, m := range in.Live {
		if _, ok := states[m.Name]; ok || m.Meta.Digest == cfg.Digest {
			continue
		}
		d.Counts[StateMismatch]++
		d.Status.Members = append(d.Status.Members, MemberStatus{Name: m.Name, Addr: m.Addr.String(), State: StateMismatch,
			Failing: m.Meta.Failing, Digest: m.Meta.Digest, Version: m.Meta.Version})
	}
	d.Minority = ConfigMinority(in.Live, cfg.Digest)
	d.Alone = cfg.HasSeeds && len(in.Live) <= 1
	d.Joining = d.Alone && in.Starting
	d.OtherKey = d.Alone && len(in.Known) <= 1 && in.ForeignKeyed
	d.Resign = !in.Healthy || d.Minority || d.Joining || d.OtherKey
	// Not electable for VRRP: anyone whose state is not ranked.
	down := map[string]bool{}
	for name, st := range states {
		down[name] = st != StateRanked
	}
	// Alone, a node that never knew another member (a wrong key) must not
	// claim ownership. One that did keeps its ranks: the plan over the
	// known members is the one every node holds, and VRRP keeps
	// arbitrating while gossip is cut, so nothing needs to move.
	lastResort := !in.Settled || (d.Alone && len(in.Known) <= 1)
	if !lastResort {
		d.Admit = admission(cfg, plan, in)
	}
	for _, r := range plan.Groups {
		prio := UnrankedPriority
		if rank := r.RankOf(cfg.Local); rank >= 0 && !lastResort {
			prio = PriorityForRank(rank, r.Len())
		}
		d.Specs = append(d.Specs, r.Group.Spec(uint8(prio)))
		vs := VIPStatus{VRID: r.Group.VRID, Ranking: r.Ranking(), Holder: r.Holder(down), Priority: prio}
		for _, p := range r.Group.VIPs {
			vs.VIPs = append(vs.VIPs, p.Addr().String())
		}
		d.Status.VIPs = append(d.Status.VIPs, vs)
	}
	return d
}

// admission lets each known member of this config speak VRRP from the
// addresses it last gossiped, for each group up to the priority its rank
// gives it (a member ranked nowhere: UnrankedPriority). Known, not live: a
// member that gossip lost (a blocked port, a paused process) but that VRRP
// still hears keeps arbitrating, as without admission. States are
// ignored: a member settling or resigned sends lower priorities, never
// higher.
func admission(cfg ControllerConfig, plan Plan, in Inputs) *vrrp.Admission {
	a := vrrp.NewAdmission()
	for _, p := range cfg.KeepalivedPeers {
		a.AllowAny(p)
	}
	for _, k := range in.Known {
		m, ok := in.LastMeta[k.Name]
		if !ok || k.Name == cfg.Local || m.Digest != cfg.Digest {
			continue
		}
		if mac, err := net.ParseMAC(m.MAC); err == nil {
			a.AllowMAC(mac)
		}
		for _, r := range plan.Groups {
			src, err := netip.ParseAddr(m.VRRP4)
			if r.Group.V6 {
				src, err = netip.ParseAddr(m.VRRP6)
			}
			if err != nil {
				continue
			}
			prio := UnrankedPriority
			if rank := r.RankOf(k.Name); rank >= 0 {
				prio = PriorityForRank(rank, r.Len())
			}
			a.Allow(src, r.Group.V6, uint8(r.Group.VRID), uint8(prio))
		}
	}
	return a
}

func localState(in Inputs) MemberState {
	switch {
	case !in.Healthy:
		return StateUnhealthy
	case !in.Settled && in.SelfHeld:
		return StateHeld
	case !in.Settled:
		return StateSettling
	}
	return StateRanked
}

// foreignKeyedFor is how long adverts signed with another key count as
// evidence of a cluster this node has not the key of: several master-down
// intervals at the slowest advert interval.
const foreignKeyedFor = 15 * time.Second

// Controller turns the known members, membership and local health into
// VRRP priorities.
type Controller struct {
	cfg     ControllerConfig
	members Members
	engine  Plane
	log     zerolog.Logger
	gauge   *prometheus.GaugeVec
	// The newest verdict, and a coalescing signal that it changed.
	verdictMu    sync.Mutex
	verdict      verdict
	healthSignal chan struct{}

	mu     sync.Mutex
	status ControllerStatus

	// Owned by Run's goroutine.
	applied []vrrp.RouterSpec
	admit   *vrrp.Admission
	// legacyKeyID is what the engine signs with (see Decision), as the
	// engine starts.
	legacyKeyID bool
	lastMeta    map[string]gossip.Meta // per known member, from when it was last live
	resigned    bool
	peers       []netip.Addr
	mismatch    map[string]string // member → digest already logged
	minority    bool
	alone       bool
	settled     bool
	healthy     bool
	readyFrom   time.Time // healthy since
	standings   standingHold
	started     time.Time
	damp        *damper
	published   map[string]int64 // the hold-downs gossiped
	selfHold    time.Time        // the longest the others impose on this node
	known       []string         // the plan's members
	plan        Plan
	planGauge   prometheus.Gauge // garpd_plan_digest; nil: none
}

// ControllerStatus is the dynamic mode's view for /status.
type ControllerStatus struct {
	Members []MemberStatus `json:"members"`
	VIPs    []VIPStatus    `json:"vips"`
	Known   []string       `json:"known"`
	// PlanDigest names the rankings this node runs (PlanDigest): equal on
	// every node that agrees on the plan.
	PlanDigest string `json:"plan_digest"`
}

// PlanDigest is a short digest of the rankings in vips (each group's VRID,
// VIPs and ranking, in order), the same on every node that runs the same
// plan, so agreement is one comparison; "" when there is none.
func PlanDigest(vips []VIPStatus) string {
	if len(vips) == 0 {
		return ""
	}
	h := sha256.New()
	for _, v := range vips {
		fmt.Fprintf(h, "%d %s %s\n", v.VRID, strings.Join(v.VIPs, ","), strings.Join(v.Ranking, ","))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// NewPlanDigestGauge creates garpd_plan_digest, once per process; reg may
// be nil.
func NewPlanDigestGauge(reg prometheus.Registerer) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "garpd_plan_digest",
		Help: "The plan this node runs, as a number (the first 32 bits of /status's plan_digest): equal on every node that agrees; count(count_values(\"d\", garpd_plan_digest)) is 1 when all do.",
	})
	if reg != nil {
		reg.MustRegister(g)
	}
	return g
}

// MemberStatus is one known member as this node sees it.
type MemberStatus struct {
	Name      string      `json:"name"`
	Addr      string      `json:"addr,omitempty"`
	State     MemberState `json:"state"`
	DownSince string      `json:"down_since,omitempty"`
	// HeldUntil and HoldReason: the member keeps coming back, and this
	// node holds it out of its VIPs until then (move damping).
	HeldUntil  string   `json:"held_until,omitempty"`
	HoldReason string   `json:"hold_reason,omitempty"`
	Failing    []string `json:"failing_checks,omitempty"`
	Excluded   string   `json:"excluded,omitempty"` // why the platform took it out
	Digest     string   `json:"digest,omitempty"`
	Version    string   `json:"version,omitempty"`
}

// VIPStatus is one group's ranking, who VRRP elects from it now, and this
// node's priority for it.
type VIPStatus struct {
	VIPs     []string `json:"vips"`
	VRID     int      `json:"vrid"`
	Ranking  []string `json:"ranking"`
	Holder   string   `json:"holder"`
	Priority int      `json:"priority"`
}

// defaultJoinGrace is how long a starting node with seeds waits to see
// the cluster before it takes VIPs alone: settle, and at least 5 s.
func defaultJoinGrace(settle time.Duration) time.Duration { return max(settle, 5*time.Second) }

// NewMembersGauge creates the members-by-state metric, once per process
// (controllers come and go with reloads); reg may be nil.
func NewMembersGauge(reg prometheus.Registerer) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "garpd_members",
		Help: "Known members by state: ranked, settling, held_down (move damping), down, unhealthy, config_mismatch.",
	}, []string{"state"})
	if reg != nil {
		reg.MustRegister(g)
	}
	return g
}

// NewController wires the controller.
func NewController(cfg ControllerConfig, members Members, engine Plane, log zerolog.Logger, gauge *prometheus.GaugeVec) *Controller {
	if gauge == nil {
		gauge = NewMembersGauge(nil)
	}
	c := &Controller{engine: engine, log: log, healthSignal: make(chan struct{}, 1),
		mismatch: map[string]string{}, healthy: true, readyFrom: time.Now(), started: time.Now(), gauge: gauge,
		lastMeta: map[string]gossip.Meta{}, legacyKeyID: true, standings: standingHold{quiet: minStandingQuiet}}
	c.attach(cfg, members)
	return c
}

// attach gives the controller its config and membership, which Run reads;
// until then it only collects the verdict (SetHealth, SetEligible).
func (c *Controller) attach(cfg ControllerConfig, members Members) {
	cfg.Debounce = cmp.Or(cfg.Debounce, 100*time.Millisecond)
	cfg.JoinGrace = cmp.Or(cfg.JoinGrace, defaultJoinGrace(cfg.Settle))
	c.cfg, c.members = cfg, members
	c.damp = newDamper(cfg.Settle)
}

// verdict is what takes this node out of the plan while it lasts: failing
// health checks, and a Node that Kubernetes says is not eligible.
type verdict struct {
	failing []string
	// standings: the soft checks' (CompactStandings); standingQuiet: how
	// long the members' standings must hold before they reorder.
	standings     map[string]int
	standingQuiet time.Duration
	excluded      string
	duplicate     string // another node runs under this name, and was first
	// keepalived replaces the config's keepalived peers (a reload), when
	// set.
	keepalived *[]netip.Addr
}

func (v verdict) healthy() bool { return len(v.failing) == 0 && v.excluded == "" && v.duplicate == "" }

// out is why this node is out of the plan but for its checks: what its
// metadata shows others.
func (v verdict) out() string {
	if v.excluded != "" && v.duplicate != "" {
		return v.excluded + "; " + v.duplicate
	}
	return v.excluded + v.duplicate
}

// SetKeepalivedPeers replaces the keepalived nodes admitted at any
// priority (a reload during, or at the end of, a migration).
func (c *Controller) SetKeepalivedPeers(peers []netip.Addr) {
	peers = slices.Clone(peers)
	c.setVerdict(func(v *verdict) { v.keepalived = &peers })
}

// SetHealth reports the failing health checks; none is healthy.
func (c *Controller) SetHealth(failing []string) {
	c.setVerdict(func(v *verdict) { v.failing = slices.Clone(failing) })
}

// SetStandings reports this node's soft-check standings
// (CompactStandings): the members reorder their rankings by them. quiet
// is how long the members' standings must hold still before they do: a
// check that fails on every node at once (a shared API down) is seen
// failing on each up to one interval and timeout apart, and gossiped a
// moment later; applied as they come, the first to fail would hand its
// VIPs to nodes about to fail too, and they would come back.
func (c *Controller) SetStandings(standings map[string]int, quiet time.Duration) {
	c.setVerdict(func(v *verdict) { v.standings, v.standingQuiet = maps.Clone(standings), quiet })
}

// SetEligible reports why Kubernetes says this node's Node is not
// eligible (an exclude label), or "" when it is: an excluded node resigns
// as one with a failing check does, and comes back after settle.
func (c *Controller) SetEligible(excluded string) {
	c.setVerdict(func(v *verdict) { v.excluded = excluded })
}

// SetDuplicate reports that another node runs under this node's name and
// started first (why), or "" when that is over: this one stays out.
func (c *Controller) SetDuplicate(why string) {
	c.setVerdict(func(v *verdict) { v.duplicate = why })
}

func (c *Controller) setVerdict(change func(*verdict)) {
	c.verdictMu.Lock()
	change(&c.verdict)
	c.verdictMu.Unlock()
	select {
	case c.healthSignal <- struct{}{}:
	default:
	}
}

func (c *Controller) latestVerdict() verdict {
	c.verdictMu.Lock()
	defer c.verdictMu.Unlock()
	return c.verdict
}

// Status returns the latest view.
func (c *Controller) Status() ControllerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Run drives priorities until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	var debounce <-chan time.Time
	// The end of the join grace needs a recompute even if nothing changes.
	joinGraceEnd := time.After(time.Until(c.started.Add(c.cfg.JoinGrace)))
	c.publish()
	c.recompute(ctx)
	for {
		// Alone, adverts signed with another key may come and go: look
		// again every second.
		var aloneTick <-chan time.Time
		if c.alone {
			aloneTick = time.After(time.Second)
		}
		var standingsDue <-chan time.Time
		if due, ok := c.standings.due(); ok {
			standingsDue = time.After(time.Until(due))
		}
		var settle <-chan time.Time
		if c.healthy && !c.settled {
			settle = time.After(max(time.Until(c.readyFrom.Add(c.cfg.Settle)), time.Until(c.selfHold), 0))
		}
		select {
		case <-ctx.Done():
			return
		case <-c.members.Changes():
			if debounce == nil {
				debounce = time.After(c.cfg.Debounce)
			}
		case <-c.healthSignal:
			v := c.latestVerdict()
			if h := v.healthy(); h != c.healthy {
				c.healthy, c.settled, c.readyFrom = h, false, time.Now()
				// Resigning is local and at once.
				c.recompute(ctx)
			}
			c.publish()
			c.standings.quiet = cmp.Or(v.standingQuiet, minStandingQuiet)
			if !maps.Equal(v.standings, c.standings.own) {
				c.standings.own = v.standings
				c.log.Info().Interface("standings", v.standings).Dur("quiet", v.standingQuiet).Msg("soft checks: this node's standings changed; the members reorder their rankings by them once the standings held still that long")
				c.recompute(ctx)
			}
		case <-settle:
			if time.Now().Before(c.selfHold) {
				continue // held longer meanwhile
			}
			c.settled = true
			c.log.Info().Dur("settle", c.cfg.Settle).Msg("settled: raising this node's priorities to its ranks")
			c.recompute(ctx)
			c.publish()
		case <-debounce:
			debounce = nil
			c.recompute(ctx)
		case <-standingsDue:
			c.recompute(ctx)
		case <-joinGraceEnd:
			joinGraceEnd = nil
			c.recompute(ctx)
		case <-aloneTick:
			c.recompute(ctx)
		}
	}
}

// publish gossips this node's verdict and whether it has settled. The
// controller is the only writer of this node's metadata after the start.
func (c *Controller) publish() {
	v := c.latestVerdict()
	healthy, settled := c.healthy, c.healthy && c.settled
	c.members.UpdateMeta(func(m *gossip.Meta) {
		m.Healthy, m.Settled, m.Failing, m.Excluded = healthy, settled, v.failing, v.out()
		m.Standing = v.standings
	})
}

// recompute decides and carries the decision out.
func (c *Controller) recompute(ctx context.Context) {
	known := c.members.Known()
	names, ok := c.replan(known)
	if !ok {
		return
	}
	live := c.members.Members()
	for _, m := range live {
		c.lastMeta[m.Name] = m.Meta
	}
	for name := range c.lastMeta {
		if !slices.ContainsFunc(known, func(k gossip.KnownMember) bool { return k.Name == name }) {
			delete(c.lastMeta, name) // forgotten
		}
	}
	cfg := c.cfg
	if v := c.latestVerdict(); v.keepalived != nil {
		cfg.KeepalivedPeers = *v.keepalived
	}
	c.dampMoves(live, known)
	d := Decide(cfg, c.plan, Inputs{Known: known, Live: live, Healthy: c.healthy, Settled: c.healthy && c.settled,
		Starting: time.Since(c.started) < c.cfg.JoinGrace, LastMeta: c.lastMeta,
		Holds: c.damp.holds, SelfHeld: time.Now().Before(c.selfHold), Standings: c.applyStandings(known),
		ForeignKeyed: c.alone && time.Since(c.engine.LastForeignKeyed(ctx)) < foreignKeyedFor})
	for _, s := range memberStates {
		c.gauge.WithLabelValues(string(s)).Set(float64(d.Counts[s]))
	}
	c.noteMismatches(live)
	if d.Minority != c.minority {
		c.minority = d.Minority
		if d.Minority {
			c.log.Error().Str("our_digest", c.cfg.Digest).Msg("most members run another config (VIPs, VRIDs or VRRP settings): resigning every VIP so the two configs never hold VIPs at once")
		} else {
			c.log.Info().Msg("our config is the majority's again")
		}
	}
	if d.Alone != c.alone {
		c.alone = d.Alone
		if d.Alone {
			c.log.Warn().Int("known", len(known)).Msg("alone although join seeds are configured (wrong key? gossip port blocked?): keeping the ranks of the known members' plan while VRRP arbitrates; a node that never knew another member is a backup of last resort")
		}
	}
	if c.cfg.UnicastAuto && !slices.Equal(d.Peers, c.peers) {
		if err := c.engine.SetPeers(ctx, d.Peers); err != nil {
			c.log.Error().Err(err).Msg("cannot set VRRP unicast peers")
		} else {
			c.peers = d.Peers
			c.log.Info().Int("peers", len(d.Peers)).Msg("VRRP unicast peers follow the member list")
		}
	}
	c.setStatus(d.Status)
	if !reflect.DeepEqual(d.Admit, c.admit) {
		if err := c.engine.SetAdmission(ctx, d.Admit); err != nil {
			c.log.Error().Err(err).Msg("cannot set which VRRP speakers are members")
		} else {
			was := c.admit
			c.admit = d.Admit
			switch {
			case d.Admit != nil && was != nil:
				c.log.Debug().Msg("VRRP admission follows the new rankings")
			case d.Admit != nil:
				c.log.Info().Msg("VRRP adverts now count only from members, each up to its planned priority")
			default:
				c.log.Info().Msg("VRRP adverts count from any speaker until this node has settled")
			}
		}
	}
	if d.LegacyKeyID != c.legacyKeyID {
		if err := c.engine.SetLegacyKeyID(ctx, d.LegacyKeyID); err != nil {
			c.log.Error().Err(err).Msg("cannot set the VRRP key id adverts are signed with")
		} else if c.legacyKeyID = d.LegacyKeyID; d.LegacyKeyID {
			c.log.Warn().Msg("a member runs a release that knows a derived VRRP key only by its old id, one byte of the key: signing with it until every member is upgraded")
		} else {
			c.log.Info().Msg("every member knows the derived VRRP key by its own id: signing with it, which says nothing of the key")
		}
	}
	if c.setResigned(ctx, d) {
		return
	}
	if slices.EqualFunc(d.Specs, c.applied, func(a, b vrrp.RouterSpec) bool {
		return a.VRID == b.VRID && a.Priority == b.Priority && slices.Equal(a.VIPs, b.VIPs) && a.Name == b.Name
	}) {
		return
	}
	if err := c.engine.Update(ctx, d.Specs); err != nil {
		c.log.Error().Err(err).Msg("cannot apply priorities")
		return
	}
	c.applied = d.Specs
	owned := 0
	for _, s := range d.Specs {
		if int(s.Priority) == OwnerPriority {
			owned += len(s.VIPs)
		}
	}
	c.log.Info().Strs("known", names).Int("owner_of", owned).Int("vips", countVIPs(d.Specs)).Msg("priorities updated")
}

// applyStandings returns the members' standings Decide orders by: the
// latest (gossiped, and this node's own) once they have held still for
// the quiet period, or for four of them while they keep changing.
func (c *Controller) applyStandings(known []gossip.KnownMember) map[string]map[string]int {
	latest := map[string]map[string]int{}
	for _, k := range known {
		st := c.lastMeta[k.Name].Standing
		if k.Name == c.cfg.Local {
			st = c.standings.own
		}
		if st != nil {
			latest[k.Name] = st
		}
	}
	if c.standings.observe(time.Now(), latest) {
		c.log.Info().Interface("standings", c.standings.applied).Msg("soft checks: the members' rankings follow their standings")
	}
	return c.standings.applied
}

// dampMoves counts the members' returns, holds out those that keep coming
// back and gossips the hold-downs; and learns the longest the others
// impose on this node, which it settles after.
func (c *Controller) dampMoves(live []gossip.Member, known []gossip.KnownMember) {
	now := time.Now()
	for _, name := range c.damp.observe(now, live, c.cfg.Local) {
		h := c.damp.holds[name]
		c.log.Warn().Str("member", name).Int("returns", h.Returns).Time("held_until", h.Until).Msg("member keeps coming back: " + h.Reason())
		if c.cfg.Events != nil {
			c.cfg.Events(true, "MemberHeldDown", "member "+name+" "+h.Reason())
		}
	}
	c.damp.forget(func(name string) bool {
		return slices.ContainsFunc(known, func(k gossip.KnownMember) bool { return k.Name == name })
	})
	if pub := c.damp.published(); !maps.Equal(pub, c.published) {
		c.published = pub
		c.members.UpdateMeta(func(m *gossip.Meta) { m.Hold = pub })
	}
	if until := heldBy(live, c.cfg.Local, now); until.After(c.selfHold) {
		c.selfHold = until
		if !c.settled {
			c.log.Warn().Time("held_until", until).Msg("this node keeps coming back: the other members hold it out of its VIPs until then (move damping); it stays a backup meanwhile")
			if c.cfg.Events != nil {
				c.cfg.Events(true, "HeldDown", "this node came back too often: held out of its VIPs until "+until.UTC().Format(time.RFC3339)+" (move damping), so no VIP moves often enough to trip EVPN duplicate detection")
			}
		}
	}
}

// replan ranks the known members again when they changed, and returns
// their names; false when they cannot be ranked.
func (c *Controller) replan(known []gossip.KnownMember) ([]string, bool) {
	names := make([]string, len(known))
	for i, k := range known {
		names[i] = k.Name
	}
	if slices.Equal(names, c.known) && c.plan.Groups != nil {
		return names, true
	}
	plan, err := Rank(names, c.cfg.Groups)
	if err != nil {
		c.log.Error().Err(err).Msg("cannot rank")
		return nil, false
	}
	if c.known != nil {
		c.log.Info().Strs("known", names).Strs("before", c.known).Int("vips_changing_owner", len(Moves(c.plan, plan, nil))).
			Msg("known members changed: re-planned")
	}
	c.plan, c.known = plan, names
	return names, true
}

// noteMismatches logs, and records as an Event, each live member whose
// config digest differs from ours, once per digest.
func (c *Controller) noteMismatches(live []gossip.Member) {
	for _, m := range live {
		if m.Meta.Digest == c.cfg.Digest || c.mismatch[m.Name] == m.Meta.Digest {
			continue
		}
		c.mismatch[m.Name] = m.Meta.Digest
		c.log.Error().Str("member", m.Name).Str("their_digest", m.Meta.Digest).Str("our_digest", c.cfg.Digest).
			Msg("member's config differs from ours (VIPs, VRIDs, VRRP version or interval). Give every node the same vips and vrrp settings")
		if c.cfg.Events != nil {
			c.cfg.Events(true, "ConfigMismatch", fmt.Sprintf("member %s runs another config (digest %s, ours %s): give every node the same vips and vrrp settings",
				m.Name, m.Meta.Digest, c.cfg.Digest))
		}
	}
}

// setResigned resigns every VIP when the decision says so, or comes back
// as a backup when it no longer does; true while resigned.
func (c *Controller) setResigned(ctx context.Context, d Decision) bool {
	if !d.Resign {
		if c.resigned {
			if err := c.engine.Resign(ctx, false); err == nil {
				c.resigned = false
				c.log.Info().Dur("settle", c.cfg.Settle).Msg("back in VRRP as a backup; this node's own VIPs come back after settle")
			}
		}
		return false
	}
	if c.resigned {
		return true
	}
	if err := c.engine.Resign(ctx, true); err == nil {
		c.resigned = true
		switch {
		case d.OtherKey:
			c.log.Error().Msg("alone, and adverts for our VIPs come signed with a key this node does not have: its gossip key (or vrrp.auth_hmac) is not the cluster's; taking no VIP. Give it the cluster's key")
		case d.Joining:
			c.log.Warn().Dur("join_grace", c.cfg.JoinGrace).Msg("starting and no member seen yet: taking no VIP until the cluster is seen or the join grace ends")
		default:
			c.log.Warn().Bool("healthy", c.healthy).Bool("config_minority", d.Minority).Msg("resigned every VIP (priority-0 adverts)")
		}
	}
	return true
}

func countVIPs(specs []vrrp.RouterSpec) int {
	n := 0
	for _, s := range specs {
		n += len(s.VIPs)
	}
	return n
}

func (c *Controller) setStatus(s ControllerStatus) {
	s.PlanDigest = PlanDigest(s.VIPs)
	if c.planGauge != nil {
		var n uint64
		if b, err := hex.DecodeString(s.PlanDigest); err == nil && len(b) >= 4 {
			n = uint64(binary.BigEndian.Uint32(b))
		}
		c.planGauge.Set(float64(n))
	}
	c.mu.Lock()
	c.status = s
	c.mu.Unlock()
}
