package balancer

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/garpd/garpd/gossip"
)

// Move damping: a member that keeps coming back (a crash loop, a flapping
// check) takes its VIPs back after settle the first time, and after twice
// as long for each further return within dampWindow, so no VIP moves
// often enough to trip EVPN duplicate detection (RFC 7432, on by default
// in FRR: a MAC/IP that moves 5 times in 180 s is frozen). The other
// members count the returns, by the member's boot (its process start)
// and its health, so a member's own restarts never reset its count; they
// gossip the hold-downs they impose, and the member settles only after
// the longest.
const (
	// dampWindow is how long a return counts: the EVPN window. A member
	// that stayed away from trouble for as long is forgiven.
	dampWindow = 180 * time.Second
	// maxHold bounds a hold-down.
	maxHold = 10 * time.Minute
	// maxPublishedHolds bounds the hold-downs one member gossips, so its
	// metadata stays within memberlist's 512 bytes.
	maxPublishedHolds = 6
)

// Hold is a hold-down: the member takes its VIPs back no sooner than Until.
type Hold struct {
	Until   time.Time
	Returns int // within dampWindow, this one included
}

// Reason says why, for logs, status and Events.
func (h Hold) Reason() string {
	return fmt.Sprintf("came back %d times within %s: held out of its VIPs until %s (settle doubled per return), so no VIP moves often enough to trip EVPN duplicate detection",
		h.Returns, dampWindow, h.Until.UTC().Format(time.RFC3339))
}

// damper counts the other members' returns and the hold-downs they earn.
// It is pure: the controller feeds it what it sees, at the time it sees it.
type damper struct {
	settle  time.Duration
	seen    map[string]memberSeen // as last observed
	returns map[string][]time.Time
	holds   map[string]Hold
}

type memberSeen struct {
	up   bool  // alive and healthy
	boot int64 // its process start
}

func newDamper(settle time.Duration) *damper {
	return &damper{settle: settle, seen: map[string]memberSeen{}, returns: map[string][]time.Time{}, holds: map[string]Hold{}}
}

// holdFor is the hold-down of a member's nth return within dampWindow:
// none for the first, then settle doubled per return, from at.
func (d *damper) holdFor(at time.Time, n int) (Hold, bool) {
	if n < 2 {
		return Hold{}, false
	}
	base := max(d.settle, time.Second)
	hold := maxHold
	if n-1 < 20 {
		hold = min(maxHold, base<<(n-1))
	}
	return Hold{Until: at.Add(hold), Returns: n}, true
}

// observe records the members seen at now, the local one left out, and
// returns those that have just earned a hold-down. A return is a member
// that is up (alive and healthy) again after it was not, or with another
// boot; the first sight of a member is none.
func (d *damper) observe(now time.Time, live []gossip.Member, local string) []string {
	var held []string
	up := map[string]memberSeen{}
	for _, m := range live {
		if m.Name == local {
			continue
		}
		cur := memberSeen{up: m.Meta.Healthy, boot: m.Meta.Started}
		up[m.Name] = cur
		prev, known := d.seen[m.Name]
		if !known || !cur.up || (prev.up && prev.boot == cur.boot) {
			continue
		}
		rs := append(d.recent(m.Name, now), now)
		d.returns[m.Name] = rs
		if h, ok := d.holdFor(now, len(rs)); ok {
			d.holds[m.Name] = h
			held = append(held, m.Name)
		}
	}
	// A member gone from the live list is not up; one never seen stays
	// unknown, so its first sight is no return.
	for name, s := range d.seen {
		if _, ok := up[name]; !ok {
			up[name] = memberSeen{boot: s.boot}
		}
	}
	d.seen = up
	d.expire(now)
	return held
}

// recent is name's returns within dampWindow before now.
func (d *damper) recent(name string, now time.Time) []time.Time {
	return slices.DeleteFunc(slices.Clone(d.returns[name]), func(t time.Time) bool { return now.Sub(t) >= dampWindow })
}

// expire drops the returns and hold-downs that are over.
func (d *damper) expire(now time.Time) {
	for name := range d.returns {
		if rs := d.recent(name, now); len(rs) > 0 {
			d.returns[name] = rs
		} else {
			delete(d.returns, name)
		}
	}
	maps.DeleteFunc(d.holds, func(_ string, h Hold) bool { return !now.Before(h.Until) })
}

// forget drops what is known of members no longer known.
func (d *damper) forget(known func(string) bool) {
	maps.DeleteFunc(d.seen, func(name string, _ memberSeen) bool { return !known(name) })
	maps.DeleteFunc(d.returns, func(name string, _ []time.Time) bool { return !known(name) })
	maps.DeleteFunc(d.holds, func(name string, _ Hold) bool { return !known(name) })
}

// published is what this node gossips of its hold-downs: the longest
// ones, as Unix seconds by member.
func (d *damper) published() map[string]int64 {
	if len(d.holds) == 0 {
		return nil
	}
	names := slices.SortedFunc(maps.Keys(d.holds), func(a, b string) int { return d.holds[b].Until.Compare(d.holds[a].Until) })
	out := map[string]int64{}
	for _, n := range names[:min(len(names), maxPublishedHolds)] {
		out[n] = d.holds[n].Until.Unix() + 1 // rounded up
	}
	return out
}

// heldBy is the longest hold-down the live members impose on name (zero:
// none).
func heldBy(live []gossip.Member, name string, now time.Time) time.Time {
	var until time.Time
	for _, m := range live {
		if u, ok := m.Meta.Hold[name]; ok && m.Name != name {
			if t := time.Unix(u, 0); t.After(now) && t.After(until) {
				until = t
			}
		}
	}
	return until
}
