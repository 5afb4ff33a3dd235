package vrrp

import (
	"context"
	"net/netip"
	"time"
)

// reassertEvery is how often at most a master re-announces its VIPs to
// win back the router from another master it heard.
const reassertEvery = time.Second

// contestQuiet is how long another master must have been silent before
// the owed re-announcement (see ActReassert): three advert intervals, by
// which time it has either yielded or is gone.
func (e *Engine) contestQuiet() time.Duration { return 3 * e.cfg.AdvertInterval }

func (e *Engine) announce(r *router, urgent bool) {
	for _, p := range r.spec.VIPs {
		e.deps.Announcer.Announce(p.Addr(), urgent)
	}
}

// answer re-announces a router's VIPs as an answer to another speaker:
// behind the takeovers and within the answers' budget, so a spoofer that
// makes every router answer cannot take the interface's whole rate.
func (e *Engine) answer(r *router) {
	for _, p := range r.spec.VIPs {
		e.deps.Announcer.Defend(p.Addr())
	}
}

// Wave starts an on-demand announcement wave for the VIPs this node is
// master for: all of them, or those in only. It returns what was queued and
// what was asked for but is not held here.
func (e *Engine) Wave(ctx context.Context, only []netip.Addr) (queued, notHeld []netip.Addr, err error) {
	err = e.call(ctx, func() {
		held := map[netip.Addr]bool{}
		for _, k := range e.order {
			r := e.routers[k]
			if !r.m.Holds() {
				continue
			}
			for _, p := range r.spec.VIPs {
				held[p.Addr()] = true
				if len(only) == 0 {
					queued = append(queued, p.Addr())
				}
			}
		}
		for _, a := range only {
			if held[a] {
				queued = append(queued, a)
			} else {
				notHeld = append(notHeld, a)
			}
		}
		e.deps.Announcer.Wave(queued)
	})
	if err != nil {
		return nil, nil, err
	}
	e.deps.Log.Info().Int("vips", len(queued)).Int("not_held", len(notHeld)).Msg("announcement wave started")
	return queued, notHeld, nil
}

// SetGARP changes the announcement settings in place (a reload): the
// takeover burst, and the refresh schedule (nil: off), which masters follow
// from now on.
func (e *Engine) SetGARP(ctx context.Context, garp GARPConfig, refresh RefreshScheduler) error {
	return e.call(ctx, func() { e.setGARP(garp, refresh) })
}

func (e *Engine) setGARP(garp GARPConfig, refresh RefreshScheduler) {
	e.garp, e.deps.Refresh = garp, refresh
	now := e.deps.Clock.Now()
	for _, k := range e.order {
		r := e.routers[k]
		if !r.m.Holds() {
			continue
		}
		r.refresh = nil
		if refresh != nil {
			r.refresh = make([]time.Time, len(r.spec.VIPs))
			for i, p := range r.spec.VIPs {
				r.refresh[i] = refresh.Next(p.Addr(), now)
			}
		}
	}
	e.next = now // recompute the deadline at the next loop
}

// startBurst starts a new master's takeover burst: garp.count
// announcements of every VIP, garp.interval apart; after it, each VIP is
// re-announced at its own refresh phase.
func (e *Engine) startBurst(now time.Time, r *router) {
	r.burstLeft = e.garp.Count
	r.lastReassert = now // the burst does what a re-announcement would
	for _, p := range r.spec.VIPs {
		e.deps.Announcer.Takeover(p.Addr())
	}
	r.burstLeft--
	r.nextBurst = now.Add(e.garp.Interval)
	if e.deps.Refresh != nil {
		burstEnd := now.Add(time.Duration(e.garp.Count-1) * e.garp.Interval)
		r.refresh = make([]time.Time, len(r.spec.VIPs))
		for i, p := range r.spec.VIPs {
			r.refresh[i] = e.deps.Refresh.Next(p.Addr(), burstEnd)
		}
	}
}

// reassert re-announces a master's VIPs when another speaker claims its
// VRID: once per second at most, however many adverts the other master (or
// a spoofer) sends. A contest the limit holds back is owed one more
// re-announcement once the other has been quiet for contestQuiet: its
// announcements stop within an advert interval of its last advert, so ours
// comes last.
func (e *Engine) reassert(now time.Time, k routerKey, r *router) {
	if !r.m.Holds() {
		return // still claiming: nothing announced to win back
	}
	if now.Sub(r.lastReassert) < reassertEvery {
		r.reassertDue = later(now.Add(e.contestQuiet()), r.lastReassert.Add(reassertEvery))
		return
	}
	r.lastReassert = now
	r.reassertDue = time.Time{}
	e.deps.Log.Info().Str("vrid", k.String()).Msg("another speaker claims this VRID (a split brain healing, or a speaker outside the cluster): re-announcing the VIPs, the router may have learnt its MAC")
	e.answer(r)
}

// announceDue sends what is due for one router at now: the next burst
// announcement, an owed re-assertion, and each VIP's periodic refresh.
func (e *Engine) announceDue(now time.Time, k routerKey, r *router) {
	if r.burstLeft > 0 && !now.Before(r.nextBurst) {
		e.announce(r, true)
		r.burstLeft--
		r.nextBurst = now.Add(e.garp.Interval)
	}
	if !r.reassertDue.IsZero() && !now.Before(r.reassertDue) {
		r.reassertDue = time.Time{}
		if r.m.Holds() {
			r.lastReassert = now
			e.deps.Log.Info().Str("vrid", k.String()).Msg("the other speaker has been quiet since: re-announcing the VIPs once more, so the router's last word is ours")
			e.answer(r)
		}
	}
	for i, t := range r.refresh {
		if !t.IsZero() && !now.Before(t) {
			a := r.spec.VIPs[i].Addr()
			e.deps.Announcer.Announce(a, false)
			r.refresh[i] = e.deps.Refresh.Next(a, now)
		}
	}
}

// stopAnnouncing ends everything a released router had scheduled, and
// withdraws its queued announcements.
func (e *Engine) stopAnnouncing(r *router) {
	r.burstLeft = 0
	r.reassertDue = time.Time{}
	r.refresh = nil
	for _, p := range r.spec.VIPs {
		e.deps.Announcer.Withdraw(p.Addr())
	}
}
