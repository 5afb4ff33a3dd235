package vrrp

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func (e *Engine) recordState(k routerKey, r *router, prev State) {
	st := r.m.State()
	e.notify(k, r)
	if st == prev {
		e.faultGauge(k, r)
		return
	}
	r.state.Set(float64(st))
	e.faultGauge(k, r)
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

// faultGauge shows a router in FAULT as state 3 (it is in Initialize).
func (e *Engine) faultGauge(k routerKey, r *router) {
	if r.m.State() != Initialize {
		return
	}
	if e.faults[k] != "" {
		r.state.Set(stateFault)
	} else {
		r.state.Set(float64(Initialize))
	}
}

// stateFault is garpd_vrrp_state's value for a router in FAULT.
const stateFault = 3

// Responsive reports whether the engine's loop runs and answers within
// ctx: what a liveness probe should see, rather than the HTTP server's own
// health.
func (e *Engine) Responsive(ctx context.Context) bool { return e.call(ctx, func() {}) == nil }

// RouterStatus is one virtual router's state as /status reports it.
type RouterStatus struct {
	Interface      string    `json:"interface,omitempty"` // set by Stacks
	Family         string    `json:"family"`
	VRID           int       `json:"vrid"`
	VIPs           []string  `json:"vips"`
	State          string    `json:"state"`
	Priority       int       `json:"priority"`
	Fault          string    `json:"fault,omitempty"` // why it is in FAULT
	Master         string    `json:"master,omitempty"`
	MasterPriority int       `json:"master_priority"`
	Since          time.Time `json:"since"`
}

// Status returns a snapshot of every virtual router.
func (e *Engine) Status(ctx context.Context) []RouterStatus {
	var out []RouterStatus
	_ = e.call(ctx, func() { out = e.statusNow() })
	return out
}

// statusNow is Status on the engine goroutine.
func (e *Engine) statusNow() []RouterStatus {
	var out []RouterStatus
	{
		for _, k := range e.order {
			r := e.routers[k]
			master, mprio := r.m.MasterAddr()
			rs := RouterStatus{Family: k.family(), VRID: int(k.vrid), State: r.m.State().String(),
				Priority: int(r.m.Priority()), MasterPriority: int(mprio), Since: r.since}
			if master.IsValid() {
				rs.Master = master.String()
			}
			if why := e.faults[k]; why != "" && r.m.State() == Initialize {
				rs.State, rs.Fault = "fault", why
			}
			for _, p := range r.spec.VIPs {
				rs.VIPs = append(rs.VIPs, p.String())
			}
			out = append(out, rs)
		}
	}
	return out
}

// LastForeignKeyed is when an advert with our VIPs last came signed with a
// key this node does not have (zero: never, or the engine has stopped): a
// cluster is there whose key this node lacks.
func (e *Engine) LastForeignKeyed(ctx context.Context) time.Time {
	var t time.Time
	_ = e.call(ctx, func() { t = e.foreignKeyed })
	return t
}
