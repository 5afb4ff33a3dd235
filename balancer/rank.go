package balancer

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"runtime"
	"slices"
	"sort"
	"sync"
)

// Node is a ranked member. Weight scales its share of owned VIPs (default 1).
type Node struct {
	Name   string
	Weight int
}

// Priorities express the ranking to VRRP. They are spaced, not consecutive:
// VRRP breaks the race between backups by Skew_Time, (256-priority) x
// interval / 256 in whole centiseconds, which is the same for 249 and 248
// at 100 ms adverts, so the first and second backup would take over in the
// same instant. Owner 250, rank 1 200 and rank 2 150 are 2 cs apart there.
// 251..254 stay free for an operator's manual override.
const (
	OwnerPriority  = 250
	BackupPriority = 200 // rank 1: VRRP's pick when the owner dies
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

// Ranked is one group's ranking: who owns it, who takes it over first, and
// then everyone else in the order of their scores for the group. The plan
// decides owner and first backup; the rest of the order is a pure function
// of the scores, computed when asked (RankOf, all a node needs for its own
// priority, counts in O(N) without sorting).
type Ranked struct {
	Group  Group
	owner  int
	second int // -1 with a single node
	gh     uint64
	ctx    *rankContext
}

// rankContext is what every Ranked of one plan shares.
type rankContext struct {
	nodes []Node // sorted by name
	nh    []uint64
}

// key orders nodes by score for a group: score in the high bits, node
// index in the low 16 for a total order without ties (N ≤ 65535).
func (c *rankContext) key(gh uint64, i int) uint64 { return score(gh, c.nh[i])&^0xffff | uint64(i) }

// order returns the whole ranking as node indexes.
func (r Ranked) order() []int {
	n := len(r.ctx.nodes)
	keys := make([]uint64, 0, n)
	for i := range n {
		if i != r.owner && i != r.second {
			keys = append(keys, r.ctx.key(r.gh, i))
		}
	}
	sortUniform(keys, make([]uint64, len(keys)))
	out := make([]int, 0, n)
	out = append(out, r.owner)
	if r.second >= 0 {
		out = append(out, r.second)
	}
	for k := len(keys) - 1; k >= 0; k-- {
		out = append(out, int(keys[k]&0xffff))
	}
	return out
}

// Ranking returns the node names, owner first.
func (r Ranked) Ranking() []string {
	idx := r.order()
	out := make([]string, len(idx))
	for i, n := range idx {
		out[i] = r.ctx.nodes[n].Name
	}
	return out
}

// Owner is the rank-0 node.
func (r Ranked) Owner() string { return r.ctx.nodes[r.owner].Name }

// At returns the node at rank i.
func (r Ranked) At(i int) string {
	switch {
	case i == 0:
		return r.Owner()
	case i == 1 && r.second >= 0:
		return r.ctx.nodes[r.second].Name
	}
	return r.ctx.nodes[r.order()[i]].Name
}

// Len is the number of ranked nodes.
func (r Ranked) Len() int { return len(r.ctx.nodes) }

// RankOf returns the rank of the named node, or -1.
func (r Ranked) RankOf(name string) int {
	nodes := r.ctx.nodes
	i, ok := slices.BinarySearchFunc(nodes, name, func(n Node, s string) int { return cmp.Compare(n.Name, s) })
	switch {
	case !ok:
		return -1
	case i == r.owner:
		return 0
	case i == r.second:
		return 1
	}
	mine, above := r.ctx.key(r.gh, i), 0
	for j := range nodes {
		if j != r.owner && j != r.second && r.ctx.key(r.gh, j) > mine {
			above++
		}
	}
	if r.second < 0 {
		return 1 + above
	}
	return 2 + above
}

// Priorities returns each node's VRRP priority for this group.
func (r Ranked) Priorities() map[string]int {
	idx := r.order()
	p := make(map[string]int, len(idx))
	for i, n := range idx {
		p[r.ctx.nodes[n].Name] = PriorityForRank(i, len(idx))
	}
	return p
}

// Plan is the ranking of every group over one member set.
type Plan struct {
	Groups []Ranked // in the order the groups were given
	Nodes  []Node   // sorted by name
}

// Owned counts the VIPs (not groups) each node owns.
func (p Plan) Owned() map[string]int {
	o := make(map[string]int, len(p.Nodes))
	for _, n := range p.Nodes {
		o[n.Name] = 0
	}
	for _, r := range p.Groups {
		o[r.Owner()] += len(r.Group.VIPs)
	}
	return o
}

// CheckNodes validates a member list: names present and unique, weights positive.
func CheckNodes(nodes []Node) error {
	if len(nodes) == 0 {
		return errors.New("no nodes to rank")
	}
	seen := map[string]bool{}
	for _, n := range nodes {
		if n.Name == "" {
			return errors.New("a node has an empty name")
		}
		if seen[n.Name] {
			return fmt.Errorf("node %q is listed twice", n.Name)
		}
		seen[n.Name] = true
		if n.Weight <= 0 {
			return fmt.Errorf("node %q has weight %d: weights must be positive", n.Name, n.Weight)
		}
	}
	return nil
}

// hash64 is FNV-1a finished with the splitmix64 mixer, so nearby names
// land far apart.
func hash64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return mix64(h.Sum64())
}

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// score is the rendezvous weight of node n for group g: the higher, the
// more the group prefers the node. It depends only on the two names.
func score(gh, nh uint64) uint64 { return mix64(gh ^ nh*0x9e3779b97f4a7c15) }

