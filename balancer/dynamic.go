package balancer

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/garpd/garpd/balancer/health"
	"github.com/garpd/garpd/gossip"
	"github.com/garpd/garpd/gossip/kube"
	"github.com/garpd/garpd/vrrp"
)

// DynamicConfig is what the dynamic mode runs from: the cluster's VIP
// groups and VRRP settings (which every member must share), and this
// node's gossip, health checks and Kubernetes section.
type DynamicConfig struct {
	Node       string
	Interface  string // whose MAC the members admit
	Groups     []Group
	VRRP       vrrp.Config
	Gossip     gossip.Config
	Health     health.Config
	Kubernetes *kube.Config // nil: no Kubernetes
	Version    string       // garpd's, gossiped to the members
}

// Plane is the vrrp command surface the dynamic mode drives (vrrp.Stacks
// is one): the routers, their resignation, peers and admission for the
// controller; the VRRP source addresses it gossips; where the engine's
// events go; the faults of checks scoped to VIPs.
type Plane interface {
	Update(ctx context.Context, specs []vrrp.RouterSpec) error
	Resign(ctx context.Context, resigned bool) error
	SetPeers(ctx context.Context, peers []netip.Addr) error
	SetAdmission(ctx context.Context, a *vrrp.Admission) error
	// LastForeignKeyed is when an advert for our VIPs last came signed
	// with a key this node does not have (zero: never).
	LastForeignKeyed(ctx context.Context) time.Time
	// SetLegacyKeyID: sign with a derived key's garpd 0.1 id, which every
	// member accepts, or with the id that leaks nothing of the key.
	SetLegacyKeyID(ctx context.Context, legacy bool) error
	Source(v6 bool) netip.Addr
	SetEvents(vrrp.EventSink)
	// SetFaults resigns the routers a failing check scoped to their VIPs
	// tracks (health.checks[].vips).
	SetFaults(ctx context.Context, faults map[vrrp.RouterID]string) error
}

// DynamicMetrics are the gauges the dynamic mode keeps, created once per
// process: a reload starts a new Dynamic on the same ones.
type DynamicMetrics struct {
	Members    *prometheus.GaugeVec // NewMembersGauge
	Checks     *prometheus.GaugeVec // health.NewGauge
	PlanDigest prometheus.Gauge     // NewPlanDigestGauge; nil: none
}

// Dynamic owns the dynamic mode: membership (gossip), the health checks,
// the Kubernetes watch and the controller, which turns them into this
// node's VRRP priorities and is the only writer of its member metadata.
type Dynamic struct {
	plane   Plane
	log     zerolog.Logger
	checks  *prometheus.GaugeVec
	members *gossip.Membership
	// joinBy is when a node with seeds that found no member stops
	// waiting to (the controller's join grace); zero: nobody to join.
	joinBy time.Time
	ctrl   *Controller
	api    *kube.API // nil without the kubernetes section
	// ctx ends the controller, gossip's loops and the checks; stopAPI
	// ends the Kubernetes watches and the event recorder, last.
	ctx      context.Context
	cancel   context.CancelFunc
	stopAPI  context.CancelFunc
	ctrlDone chan struct{}

	// groups are the VIP groups, which checks scoped to VIPs resign and
	// soft checks set standings for.
	groups []Group

	mu     sync.Mutex // the health checks, which a reload may replace
	health *health.Checker
	stopHC context.CancelFunc
	hcDone chan struct{}
}

