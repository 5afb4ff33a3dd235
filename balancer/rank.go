package balancer

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/garpd/garpd/vrrp"
)

// Priorities express the ranking to VRRP. They are spaced, not consecutive:
// VRRP breaks the race between backups by Skew_Time, (256-priority) x
// interval / 256 in whole centiseconds, which is the same for 249 and 248
// at 100 ms adverts, so the first and second backup would take over in the
// same instant. Owner 250, rank 1 200 and rank 2 150 are 2 cs apart there.
// 251..254 stay free for an operator's manual override.
const (
	OwnerPriority  = 250
	BackupPriority = 200 // rank 1: VRRP's pick when the owner is down
	TailPriority   = 150 // rank 2; further ranks step down from here
	MinPriority    = 1
)

// PriorityForRank maps a rank (0 = owner) among n ranked nodes to a VRRP
// priority: distinct and decreasing for up to about 150 nodes; beyond that
// the last ranks share priority 1 (VRRP then breaks ties by address).
func PriorityForRank(rank, n int) int {
	switch rank {
	case 0:
		return OwnerPriority
	case 1:
		return BackupPriority
	}
	step := min(10, max(1, (TailPriority-MinPriority)/max(n-2, 1)))
	return max(TailPriority-(rank-2)*step, MinPriority)
}

// Ranked is one group's ranking over the known members: owner first, then
// the node VRRP hands the group to when the owner is down, and so on. The
// plan places ranks 0 to 2; the rest follow the score, counted when asked.
type Ranked struct {
	Group Group
	head  []int // owner, rank 1, rank 2 (as many as there are nodes)
	gh    uint64
	ctx   *rankContext
	// standing is each node's soft-check standing for the group, by node
	// index (WithStandings); nil while every node's is 0.
	standing []int
}

// rankContext is what every Ranked of one plan shares.
type rankContext struct {
	nodes []string // sorted
	nh    []uint64
}

// key orders the nodes for a group: the score in the high bits, the node in
// the low 16, so no two nodes tie.
func (c *rankContext) key(gh uint64, i int) uint64 { return score(gh, c.nh[i])&^0xffff | uint64(i) }

// order is the whole ranking, as node indexes: the plan's, then moved by
// the standings, highest first, the plan's order kept among equals.
func (r Ranked) order() []int {
	out := r.planned()
	if r.standing != nil {
		slices.SortStableFunc(out, func(a, b int) int { return cmp.Compare(r.standing[b], r.standing[a]) })
	}
	return out
}

// planned is the plan's ranking, as node indexes.
func (r Ranked) planned() []int {
	rest := make([]uint64, 0, len(r.ctx.nodes))
	for i := range r.ctx.nodes {
		if !slices.Contains(r.head, i) {
			rest = append(rest, r.ctx.key(r.gh, i))
		}
	}
	slices.Sort(rest)
	out := slices.Clone(r.head)
	for k := len(rest) - 1; k >= 0; k-- {
		out = append(out, int(rest[k]&0xffff))
	}
	return out
}

// Ranking returns the node names, owner first.
func (r Ranked) Ranking() []string {
	idx := r.order()
	out := make([]string, len(idx))
	for i, n := range idx {
		out[i] = r.ctx.nodes[n]
	}
	return out
}

// Owner is the rank-0 node.
func (r Ranked) Owner() string { return r.At(0) }

// At returns the node at rank i.
func (r Ranked) At(i int) string {
	if i < len(r.head) && r.standing == nil {
		return r.ctx.nodes[r.head[i]]
	}
	return r.ctx.nodes[r.order()[i]]
}

// Len is the number of ranked nodes.
func (r Ranked) Len() int { return len(r.ctx.nodes) }

