package vrrp

import (
	"context"
	"net/netip"
)

func (e *Engine) removeStaleVIPs() error {
	for _, k := range e.order {
		for _, p := range e.routers[k].spec.VIPs {
			has, err := e.deps.Addresses.HasVIP(p.Addr())
			if err != nil {
				return err
			}
			if has {
				e.deps.Log.Warn().Str("vip", p.String()).Msg("VIP was left on the interface by an earlier run; removing it before the first advert")
				if err := e.deps.Addresses.DelVIP(p); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// holdVIPs puts a new master's VIPs on the interface, or on its virtual
// MAC interface with use_vmac. A VIP that cannot be added is logged; the
// router stays master, as keepalived does, so an operator sees the error
// rather than a failover loop.
func (e *Engine) holdVIPs(k routerKey, r *router) {
	if e.deps.VMACs != nil {
		if err := e.deps.VMACs.Up(k.vrid, k.v6, r.spec.VIPs); err != nil {
			e.deps.Log.Error().Err(err).Str("vrid", k.String()).Msg("cannot put the VIPs on the virtual MAC")
			return
		}
		if !e.cfg.VMACXmitBase && r.via == nil {
			name := VMACName(k.vrid, k.v6)
			var err error
			if r.via, err = e.deps.Transport.OpenVia(k.v6, name); err != nil {
				e.deps.Log.Error().Err(err).Str("vrid", k.String()).Msg("cannot send adverts from the virtual MAC: sending them from the interface's own MAC")
			}
		}
		return
	}
	for _, p := range r.spec.VIPs {
		if err := e.deps.Addresses.AddVIP(p); err != nil {
			e.deps.Log.Error().Err(err).Str("vrid", k.String()).Msg("cannot add VIP")
		}
	}
}

// dropVIPs removes what holdVIPs added.
func (e *Engine) dropVIPs(k routerKey, r *router) {
	if e.deps.VMACs != nil {
		if r.via != nil {
			r.via.Close()
			r.via = nil
		}
		if err := e.deps.VMACs.Down(k.vrid, k.v6); err != nil {
			e.deps.Log.Error().Err(err).Str("vrid", k.String()).Msg("cannot remove the virtual MAC")
		}
		return
	}
	for _, p := range r.spec.VIPs {
		if err := e.deps.Addresses.DelVIP(p); err != nil {
			e.deps.Log.Error().Err(err).Str("vrid", k.String()).Msg("cannot remove VIP")
		}
	}
}

// masterOf returns the router that carries a if it is master, else nil.
func (e *Engine) masterOf(a netip.Addr) *router {
	for _, k := range e.order {
		r := e.routers[k]
		if !r.m.Holds() {
			continue
		}
		for _, p := range r.spec.VIPs {
			if p.Addr() == a {
				return r
			}
		}
	}
	return nil
}

// AddressRemoved tells the engine an address left its interface. A VIP of
// a router that is master was removed by someone else (an operator, a
// network manager): it is added back and announced.
func (e *Engine) AddressRemoved(ctx context.Context, a netip.Addr) error {
	return e.call(ctx, func() { e.addressRemoved(a) })
}

func (e *Engine) addressRemoved(a netip.Addr) {
	r := e.masterOf(a)
	if r == nil {
		return
	}
	k := r.spec.key()
	e.deps.Log.Warn().Str("vrid", k.String()).Str("vip", a.String()).Msg("a VIP this node is master for was removed from the interface by someone else: adding it back and announcing it")
	e.holdVIPs(k, r) // logs what cannot be added
	e.deps.Announcer.Announce(a, true)
}

// Resync puts back the VIPs of every master, after the link watch lost
// events: a VIP removed meanwhile is added again (adding one that is
// there changes nothing).
func (e *Engine) Resync(ctx context.Context) error {
	return e.call(ctx, func() {
		for _, k := range e.order {
			if r := e.routers[k]; r.m.Holds() {
				e.holdVIPs(k, r)
			}
		}
	})
}