// StartDynamic starts the dynamic mode over plane: the Kubernetes watch,
// gossip, the controller and the health checks. A step that fails stops
// what the steps before it started.
func StartDynamic(cfg DynamicConfig, plane Plane, log zerolog.Logger, m DynamicMetrics) (*Dynamic, error) {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("find interface %q: %w", cfg.Interface, err)
	}
	meta := gossip.Meta{
		Healthy: true,
		KeyID2:  true,
		Digest:  Digest(cfg.Groups, cfg.VRRP.Version, cfg.VRRP.AdvertInterval),
		MAC:     ifi.HardwareAddr.String(),
		Version: cfg.Version,
	}
	if a := plane.Source(false); a.IsValid() {
		meta.VRRP4 = a.String()
	}
	if a := plane.Source(true); a.IsValid() {
		meta.VRRP6 = a.String()
	}
	vips := map[netip.Addr]bool{}
	for _, g := range cfg.Groups {
		for _, v := range g.VIPs {
			vips[v.Addr()] = true
		}
	}
	gcfg, err := cfg.Gossip.Resolve(ifi, vips)
	if err != nil {
		return nil, err
	}
	// The controller exists before the watches that feed it; it reads
	// membership once Run starts.
	d := &Dynamic{plane: plane, log: log, checks: m.Checks, ctrlDone: make(chan struct{}), groups: cfg.Groups,
		ctrl: NewController(ControllerConfig{}, nil, plane, log, m.Members)}
	d.ctrl.planGauge = m.PlanDigest
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.stopAPI = func() {}
	fail := func(err error) (*Dynamic, error) {
		d.cancel()
		d.stopAPI()
		return nil, err
	}
	opts := gossip.Options{Duplicate: d.ctrl.SetDuplicate}
	var ctrlEvents vrrp.EventSink
	if k := cfg.Kubernetes; k != nil {
		client, err := kube.NewClient(*k, "garpd/"+cfg.Version)
		if err != nil {
			return fail(err)
		}
		var kctx context.Context
		kctx, d.stopAPI = context.WithCancel(context.Background())
		d.api = kube.Start(kctx, client, *k, cfg.Node, log, kube.Handlers{Excluded: d.ctrl.SetEligible, NodeDeleted: d.forgetDeleted, Down: d.downMembers})
		log.Info().Str("node", cfg.Node).Strs("exclude_labels", k.WithDefaults().ExcludeLabels).
			Msg("Kubernetes: following this Node's eligibility, forgetting deleted Nodes, recording Events")
		if k.Peers.Enabled() {
			if opts.Discoverer, err = d.kubePeers(gcfg); err != nil {
				return fail(err)
			}
			if len(gcfg.Join) > 0 { // members outside the release too
				opts.Discoverer = gossip.Discoverers{opts.Discoverer, gossip.SeedList{Join: gcfg.Join, Log: log}}
			}
			log.Info().Str("namespace", k.Peers.Namespace).Str("selector", k.Peers.Selector).
				Msg("peers: the nodes of garpd's pods in the Kubernetes API")
		}
		ctrlEvents = d.api.Event
		plane.SetEvents(d.api.Event)
	}
	members, err := gossip.Start(d.ctx, gcfg, cfg.Node, meta, opts, log)
	if err != nil {
		return fail(err)
	}
	kaPeers, err := cfg.VRRP.KeepalivedPeerAddrs() // validated with the config
	if err != nil {
		members.Close()
		return fail(&vrrp.ConfigError{Err: err})
	}
	ccfg := ControllerConfig{KeepalivedPeers: kaPeers,
		Local: cfg.Node, Groups: cfg.Groups, Digest: meta.Digest, Settle: cfg.Gossip.Settle,
		UnicastAuto: cfg.VRRP.UnicastAuto(), HasSeeds: len(cfg.Gossip.Join) > 0 || opts.Discoverer != nil, Events: ctrlEvents,
	}
	d.ctrl.attach(ccfg, members)
	d.mu.Lock()
	d.members = members
	if ccfg.HasSeeds {
		d.joinBy = time.Now().Add(defaultJoinGrace(cfg.Gossip.Settle))
	}
	d.mu.Unlock()
	if err := d.SetHealth(cfg.Health); err != nil {
		members.Close()
		return fail(&vrrp.ConfigError{Err: err})
	}
	go func() {
		d.ctrl.Run(d.ctx)
		close(d.ctrlDone)
	}()
	log.Info().Str("gossip", gcfg.Bind).Str("advertise", gcfg.Advertise).Strs("join", gcfg.Join).
		Dur("settle", cfg.Gossip.Settle).Dur("forget_after", cfg.Gossip.ForgetAfter).Int("health_checks", len(cfg.Health.Checks)).Str("digest", meta.Digest).
		Msg("dynamic mode: priorities follow the plan over the known members, membership and health")
	return d, nil
}

