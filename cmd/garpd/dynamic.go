package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/garpd/garpd/balancer"
	"github.com/garpd/garpd/gossip"
	"github.com/garpd/garpd/vrrp"
)

// dynamicMode is gossip, health checks, Kubernetes and the controller:
// what sets this node's priorities when the config has no static ones.
type dynamicMode struct {
	members *gossip.Membership
	ctrl    *balancer.Controller
	kube    *gossip.Kube // nil without the kubernetes section
	// stopKube ends the Kubernetes watches and the event recorder; it runs
	// last in stop, so the engine's last VIPReleased events go out.
	stopKube context.CancelFunc
	ctx      context.Context
	cancel   context.CancelFunc
	done     chan struct{} // closed when the controller has stopped
	// The health checks, which a reload may replace in place.
	log    zerolog.Logger
	checks *prometheus.GaugeVec
	mu     sync.Mutex
	health *gossip.Health
	stopHC context.CancelFunc
	hcDone chan struct{}
	// The verdict: the checks' and the Node's, under their own lock (the
	// check goroutines report while setHealth holds mu).
	vmu      sync.Mutex
	failing  []string // failing checks
	excluded string   // why the Node is not eligible; empty when it is
}

// kubeNodeCheck names the Node's verdict among the failing checks others
// see in `garpd status`.
const kubeNodeCheck = "kubernetes_node"

func startDynamic(l *loaded, eng *vrrp.Engine, tr vrrp.Transport, log zerolog.Logger, gauge, checks *prometheus.GaugeVec) (*dynamicMode, error) {
	c := l.cfg
	ifi, err := net.InterfaceByName(c.Interface)
	if err != nil {
		return nil, fmt.Errorf("find interface %q: %w", c.Interface, err)
	}
	meta := gossip.Meta{
		Healthy: true,
		Digest:  balancer.Digest(l.alloc.Groups, c.VRRP.Version, c.VRRP.AdvertInterval),
		MAC:     ifi.HardwareAddr.String(),
		Version: version,
	}
	if a := tr.Source(false); a.IsValid() {
		meta.VRRP4 = a.String()
	}
	if a := tr.Source(true); a.IsValid() {
		meta.VRRP6 = a.String()
	}
	gcfg := c.Gossip
	if gcfg.Advertise == "" {
		// The interface's primary address, so members reach each other on
		// the VIPs' segment whatever the bind address.
		a := tr.Source(false)
		if !a.IsValid() {
			return nil, fmt.Errorf("gossip.advertise: %s has no IPv4 address to advertise; set gossip.advertise", c.Interface)
		}
		gcfg.Advertise = a.String()
	}
	d := &dynamicMode{done: make(chan struct{}), log: log, checks: checks}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	fail := func(err error) (*dynamicMode, error) {
		d.cancel()
		if d.stopKube != nil {
			d.stopKube()
		}
		return nil, err
	}
	var opts gossip.Options
	if k := c.Kubernetes; k != nil {
		client, err := gossip.NewKubeClient(*k, "garpd/"+version)
		if err != nil {
			return fail(err)
		}
		var kctx context.Context
		kctx, d.stopKube = context.WithCancel(context.Background())
		d.kube = gossip.StartKube(kctx, client, *k, c.Node, log, gossip.KubeHandlers{Eligibility: d.setEligible, NodeDeleted: d.forgetDeleted})
		log.Info().Str("node", c.Node).Strs("exclude_labels", k.WithDefaults().ExcludeLabels).
			Msg("Kubernetes: following this Node's eligibility, forgetting deleted Nodes, recording Events")
		if k.Peers.Enabled() {
			if opts.Discoverer, err = kubePeers(d.ctx, d.kube, gcfg); err != nil {
				return fail(err)
			}
			log.Info().Str("namespace", k.Peers.Namespace).Str("selector", k.Peers.Selector).
				Msg("peers: the nodes of garpd's pods in the Kubernetes API")
		}
	}
	members, err := gossip.Start(d.ctx, gcfg, c.Node, meta, opts, log)
	if err != nil {
		return fail(err)
	}
	ccfg := balancer.ControllerConfig{
		Local: c.Node, Groups: l.alloc.Groups, Digest: meta.Digest, Settle: c.Gossip.Settle,
		UnicastAuto: c.VRRP.UnicastAuto(), HasSeeds: len(c.Gossip.Join) > 0 || opts.Discoverer != nil,
	}
	if d.kube != nil {
		ccfg.Events = d.kube.Event
	}
	ctrl := balancer.NewController(ccfg, members, eng, log, gauge)
	d.vmu.Lock()
	d.members, d.ctrl = members, ctrl
	d.vmu.Unlock()
	d.applyVerdict()
	if err := d.setHealth(c.Health); err != nil {
		members.Close()
		return fail(&configError{err})
	}
	go func() {
		ctrl.Run(d.ctx)
		close(d.done)
	}()
	log.Info().Str("gossip", gcfg.Bind).Str("advertise", gcfg.Advertise).Strs("join", gcfg.Join).
		Dur("settle", c.Gossip.Settle).Dur("forget_after", c.Gossip.ForgetAfter).Int("health_checks", len(c.Health.Checks)).Str("digest", meta.Digest).
		Msg("dynamic mode: priorities follow the plan over the known members, membership and health")
	return d, nil
}

