package balancer

import (
	"maps"
	"slices"
	"strconv"
	"time"
)

// Soft checks (health checks with a weight) are keepalived's track_script
// weight made balanced. Each node sums, per group, the weights of its
// checks that apply to the group (a negative weight while its check
// fails, a positive one while it passes): its standing for the group.
// Every node gossips its standings, and every node reorders each group's
// ranking by them, highest first, the plan's order kept among equals.
// So a VIP moves only to a member that stands higher than its holder, and
// a check that fails on every node moves nothing.

// standingAll is the gossiped standings' key for every group not named.
const standingAll = "*"

// StandingKey names a group in gossiped standings: its family and VRID,
// and its interface when it has its own.
func StandingKey(g Group) string {
	k := "4/"
	if g.V6 {
		k = "6/"
	}
	k += strconv.Itoa(g.VRID)
	if g.Interface != "" {
		k += "@" + g.Interface
	}
	return k
}

// CompactStandings shortens a node's standings by group key for its
// gossip metadata (memberlist allows 512 bytes): the most common value
// under "*", the other groups by key; nil when all are 0. groups are
// every group of the plan.
func CompactStandings(groups []Group, byKey map[string]int) map[string]int {
	counts := map[int]int{}
	for _, g := range groups {
		counts[byKey[StandingKey(g)]]++
	}
	common, most := 0, counts[0]
	for _, v := range slices.Sorted(maps.Keys(counts)) {
		if counts[v] > most {
			common, most = v, counts[v]
		}
	}
	out := map[string]int{}
	if common != 0 {
		out[standingAll] = common
	}
	for _, g := range groups {
		if v := byKey[StandingKey(g)]; v != common {
			out[StandingKey(g)] = v
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// standingIn reads one group's standing from gossiped standings.
func standingIn(standings map[string]int, g Group) int {
	if v, ok := standings[StandingKey(g)]; ok {
		return v
	}
	return standings[standingAll]
}

// WithStandings reorders each group's ranking by the members' standings
// (of, by member name): highest first, the plan's order kept among
// equals. A pure function of the plan and the standings, as Rank is of
// the members: every node that has heard the same standings computes the
// same rankings.
func (p Plan) WithStandings(of func(member string) map[string]int) Plan {
	out := Plan{Groups: slices.Clone(p.Groups), Nodes: p.Nodes}
	for gi, r := range out.Groups {
		var standing []int
		for i, n := range r.ctx.nodes {
			if v := standingIn(of(n), r.Group); v != 0 {
				if standing == nil {
					standing = make([]int, len(r.ctx.nodes))
				}
				standing[i] = v
			}
		}
		out.Groups[gi].standing = standing
	}
	return out
}

// standingHold holds the members' standings back until they have been
// quiet: what Decide orders by changes once per burst of check verdicts.
type standingHold struct {
	own     map[string]int // this node's (its checks' verdict)
	quiet   time.Duration
	applied map[string]map[string]int // by member: what Decide orders by
	latest  map[string]map[string]int
	changed time.Time // when latest last changed
	first   time.Time // when latest first differed from applied; zero: same
}

// observe takes the latest standings at now and reports whether it
// applied them.
func (h *standingHold) observe(now time.Time, latest map[string]map[string]int) bool {
	same := func(a, b map[string]map[string]int) bool {
		return maps.EqualFunc(a, b, func(x, y map[string]int) bool { return maps.Equal(x, y) })
	}
	if !same(latest, h.latest) {
		h.latest, h.changed = latest, now
	}
	if same(latest, h.applied) {
		h.first = time.Time{}
		return false
	}
	if h.first.IsZero() {
		h.first = now
	}
	if due, _ := h.due(); now.Before(due) {
		return false
	}
	h.applied, h.first = latest, time.Time{}
	return true
}

// due is when the latest standings apply, if they differ from those
// applied.
func (h *standingHold) due() (time.Time, bool) {
	if h.first.IsZero() {
		return time.Time{}, false
	}
	return minTime(h.changed.Add(h.quiet), h.first.Add(4*h.quiet)), true
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