// RankOf returns the rank of the named node, or -1: all a node needs for
// its own priority, counted without sorting.
func (r Ranked) RankOf(name string) int {
	i, ok := slices.BinarySearch(r.ctx.nodes, name)
	if !ok {
		return -1
	}
	if r.standing != nil {
		return slices.Index(r.order(), i)
	}
	if at := slices.Index(r.head, i); at >= 0 {
		return at
	}
	mine, above := r.ctx.key(r.gh, i), 0
	for j := range r.ctx.nodes {
		if !slices.Contains(r.head, j) && r.ctx.key(r.gh, j) > mine {
			above++
		}
	}
	return len(r.head) + above
}

// Holder is the node VRRP elects when the nodes in down do not take part:
// the first of the ranking that is up ("" when all are down).
func (r Ranked) Holder(down map[string]bool) string {
	if r.standing == nil {
		for _, n := range r.head {
			if !down[r.ctx.nodes[n]] {
				return r.ctx.nodes[n]
			}
		}
	}
	for _, n := range r.order() {
		if !down[r.ctx.nodes[n]] {
			return r.ctx.nodes[n]
		}
	}
	return ""
}

// Priorities returns each node's VRRP priority for this group.
func (r Ranked) Priorities() map[string]int {
	idx := r.order()
	p := make(map[string]int, len(idx))
	for i, n := range idx {
		p[r.ctx.nodes[n]] = PriorityForRank(i, len(idx))
	}
	return p
}

// Plan is the ranking of every group over one known member set.
type Plan struct {
	Groups []Ranked // in the order the groups were given
	Nodes  []string // member names, sorted
}

// Owned counts the VIPs (not groups) each node owns.
func (p Plan) Owned() map[string]int { return p.Held(nil) }

// Held counts the VIPs each node holds while the nodes in down are down;
// down nodes hold none.
func (p Plan) Held(down map[string]bool) map[string]int {
	o := make(map[string]int, len(p.Nodes))
	for _, n := range p.Nodes {
		o[n] = 0
	}
	for _, r := range p.Groups {
		if h := r.Holder(down); h != "" {
			o[h] += len(r.Group.VIPs)
		}
	}
	return o
}

// CheckNodes validates a member list: names present and unique.
func CheckNodes(nodes []string) error {
	if len(nodes) == 0 {
		return errors.New("no nodes to rank")
	}
	seen := map[string]bool{}
	for _, n := range nodes {
		if n == "" {
			return errors.New("a node has an empty name")
		}
		if seen[n] {
			return fmt.Errorf("node %q is listed twice", n)
		}
		seen[n] = true
	}
	return nil
}

// score is the rendezvous weight of node n for group g: the higher, the
// more the group prefers the node. It depends only on the two names.
func score(gh, nh uint64) uint64 { return vrrp.Mix64(gh ^ nh*0x9e3779b97f4a7c15) }

// families are the two address families a plan balances separately.
const families = 2

func familyOf(g Group) int {
	if g.V6 {
		return 1
	}
	return 0
}

