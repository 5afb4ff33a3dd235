package gossip

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Nodes that each saw some joins and forgets, and then merge their sets
// in any order, all end with the same set: the merge converges.
func TestKnownSetMergeConverges(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	for range 200 {
		// One history of joins and forgets; each node saw a random part.
		nodes := make([]KnownSet, 2+r.IntN(6))
		for i := range nodes {
			nodes[i] = KnownSet{}
		}
		truth := KnownSet{}
		for range 30 {
			name := fmt.Sprintf("n%d", r.IntN(8))
			digest := []string{"d1", "d2"}[r.IntN(2)]
			if r.IntN(3) == 0 {
				truth.Forget(name)
			} else {
				truth.Join(name, digest)
			}
			for _, n := range nodes {
				if r.IntN(2) == 0 {
					n.Merge(truth)
				}
			}
		}
		// Gossip: random pairs merge both ways until everyone has merged
		// with everyone, in a random order.
		pairs := [][2]int{}
		for i := range nodes {
			for j := range nodes {
				if i != j {
					pairs = append(pairs, [2]int{i, j})
				}
			}
		}
		r.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
		for round := 0; round < 2; round++ {
			for _, p := range pairs {
				nodes[p[0]].Merge(nodes[p[1]])
			}
		}
		for i, n := range nodes[1:] {
			if !maps.Equal(n, nodes[0]) {
				t.Fatalf("node %d ended with %v, node 0 with %v", i+1, n, nodes[0])
			}
		}
		// Merging is idempotent and a merged set changes no more.
		if nodes[0].Merge(nodes[1]) {
			t.Fatal("merging an equal set reported a change")
		}
	}
}

func TestKnownSetJoinForget(t *testing.T) {
	k := KnownSet{}
	if !k.Join("a", "d") || k.Join("a", "d") {
		t.Fatal("join: want a change the first time only")
	}
	if !k.Forget("a") || k.Forget("a") || k.Forget("nobody") {
		t.Fatal("forget: want a change the first time only, none for strangers")
	}
	if names := k.Names("d"); len(names) != 0 {
		t.Fatalf("forgotten member still listed: %v", names)
	}
	// Back after a forget: a newer generation wins over the forget
	// wherever they meet.
	old := k.Clone()
	k.Join("a", "d")
	old.Merge(k)
	if !slices.Equal(old.Names("d"), []string{"a"}) {
		t.Fatalf("a rejoin lost to the older forget: %v", old)
	}
	// Another config: listed under its own digest only.
	k.Join("b", "other")
	if !slices.Equal(k.Names("d"), []string{"a"}) || !slices.Equal(k.Names("other"), []string{"b"}) {
		t.Fatalf("names by digest: %v / %v", k.Names("d"), k.Names("other"))
	}
}

func TestKnownSetSaveLoad(t *testing.T) {
	dir := t.TempDir()
	if k, _, err := LoadKnown(dir); err != nil || len(k) != 0 {
		t.Fatalf("no file: %v %v, want an empty set", k, err)
	}
	k := KnownSet{}
	k.Join("a", "d")
	k.Join("b", "d")
	k.Forget("b")
	if err := SaveKnown(dir, k); err != nil {
		t.Fatal(err)
	}
	got, _, err := LoadKnown(dir)
	if err != nil || !maps.Equal(got, k) {
		t.Fatalf("loaded %v (%v), saved %v", got, err, k)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, knownFile+".*")); len(left) != 0 {
		t.Fatalf("temporary files left behind: %v", left)
	}
	// A truncated file stops no start: it is moved aside, the set starts
	// empty, and the next start finds no file at all.
	os.WriteFile(filepath.Join(dir, knownFile), []byte("{not json"), 0o600)
	got, moved, err := LoadKnown(dir)
	if err != nil || len(got) != 0 || moved == "" {
		t.Fatalf("a broken file: %v, moved to %q, %v; want an empty set and the file moved aside", got, moved, err)
	}
	if b, err := os.ReadFile(moved); err != nil || string(b) != "{not json" {
		t.Fatalf("the broken file was not kept at %s: %v", moved, err)
	}
	if _, moved, err := LoadKnown(dir); err != nil || moved != "" {
		t.Fatalf("after moving it aside: moved %q, %v", moved, err)
	}
}

// No key holder can corrupt the set: a generation far ahead of ours (the
// last one before a wrap) is refused, so a member cannot be erased for
// good; a member forgotten while alive rejoins above the forget; and a
// tombstone goes on every node after the horizon.
func TestKnownSetBounded(t *testing.T) {
	k := KnownSet{}
	k.Join("a", "d")
	if k.Merge(KnownSet{"a": {Gen: ^uint64(0), Forgotten: true, Digest: "d"}}) || k["a"].Forgotten {
		t.Fatalf("a generation of 2^64-1 was merged: %+v", k["a"])
	}
	if !k.Merge(KnownSet{"a": {Gen: k["a"].Gen + 1, Forgotten: true, Digest: "d", At: time.Now().Unix()}}) || !k["a"].Forgotten {
		t.Fatal("a forget one generation ahead was refused")
	}
	if !k.Join("a", "d") || k["a"].Forgotten {
		t.Fatalf("the member's own join does not win over the forget: %+v", k["a"])
	}
	k.Join("b", "d")
	k.Forget("b")
	now := time.Now()
	if k.Prune(now) {
		t.Fatal("a fresh tombstone was pruned")
	}
	if !k.Prune(now.Add(tombstoneHorizon+time.Minute)) || len(k) != 1 {
		t.Fatalf("after the horizon: %v, want the tombstone gone", k)
	}
}

// A tombstone without its time is stamped when it comes and goes after
// the horizon like any other; a name longer than a host name, or one
// beyond maxKnown names, is not taken in.
func TestKnownSetTombstonesAgeAndNamesAreCapped(t *testing.T) {
	k := KnownSet{}
	now := time.Now()
	k.Merge(KnownSet{"old": {Gen: 1, Forgotten: true, Digest: "d"}})
	if !k.Prune(now) || k["old"].At != now.Unix() {
		t.Fatalf("a tombstone without a time: %+v, want it stamped now", k["old"])
	}
	if !k.Prune(now.Add(tombstoneHorizon+time.Minute)) || len(k) != 0 {
		t.Fatalf("after the horizon: %v, want it gone", k)
	}
	if k.Merge(KnownSet{strings.Repeat("n", maxNameLen+1): {Gen: 1, Digest: "d"}, "": {Gen: 1, Digest: "d"}}) || len(k) != 0 {
		t.Fatalf("took in names no host has: %v", k)
	}
	many := KnownSet{}
	for i := range maxKnown + 10 {
		many[fmt.Sprintf("n%d", i)] = Known{Gen: 1, Digest: "d"}
	}
	k.Merge(many)
	if len(k) != maxKnown {
		t.Fatalf("%d names after merging %d, want at most %d", len(k), len(many), maxKnown)
	}
}

// FuzzKnownSet: whatever a peer sends, decoding and merging it neither
// panics nor breaks the merge's rules.
func FuzzKnownSet(f *testing.F) {
	f.Add([]byte(`{"a":{"g":1,"d":"x"},"b":{"g":2,"f":true}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var other KnownSet
		if json.Unmarshal(b, &other) != nil {
			return
		}
		k := KnownSet{}
		k.Join("a", "x")
		k.Merge(other)
		if k.Merge(other) {
			t.Fatal("merging the same set twice changed it twice")
		}
		_ = k.Names("x")
	})
}
