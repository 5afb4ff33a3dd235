package vrrp

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type dropKey struct {
	v6     bool
	reason string
}

// dropReasons are the drops after a packet decoded, which dashboards and
// alerts name: each is exported at 0 from the start, so increase() sees
// the first one.
var dropReasons = [...]string{"bad_ttl", "version_mismatch", "unknown_vrid", "auth_mismatch", "interval_mismatch",
	"vip_mismatch", "not_member", "priority_above_plan",
	authMissing, authMalformed, authUnknownKey, authBadHMAC, authStale, authReplay}

// authHints say, once per source, what an auth_hmac refusal means.
var authHints = map[string]string{
	authMissing:    "an advert without an auth_hmac trailer, and auth_hmac enforces: a node that does not sign yet (roll out with mode receive-only, then permissive, then enforce), or a speaker without the key",
	authMalformed:  "an advert whose auth_hmac trailer is of an unknown kind: a newer scheme, or garbage",
	authUnknownKey: "an advert signed with a key id this node does not have: give every node the same keys (a rotation adds the new key everywhere before active_key moves to it)",
	authBadHMAC:    "an advert whose auth_hmac HMAC is wrong: another key under the same id, or a forged or altered advert",
	authStale:      "an advert whose auth_hmac time is outside the window: the sender's clock is off (check NTP), or a captured advert replayed later",
	authReplay:     "an advert whose auth_hmac sequence this node has seen already: a replayed advert",
}

// dropCounter is the counter of one family's drops for reason.
func (e *Engine) dropCounter(v6 bool, reason string) prometheus.Counter {
	k := dropKey{v6: v6, reason: reason}
	c, ok := e.drops[k]
	if !ok {
		c = e.deps.Metrics.Dropped.WithLabelValues(routerKey{v6: v6}.family(), reason)
		e.drops[k] = c
	}
	return c
}

// drop counts a rejected packet.
func (e *Engine) drop(v6 bool, reason string) {
	e.dropCounter(v6, reason).Inc()
}

// handlePacket validates a received packet (RFC 5798 §7.1, RFC 3768 §7.1)
// and hands it to its virtual router.
func (e *Engine) handlePacket(p Packet) {
	if p.TTL != 255 && !e.mayComeOffLink(p) {
		e.drop(p.V6, "bad_ttl")
		return
	}
	adv := &e.rx
	if err := DecodeInto(adv, p.Payload, p.Src, p.Dst, p.V6); err != nil {
		e.drop(p.V6, string(ReasonOf(err)))
		return
	}
	if adv.Version != e.cfg.Version && !p.V6 {
		e.drop(p.V6, "version_mismatch")
		return
	}
	k := routerKey{v6: p.V6, vrid: adv.VRID}
	r, ok := e.routers[k]
	if !ok {
		e.drop(p.V6, "unknown_vrid")
		return
	}
	if adv.Version == 2 {
		want := AuthNone
		pass := e.cfg.Password()
		if pass != "" {
			want = AuthPassword
		}
		if adv.AuthType != want || (want == AuthPassword && adv.AuthData != PasswordData(pass)) {
			e.drop(p.V6, "auth_mismatch")
			return
		}
		if adv.Interval != e.cfg.IntervalCS() {
			e.drop(p.V6, "interval_mismatch")
			return
		}
	}
	got := adv.Addresses // e.rx's own storage: sorting it in place is free
	slices.SortFunc(got, netip.Addr.Compare)
	if !slices.Equal(got, r.addrs) {
		e.drop(p.V6, "vip_mismatch")
		r.collisions.Inc()
		if e.firstRejection(p.Src) {
			e.deps.Log.Error().Str("vrid", k.String()).Str("source", p.Src.String()).
				Str("their_vips", joinAddrs(got)).Str("our_vips", joinAddrs(r.addrs)).
				Msg("VRID collision: another VRRP router uses this VRID with a different VIP list; ignoring its adverts. Another cluster on this segment probably uses the same VRID: give one side other VRIDs (vrrp.vrid_base, or the VIPs' vrid: where a config pins them; `garpd scan` lists the VRIDs in use)")
			e.event(true, "VRIDCollision", fmt.Sprintf("%s uses VRRP %s for %s, ours is %s: give one side other VRIDs (vrrp.vrid_base, or the VIPs' vrid: where pinned; garpd scan lists the VRIDs in use)",
				p.Src, k, joinAddrs(got), joinAddrs(r.addrs)))
		}
		return
	}
	now := e.deps.Clock.Now()
	reason := e.authenticate(now, k, p, adv)
	if reason == "" {
		reason = e.admission(now, p.Src, k, adv.Priority)
	}
	if reason != "" {
		e.refuse(now, k, r, p.Src, adv.Priority, reason)
		return
	}
	e.noteSkew(now, k, p.Src, adv)
	r.recv.Inc()
	if p.TTL != 255 {
		e.deps.Metrics.OffLink.WithLabelValues(k.family()).Inc()
	}
	e.transition(now, k, r, func(m *Machine) []Action { return m.HandleAdvert(now, p.Src, *adv) })
}