// Rank computes the plan over the known members: a pure function of the
// member names and the groups, whatever order either is
// given in. Members that are down stay in it; VRRP skips them.
//
//  1. Owners. Each node owns its share of the groups of each
//     family, rounded down or up, and of all groups together, rounded down
//     or up (ownerTargets). Groups, in the order of their hash, take their
//     most preferred node (highest score) that is still below its target.
//  2. Rank 1, what VRRP hands a group to when its owner is down. For each
//     owner x, the survivors' shares of all groups are rounded as in 1,
//     none below what each already owns (ownerTargets with lower bounds):
//     what each gains is what it takes from x. So with any one node down
//     the holders are as even as the groups allow, and nothing else moves.
//     Where preferred owners make that split impossible, x's groups are
//     water-filled instead: one at a time to the survivor then least
//     loaded.
//  3. Rank 2, the same for each pair of nodes x, y: the groups one of them
//     owns with the other at rank 1 are water-filled over the rest,
//     counting what each holds once both are down.
//  4. The remaining ranks follow the score.
//
// A group that prefers a known node is owned by it (step 1 counts it
// against that node's share); steps 2 and 3 then spread its failure as any
// other's. Preferences beyond a node's share cost balance: the groups left
// over go to the least loaded nodes.
//
// Within one water-filling, which group goes to which node is again each
// group's preference, in hash order.
//
// It is one function of about 200 lines on purpose: every node must
// compute the same plan from the same inputs, and an auditor checks that
// by reading the four steps above in order, against the loads they share.
func Rank(nodes []string, groups []Group) (Plan, error) {
	if err := CheckNodes(nodes); err != nil {
		return Plan{}, err
	}
	ns := slices.Sorted(slices.Values(nodes))
	N, G := len(ns), len(groups)
	nh := make([]uint64, N)
	for i, n := range ns {
		nh[i] = vrrp.Hash64(n)
	}
	if N > 1<<16 {
		return Plan{}, fmt.Errorf("%d nodes: at most 65536 can be ranked", N)
	}
	ctx := &rankContext{nodes: ns, nh: nh}
	gh := make([]uint64, G)
	gkey := make([]string, G)
	for g := range groups {
		gkey[g] = groups[g].Key()
		gh[g] = vrrp.Hash64(gkey[g])
	}
	// assign gives each group of gs, in order, its most preferred node
	// (highest key) that is still below its quota, recording it in to;
	// count is what each node has taken (nil: start from nothing).
	scratch := make([]int, N)
	assign := func(gs []int, quota, count, to []int) {
		if count == nil {
			count = scratch
			clear(count)
		}
		for _, g := range gs {
			best, bestKey := -1, uint64(0)
			for i := range N {
				if count[i] >= quota[i] {
					continue
				}
				if k := ctx.key(gh[g], i); best < 0 || k > bestKey {
					best, bestKey = i, k
				}
			}
			if best >= 0 {
				count[best]++
				to[g] = best
			}
		}
	}
	// byHash: the groups of each family, in the order of their hash.
	var byHash [families][]int
	for g := range groups {
		f := familyOf(groups[g])
		byHash[f] = append(byHash[f], g)
	}
	for f := range byHash {
		slices.SortFunc(byHash[f], func(a, b int) int {
			return cmp.Or(cmp.Compare(gh[a], gh[b]), cmp.Compare(gkey[a], gkey[b]))
		})
	}
	// Ties between nodes go by node hash, so no name is favoured.
	tie := make([]int, N)
	for i := range N {
		tie[i] = i
	}
	slices.SortFunc(tie, func(a, b int) int { return cmp.Compare(nh[a], nh[b]) })

	// 1. Owners.
	var famCount [families]int
	for f := range byHash {
		famCount[f] = len(byHash[f])
	}
	targets, ok := ownerTargets(famCount, tie, -1, nil, true)
	if !ok { // each family rounded on its own always places every group
		targets, _ = ownerTargets(famCount, tie, -1, nil, false)
	}
	owner := filled(G)
	var owned [families][]int // per family and node
	byOwner := make([][families][]int, N)
	for f := range byHash {
		owned[f] = make([]int, N)
		// Preferred groups go to their node first and count against its
		// share; the rest fill the shares as they would.
		var rest []int
		for _, g := range byHash[f] {
			if p, ok := slices.BinarySearch(ns, groups[g].Prefer); ok && groups[g].Prefer != "" {
				owner[g] = p
				owned[f][p]++
			} else {
				rest = append(rest, g)
			}
		}
		assign(rest, targets[f], owned[f], owner)
		// Preferences beyond a node's share leave groups no share is left
		// for: each goes to the node then least loaded.
		for _, g := range rest {
			if owner[g] < 0 {
				add := waterFill(1, owned[f], total(owned), tie, nil)
				owner[g] = slices.Index(add, 1)
				owned[f][owner[g]]++
			}
		}
		for _, g := range byHash[f] {
			byOwner[owner[g]][f] = append(byOwner[owner[g]][f], g)
		}
	}

	// 2. Rank 1, per owner and family.
	second := filled(G)
	rank1 := make([][families][]int, N) // rank1[x][f][y]: x's groups with y at rank 1
	if N > 1 {
		for x := range N {
			// The survivors' shares of all groups, none below what each
			// owns: what each adds is what it takes over from x.
			var lower [families][]int
			for f := range byHash {
				lower[f] = slices.Clone(owned[f])
				lower[f][x] = 0
			}
			after, exact := ownerTargets(famCount, tie, x, &lower, true)
			if !exact { // some preferred owners: each family exact, totals within one
				after, exact = ownerTargets(famCount, tie, x, &lower, false)
			}
			held := total(owned) // for water-filling, where no exact split exists
			for f := range byHash {
				mine := byOwner[x][f]
				add := make([]int, N)
				if exact {
					for y := range N {
						add[y] = after[f][y] - lower[f][y]
					}
				} else {
					add = waterFill(len(mine), owned[f], held, tie, []int{x})
				}
				rank1[x][f] = add
				assign(mine, add, nil, second)
				for y, a := range add {
					held[y] += a
				}
			}
		}
	}

	// 3. Rank 2, per pair of nodes and family: only pairs that share a
	// group, at most one per group.
	third := filled(G)
	type nodePair struct{ x, y int }
	var pairs []nodePair
	pairGroups := map[nodePair][families][]int{}
	for f := range byHash {
		for _, g := range byHash[f] {
			if second[g] < 0 || N < 3 {
				continue
			}
			p := nodePair{min(owner[g], second[g]), max(owner[g], second[g])}
			pg, seen := pairGroups[p]
			if !seen {
				pairs = append(pairs, p)
			}
			pg[f] = append(pg[f], g)
			pairGroups[p] = pg
		}
	}
	for _, p := range pairs {
		// What every node holds once x and y are down, but for the groups
		// one of them owns with the other at rank 1.
		var load [families][]int
		for f := range byHash {
			load[f] = make([]int, N)
			for z := range N {
				load[f][z] = owned[f][z] + rank1[p.x][f][z] + rank1[p.y][f][z]
			}
		}
		held := total(load)
		for f, gs := range pairGroups[p] {
			add := waterFill(len(gs), load[f], held, tie, []int{p.x, p.y})
			assign(gs, add, nil, third)
			for z, a := range add {
				held[z] += a
			}
		}
	}

	// 4. The rest follow the score: Ranked counts them when asked.
	plan := Plan{Groups: make([]Ranked, G), Nodes: ns}
	for g := range groups {
		var head []int
		for _, n := range []int{owner[g], second[g], third[g]} {
			if n >= 0 {
				head = append(head, n)
			}
		}
		plan.Groups[g] = Ranked{Group: groups[g], head: head, gh: gh[g], ctx: ctx}
	}
	return plan, nil
}

