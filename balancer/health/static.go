package health

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/garpd/garpd/vrrp"
)

// StaticPriorities applies the checks' verdicts to the static mode's
// routers as keepalived's track_script does: a failing check without a
// weight puts the routers it tracks in FAULT (why: the check's name); a
// negative weight lowers their priority while the check fails, a positive
// one raises it while it passes; the result stays within 1..254, and an
// address owner (255) keeps its priority. A check tracks the routers that
// carry one of its VIPs, or every router when it names none. The routers
// come back in their order, with their new priorities.
func StaticPriorities(routers []vrrp.RouterSpec, checks []CheckConfig, failing map[string]bool) ([]vrrp.RouterSpec, map[vrrp.RouterID]string) {
	out := make([]vrrp.RouterSpec, len(routers))
	faults := map[vrrp.RouterID]string{}
	for i, r := range routers {
		out[i] = r
		shift, why := Shift(r, checks, failing)
		if len(why) > 0 {
			faults[r.ID()] = strings.Join(why, ", ")
		}
		if r.Priority != 255 {
			out[i].Priority = uint8(min(max(int(r.Priority)+shift, 1), 254))
		}
	}
	return out, faults
}

// Shift is what the checks' verdicts do to router r: the sum of the
// weights that apply (a negative weight while its check fails, a positive
// one while it passes), and why the router is in FAULT (the failing checks
// without a weight that track it), nil when it is not.
func Shift(r vrrp.RouterSpec, checks []CheckConfig, failing map[string]bool) (shift int, why []string) {
	for _, c := range checks {
		if !tracks(c, r) {
			continue
		}
		switch fails := failing[c.Name]; {
		case c.Weight == 0 && fails:
			why = append(why, "check "+c.Name+" fails")
		case c.Weight < 0 && fails, c.Weight > 0 && !fails:
			shift += c.Weight
		}
	}
	return shift, why
}

// tracks reports whether check c follows router r.
func tracks(c CheckConfig, r vrrp.RouterSpec) bool {
	if len(c.VIPs) == 0 {
		return true
	}
	for _, v := range c.VIPs {
		p, err := vrrp.ParseVIP(v)
		if err != nil {
			continue
		}
		if slices.ContainsFunc(r.VIPs, func(q netip.Prefix) bool { return q.Addr() == p.Addr() }) {
			return true
		}
	}
	return false
}

// StaticPlane is what the static mode drives: the data plane's routers
// and their faults (a *vrrp.Stacks).
type StaticPlane interface {
	Update(ctx context.Context, specs []vrrp.RouterSpec) error
	SetFaults(ctx context.Context, faults map[vrrp.RouterID]string) error
}

// Static owns the static mode's health checks: it runs them and sets the
// routers' priorities and faults from their verdicts (StaticPriorities).
type Static struct {
	plane  StaticPlane
	log    zerolog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	routers []vrrp.RouterSpec
	checks  []CheckConfig
	failing map[string]bool
}

// StartStatic runs the checks of health over routers until Stop. Checks
// start passing, so the routers start at their priorities with the
// positive weights added; a check's fall failures take its share away.
func StartStatic(routers []vrrp.RouterSpec, health Config, plane StaticPlane, log zerolog.Logger, gauge *prometheus.GaugeVec) (*Static, error) {
	s := &Static{plane: plane, log: log, routers: routers, checks: health.Checks, failing: map[string]bool{}, done: make(chan struct{})}
	h, err := NewChecker(health, nil, log, gauge, s.verdict)
	if err != nil {
		return nil, &vrrp.ConfigError{Err: err}
	}
	if err := s.apply(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go func() { h.Run(ctx); close(s.done) }()
	log.Info().Int("checks", len(health.Checks)).Msg("static mode: checks set the routers' priorities and faults, as keepalived's track_script")
	return s, nil
}

// verdict takes the checks' new verdict (the Checker's callback).
func (s *Static) verdict(_ bool, failing []string) {
	s.mu.Lock()
	s.failing = map[string]bool{}
	for _, f := range failing {
		s.failing[f] = true
	}
	s.mu.Unlock()
	if err := s.apply(); err != nil {
		s.log.Error().Err(err).Msg("cannot apply the checks' verdict to the routers")
	}
}

// SetRouters replaces the routers (a reload) and applies the verdict to
// them.
func (s *Static) SetRouters(routers []vrrp.RouterSpec) error {
	s.mu.Lock()
	s.routers = routers
	s.mu.Unlock()
	return s.apply()
}

func (s *Static) apply() error {
	s.mu.Lock()
	specs, faults := StaticPriorities(s.routers, s.checks, s.failing)
	s.mu.Unlock()
	ctx := context.Background()
	if err := s.plane.Update(ctx, specs); err != nil {
		return fmt.Errorf("set the routers' priorities: %w", err)
	}
	if err := s.plane.SetFaults(ctx, faults); err != nil {
		return fmt.Errorf("set the routers' faults: %w", err)
	}
	return nil
}

// Stop ends the checks.
func (s *Static) Stop() {
	s.cancel()
	<-s.done
}
