package vrrp

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/vishvananda/netlink"
)

// VerifyConfig is garp.verify: the master of a VIP checks that the
// upstream router holds the VIP on this node's MAC, and re-announces it
// (to the router first) until it does. It sends an ICMP echo from the VIP
// to each target: the router answers to the MAC its neighbour entry
// holds, so the reply comes back only when that entry is ours.
type VerifyConfig struct {
	// Enabled turns verification off when false; on by default where
	// there are targets.
	Enabled *bool `yaml:"enabled" json:"enabled"`
	// Targets are the routers to verify with; default: the interface's
	// default gateways.
	Targets []string `yaml:"targets" json:"targets"`
	// Interval is how often each held VIP is verified.
	Interval time.Duration `yaml:"interval" json:"interval"`
	// MaxRate caps the probes per second of an interface (the router's
	// control plane polices ICMP too).
	MaxRate int `yaml:"max_rate" json:"max_rate"`
}

// Verification defaults: each VIP once a second, at most 50 probes a
// second (255 VIPs verified every 5 s); a VIP is reported unverified after
// unverifiedAfter probes in a row went unanswered, and each probe waits
// probeTimeout for its answer.
const (
	defaultVerifyInterval = time.Second
	defaultVerifyRate     = 50
	unverifiedAfter       = 3
	probeTimeout          = 500 * time.Millisecond
	silentAfter           = 3 // rounds without an answer to the host before it is logged
)

// On reports whether verification runs (where there are targets).
func (v VerifyConfig) On() bool { return v.Enabled == nil || *v.Enabled }

// Validate checks v.
func (v VerifyConfig) Validate() error {
	var errs []error
	if _, err := v.targets(); err != nil {
		errs = append(errs, err)
	}
	if v.Interval != 0 && (v.Interval < 100*time.Millisecond || v.Interval > 10*time.Minute) {
		errs = append(errs, fmt.Errorf("interval: %s: use 100ms..10m", v.Interval))
	}
	if v.MaxRate < 0 || v.MaxRate > 10000 {
		errs = append(errs, fmt.Errorf("max_rate: %d: use 1..10000 probes per second", v.MaxRate))
	}
	return errors.Join(errs...)
}

func (v VerifyConfig) targets() ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range v.Targets {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.IsGlobalUnicast() {
			return nil, fmt.Errorf("targets: %q: give the router's address on the segment, such as 192.0.2.1", s)
		}
		out = append(out, a)
	}
	return out, nil
}

// Prober sends an ICMP echo from a VIP (invalid: from the host's own
// address) to a target and says whether the answer came back within
// timeout. The Linux one is LinuxProber; tests fake it.
type Prober interface {
	Probe(ctx context.Context, from, to netip.Addr, timeout time.Duration) (bool, error)
	Close() error
}

// defaultGateways are the interface's default routers, one per family.
func defaultGateways(ifname string) ([]netip.Addr, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("find interface %q: %w", ifname, err)
	}
	var out []netip.Addr
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := netlink.RouteList(link, fam)
		if err != nil {
			return nil, fmt.Errorf("list the routes of %s: %w", ifname, err)
		}
		for _, r := range routes {
			if gw, ok := netip.AddrFromSlice(r.Gw); ok && (r.Dst == nil || r.Dst.IP.IsUnspecified()) {
				out = append(out, gw.Unmap())
				break
			}
		}
	}
	return out, nil
}

// verifyState is what verification knows of one held VIP.
type verifyState struct {
	fails   int // unanswered probes in a row
	flagged bool
}

// result takes one probe's outcome and says what to do: re-announce
// (after the 1st, 2nd, 4th, 8th … unanswered probe, then every 32nd: a
// back-off, so a router that never answers costs little), report the VIP
// unverified (once, after unverifiedAfter), or report it verified again.
func (v *verifyState) result(answered bool) (repair, flag, clear bool) {
	if answered {
		clear = v.flagged
		*v = verifyState{}
		return false, false, clear
	}
	v.fails++
	repair = v.fails&(v.fails-1) == 0 || v.fails%32 == 0
	if v.fails == unverifiedAfter {
		v.flagged, flag = true, true
	}
	return repair, flag, false
}

// verifier runs the closed loop of one interface.
type verifier struct {
	cfg     VerifyConfig
	targets []netip.Addr
	prober  Prober
	held    func(ctx context.Context) ([]netip.Addr, error)
	repair  func(a netip.Addr)
	event   EventSink
	metrics *Metrics
	log     zerolog.Logger
	// silent counts the rounds each target did not answer the host.
	silent map[netip.Addr]int
}

type probeResult struct {
	vip      netip.Addr
	answered bool
	err      error
	// judged: the router answered the host's own echo this round, so an
	// unanswered one from the VIP says the router's entry is not ours.
	judged bool
}

