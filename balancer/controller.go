package balancer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintln(h, k)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// MemberState says why a member is or is not ranked.
type MemberState string

// Member states, as /status and the members metric show them.
const (
	StateRanked    MemberState = "ranked"
	StateSettling  MemberState = "settling"
	StateUnhealthy MemberState = "unhealthy"
	StateMismatch  MemberState = "config_mismatch"
)

// Eligible decides who is ranked: healthy members with our config digest
// that became ready at or before the cutoff max(now - settle, earliest +
// settle), where earliest is the first ready time among them. Nodes that
// start together (within settle of the first) are ranked at once and stay
// ranked, since the cutoff only grows; a node that joins or recovers later
// is ranked settle after it became ready. next is when the next waiting
// member will qualify (zero if none waits).
func Eligible(members []gossip.Member, digest string, now time.Time, settle time.Duration) (ranked []string, states map[string]MemberState, next time.Time) {
	states = map[string]MemberState{}
	var earliest int64
	for _, m := range members {
		switch {
		case m.Meta.Digest != digest:
			states[m.Name] = StateMismatch
		case !m.Meta.Healthy:
			states[m.Name] = StateUnhealthy
		case m.Meta.ReadySince <= 0:
			states[m.Name] = StateSettling // not told yet since when
		default:
			states[m.Name] = StateSettling
			if earliest == 0 || m.Meta.ReadySince < earliest {
				earliest = m.Meta.ReadySince
			}
		}
	}
	cutoff := max(now.Add(-settle).UnixMilli(), earliest+settle.Milliseconds())
	for _, m := range members {
		if states[m.Name] != StateSettling || m.Meta.ReadySince <= 0 {
			continue
		}
		if m.Meta.ReadySince <= cutoff {
			states[m.Name] = StateRanked
			ranked = append(ranked, m.Name)
			continue
		}
		at := time.UnixMilli(m.Meta.ReadySince).Add(settle)
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	return ranked, states, next
}

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

// UnrankedPriority is this node's priority for every VIP while it is not
// ranked (settling): a backup of last resort, never an owner.
const UnrankedPriority = 1

// LocalRouters turns a plan into this node's virtual routers: its priority
// for each group follows its rank.
func LocalRouters(p Plan, local string) []vrrp.RouterSpec {
	out := make([]vrrp.RouterSpec, len(p.Groups))
	for i, r := range p.Groups {
		prio := UnrankedPriority
		if rank := r.RankOf(local); rank >= 0 {
			prio = PriorityForRank(rank, r.Len())
		}
		out[i] = vrrp.RouterSpec{VRID: uint8(r.Group.VRID), VIPs: slices.Clone(r.Group.VIPs), Priority: uint8(prio)}
	}
	return out
}

// Engine is the part of the VRRP engine the controller drives.
type Engine interface {
	Update(ctx context.Context, specs []vrrp.RouterSpec) error
	Resign(ctx context.Context, resigned bool) error
	SetPeers(ctx context.Context, peers []netip.Addr) error
}

// Members is the part of the membership the controller reads and writes.
type Members interface {
	Members() []gossip.Member
	Changes() <-chan struct{}
	Meta() gossip.Meta
	SetMeta(gossip.Meta)
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
}

// Controller turns membership and local health into VRRP priorities.
type Controller struct {
	cfg     ControllerConfig
	members Members
	engine  Engine
	log     zerolog.Logger
	gauge   *prometheus.GaugeVec
	// The newest health verdict, and a coalescing signal that it changed.
	latestHealthy atomic.Bool
	healthSignal  chan struct{}

	mu        sync.Mutex
	status    ControllerStatus
	applied   []vrrp.RouterSpec
	resigned  bool
	peers     []netip.Addr
	mismatch  map[string]string // member → digest already logged
	minority  bool
	alone     bool
	ranked    bool
	nextRank  time.Time // when a waiting member qualifies
	healthy   bool
	readyFrom time.Time // healthy and a member since
}

// ControllerStatus is the dynamic mode's view for /status.
type ControllerStatus struct {
	Members []MemberStatus `json:"members"`
	VIPs    []VIPStatus    `json:"vips"`
	Ranked  []string       `json:"ranked"`
}

// MemberStatus is one member as this node ranks it.
type MemberStatus struct {
	Name    string      `json:"name"`
	Addr    string      `json:"addr"`
	State   MemberState `json:"state"`
	Failing []string    `json:"failing_checks,omitempty"`
	Digest  string      `json:"digest"`
	Version string      `json:"version,omitempty"`
}

// VIPStatus is one group's ranking and this node's priority for it.
type VIPStatus struct {
	VIPs     []string `json:"vips"`
	VRID     int      `json:"vrid"`
	Ranking  []string `json:"ranking"`
	Priority int      `json:"priority"`
}

// NewMembersGauge creates the members-by-state metric, once per process
// (controllers come and go with reloads); reg may be nil.
func NewMembersGauge(reg prometheus.Registerer) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "garpd_members",
		Help: "Gossip members by ranking state: ranked, settling, unhealthy, config_mismatch.",
	}, []string{"state"})
	if reg != nil {
		reg.MustRegister(g)
	}
	return g
}