func filled(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = -1
	}
	return out
}

func total(perFamily [families][]int) []int {
	out := make([]int, len(perFamily[0]))
	for _, c := range perFamily {
		for i, v := range c {
			out[i] += v
		}
	}
	return out
}

// waterFill hands out items one at a time, each to the node (not in
// excluded) with the smallest load; ties go to the smaller total, then by
// tie order. It returns how many each node got.
func waterFill(items int, load, totalLoad, tie, excluded []int) []int {
	add := make([]int, len(load))
	for range items {
		best := -1
		for _, n := range tie {
			if slices.Contains(excluded, n) {
				continue
			}
			if best < 0 || cmp.Or(cmp.Compare(load[n]+add[n], load[best]+add[best]), cmp.Compare(totalLoad[n]+add[n], totalLoad[best]+add[best])) < 0 {
				best = n
			}
		}
		if best < 0 {
			break
		}
		add[best]++
	}
	return add
}

// ownerTargets says how many groups of each family each node owns: its
// share of that family rounded down or up, such that its total is its
// share of all groups rounded down or up too, and never less than lower
// (what a node holds already; nil: nothing). Node down (-1: none) gets
// nothing. Families are rounded one after the other: a family's
// extra groups go first to nodes that must have one to reach lower, then to
// nodes still short of their rounded-down total, then by tie order. It
// reports false when lower cannot be met that way. Not coupled, each family
// is rounded on its own and the totals are left to follow.
func ownerTargets(counts [families]int, tie []int, down int, lower *[families][]int, coupled bool) ([families][]int, bool) {
	N, W := len(tie), len(tie) // W: the nodes up
	if down >= 0 {
		W--
	}
	var out [families][]int
	var floor, extra [families]int
	all, base := 0, 0 // base: a node's sum of the family floors
	for f, c := range counts {
		out[f], extra[f] = make([]int, N), c
		if W > 0 {
			floor[f], extra[f] = c/W, c%W
		}
		for i := range N {
			if i != down {
				out[f][i] = floor[f]
			}
		}
		all, base = all+c, base+floor[f]
	}
	// A node's total must end in [need, most] extras above base.
	need, most := 0, families // each family rounded on its own
	if coupled && W > 0 {
		need, most = all/W-base, all/W-base
		if all%W != 0 {
			most++
		}
	}
	got := make([]int, N)
	// Pass 0: extras a node must have to keep what it holds; pass 1: to
	// nodes short of their rounded-down total; pass 2: to anyone with room.
	for pass := range 3 {
		for f := range counts {
			for _, i := range tie {
				if extra[f] == 0 {
					break
				}
				forced := lower != nil && lower[f][i] > floor[f]
				if i == down || out[f][i] > floor[f] || got[i] >= most ||
					(pass == 0 && !forced) || (pass == 1 && got[i] >= need) {
					continue
				}
				out[f][i]++
				got[i]++
				extra[f]--
			}
		}
	}
	ok := true
	for f := range counts {
		ok = ok && extra[f] == 0
		for i := range N {
			ok = ok && (lower == nil || out[f][i] >= lower[f][i]) && (i == down || got[i] >= need)
		}
	}
	return out, ok
}

