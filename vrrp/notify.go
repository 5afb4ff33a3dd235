package vrrp

import (
	"cmp"
	"strconv"
)

// StateChange is one virtual router's move, in keepalived's words, for
// the notify hooks (Deps.Notify). The engine hands it over without
// waiting: what runs the hooks queues it.
type StateChange struct {
	Router   RouterID
	VIPs     []string
	From, To string // MASTER, BACKUP, FAULT or STOP
	Priority int
	// Fault says why the router is in FAULT (a check that tracks it, the
	// link down, the node resigned).
	Fault string
	// Name is the router's instance name (RouterSpec.Name), "" for none.
	Name string
}

// Instance is the instance name hooks see, as keepalived passes an
// instance's name: the router's own (a VIP's name:, kept from the
// keepalived instance it came from), else garpd_ipv4_51.
func (c StateChange) Instance() string {
	if c.Name != "" {
		return c.Name
	}
	name := "garpd_" + routerKey{v6: c.Router.V6, vrid: c.Router.VRID}.family() + "_" + strconv.Itoa(int(c.Router.VRID))
	if c.Router.Interface != "" {
		name += "_" + c.Router.Interface // as render names a second interface's instances
	}
	return name
}

// Family is "ipv4" or "ipv6".
func (id RouterID) Family() string { return routerKey{v6: id.V6}.family() }

// notifyState is the keepalived state a router is in for its hooks: a
// router in Initialize is in FAULT while something keeps it out, and
// STOP when the engine stops.
func (e *Engine) notifyState(k routerKey, st State) (string, string) {
	switch st {
	case Master:
		return "MASTER", ""
	case Backup:
		return "BACKUP", ""
	}
	switch {
	case e.stopping:
		return "STOP", ""
	case e.faults[k] != "":
		return "FAULT", e.faults[k]
	case e.linkDown:
		return "FAULT", "the interface is down"
	case e.resigned:
		return "FAULT", "this node resigned (health, eligibility)"
	}
	return "STOP", ""
}

// notify tells the hooks of a router's state, if it changed since they
// last heard.
func (e *Engine) notify(k routerKey, r *router) {
	if e.deps.Notify == nil {
		return
	}
	to, why := e.notifyState(k, r.m.State())
	if to == r.notified {
		return
	}
	from := cmp.Or(r.notified, "INIT")
	r.notified = to
	vips := make([]string, len(r.spec.VIPs))
	for i, p := range r.spec.VIPs {
		vips[i] = p.Addr().String()
	}
	e.deps.Notify(StateChange{Router: RouterID{VRID: k.vrid, V6: k.v6, Interface: r.spec.Interface}, VIPs: vips, From: from, To: to,
		Priority: int(r.m.Priority()), Fault: why, Name: r.spec.Name})
}
