package vrrp

import (
	"context"
	"maps"
	"net"
	"net/netip"
	"slices"
	"time"
)

// Admission says whose adverts the engine accepts. In dynamic mode every
// node knows the members' VRRP source addresses and the priority the plan
// gives each of them for each virtual router, so an advert from anyone
// else, or above that priority, is a speaker outside the cluster (a
// misconfigured keepalived, or an attacker) and must not take a VIP.
// Static mode has none: every advert with the right VIP list counts.
type Admission struct {
	max  map[admitKey]uint8
	src  map[netip.Addr]bool
	macs map[string]bool
	any  map[netip.Addr]bool // AllowAny
}

type admitKey struct {
	src netip.Addr
	key routerKey
}

// NewAdmission returns an admission that accepts nobody until Allow.
func NewAdmission() *Admission {
	return &Admission{max: map[admitKey]uint8{}, src: map[netip.Addr]bool{}, macs: map[string]bool{}, any: map[netip.Addr]bool{}}
}

// AllowAny accepts src's adverts for every virtual router at any
// priority: a keepalived node during a migration, which VRRP arbitrates.
func (a *Admission) AllowAny(src netip.Addr) { a.any[src.WithZone("")] = true }

// AllowMAC marks mac as a member's: its announcements of our VIPs are
// VRRP's to arbitrate (a split brain heals by adverts), not a stranger's
// to answer.
func (a *Admission) AllowMAC(mac net.HardwareAddr) {
	a.macs[mac.String()] = true
}

// MemberMAC reports whether mac is a member's.
func (a *Admission) MemberMAC(mac net.HardwareAddr) bool { return a.macs[mac.String()] }

// Allow accepts src's adverts for the virtual router (v6, vrid) up to
// priority prio. Priority 0 (a member resigning) is always accepted.
func (a *Admission) Allow(src netip.Addr, v6 bool, vrid uint8, prio uint8) {
	src = src.WithZone("")
	a.src[src] = true
	k := admitKey{src, routerKey{v6: v6, vrid: vrid}}
	a.max[k] = max(a.max[k], prio)
}

// Admits reports whether an advert from src for the virtual router (v6,
// vrid) at priority prio is accepted.
func (a *Admission) Admits(src netip.Addr, v6 bool, vrid, prio uint8) bool {
	return a.verdict(src, routerKey{v6: v6, vrid: vrid}, prio) == ""
}

// verdict is "" when the advert is accepted, else the drop reason.
func (a *Admission) verdict(src netip.Addr, k routerKey, prio uint8) string {
	src = src.WithZone("")
	if a.any[src] {
		return ""
	}
	if !a.src[src] {
		return "not_member"
	}
	if prio != 0 && prio > a.max[admitKey{src, k}] {
		return "priority_above_plan"
	}
	return ""
}

// members returns the admitted sources of one family, in no order:
// the members and the keepalived nodes (AllowAny).
func (a *Admission) members(v6 bool) []netip.Addr {
	var out []netip.Addr
	for _, set := range []map[netip.Addr]bool{a.src, a.any} {
		for src := range set {
			if src.Is6() == v6 {
				out = append(out, src)
			}
		}
	}
	return out
}

// keepalivedPeers reports whether a keepalived node (AllowAny) of the
// family is admitted.
func (a *Admission) keepalivedPeers(v6 bool) bool {
	for src := range a.any {
		if src.Is6() == v6 {
			return true
		}
	}
	return false
}

// membersOnlyFor is how long a master sends a virtual router's adverts to
// the members alone after a speaker outside the cluster claimed it at a
// priority at or above the master's. Such a speaker stays master on its
// side, and keepalived, for one, answers every lower-priority advert it
// hears with gratuitous ARPs: a flood that moves the router's entry back
// and forth. Not hearing ours, it sends only its own takeover bursts,
// which the members answer. A speaker that stays master adverts every
// interval, so this long without one means it stopped or yields.
const membersOnlyFor = 10 * time.Second

// admissionGrace is how long the previous admission still counts after a
// new one: members apply a new plan at slightly different times, and an
// advert from one that has not yet must not be dropped as a rogue.
const admissionGrace = 10 * time.Second

// maxLoggedSources bounds the memory spent on "logged once" per rejected
// source, however many sources are spoofed.
const maxLoggedSources = 64

