package vrrp

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"time"

	"github.com/robfig/cron/v3"
)

// Phase is a VIP's stable offset inside a refresh period, derived from the
// VIP alone: a node's announcements spread over the period instead of
// leaving together, and every node agrees on when each VIP is due.
func Phase(vip netip.Addr, period time.Duration) time.Duration {
	if period <= 0 {
		return 0
	}
	return time.Duration(Hash64(vip.String()) % uint64(period))
}

// phaseFraction is Phase as a fraction of the period, in [0, 1).
func phaseFraction(vip netip.Addr) float64 {
	return float64(Hash64(vip.String())>>11) / float64(1<<53)
}

// Periodic announces each VIP once per Period, at its phase. Slots are
// anchored to the Unix epoch, so they do not depend on when a node started.
type Periodic struct {
	Period time.Duration
}

// Next returns the VIP's first slot strictly after t.
func (p Periodic) Next(vip netip.Addr, t time.Time) time.Time {
	period := int64(p.Period)
	ph := int64(Phase(vip, p.Period))
	n := t.UnixNano()
	// The slot at or before n, then one period on.
	k := (n - ph) / period
	if n-ph < 0 && (n-ph)%period != 0 {
		k--
	}
	slot := k*period + ph
	if slot <= n {
		slot += period
	}
	return time.Unix(0, slot).In(t.Location())
}

// CronWaves announces every VIP once per wave, a wave starting at each fire
// time of a cron schedule; inside a wave each VIP goes at the same fraction
// of the way to the next fire time, so "@every 5s" rolls like a 5 s period.
// It remembers the wave it is in, so it is used from one goroutine.
type CronWaves struct {
	sched      cron.Schedule
	start, end time.Time
}

// NewCronWaves parses a standard cron spec (5 fields or a descriptor such
// as @every 30s or @hourly).
func NewCronWaves(spec string) (*CronWaves, error) {
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("%q is not a cron schedule (e.g. \"*/5 * * * *\" or \"@every 30s\"): %w", spec, err)
	}
	// robfig/cron gives up after five years and returns the zero time: a
	// schedule such as "0 0 30 2 *" (30 February) would never refresh.
	if now := time.Now(); s.Next(now).IsZero() {
		return nil, fmt.Errorf("%q never fires (is the date impossible, such as 30 February?): use a schedule that fires, e.g. \"@every 60s\"", spec)
	}
	return &CronWaves{sched: s}, nil
}

// Next returns the VIP's first announcement time strictly after t. The
// current wave only moves on when time passes its end, so a query for one
// VIP never skips another VIP's slot in the wave.
// The zero time means the schedule fires no more.
func (c *CronWaves) Next(vip netip.Addr, t time.Time) time.Time {
	if c.start.IsZero() || t.Before(c.start) {
		// The first wave starts when the schedule is first used.
		c.start, c.end = t, c.sched.Next(t)
	}
	for !c.end.IsZero() && !t.Before(c.end) {
		c.start, c.end = c.end, c.sched.Next(c.end)
	}
	if c.end.IsZero() {
		return time.Time{}
	}
	if s := slotIn(c.start, c.end, vip); s.After(t) {
		return s
	}
	after := c.sched.Next(c.end)
	if after.IsZero() {
		return time.Time{}
	}
	return slotIn(c.end, after, vip)
}

func slotIn(start, end time.Time, vip netip.Addr) time.Time {
	return start.Add(time.Duration(phaseFraction(vip) * float64(end.Sub(start))))
}

// Scheduler builds the refresh schedule the garp section asks for; nil
// means refresh is off. Errors name the garp key at fault.
func (g GARPConfig) Scheduler() (RefreshScheduler, error) {
	if g.Schedule != "" {
		w, err := NewCronWaves(g.Schedule)
		if err != nil {
			return nil, fmt.Errorf("schedule: %w", err)
		}
		return w, nil
	}
	if g.Refresh < 0 {
		return nil, fmt.Errorf("refresh: %s: use 0s (off) or a period such as 60s", g.Refresh)
	}
	if g.Refresh == 0 {
		return nil, nil
	}
	if g.Refresh < time.Second {
		return nil, fmt.Errorf("refresh: %s: use at least 1s (0s turns refresh off)", g.Refresh)
	}
	return Periodic{Period: g.Refresh}, nil
}

// Hash64 is FNV-1a finished with the splitmix64 mixer (Mix64), so nearby
// strings land far apart: the refresh phase of a VIP here, and the
// ranking's scores in balancer. Every node computes the same values, so
// it must never change.
func Hash64(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return Mix64(h.Sum64())
}

// Mix64 is splitmix64's finaliser.
func Mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
