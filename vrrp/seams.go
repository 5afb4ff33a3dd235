package vrrp

import (
	"net/netip"
	"time"

	"github.com/rs/zerolog"
)

// Clock is the engine's time source, injected so tests run on fake time.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has passed.
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the real Clock.
type SystemClock struct{}

// Now implements Clock.
func (SystemClock) Now() time.Time { return time.Now() }

// After implements Clock.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// RefreshScheduler says when a VIP this node is master for is next
// re-announced (the balancer's rolling schedule).
type RefreshScheduler interface {
	Next(vip netip.Addr, after time.Time) time.Time
}

// Deps are the engine's seams to the outside world.
type Deps struct {
	Transport Transport
	Addresses AddressManager
	// VMACs, when set (use_vmac), holds a master's VIPs on its virtual MAC
	// interface instead of Addresses on the interface itself.
	VMACs     VirtualMACs
	Announcer Announcer
	// Refresh schedules periodic re-announcement; nil turns it off.
	Refresh RefreshScheduler
	Clock   Clock
	Log     zerolog.Logger
	Metrics *Metrics
	// Events, when set, hears what an operator follows on the node's
	// event stream (Kubernetes Events): VIPs acquired and released, and
	// the warnings. It is called on the engine goroutine: it must not
	// block.
	Events EventSink
	// Auth signs and checks adverts (auth_hmac); the zero value is off.
	Auth AuthKeys
	// Notify, when set, hears every state change (notify hooks). It is
	// called on the engine goroutine: it must not block.
	Notify func(StateChange)
}

// EventSink records one event: a reason in CamelCase and a message that
// repeats word for word when the same thing happens again, so the
// recorder can fold repeats into one event with a count.
type EventSink func(warning bool, reason, message string)
