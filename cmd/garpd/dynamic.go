package main

import (
	"context"
	"fmt"
	"net"
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
	health  *gossip.Health
	ctrl    *balancer.Controller
	cancel  context.CancelFunc
	done    chan struct{}
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
	members, err := gossip.Start(ctx, gcfg, c.Node, meta, gossip.Options{}, log)
	if err != nil {
		cancel()
		return nil, err
	}
	ctrl := balancer.NewController(balancer.ControllerConfig{
		Local: c.Node, Groups: l.alloc.Groups, Digest: meta.Digest, Settle: c.Gossip.Settle,
		UnicastAuto: c.VRRP.UnicastAuto(), HasSeeds: len(c.Gossip.Join) > 0,
	}, members, eng, log, gauge)
	health, err := gossip.NewHealth(c.Health, log, checks, func(healthy bool, failing []string) {
		// The controller first: it resigns at once, while gossiping the new
		// metadata may wait on the network.
		ctrl.SetHealthy(healthy)
		members.UpdateMeta(func(m *gossip.Meta) { m.Failing = failing })
	})
	if err != nil {
		cancel()
		members.Close()
		return nil, &configError{err}
	}
	d := &dynamicMode{members: members, health: health, ctrl: ctrl, cancel: cancel, done: make(chan struct{})}
	go func() {
		hdone := make(chan struct{})
		go func() { health.Run(ctx); close(hdone) }()
		ctrl.Run(ctx)
		<-hdone
		close(d.done)
	}()
	log.Info().Str("gossip", gcfg.Bind).Str("advertise", gcfg.Advertise).Strs("join", gcfg.Join).
		Dur("settle", c.Gossip.Settle).Dur("forget_after", c.Gossip.ForgetAfter).Int("health_checks", len(c.Health.Checks)).Str("digest", meta.Digest).
		Msg("dynamic mode: priorities follow the plan over the known members, membership and health")
	return d, nil
}

// stop leaves the cluster (others mark this node down at once) and stops
// the checks.
func (d *dynamicMode) stop() {
	d.cancel()
	select {
	case <-d.done:
	case <-time.After(2 * time.Second):
	}
	d.members.Close()
}

type dynamicStatus struct {
	balancer.ControllerStatus
	Health []gossip.CheckState `json:"health_checks"`
}

func (d *dynamicMode) status() *dynamicStatus {
	return &dynamicStatus{ControllerStatus: d.ctrl.Status(), Health: d.health.States()}
}