// onHealth takes the checks' verdict.
func (d *dynamicMode) onHealth(_ bool, failing []string) {
	d.vmu.Lock()
	d.failing = slices.Clone(failing)
	d.vmu.Unlock()
	d.applyVerdict()
}

// setEligible takes the Node's verdict: an excluded Node resigns as a
// failing check does, and comes back after settle.
func (d *dynamicMode) setEligible(eligible bool, why string) {
	d.vmu.Lock()
	d.excluded = ""
	if !eligible {
		d.excluded = why
	}
	d.vmu.Unlock()
	d.applyVerdict()
}

// applyVerdict hands the combined verdict to the controller first (it
// resigns at once) and then to gossip (which may wait on the network).
func (d *dynamicMode) applyVerdict() {
	d.vmu.Lock()
	defer d.vmu.Unlock()
	if d.ctrl == nil {
		return // not started yet: startDynamic applies it
	}
	failing := slices.Clone(d.failing)
	if d.excluded != "" {
		failing = append(failing, kubeNodeCheck)
	}
	d.ctrl.SetHealthy(len(failing) == 0)
	d.members.UpdateMeta(func(m *gossip.Meta) { m.Failing = failing })
}

// forgetDeleted forgets the member of a Node deleted from the API: it is
// gone for good, so every member re-plans without it at once rather than
// after forget_after.
func (d *dynamicMode) forgetDeleted(name string) {
	d.vmu.Lock()
	members := d.members
	d.vmu.Unlock()
	if members != nil {
		members.ForgetDeleted(name)
	}
}

// kubePeers watches the pods of garpd's DaemonSet for seeds. Each member
// gossips on the port this node binds (a DaemonSet runs one config).
func kubePeers(ctx context.Context, kube *gossip.Kube, g gossip.Config) (gossip.Discoverer, error) {
	addr := g.Bind
	if _, _, err := gossip.SplitHostPort(g.Advertise); err == nil {
		addr = g.Advertise
	}
	_, port, err := gossip.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("gossip.bind: %w", err)
	}
	return kube.Peers(ctx, strconv.Itoa(port))
}

// setHealth starts the checks of cfg in place of the running ones (at
// start, and on a reload that changes only them).
func (d *dynamicMode) setHealth(cfg gossip.HealthConfig) error {
	var pods gossip.PodProber
	if d.kube != nil {
		pods = d.kube
	}
	h, err := gossip.NewHealth(cfg, pods, d.log, d.checks, d.onHealth)
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
		// New checks start passing, as at start: the verdict follows them.
		d.onHealth(true, nil)
	}
	ctx, stop := context.WithCancel(d.ctx)
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	d.health, d.stopHC, d.hcDone = h, stop, done
	return nil
}

// stop leaves the cluster (others mark this node down at once) and stops
// the checks.
func (d *dynamicMode) stop() {
	d.cancel()
	d.mu.Lock()
	hcDone := d.hcDone
	d.mu.Unlock()
	for _, done := range []chan struct{}{d.done, hcDone} {
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
	d.members.Close()
	if d.stopKube != nil {
		d.stopKube()
	}
}

type dynamicStatus struct {
	balancer.ControllerStatus
	Health     []gossip.CheckState `json:"health_checks"`
	Kubernetes *gossip.KubeStatus  `json:"kubernetes,omitempty"`
}

func (d *dynamicMode) status(ctx context.Context) *dynamicStatus {
	d.mu.Lock()
	h := d.health
	d.mu.Unlock()
	st := &dynamicStatus{ControllerStatus: d.ctrl.Status(), Health: h.States()}
	if d.kube != nil {
		k := d.kube.Status(ctx)
		st.Kubernetes = &k
	}
	return st
}