// quota is the capacity bookkeeping of one balanced assignment: every node
// takes floor(share) items and up to `extra` nodes with a fractional share
// take one more, so counts end proportional to weight within one.
type quota struct {
	floor    []int
	eligible []bool
	extra    int
	used     []int
	full     []bool // canTake is false; kept up to date by take
}

func newQuota(items int, weights []int, exclude int) *quota {
	q := &quota{floor: make([]int, len(weights)), eligible: make([]bool, len(weights)),
		used: make([]int, len(weights)), full: make([]bool, len(weights))}
	total := 0
	for i, w := range weights {
		if i != exclude {
			total += w
		}
	}
	sum := 0
	for i, w := range weights {
		if i == exclude {
			continue
		}
		q.floor[i] = items * w / total
		q.eligible[i] = items*w%total != 0
		sum += q.floor[i]
	}
	q.extra = items - sum
	for i := range weights {
		q.full[i] = i == exclude || !q.canTake(i)
	}
	return q
}

func (q *quota) canTake(i int) bool {
	return q.used[i] < q.floor[i] || (q.used[i] == q.floor[i] && q.eligible[i] && q.extra > 0)
}

func (q *quota) take(i int) {
	q.used[i]++
	if q.used[i] > q.floor[i] {
		q.extra--
		if q.extra == 0 {
			// The last extra slot is gone: nodes at their floor are full now.
			for j := range q.full {
				q.full[j] = q.full[j] || q.used[j] >= q.floor[j]
			}
		}
	}
	q.full[i] = q.full[i] || !q.canTake(i)
}

