package balancer

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/garpd/garpd/gossip"
)

// planOf is the ranking a member computes from its own known set.
func planOf(t *testing.T, m *gossip.Membership, groups []Group) string {
	var nodes []string
	for _, k := range m.Known() {
		nodes = append(nodes, k.Name)
	}
	p, err := Rank(nodes, groups)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range p.Groups {
		fmt.Fprintln(&b, r.Ranking())
	}
	return b.String()
}

// 64 members gossip on loopback and agree on one known set, so on one
// plan. One is killed (no goodbye): every survivor sees it down and keeps
// the same plan; nothing is re-ranked. An operator forgets it on one node:
// the forget reaches every survivor through push-pull, and they agree on
// the plan without it. Reports how long detection and the forget took.
func TestClusterOf64KnownSet(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("64 in-process members: too slow under -race or -short; make test runs it without -race")
	}
	const n = 64
	groups := mkGroups(128)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Timers loose enough that 64 members on a busy 2-core machine do not
	// suspect each other falsely. Push-pull every 15 s (memberlist makes
	// it 30 s at 64 members) repairs the joins a busy machine's lost
	// packets hide, but cannot spread a forget to 63 members within
	// forgetBound: the forget must travel as a broadcast.
	const forgetBound = 20 * time.Second
	opts := gossip.Options{ProbeInterval: time.Second, ProbeTimeout: 500 * time.Millisecond,
		GossipInterval: 100 * time.Millisecond, SuspicionMult: 3, PushPullInterval: 15 * time.Second}
	var members []*gossip.Membership
	var seed string
	for i := range n {
		cfg := gossip.Config{Bind: "127.0.0.1:0", Advertise: "127.0.0.1", ForgetAfter: time.Hour}
		if seed != "" {
			cfg.Join = []string{seed}
		}
		m, err := gossip.Start(ctx, cfg, fmt.Sprintf("m%02d", i), gossip.Meta{Healthy: true, Settled: true}, opts, zerolog.Nop())
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
	// agree: every member sees live members and known members as given,
	// and all compute the same plan.
	agree := func(ms []*gossip.Membership, live, known int) (bool, string) {
		want := ""
		for _, m := range ms {
			if l, k := len(m.Members()), len(m.Known()); l != live || k != known {
				return false, fmt.Sprintf("%s sees %d live, %d known", m.LocalAddr(), l, k)
			}
			got := planOf(t, m, groups)
			if want == "" {
				want = got
			} else if got != want {
				return false, "plans differ"
			}
		}
		return true, ""
	}
	waitUpTo := func(bound time.Duration, what string, ms []*gossip.Membership, live, known int) time.Duration {
		t.Helper()
		start := time.Now()
		deadline := start.Add(bound)
		for {
			ok, state := agree(ms, live, known)
			if ok {
				return time.Since(start)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s (%s)", what, bound, state)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	wait := func(what string, ms []*gossip.Membership, live, known int) time.Duration {
		t.Helper()
		return waitUpTo(120*time.Second, what, ms, live, known)
	}
	wait("64 members to agree", members, n, n)
	before := planOf(t, members[1], groups)

	if err := members[0].Crash(); err != nil {
		t.Fatal(err)
	}
	survivors := members[1:]
	detect := wait("survivors to see m00 down", survivors, n-1, n)
	if planOf(t, survivors[0], groups) != before {
		t.Fatal("a member's death changed the plan: it must stay known, as down")
	}
	for _, m := range survivors {
		for _, k := range m.Known() {
			if k.Name == "m00" && k.DownSince.IsZero() {
				t.Fatalf("%s does not list m00 as down", m.LocalAddr())
			}
		}
	}
	if err := survivors[0].Forget("m00"); err != nil {
		t.Fatal(err)
	}
	if err := survivors[0].Forget("m01"); err == nil {
		t.Fatal("forgetting a live member succeeded")
	}
	spread := waitUpTo(forgetBound, "the forget to reach every survivor", survivors, n-1, n-1)
	t.Logf("64 members: all 63 survivors saw the kill %s after it (probe 1s, suspicion ×3), kept the plan, and had the operator's forget %s after it was said (a broadcast; push-pull every 30 s)",
		detect.Round(10*time.Millisecond), spread.Round(10*time.Millisecond))
}
