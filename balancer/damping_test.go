package balancer

import (
	"testing"
	"time"

	"github.com/garpd/garpd/gossip"
)

func dampMember(name string, healthy bool, boot int64) gossip.Member {
	return gossip.Member{Name: name, Meta: gossip.Meta{Healthy: healthy, Started: boot}}
}

// Returns are counted by what the members see: a first sight is none; a
// member up again after it was gone, unhealthy, or under another boot is
// one. The first return in dampWindow costs nothing beyond settle; each
// further one doubles the hold-down; returns older than dampWindow are
// forgotten, and so are the hold-downs once over.
func TestDamperCountsReturns(t *testing.T) {
	const settle = 10 * time.Second
	d := newDamper(settle)
	t0 := time.Unix(1_800_000_000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	step := func(s int, live ...gossip.Member) []string {
		return d.observe(at(s), append(live, dampMember("self", true, 1)), "self")
	}
	if held := step(0, dampMember("a", true, 1)); held != nil || d.returns["a"] != nil {
		t.Fatalf("a first sight counted as a return: held %v, returns %v", held, d.returns["a"])
	}
	step(5) // a gone
	if held := step(6, dampMember("a", true, 2)); held != nil || len(d.returns["a"]) != 1 {
		t.Fatalf("first return: held %v, %d returns; want no hold-down, 1 return", held, len(d.returns["a"]))
	}
	// A restart faster than gossip noticed: another boot while up.
	if held := step(26, dampMember("a", true, 3)); len(held) != 1 || d.holds["a"].Until != at(26).Add(2*settle) {
		t.Fatalf("second return: held %v until %s; want a until +%s", held, d.holds["a"].Until.Sub(t0), 26*time.Second+2*settle)
	}
	// A check that flaps.
	step(30, dampMember("a", false, 3))
	if held := step(31, dampMember("a", true, 3)); len(held) != 1 || d.holds["a"].Until != at(31).Add(4*settle) || d.holds["a"].Returns != 3 {
		t.Fatalf("third return: held %v, %+v; want until +4 settle, 3 returns", held, d.holds["a"])
	}
	if pub := d.published(); pub["a"] != at(31).Add(4*settle).Unix()+1 {
		t.Fatalf("published %v, want a's hold-down", pub)
	}
	// Quiet for dampWindow: forgiven.
	step(31 + int(dampWindow/time.Second))
	if len(d.holds) != 0 || len(d.returns) != 0 || d.published() != nil {
		t.Fatalf("after a quiet window: holds %v, returns %v, want none", d.holds, d.returns)
	}
	step(300)
	if held := step(301, dampMember("a", true, 4)); held != nil {
		t.Fatalf("a return after a quiet window held %v, want none (a single failure and return moves at once)", held)
	}
}

// The members that hold a node out tell it: it settles after the longest
// hold-down any live member gossips on it, never its own.
func TestHeldBy(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	live := []gossip.Member{
		{Name: "a", Meta: gossip.Meta{Hold: map[string]int64{"x": now.Unix() + 20}}},
		{Name: "b", Meta: gossip.Meta{Hold: map[string]int64{"x": now.Unix() + 40, "y": now.Unix() - 5}}},
		{Name: "x", Meta: gossip.Meta{Hold: map[string]int64{"x": now.Unix() + 999}}},
	}
	if got := heldBy(live, "x", now); !got.Equal(now.Add(40 * time.Second)) {
		t.Fatalf("x held until %s, want +40s", got.Sub(now))
	}
	if got := heldBy(live, "y", now); !got.IsZero() {
		t.Fatalf("y held until %s, want no hold-down (it is over)", got)
	}
}

// The flapper, over every settle an operator sets and every
// flapping period from 5 s to 60 s, seen by a member that notices each
// crash and return one gossip round late: the flapper crashes every
// period and is back a second later; it takes its VIP back at
// max(return + settle, the others' hold-down) unless it crashes first.
// Its VIP never moves more than 4 times in any 180 s when it flaps
// faster than twice its settle; a single failure and return moves it
// twice.
func TestDampingBoundsFlapping(t *testing.T) {
	for _, settle := range []time.Duration{3 * time.Second, 10 * time.Second, 30 * time.Second} {
		for _, period := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 60 * time.Second} {
			if period > 2*settle {
				continue // slower than damping's reach: see the README
			}
			moves := flap(settle, period, 9)
			for i := range moves {
				n := 0
				for _, m := range moves[i:] {
					if m.Sub(moves[i]) < dampWindow {
						n++
					}
				}
				if n > 4 {
					t.Fatalf("settle %s, flapping every %s: %d moves within 180 s from %s (moves at %v)", settle, period, n, moves[i].Sub(time.Time{}), moves)
				}
			}
		}
		if moves := flap(settle, time.Hour, 1); len(moves) != 2 {
			t.Fatalf("settle %s: one failure and return moved the VIP %d times, want 2", settle, len(moves))
		}
	}
}

// flap simulates crashes crashes of a member every period, each back a
// second later, and returns when its VIP moved.
func flap(settle, period time.Duration, crashes int) []time.Time {
	const restart, notice = time.Second, 500 * time.Millisecond
	d := newDamper(settle)
	var t0 time.Time
	self := dampMember("self", true, 1)
	d.observe(t0, []gossip.Member{self, dampMember("x", true, 0)}, "self")
	var moves []time.Time
	holding := true
	for i := range crashes {
		crash := t0.Add(time.Duration(i) * period)
		if holding {
			moves = append(moves, crash) // VRRP moves it to the backup at once
			holding = false
		}
		d.observe(crash.Add(notice), []gossip.Member{self}, "self")
		back := crash.Add(restart)
		d.observe(back.Add(notice), []gossip.Member{self, dampMember("x", true, int64(i+1))}, "self")
		reclaim := back.Add(settle)
		if h, ok := d.holds["x"]; ok && h.Until.After(reclaim) {
			reclaim = h.Until
		}
		next := crash.Add(period)
		if i == crashes-1 || reclaim.Before(next) {
			moves = append(moves, reclaim)
			holding = true
		}
	}
	return moves
}