// run verifies every held VIP once per interval, at most MaxRate probes
// a second, until ctx ends.
func (v *verifier) run(ctx context.Context) {
	interval := cmp.Or(v.cfg.Interval, defaultVerifyInterval)
	spacing := time.Second / time.Duration(cmp.Or(v.cfg.MaxRate, defaultVerifyRate))
	states := map[netip.Addr]*verifyState{}
	results := make(chan probeResult, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	next := time.Now()
	for {
		held, err := v.held(ctx)
		if err != nil {
			return // the engine ended
		}
		for a := range states {
			if !slices.Contains(held, a) {
				v.metrics.Unverified.DeleteLabelValues(a.String())
				delete(states, a)
			}
		}
		round := time.Now()
		answers := v.controls(ctx, held)
		for _, a := range held {
			to := v.targetFor(a)
			if !to.IsValid() {
				continue
			}
			judged := answers[to]
			if !v.wait(ctx, next, results, states) {
				return
			}
			next = time.Now().Add(spacing)
			if states[a] == nil {
				states[a] = &verifyState{}
				v.metrics.Unverified.WithLabelValues(a.String()).Set(0)
			}
			wg.Go(func() {
				ok, err := v.prober.Probe(ctx, a, to, probeTimeout)
				select {
				case results <- probeResult{vip: a, answered: ok, err: err, judged: judged}:
				case <-ctx.Done():
				}
			})
		}
		if !v.wait(ctx, later(round.Add(interval), next), results, states) {
			return
		}
	}
}

// controls probes each target of the held VIPs' families from the host's
// own address, and says which answered: a router that does not answer
// the host (ICMP filtered, unreachable) says nothing of its entries, and
// that is logged once, not reported per VIP.
func (v *verifier) controls(ctx context.Context, held []netip.Addr) map[netip.Addr]bool {
	answered := map[netip.Addr]bool{}
	for _, a := range held {
		to := v.targetFor(a)
		if _, done := answered[to]; done || !to.IsValid() {
			continue
		}
		ok, err := v.prober.Probe(ctx, netip.Addr{}, to, probeTimeout)
		answered[to] = ok && err == nil
		if v.silent == nil {
			v.silent = map[netip.Addr]int{}
		}
		if answered[to] {
			if v.silent[to] >= silentAfter {
				v.log.Info().Str("target", to.String()).Msg("the router answers echoes again: verifying the announcements")
			}
			v.silent[to] = 0
			continue
		}
		if v.silent[to]++; v.silent[to] == silentAfter {
			v.log.Warn().Err(err).Str("target", to.String()).Msg("the router answers no echo from this host: announcements cannot be verified with it; name another target in garp.verify.targets, or turn garp.verify off")
		}
	}
	return answered
}

// wait handles probe results until t; false when ctx ended.
func (v *verifier) wait(ctx context.Context, t time.Time, results <-chan probeResult, states map[netip.Addr]*verifyState) bool {
	timer := time.NewTimer(max(time.Until(t), 0))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case r := <-results:
			v.take(r, states)
		}
	}
}

func (v *verifier) take(r probeResult, states map[netip.Addr]*verifyState) {
	st := states[r.vip]
	if st == nil {
		return // released meanwhile
	}
	result := "answered"
	switch {
	case !r.answered && !r.judged:
		v.metrics.VerifyProbes.WithLabelValues("unjudged").Inc()
		return // the router answers nobody now
	case r.err != nil:
		result = "error"
		if st.fails == 0 {
			v.log.Warn().Err(r.err).Str("vip", r.vip.String()).Msg("cannot probe the router for a VIP")
		}
	case !r.answered:
		result = "unanswered"
	}
	v.metrics.VerifyProbes.WithLabelValues(result).Inc()
	repair, flag, clear := st.result(r.answered)
	if repair {
		v.metrics.VerifyRepairs.Inc()
		v.repair(r.vip)
	}
	switch {
	case flag:
		v.metrics.Unverified.WithLabelValues(r.vip.String()).Set(1)
		msg := fmt.Sprintf("the router does not send %s to this node (%d probes unanswered): re-announcing it with back-off; check the router's ARP/ND policer and its entry for the VIP", r.vip, unverifiedAfter)
		v.log.Warn().Str("vip", r.vip.String()).Msg(msg)
		if v.event != nil {
			v.event(true, "VIPUnverified", msg)
		}
	case clear:
		v.metrics.Unverified.WithLabelValues(r.vip.String()).Set(0)
		v.log.Info().Str("vip", r.vip.String()).Msg("the router sends the VIP to this node again")
	}
}

// targetFor is the target of a's family, if any.
func (v *verifier) targetFor(a netip.Addr) netip.Addr {
	for _, t := range v.targets {
		if t.Is4() == a.Is4() {
			return t
		}
	}
	return netip.Addr{}
}