// Rank computes the plan: a pure function of the member set (with weights)
// and the groups, whatever order either is given in.
//
//  1. Owners: groups are visited in the order of their own hash, each taking
//     its highest-scoring node that still has room under an exact weighted
//     quota, so every node owns its share rounded, within one.
//  2. Rank 1 (the node VRRP fails over to): each owner's groups are spread
//     over the other nodes under the same kind of quota, so one node's death
//     moves its VIPs to different survivors in proportion to their weight.
//     Within that quota a group prefers the node that owns it in the plan
//     without its owner, so re-ranking after a death agrees with VRRP.
//  3. The remaining ranks follow the score.
func Rank(nodes []Node, groups []Group) (Plan, error) {
	if err := CheckNodes(nodes); err != nil {
		return Plan{}, err
	}
	if len(nodes) > 1<<16-1 {
		return Plan{}, fmt.Errorf("%d nodes: at most 65535 can be ranked", len(nodes))
	}
	ns := slices.Clone(nodes)
	sort.Slice(ns, func(i, j int) bool { return ns[i].Name < ns[j].Name })
	N, G := len(ns), len(groups)
	nh := make([]uint64, N)
	weights := make([]int, N)
	for i, n := range ns {
		nh[i] = hash64(n.Name)
		weights[i] = n.Weight
	}
	gh := make([]uint64, G)
	order := make([]int, G)
	for g := range groups {
		gh[g] = hash64(groups[g].Key())
		order[g] = g
	}
	sort.Slice(order, func(a, b int) bool {
		x, y := order[a], order[b]
		if gh[x] != gh[y] {
			return gh[x] < gh[y]
		}
		return groups[x].Key() < groups[y].Key()
	})

	ctx := &rankContext{nodes: ns, nh: nh}
	// The head of every group's rendezvous preference list (its K best
	// nodes by score), packed together: nearly every pick is among them,
	// and they stay in cache across the greedy passes below.
	const topK = 16
	K := min(N, topK)
	top := make([]uint16, G*K)
	parallel(G, N, func(lo, hi int) {
		head := make([]uint64, 0, K)
		for g := lo; g < hi; g++ {
			head = head[:0]
			for i := range N {
				k := ctx.key(gh[g], i)
				if len(head) == K && k <= head[K-1] {
					continue
				}
				// Insert, keeping head sorted descending.
				j := len(head)
				if j < K {
					head = append(head, 0)
				} else {
					j = K - 1
				}
				for ; j > 0 && head[j-1] < k; j-- {
					head[j] = head[j-1]
				}
				head[j] = k
			}
			for j, k := range head {
				top[g*K+j] = uint16(k & 0xffff)
			}
		}
	})
	// A group's full list is sorted only if a pick ever gets past its head
	// (all K full), and then once: the passes below run in parallel.
	fullPref := make([][]uint16, G)
	fullOnce := make([]sync.Once, G)
	prefOf := func(g int) []uint16 {
		fullOnce[g].Do(func() {
			keys := make([]uint64, N)
			for i := range N {
				keys[i] = ctx.key(gh[g], i)
			}
			sortUniform(keys, make([]uint64, N))
			row := make([]uint16, N)
			for k := range N {
				row[k] = uint16(keys[N-1-k] & 0xffff)
			}
			fullPref[g] = row
		})
		return fullPref[g]
	}
	// best is the group's most preferred node that still has room.
	best := func(g int, q *quota) int {
		for _, i := range top[g*K : (g+1)*K] {
			if !q.full[i] {
				return int(i)
			}
		}
		for _, i := range prefOf(g)[K:] {
			if !q.full[i] {
				return int(i)
			}
		}
		return -1
	}

	owner := make([]int, G)
	q := newQuota(G, weights, -1)
	byOwner := make([][]int, N)
	for _, g := range order {
		o := best(g, q)
		q.take(o)
		owner[g] = o
		byOwner[o] = append(byOwner[o], g)
	}
	// wanted[g] is g's owner in the plan without g's owner: what every node
	// computes once gossip drops a dead owner. Making it rank 1 where the
	// failover quota allows means VRRP's choice and the re-ranked plan agree,
	// so the VIP moves once.
	wanted := make([]int, G)
	if N > 1 {
		// These N passes dominate the cost: lay out what they read in visit
		// order, so each pass streams through memory.
		seqTop := make([]uint16, G*K)
		seqOwner := make([]int32, G)
		for i, g := range order {
			copy(seqTop[i*K:(i+1)*K], top[g*K:(g+1)*K])
			seqOwner[i] = int32(owner[g])
		}
		parallel(N, G, func(lo, hi int) {
			for x := lo; x < hi; x++ {
				if len(byOwner[x]) == 0 {
					continue
				}
				q := newQuota(G, weights, x)
				for i, g := range order {
					o := -1
					for _, y := range seqTop[i*K : (i+1)*K] {
						if !q.full[y] {
							o = int(y)
							break
						}
					}
					if o < 0 {
						o = best(g, q)
					}
					q.take(o)
					if seqOwner[i] == int32(x) {
						wanted[g] = o
					}
				}
			}
		})
	}
	second := make([]int, G)
	for i := range second {
		second[i] = -1
	}
	if N > 1 {
		equal := !slices.ContainsFunc(weights, func(w int) bool { return w != weights[0] })
		for o, gs := range byOwner {
			if len(gs) == 0 {
				continue
			}
			if equal {
				assignSecondsBand(gs, o, owner, wanted, prefOf, N, G, second)
				continue
			}
			q := newQuota(len(gs), weights, o)
			for _, g := range gs {
				s := wanted[g]
				if q.full[s] {
					s = best(g, q)
				}
				q.take(s)
				second[g] = s
			}
		}
	}

	plan := Plan{Groups: make([]Ranked, G), Nodes: ns}
	for g := range G {
		plan.Groups[g] = Ranked{Group: groups[g], owner: owner[g], second: second[g], gh: gh[g], ctx: ctx}
	}
	return plan, nil

}