// Joined reports whether gossip has found the cluster: another member is
// alive, or there is nobody to join, or the join grace is over (a node
// alone goes on trying in the background).
func (d *Dynamic) Joined() bool {
	d.mu.Lock()
	members, joinBy := d.members, d.joinBy
	d.mu.Unlock()
	return joinBy.IsZero() || !time.Now().Before(joinBy) || (members != nil && len(members.Members()) > 1)
}

// forgetDeleted forgets the member of a Node deleted from the API: it is
// gone for good, so every member re-plans without it at once rather than
// after forget_after.
func (d *Dynamic) forgetDeleted(name string) {
	d.mu.Lock()
	members := d.members
	d.mu.Unlock()
	if members != nil {
		members.ForgetDeleted(name)
	}
}

// downMembers are the known members that are down, whose Nodes the
// Kubernetes watch follows.
func (d *Dynamic) downMembers() []string {
	d.mu.Lock()
	members := d.members
	d.mu.Unlock()
	if members == nil {
		return nil
	}
	var out []string
	for _, k := range members.Known() {
		if !k.DownSince.IsZero() {
			out = append(out, k.Name)
		}
	}
	return out
}

// kubePeers watches the pods of garpd's DaemonSet for seeds. Each member
// gossips on the port this node binds (a DaemonSet runs one config).
func (d *Dynamic) kubePeers(g gossip.Config) (gossip.Discoverer, error) {
	addr := g.Bind
	if _, _, err := gossip.SplitHostPort(g.Advertise); err == nil {
		addr = g.Advertise
	}
	_, port, err := gossip.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("gossip.bind: %w", err)
	}
	return d.api.Peers(d.ctx, strconv.Itoa(port))
}

// SetHealth starts the checks of cfg in place of the running ones (at
// start, and on a reload that changes only them). New checks start
// passing, as at start: the verdict follows them.
func (d *Dynamic) SetHealth(cfg health.Config) error {
	var pods health.PodProber
	if d.api != nil {
		pods = d.api
	}
	// A check with a weight moves the node in the rankings of the groups
	// it tracks (standings); one without that names VIPs resigns their
	// routers alone; the others take the node out of the plan.
	var scoped, soft []health.CheckConfig
	nodeWide := map[string]bool{}
	quiet := minStandingQuiet
	for _, c := range cfg.Checks {
		switch {
		case c.Weight != 0:
			soft = append(soft, c)
			quiet = max(quiet, c.Interval+c.Timeout+time.Second)
		case len(c.VIPs) > 0:
			scoped = append(scoped, c)
		default:
			nodeWide[c.Name] = true
		}
	}
	h, err := health.NewChecker(cfg, pods, d.log, d.checks, func(_ bool, failing []string) {
		var node []string
		failed := map[string]bool{}
		for _, f := range failing {
			if nodeWide[f] {
				node = append(node, f)
			}
			failed[f] = true
		}
		d.ctrl.SetHealth(node)
		d.ctrl.SetStandings(standings(d.groups, soft, failed), quiet)
		if len(scoped) > 0 {
			_, faults := health.StaticPriorities(groupRouters(d.groups), scoped, failed)
			if err := d.plane.SetFaults(d.ctx, faults); err != nil && d.ctx.Err() == nil {
				d.log.Error().Err(err).Msg("cannot resign the routers of a failing check")
			}
		}
	})
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopHC != nil {
		d.stopHC()
		<-d.hcDone
		kept := map[string]bool{}
		for _, st := range h.States() {
			kept[st.Name] = true
		}
		for _, st := range d.health.States() {
			if !kept[st.Name] {
				d.checks.DeleteLabelValues(st.Name)
			}
		}
		d.ctrl.SetHealth(nil)
		if err := d.plane.SetFaults(d.ctx, nil); err != nil && d.ctx.Err() == nil {
			return err
		}
	}
	// New checks start passing: their positive weights count at once.
	d.ctrl.SetStandings(standings(d.groups, soft, nil), quiet)
	ctx, stop := context.WithCancel(d.ctx)
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	d.health, d.stopHC, d.hcDone = h, stop, done
	return nil
}

