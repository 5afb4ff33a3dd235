package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/garpd/garpd/balancer"
	"github.com/garpd/garpd/gossip"
	"github.com/garpd/garpd/vrrp"
)

// dynamicMode is gossip, health checks and the controller: what sets this
// node's priorities when the config has no static ones.
type dynamicMode struct {
	members *gossip.Membership
	ctrl    *balancer.Controller
	ctx     context.Context
	cancel  context.CancelFunc
	done    chan struct{} // closed when the controller has stopped
	// The health checks, which a reload may replace in place.
	log      zerolog.Logger
	checks   *prometheus.GaugeVec
	onHealth func(healthy bool, failing []string)
	mu       sync.Mutex
	health   *gossip.Health
	stopHC   context.CancelFunc
	hcDone   chan struct{}
}

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
	ctx, cancel := context.WithCancel(context.Background())
	var opts gossip.Options
	if k := c.Kubernetes; k != nil && k.Peers.Enabled() {
		if opts.Discoverer, err = kubePeers(ctx, *k, c.Node, gcfg); err != nil {
			cancel()
			return nil, err
		}
		log.Info().Str("namespace", k.Peers.Namespace).Str("selector", k.Peers.Selector).
			Msg("peers: the nodes of garpd's pods in the Kubernetes API")
	}
	members, err := gossip.Start(ctx, gcfg, c.Node, meta, opts, log)
	if err != nil {
		cancel()
		return nil, err
	}
	ctrl := balancer.NewController(balancer.ControllerConfig{
		Local: c.Node, Groups: l.alloc.Groups, Digest: meta.Digest, Settle: c.Gossip.Settle,
		UnicastAuto: c.VRRP.UnicastAuto(), HasSeeds: len(c.Gossip.Join) > 0 || opts.Discoverer != nil,
	}, members, eng, log, gauge)
	d := &dynamicMode{members: members, ctrl: ctrl, ctx: ctx, cancel: cancel, done: make(chan struct{}), log: log, checks: checks,
		onHealth: func(healthy bool, failing []string) {
			// The controller first: it resigns at once, while gossiping the
			// new metadata may wait on the network.
			ctrl.SetHealthy(healthy)
			members.UpdateMeta(func(m *gossip.Meta) { m.Failing = failing })
		}}
	if err := d.setHealth(c.Health); err != nil {
		cancel()
		members.Close()
		return nil, &configError{err}
	}
	go func() {
		ctrl.Run(ctx)
		close(d.done)
	}()
	log.Info().Str("gossip", gcfg.Bind).Str("advertise", gcfg.Advertise).Strs("join", gcfg.Join).
		Dur("settle", c.Gossip.Settle).Dur("forget_after", c.Gossip.ForgetAfter).Int("health_checks", len(c.Health.Checks)).Str("digest", meta.Digest).
		Msg("dynamic mode: priorities follow the plan over the known members, membership and health")
	return d, nil
}

// kubePeers watches the pods of garpd's DaemonSet for seeds. Each member
// gossips on the port this node binds (a DaemonSet runs one config).
func kubePeers(ctx context.Context, k gossip.KubeConfig, node string, g gossip.Config) (gossip.Discoverer, error) {
	addr := g.Bind
	if _, _, err := gossip.SplitHostPort(g.Advertise); err == nil {
		addr = g.Advertise
	}
	_, port, err := gossip.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("gossip.bind: %w", err)
	}
	client, err := gossip.NewKubeClient(k, "garpd/"+version)
	if err != nil {
		return nil, err
	}
	return gossip.StartKubePods(ctx, client, k.Peers, node, strconv.Itoa(port))
}

// setHealth starts the checks of cfg in place of the running ones (at
// start, and on a reload that changes only them).
func (d *dynamicMode) setHealth(cfg gossip.HealthConfig) error {
	h, err := gossip.NewHealth(cfg, d.log, d.checks, d.onHealth)
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
}

type dynamicStatus struct {
	balancer.ControllerStatus
	Health []gossip.CheckState `json:"health_checks"`
}

func (d *dynamicMode) status() *dynamicStatus {
	d.mu.Lock()
	h := d.health
	d.mu.Unlock()
	return &dynamicStatus{ControllerStatus: d.ctrl.Status(), Health: h.States()}
}
