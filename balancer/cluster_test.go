package balancer

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/garpd/garpd/gossip"
)

// ownersOf is the ranking a member computes from its own member list.
func ownersOf(t *testing.T, m *gossip.Membership, groups []Group, digest string) []string {
	ranked, _, _ := Eligible(m.Members(), digest, time.Now(), time.Second)
	var nodes []Node
	for _, n := range ranked {
		nodes = append(nodes, Node{Name: n, Weight: 1})
	}
	p, err := Rank(nodes, groups)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(p.Groups))
	for i, r := range p.Groups {
		out[i] = fmt.Sprint(r.Ranking())
	}
	return out
}

// Done-when 8: 64 members gossip on loopback; one is killed (no goodbye);
// every survivor must converge on the same ranking without it. Reports how
// long that took.
func TestClusterOf64AgreesAfterKill(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("64 in-process members: too slow under -race or -short; make test runs it without -race")
	}
	const n = 64
	groups := mkGroups(128)
	digest := Digest(groups, 3, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := gossip.Options{ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond,
		GossipInterval: 50 * time.Millisecond, SuspicionMult: 2, PushPullInterval: 2 * time.Second}
	var members []*gossip.Membership
	var seed string
	for i := range n {
		cfg := gossip.Config{Bind: "127.0.0.1:0", Advertise: "127.0.0.1"}
		if seed != "" {
			cfg.Join = []string{seed}
		}
		m, err := gossip.Start(ctx, cfg, fmt.Sprintf("m%02d", i), gossip.Meta{Healthy: true, ReadySince: time.Now().Add(-time.Hour).UnixMilli(), Digest: digest}, opts, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, m)
		if seed == "" {
			seed = m.LocalAddr()
		}
	}
	defer func() {
		for _, m := range members[1:] {
			m.Close()
		}
	}()
	agree := func(ms []*gossip.Membership, size int) bool {
		want := ""
		for _, m := range ms {
			if len(m.Members()) != size {
				return false
			}
			got := fmt.Sprint(ownersOf(t, m, groups, digest))
			if want == "" {
				want = got
			} else if got != want {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(60 * time.Second)
	for !agree(members, n) {
		if time.Now().After(deadline) {
			var sizes []int
			for _, m := range members {
				sizes = append(sizes, len(m.Members()))
			}
			t.Fatalf("64 members did not converge: member counts %v", sizes)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Kill m00 without leaving: the others must detect it.
	start := time.Now()
	if err := members[0].Crash(); err != nil {
		t.Fatal(err)
	}
	survivors := members[1:]
	deadline = time.Now().Add(60 * time.Second)
	for !agree(survivors, n-1) {
		if time.Now().After(deadline) {
			t.Fatal("survivors did not agree on a ranking without the killed member")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("64 members: all 63 survivors agree on one ranking %s after the kill (probe 200ms, suspicion ×2)", time.Since(start).Round(10*time.Millisecond))
	for _, m := range survivors {
		if slices.ContainsFunc(m.Members(), func(x gossip.Member) bool { return x.Name == "m00" }) {
			t.Fatal("the killed member is still listed")
		}
	}
}