// NewController wires the controller.
func NewController(cfg ControllerConfig, members Members, engine Engine, log zerolog.Logger, gauge *prometheus.GaugeVec) *Controller {
	if cfg.Debounce == 0 {
		cfg.Debounce = 100 * time.Millisecond
	}
	if gauge == nil {
		gauge = NewMembersGauge(nil)
	}
	c := &Controller{cfg: cfg, members: members, engine: engine, log: log, healthSignal: make(chan struct{}, 1),
		mismatch: map[string]string{}, healthy: true, readyFrom: time.Now(), gauge: gauge}
	c.latestHealthy.Store(true)
	return c
}

// SetHealthy reports the local health verdict (from the health checks).
func (c *Controller) SetHealthy(healthy bool) {
	c.latestHealthy.Store(healthy)
	select {
	case c.healthSignal <- struct{}{}:
	default:
	}
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
	schedule := func() {
		if debounce == nil {
			debounce = time.After(c.cfg.Debounce)
		}
	}
	c.publish()
	c.recompute(ctx)
	for {
		var settle <-chan time.Time
		if !c.nextRank.IsZero() {
			settle = time.After(max(time.Until(c.nextRank), 0))
		}
		select {
		case <-ctx.Done():
			return
		case <-c.members.Changes():
			schedule()
		case <-c.healthSignal:
			if h := c.latestHealthy.Load(); h != c.healthy {
				c.healthy = h
				c.readyFrom = time.Now()
				c.publish()
				// Resigning is local and at once; re-ranking follows gossip.
				c.recompute(ctx)
			}
		case <-settle:
			c.recompute(ctx)
		case <-debounce:
			debounce = nil
			c.recompute(ctx)
		}
	}
}

// publish gossips this node's health and since when it is ready.
func (c *Controller) publish() {
	m := c.members.Meta()
	m.Healthy = c.healthy
	m.ReadySince = 0
	if c.healthy {
		m.ReadySince = c.readyFrom.UnixMilli()
	}
	c.members.SetMeta(m)
}