// minStandingQuiet is the least time the members' standings hold still
// before they reorder the rankings; a soft check's interval and timeout,
// plus a second for gossip, make it longer (Controller.SetStandings).
const minStandingQuiet = 2 * time.Second

// standings are this node's soft-check standings for the groups, with the
// checks in failed failing (health.Shift), compacted for gossip.
func standings(groups []Group, soft []health.CheckConfig, failed map[string]bool) map[string]int {
	byKey := map[string]int{}
	for _, g := range groups {
		byKey[StandingKey(g)], _ = health.Shift(g.Spec(UnrankedPriority), soft, failed)
	}
	return CompactStandings(groups, byKey)
}

// groupRouters are the groups as routers, for the checks scoped to VIPs.
func groupRouters(groups []Group) []vrrp.RouterSpec {
	out := make([]vrrp.RouterSpec, len(groups))
	for i, g := range groups {
		out[i] = g.Spec(UnrankedPriority)
	}
	return out
}

// Forget drops a known member that is gone for good: every node
// re-plans without it.
func (d *Dynamic) Forget(name string) error { return d.members.Forget(name) }

// SetKeepalivedPeers replaces vrrp.keepalived_peers in place: the
// migration's keepalived nodes, admitted at any priority.
func (d *Dynamic) SetKeepalivedPeers(peers []netip.Addr) { d.ctrl.SetKeepalivedPeers(peers) }

// SetGossipKeys installs new gossip keys in place (a rotation step): the
// first encrypts, all are accepted.
func (d *Dynamic) SetGossipKeys(keys [][]byte) error { return d.members.SetKeys(keys) }

// stopWait bounds each wait of Stop on a part that should end at once.
const stopWait = 2 * time.Second

// Stop hands over and leaves, in this order:
//  1. the controller stops, so no priority changes after this point;
//  2. handOver runs: the data plane resigns with priority-0 adverts,
//     and each VIP's rank-1 backup takes over within skew time;
//  3. gossip leaves the cluster, so the others mark this node down at
//     once (it stays known), and the health checks stop;
//  4. the Kubernetes watch and event recorder stop last, so the engine's
//     last VIPReleased Events go out.
//
// Leaving gossip and waiting for checks can block, so they come after the
// hand-over. Stop returns handOver's error.
func (d *Dynamic) Stop(handOver func() error) error {
	d.cancel()
	wait := func(done <-chan struct{}) {
		select {
		case <-done:
		case <-time.After(stopWait):
		}
	}
	wait(d.ctrlDone)
	err := handOver()
	d.plane.SetEvents(nil)
	d.mu.Lock()
	hcDone := d.hcDone
	d.mu.Unlock()
	wait(hcDone)
	d.members.Close()
	d.stopAPI()
	return err
}

// DynamicStatus is the dynamic mode's part of `garpd status`.
type DynamicStatus struct {
	ControllerStatus
	Health     []health.CheckState `json:"health_checks"`
	Kubernetes *kube.Status        `json:"kubernetes,omitempty"`
}

// Status is the members, the plan, the checks and the Kubernetes watch as
// this node sees them now.
func (d *Dynamic) Status(ctx context.Context) *DynamicStatus {
	d.mu.Lock()
	h := d.health
	d.mu.Unlock()
	st := &DynamicStatus{ControllerStatus: d.ctrl.Status(), Health: h.States()}
	if d.api != nil {
		k := d.api.Status(ctx)
		st.Kubernetes = &k
	}
	return st
}
