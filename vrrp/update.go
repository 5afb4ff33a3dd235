package vrrp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// Resign takes every virtual router out of VRRP (a Master sends a
// priority-0 advert and releases its VIPs, so a backup takes over within
// skew time) or brings them back as backups. Used when local health fails.
func (e *Engine) Resign(ctx context.Context, resigned bool) error {
	return e.call(ctx, func() { e.resigned = resigned; e.participate() })
}

// SetLink tells the engine its interface went down or came back. Down,
// nothing can be sent or heard: every router goes to Initialize and
// releases its VIPs (the kernel flushes IPv6 ones anyway), so a peer takes
// over cleanly. Up, they start again as backups and win back what the plan
// gives them, re-adding the VIPs.
func (e *Engine) SetLink(ctx context.Context, up bool) error {
	return e.call(ctx, func() { e.setLink(up) })
}

func (e *Engine) setLink(up bool) {
	if e.linkDown == !up {
		return
	}
	e.linkDown = !up
	if up {
		e.deps.Log.Warn().Msg("interface is up again: virtual routers start as backups")
	} else {
		e.deps.Log.Warn().Msg("interface is down: every virtual router goes to Initialize and releases its VIPs")
	}
	e.participate()
}

// participate puts every router in Initialize while it is out of VRRP
// (the node resigned, its link is down, or the router is in fault) and
// starts it otherwise.
func (e *Engine) participate() {
	now := e.deps.Clock.Now()
	for _, k := range e.order {
		e.transition(now, k, e.routers[k], func(m *Machine) []Action {
			if e.out(k) {
				return m.Shutdown(now)
			}
			return m.Startup(now) // a no-op unless in Initialize
		})
	}
}

// out reports whether router k must stay in Initialize.
func (e *Engine) out(k routerKey) bool { return e.resigned || e.linkDown || e.faults[k] != "" }

// SetFaults puts the routers in faults in FAULT, each with why (a failing
// check that tracks it, as keepalived's track_script without a weight): a
// master sends a priority-0 advert and releases its VIPs, and the router
// stays out until it is no longer listed. Routers not listed leave FAULT.
func (e *Engine) SetFaults(ctx context.Context, faults map[RouterID]string) error {
	return e.call(ctx, func() { e.setFaults(faults) })
}

func (e *Engine) setFaults(faults map[RouterID]string) {
	next := map[routerKey]string{}
	for id, why := range faults {
		if why != "" {
			next[id.key()] = why
		}
	}
	for _, k := range e.order {
		was, now := e.faults[k], next[k]
		switch {
		case was == now:
		case now == "":
			e.deps.Log.Info().Str("vrid", k.String()).Str("was", was).Msg("virtual router leaves FAULT: starting as a backup")
			e.event(false, "VRRPFaultCleared", fmt.Sprintf("VRRP %s left FAULT (%s no longer)", k, was))
		default:
			e.deps.Log.Warn().Str("vrid", k.String()).Str("why", now).Msg("virtual router in FAULT: resigning its VIPs")
			e.event(true, "VRRPFault", fmt.Sprintf("VRRP %s in FAULT: %s", k, now))
		}
	}
	e.faults = next
	e.participate()
}

// SetPeers replaces the unicast peer list (unicast_peers: auto).
func (e *Engine) SetPeers(ctx context.Context, peers []netip.Addr) error {
	return e.call(ctx, func() { e.deps.Transport.SetPeers(peers) })
}

// Update moves the engine to a new set of routers without a restart:
// priority changes take effect at once, new routers start, removed ones
// resign, and a router whose VIP list changed restarts alone.
func (e *Engine) Update(ctx context.Context, specs []RouterSpec) error {
	var err error
	if cerr := e.call(ctx, func() { err = e.update(specs) }); cerr != nil {
		return cerr
	}
	return err
}

func (e *Engine) update(specs []RouterSpec) error {
	// Validate everything on a scratch engine first: nothing half-applied.
	scratchDeps := e.deps
	scratchDeps.Metrics = NewMetrics(nil) // unregistered: nothing to clean up
	scratch := &Engine{cfg: e.cfg, deps: scratchDeps, routers: map[routerKey]*router{}}
	for _, s := range specs {
		if err := scratch.addRouter(s); err != nil {
			return err
		}
	}
	now := e.deps.Clock.Now()
	for _, k := range slices.Clone(e.order) {
		r := e.routers[k]
		nr, keep := scratch.routers[k]
		if keep && slices.Equal(nr.addrs, r.addrs) && slices.Equal(nr.spec.VIPs, r.spec.VIPs) {
			if nr.spec.Priority != r.spec.Priority {
				e.deps.Log.Info().Str("vrid", k.String()).Int("from", int(r.spec.Priority)).Int("to", int(nr.spec.Priority)).Msg("priority changed")
				r.spec.Priority = nr.spec.Priority
				e.transition(now, k, r, func(m *Machine) []Action { return m.SetPriority(now, nr.spec.Priority) })
			}
			r.spec.Name = nr.spec.Name // the hooks' instance name: no VRRP change
			delete(scratch.routers, k)
			continue
		}
		e.transition(now, k, r, func(m *Machine) []Action { return m.Shutdown(now) })
		e.deps.Metrics.State.DeleteLabelValues(k.family(), strconv.Itoa(int(k.vrid)), r.vipLabel)
		delete(e.routers, k)
		e.order = slices.DeleteFunc(e.order, func(x routerKey) bool { return x == k })
	}
	for _, k := range scratch.order {
		nr, ok := scratch.routers[k]
		if !ok {
			continue
		}
		if err := e.addRouter(nr.spec); err != nil {
			return err
		}
		r := e.routers[k]
		r.since = now
		if !e.out(k) {
			e.transition(now, k, r, func(m *Machine) []Action { return m.Startup(now) })
		}
	}
	return nil
}

// SetAuth replaces the auth_hmac keys and mode in place (a reload, a
// rotation): the send sequence and the replay marks carry over, so no
// advert is refused for it.
func (e *Engine) SetAuth(ctx context.Context, keys AuthKeys) error {
	return e.call(ctx, func() { e.setAuth(keys) })
}

func (e *Engine) setAuth(keys AuthKeys) {
	if !keys.Enabled() {
		e.auth = nil
		return
	}
	next := newAuth(keys)
	next.legacy = e.legacyKeyID
	if e.auth != nil {
		next.sendSeq, next.marks = e.auth.sendSeq, e.auth.marks
	}
	e.auth = next
}

// SetLegacyKeyID says whether a key derived from the gossip key signs
// adverts with the id garpd 0.1 gave it (LegacyAuthKeyID), which every
// release accepts, or with its own, which leaks nothing of the key. The
// dynamic mode keeps the old id while a live member may know no other.
func (e *Engine) SetLegacyKeyID(ctx context.Context, legacy bool) error {
	return e.call(ctx, func() {
		e.legacyKeyID = legacy
		if e.auth != nil {
			e.auth.legacy = legacy
		}
	})
}
