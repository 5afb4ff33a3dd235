package main

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// READY waits for the join; the watchdog is fed while the engine answers,
// not while it is wedged, and again once it answers.
func TestSuperviseSystemd(t *testing.T) {
	var joined, wedged atomic.Bool
	msgs := make(chan string, 1000)
	notify := func(s string) (bool, error) { msgs <- s; return true, nil }
	var probedWedged sync.Once
	sawWedge := make(chan struct{})
	alive := func(ctx context.Context) bool {
		if wedged.Load() {
			probedWedged.Do(func() { close(sawWedge) })
			<-ctx.Done() // a stuck engine answers nothing
			return false
		}
		return true
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		superviseSystemd(ctx, notify, joined.Load, alive, 80*time.Millisecond, zerolog.Nop())
		close(done)
	}()
	defer func() { cancel(); <-done }()
	next := func(what string, within time.Duration) string {
		t.Helper()
		select {
		case m := <-msgs:
			return m
		case <-time.After(within):
			t.Fatalf("no %s within %s", what, within)
			return ""
		}
	}
	select {
	case m := <-msgs:
		t.Fatalf("%q before the agent joined", m)
	case <-time.After(3 * readyPoll):
	}
	joined.Store(true)
	if m := next("READY", 10*time.Second); m != "READY=1" {
		t.Fatalf("first message %q, want READY=1", m)
	}
	for range 3 {
		if m := next("WATCHDOG", 10*time.Second); m != "WATCHDOG=1" {
			t.Fatalf("%q, want WATCHDOG=1", m)
		}
	}
	wedged.Store(true)
	select {
	case <-sawWedge:
	case <-time.After(10 * time.Second):
		t.Fatal("the engine was never probed after it wedged")
	}
	for len(msgs) > 0 { // fed before the wedge was seen
		<-msgs
	}
	select {
	case m := <-msgs:
		t.Fatalf("%q while the engine is wedged", m)
	case <-time.After(250 * time.Millisecond): // three probe periods
	}
	wedged.Store(false)
	if m := next("WATCHDOG after the engine answers again", 10*time.Second); m != "WATCHDOG=1" {
		t.Fatalf("%q, want WATCHDOG=1", m)
	}
}
