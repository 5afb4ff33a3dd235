package balancer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// rankingDigest is the SHA-256 of every ranking rankingCases computes,
// from the release whose plans this one must match.
const rankingDigest = "ad379b31cc1325be3acd951ca74a60ded0ff110cb77a046a63e31fe8bc064ffb"

// Every node of a cluster must compute the same plan, also while a rolling
// upgrade runs two releases side by side: a change to Rank that changes any
// ranking is a wire change. The cases: 1-11 nodes x 1-34 groups x three
// family and preference mixes, and 300 random ones up to 64 nodes and 510
// groups with random preferences (some for nodes that are not members).
func TestRankingsUnchanged(t *testing.T) {
	sum := sha256.Sum256([]byte(rankingCases(t)))
	if got := hex.EncodeToString(sum[:]); got != rankingDigest {
		t.Fatalf("the rankings changed (digest %s, want %s): nodes of this release and the last would disagree on every plan during an upgrade", got, rankingDigest)
	}
}

func rankingCases(t *testing.T) string {
	var b strings.Builder
	for n := 1; n <= 11; n++ {
		for g := 1; g <= 34; g++ {
			for mix := range 3 {
				var groups []Group
				switch mix {
				case 0:
					groups = mkGroups(g)
				case 1:
					groups = mkGroupsMixed(g, g/2+1)
				case 2:
					groups = mkGroupsMixed(g, g/3)
					for i := range groups {
						if i%3 == 0 {
							groups[i].Prefer = fmt.Sprintf("node-%02d", i%(n+1)%max(n, 1))
						}
						if i%5 == 0 {
							groups[i].Prefer = "node-00"
						}
					}
				}
				p, err := Rank(mkNodes(n), groups)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range p.Groups {
					fmt.Fprintf(&b, "%d %d %d %s %v\n", n, g, mix, r.Group.Key(), r.Ranking())
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(7, 9))
	for range 300 {
		c := cluster{nodes: mkNodes(2 + r.IntN(63)), groups: mkGroupsMixed(1+r.IntN(255), r.IntN(256))}
		for i := range c.groups {
			if r.IntN(6) == 0 {
				c.groups[i].Prefer = fmt.Sprintf("node-%02d", r.IntN(len(c.nodes)+2))
			}
		}
		p, err := Rank(c.nodes, c.groups)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range p.Groups {
			fmt.Fprintf(&b, "R %s %v\n", x.Group.Key(), x.Ranking())
		}
	}
	return b.String()
}