// loggedFor is how long a key stays logged: one that keeps coming is
// logged again after it, and spoofed keys that filled the set make room
// for a real speaker's.
const loggedFor = 10 * time.Minute

// onceSet remembers which keys were logged, and when, up to
// maxLoggedSources, so a source is logged once per loggedFor and the
// memory for it stays bounded however many sources are spoofed. The zero
// value is ready to use.
type onceSet[K comparable] struct {
	seen map[K]time.Time
	full bool
}

// first reports whether k is new (or was logged loggedFor ago) and may be
// logged at now; overflow is true the one time the set fills up, to log
// that further keys are not, until entries age out.
func (o *onceSet[K]) first(k K, now time.Time) (first, overflow bool) {
	if at, ok := o.seen[k]; ok && now.Sub(at) < loggedFor {
		return false, false
	}
	if len(o.seen) >= maxLoggedSources {
		maps.DeleteFunc(o.seen, func(_ K, at time.Time) bool { return now.Sub(at) >= loggedFor })
	}
	if len(o.seen) >= maxLoggedSources {
		overflow, o.full = !o.full, true
		return false, overflow
	}
	if o.seen == nil {
		o.seen = map[K]time.Time{}
	}
	o.seen[k], o.full = now, false
	return true, false
}

// SetAdmission limits the adverts the engine accepts to a's (nil accepts
// all). The previous admission still counts for admissionGrace, while the
// members apply the same plan change.
func (e *Engine) SetAdmission(ctx context.Context, a *Admission) error {
	return e.call(ctx, func() { e.setAdmission(a) })
}

func (e *Engine) setAdmission(a *Admission) {
	e.prevAdmit, e.prevUntil = e.admit, e.deps.Clock.Now().Add(admissionGrace)
	e.admit = a
}

// admission is "" when the advert may be processed, else the drop reason.
func (e *Engine) admission(now time.Time, src netip.Addr, k routerKey, prio uint8) string {
	if e.admit == nil {
		return ""
	}
	reason := e.admit.verdict(src, k, prio)
	if prev := e.previousAdmission(now); reason != "" && prev != nil && prev.verdict(src, k, prio) == "" {
		return ""
	}
	return reason
}

// previousAdmission is the admission before the current one while its
// grace lasts, else nil.
func (e *Engine) previousAdmission(now time.Time) *Admission {
	if e.prevAdmit != nil && now.Before(e.prevUntil) {
		return e.prevAdmit
	}
	return nil
}

// membersOnlyReachesAll reports whether a virtual router's adverts sent
// to the members alone (memberPeers) still reach every node the cluster
// admits. Not while keepalived nodes (vrrp.keepalived_peers) hear the
// adverts on the multicast group: keepalived drops a unicast advert in
// multicast mode, and would take the VIPs of a master it stops hearing.
// Then a speaker we refuse changes nothing about where adverts go.
func (e *Engine) membersOnlyReachesAll(v6 bool) bool {
	if e.admit == nil || !e.admit.keepalivedPeers(v6) {
		return true
	}
	return !slices.ContainsFunc(e.deps.Transport.Destinations(v6), netip.Addr.IsMulticast)
}

// memberPeers are the nodes of one family an advert goes to when it
// must reach them alone: the admitted sources, members and keepalived
// nodes (also those of the previous admission while its grace lasts),
// this node's own excepted.
func (e *Engine) memberPeers(v6 bool) []netip.Addr {
	var out []netip.Addr
	if e.admit != nil {
		out = e.admit.members(v6)
	}
	if prev := e.previousAdmission(e.deps.Clock.Now()); prev != nil {
		out = append(out, prev.members(v6)...)
	}
	self := e.deps.Transport.Source(v6).WithZone("")
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.DeleteFunc(slices.Compact(out), func(a netip.Addr) bool { return a == self })
}

// stranger reports whether mac belongs to no member, by the admission or
// the one before it (dynamic mode; the static mode knows no members).
func (e *Engine) stranger(mac net.HardwareAddr) bool {
	if e.admit == nil || e.admit.MemberMAC(mac) {
		return false
	}
	prev := e.previousAdmission(e.deps.Clock.Now())
	return prev == nil || !prev.MemberMAC(mac)
}