// Move is one group whose holder changes.
type Move struct {
	Group    Group
	From, To string
}

// Moves lists the groups whose holder differs between two plans of the same
// groups (down nodes hold nothing): what a join or a forget re-plans.
func Moves(before, after Plan, down map[string]bool) []Move {
	var out []Move
	for i, r := range before.Groups {
		from, to := r.Holder(down), after.Groups[i].Holder(down)
		if from != to {
			out = append(out, Move{Group: r.Group, From: from, To: to})
		}
	}
	return out
}

// Down checks a set of down nodes against a plan: each must be a member.
func (p Plan) Down(names []string) (map[string]bool, error) {
	down := map[string]bool{}
	for _, n := range names {
		if !slices.Contains(p.Nodes, n) {
			return nil, fmt.Errorf("%q is not a member", n)
		}
		down[n] = true
	}
	return down, nil
}

// PreferenceCost is what the groups' preferences cost in balance over
// nodes: the spread of VIPs owned (most minus fewest) with them, and with
// them left out. Equal spreads: the preferences cost nothing.
func PreferenceCost(nodes []string, groups []Group) (with, without int, err error) {
	p, err := Rank(nodes, groups)
	if err != nil {
		return 0, 0, err
	}
	plain := slices.Clone(groups)
	for i := range plain {
		plain[i].Prefer = ""
	}
	q, err := Rank(nodes, plain)
	if err != nil {
		return 0, 0, err
	}
	return ownedSpread(p.Owned()), ownedSpread(q.Owned()), nil
}

func ownedSpread(owned map[string]int) int {
	lo, hi := -1, 0
	for _, v := range owned {
		if lo < 0 || v < lo {
			lo = v
		}
		hi = max(hi, v)
	}
	return hi - max(lo, 0)
}