// assignSecondsBand picks rank 1 for the groups gs of owner x when weights
// are equal. Right after x dies each survivor y holds p[y] = what it owns
// plus what it takes from x; every p[y] must end in [lo, lo+2], lo =
// ceil(V/(N-1)) - 1, so survivors differ by at most 2. A group takes its
// wanted node (its owner in the plan without x) whenever that stays
// feasible: below lo+2, and leaving enough groups to lift every survivor
// still below lo up to it. Otherwise it takes its most preferred node that is.
func assignSecondsBand(gs []int, x int, owner, wanted []int, prefOf func(int) []uint16, N, G int, second []int) {
	p := make([]int, N)
	for _, o := range owner {
		p[o]++
	}
	p[x] = 0
	lo := (G+N-2)/(N-1) - 1
	deficit := 0
	for y := range N {
		if y != x {
			deficit += max(0, lo-p[y])
		}
	}
	remaining := len(gs)
	allowed := func(y int) bool {
		if y == x || p[y] >= lo+2 {
			return false
		}
		return p[y] < lo || remaining-1 >= deficit
	}
	take := func(g, y int) {
		if p[y] < lo {
			deficit--
		}
		p[y]++
		remaining--
		second[g] = y
	}
	for _, g := range gs {
		if allowed(wanted[g]) {
			take(g, wanted[g])
			continue
		}
		for _, y := range prefOf(g) {
			if allowed(int(y)) {
				take(g, int(y))
				break
			}
		}
	}
}

// sortUniform sorts keys ascending. Scores are uniform over 64 bits, so
// spreading them into 256 buckets by their top byte leaves almost every
// bucket with one key, and the insertion sort that follows only fixes those
// few: linear time, where a comparison sort dominated the ranking's cost.
func sortUniform(keys, scratch []uint64) {
	var count [257]int
	for _, k := range keys {
		count[k>>56+1]++
	}
	for i := 1; i < len(count); i++ {
		count[i] += count[i-1]
	}
	out := scratch[:len(keys)]
	for _, k := range keys {
		b := k >> 56
		out[count[b]] = k
		count[b]++
	}
	for i := 1; i < len(out); i++ {
		k := out[i]
		j := i
		for ; j > 0 && out[j-1] > k; j-- {
			out[j] = out[j-1]
		}
		out[j] = k
	}
	copy(keys, out)
}

// parallel splits [0, n) over the CPUs when the work is worth it.
func parallel(n, width int, f func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if workers < 2 || n*width < 1<<14 {
		f(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() { defer wg.Done(); f(lo, hi) }()
	}
	wg.Wait()
}

// Without returns the members of p minus the named node, for re-ranking.
func Without(nodes []Node, name string) []Node {
	out := make([]Node, 0, len(nodes))
	for _, n := range nodes {
		if n.Name != name {
			out = append(out, n)
		}
	}
	return out
}

// Move is what happens to one of a failed node's groups.
type Move struct {
	Group     Group
	Immediate string // VRRP's pick: the group's rank-1 node
	Reranked  string // the owner once the member list no longer has the node
}

// FailureReport says what a node's death does to the plan.
type FailureReport struct {
	Node  string
	Moves []Move
	// AgreeWithVRRP counts the failed node's groups whose re-ranked owner is
	// the node VRRP already moved them to (nothing moves twice).
	AgreeWithVRRP int
	// OthersMoved counts groups of surviving owners that re-ranking moves.
	OthersMoved int
	// OwnedAfterFailover and OwnedAfterRerank count VIPs per survivor.
	OwnedAfterFailover map[string]int
	OwnedAfterRerank   map[string]int
}

// Fail computes what happens when node dies: VRRP's immediate failover, then
// the re-ranked plan without it.
func Fail(p Plan, node string) (FailureReport, Plan, error) {
	found := false
	for _, n := range p.Nodes {
		found = found || n.Name == node
	}
	if !found {
		return FailureReport{}, Plan{}, fmt.Errorf("node %q is not a member", node)
	}
	if len(p.Nodes) < 2 {
		return FailureReport{}, Plan{}, fmt.Errorf("node %q is the only member: nothing can take over", node)
	}
	groups := make([]Group, len(p.Groups))
	for i, r := range p.Groups {
		groups[i] = r.Group
	}
	after, err := Rank(Without(p.Nodes, node), groups)
	if err != nil {
		return FailureReport{}, Plan{}, err
	}
	rep := FailureReport{Node: node, OwnedAfterFailover: map[string]int{}, OwnedAfterRerank: after.Owned()}
	for _, n := range after.Nodes {
		rep.OwnedAfterFailover[n.Name] = 0
	}
	for i, r := range p.Groups {
		vips := len(r.Group.VIPs)
		newOwner := after.Groups[i].Owner()
		if r.Owner() == node {
			m := Move{Group: r.Group, Immediate: r.At(1), Reranked: newOwner}
			rep.Moves = append(rep.Moves, m)
			rep.OwnedAfterFailover[m.Immediate] += vips
			if m.Immediate == m.Reranked {
				rep.AgreeWithVRRP++
			}
			continue
		}
		rep.OwnedAfterFailover[r.Owner()] += vips
		if newOwner != r.Owner() {
			rep.OthersMoved++
		}
	}
	return rep, after, nil
}