func (c *Controller) recompute(ctx context.Context) {
	members := c.members.Members()
	ranked, states, next := Eligible(members, c.cfg.Digest, time.Now(), c.cfg.Settle)
	c.nextRank = next
	if r := slices.Contains(ranked, c.cfg.Local); r != c.ranked {
		c.ranked = r
		if r {
			c.log.Info().Msg("this node is ranked: it owns its share of VIPs")
		} else if c.healthy {
			c.log.Info().Dur("settle", c.cfg.Settle).Msg("this node is not ranked yet: settling before it takes a share")
		}
	}
	counts := map[MemberState]int{}
	st := ControllerStatus{Ranked: ranked}
	var peers []netip.Addr
	for _, m := range members {
		s := states[m.Name]
		counts[s]++
		st.Members = append(st.Members, MemberStatus{Name: m.Name, Addr: m.Addr.String(), State: s,
			Failing: m.Meta.Failing, Digest: m.Meta.Digest, Version: m.Meta.Version})
		if s == StateMismatch && c.mismatch[m.Name] != m.Meta.Digest {
			c.mismatch[m.Name] = m.Meta.Digest
			c.log.Error().Str("member", m.Name).Str("their_digest", m.Meta.Digest).Str("our_digest", c.cfg.Digest).
				Msg("member's config differs from ours (VIPs, VRIDs, VRRP version or interval): not ranking it. Give every node the same vips and vrrp settings")
		}
		if !m.Self && s != StateMismatch {
			for _, a := range []string{m.Meta.VRRP4, m.Meta.VRRP6} {
				if p, err := netip.ParseAddr(a); err == nil {
					peers = append(peers, p)
				}
			}
		}
	}
	for _, s := range []MemberState{StateRanked, StateSettling, StateUnhealthy, StateMismatch} {
		c.gauge.WithLabelValues(string(s)).Set(float64(counts[s]))
	}
	if c.cfg.UnicastAuto && !slices.Equal(peers, c.peers) {
		if err := c.engine.SetPeers(ctx, peers); err != nil {
			c.log.Error().Err(err).Msg("cannot set VRRP unicast peers")
		} else {
			c.peers = peers
			c.log.Info().Int("peers", len(peers)).Msg("VRRP unicast peers follow the member list")
		}
	}

	minority := ConfigMinority(members, c.cfg.Digest)
	if minority != c.minority {
		c.minority = minority
		if minority {
			c.log.Error().Str("our_digest", c.cfg.Digest).Msg("most members run another config (VIPs, VRIDs or VRRP settings): resigning every VIP so the two configs never hold VIPs at once")
		} else {
			c.log.Info().Msg("our config is the majority's again")
		}
	}
	if !c.healthy || minority {
		if !c.resigned {
			if err := c.engine.Resign(ctx, true); err == nil {
				c.resigned = true
				c.log.Warn().Bool("healthy", c.healthy).Bool("config_minority", minority).Msg("resigned every VIP (priority-0 adverts)")
			}
		}
		c.setStatus(st)
		return
	}
	if c.resigned {
		if err := c.engine.Resign(ctx, false); err == nil {
			c.resigned = false
			c.log.Info().Msg("healthy again: back in VRRP as a backup; owner of a share after settle")
		}
	}
	var nodes []Node
	for _, n := range ranked {
		nodes = append(nodes, Node{Name: n, Weight: 1})
	}
	alone := c.cfg.HasSeeds && len(members) <= 1
	if alone != c.alone {
		c.alone = alone
		if alone {
			c.log.Warn().Msg("alone although join seeds are configured (wrong key? gossip port blocked?): backup of last resort for every VIP until the cluster is reachable")
		}
	}
	var specs []vrrp.RouterSpec
	if len(nodes) == 0 || alone {
		// Cut off from the cluster, or not even ourselves listed yet: never
		// claim ownership; take a VIP only if nobody else advertises it.
		for _, g := range c.cfg.Groups {
			specs = append(specs, vrrp.RouterSpec{VRID: uint8(g.VRID), VIPs: slices.Clone(g.VIPs), Priority: UnrankedPriority})
		}
	} else {
		plan, err := Rank(nodes, c.cfg.Groups)
		if err != nil {
			c.log.Error().Err(err).Msg("cannot rank")
			return
		}
		specs = LocalRouters(plan, c.cfg.Local)
		for _, r := range plan.Groups {
			vs := VIPStatus{VRID: r.Group.VRID, Ranking: r.Ranking()}
			for _, p := range r.Group.VIPs {
				vs.VIPs = append(vs.VIPs, p.Addr().String())
			}
			if rank := r.RankOf(c.cfg.Local); rank >= 0 {
				vs.Priority = PriorityForRank(rank, r.Len())
			} else {
				vs.Priority = UnrankedPriority
			}
			st.VIPs = append(st.VIPs, vs)
		}
	}
	c.setStatus(st)
	if slices.EqualFunc(specs, c.applied, func(a, b vrrp.RouterSpec) bool {
		return a.VRID == b.VRID && a.Priority == b.Priority && slices.Equal(a.VIPs, b.VIPs)
	}) {
		return
	}
	if err := c.engine.Update(ctx, specs); err != nil {
		c.log.Error().Err(err).Msg("cannot apply priorities")
		return
	}
	c.applied = specs
	owned := 0
	for _, s := range specs {
		if int(s.Priority) == OwnerPriority {
			owned += len(s.VIPs)
		}
	}
	c.log.Info().Strs("ranked", ranked).Int("owner_of", owned).Int("vips", countVIPs(specs)).Msg("ranking changed: priorities updated")
}

func countVIPs(specs []vrrp.RouterSpec) int {
	n := 0
	for _, s := range specs {
		n += len(s.VIPs)
	}
	return n
}

func (c *Controller) setStatus(s ControllerStatus) {
	c.mu.Lock()
	c.status = s
	c.mu.Unlock()
}