// mayComeOffLink reports whether an advert below hop limit 255 still
// counts: one sent to this node alone by a unicast peer (keepalived sends
// IPv6 unicast adverts with hop limit 64), where auth_hmac enforces (the
// HMAC, checked next, keeps forgers out in place of the hop limit) or the
// operator listed the peer in vrrp.accept_hop_limit_from. Nothing else
// from off the link counts (RFC 5798 §7.1).
func (e *Engine) mayComeOffLink(p Packet) bool {
	if p.Dst.IsMulticast() {
		return false
	}
	src := p.Src.WithZone("")
	if !slices.Contains(e.deps.Transport.Destinations(p.V6), src) {
		return false
	}
	enforced := e.auth != nil && e.auth.keys.Mode == AuthEnforce
	return enforced || slices.Contains(e.offLinkOK, src)
}

// firstRejection reports whether src is rejected for the first time, so
// it is logged once.
func (e *Engine) firstRejection(src netip.Addr) bool {
	first, overflow := e.rejected.first(src, e.deps.Clock.Now())
	if overflow {
		e.deps.Log.Error().Int("sources", maxLoggedSources).Msg("adverts rejected from many sources: not logging further ones (see garpd_vrrp_packets_dropped_total)")
	}
	return first
}

// noteSkew warns, once per source while it lasts, when an accepted
// advert's clock is more than half the time window away from ours: a
// little more drift and its adverts are refused as stale (keepalived warns
// alike).
func (e *Engine) noteSkew(now time.Time, k routerKey, src netip.Addr, adv *Advert) {
	if e.auth == nil || !adv.Signed || e.auth.keys.Window == 0 {
		return
	}
	skew := time.Duration(now.Unix()-int64(adv.Trailer.Seq>>32)) * time.Second
	if w := e.auth.keys.Window; max(skew, -skew) > w/2 {
		if first, _ := e.skewLogged.first(src, now); first {
			msg := fmt.Sprintf("%s's clock is %s from ours, past half the auth_hmac time window (%s): its adverts are refused once it drifts past the window; fix its time (NTP)", src, skew, w)
			e.deps.Log.Warn().Str("vrid", k.String()).Str("source", src.String()).Dur("skew", skew).Msg(msg)
			e.event(true, "ClockSkew", msg)
		}
	}
}

// authenticate is "" when auth_hmac is off or passes the advert, else
// why it is refused.
func (e *Engine) authenticate(now time.Time, k routerKey, p Packet, adv *Advert) string {
	if e.auth == nil {
		return ""
	}
	tr, pdu := (*Trailer)(nil), p.Payload
	if adv.Signed {
		tr, pdu = &adv.Trailer, p.Payload[:len(p.Payload)-TrailerLen]
	}
	return e.auth.check(now, k, p.Src, pdu, tr)
}

// refuse drops an advert that is not authentic or not a member's, says
// why once per source, and keeps a speaker we do not accept from pulling
// our VIPs: a master sends this router's adverts to the members only
// while it claims it (it would answer them with announcements of its
// own), and over IPv6 re-announces the VIPs.
func (e *Engine) refuse(now time.Time, k routerKey, r *router, src netip.Addr, prio uint8, reason string) {
	e.drop(k.v6, reason)
	if reason == authBadHMAC || reason == authUnknownKey {
		e.foreignKeyed = now
	}
	if e.firstRejection(src) {
		hint, event := authHints[reason], "UnauthenticatedAdverts"
		msg := fmt.Sprintf("%s sends VRRP %s adverts that fail auth_hmac (%s): give it the key, or stop it", src, k, reason)
		switch reason {
		case "priority_above_plan":
			hint, event = "a member sends adverts above the priority the plan gives it (another config or version?); ignoring them. Compare garpd status on both nodes", "AdvertsAbovePlan"
			msg = fmt.Sprintf("member %s sends VRRP %s adverts above its planned priority: compare garpd status on both nodes", src, k)
		case "not_member":
			hint, event = "a VRRP speaker that is not a member of this garpd cluster uses our VRIDs and VIPs; ignoring it. Find it by its source address (a keepalived with the same VRIDs?) and stop it, or make it a member", "NonMemberAdverts"
			msg = fmt.Sprintf("%s, not a member, sends VRRP %s adverts for our VIPs: stop it (a keepalived with the same VRIDs?) or make it a member", src, k)
		}
		e.deps.Log.Error().Str("vrid", k.String()).Str("source", src.String()).Int("priority", int(prio)).Str("reason", reason).Msg(hint)
		e.event(true, event, msg)
	}
	if !r.m.Holds() {
		return
	}
	// Only the dynamic mode knows the members to send to instead, and
	// only where they are every node that must hear us.
	if reason != "priority_above_plan" && e.admit != nil && prio >= r.m.Priority() && e.membersOnlyReachesAll(k.v6) {
		if !now.Before(r.membersOnlyUntil) {
			e.deps.Log.Info().Str("vrid", k.String()).Str("source", src.String()).
				Dur("for_at_least", membersOnlyFor).Msg("a speaker we do not accept claims this virtual router: sending its adverts to the members only, so it cannot answer them")
		}
		r.membersOnlyUntil = now.Add(membersOnlyFor)
	}
	if k.v6 {
		// The speaker may be announcing our VIPs: win the router back
		// (rate-limited like any re-announcement). IPv4 answers its
		// gratuitous ARPs themselves (ForeignClaim), and backs off from
		// one that answers back.
		e.apply(now, k, r, []Action{ActReassert})
	}
}
