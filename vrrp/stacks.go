package vrrp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Stacks is an agent's data plane over every interface its virtual
// routers advertise on: one Stack per interface, started, commanded and
// stopped as one, as keepalived runs instances on several interfaces. The
// first is the agent's interface; a RouterSpec (or RouterID) names
// another in Interface. With one interface it is that interface's Stack.
type Stacks struct {
	first *Stack
	names []string // names[i] is stacks[i]'s key in RouterSpec.Interface ("" first)
	all   []*Stack
	done  chan struct{}
	once  sync.Once
	err   error
}

// StartStacks starts cfg's routers on cfg.Interface and on each other
// interface they name, one Stack each, in that order; if one cannot
// start, those started are stopped. Only the first opens the IPv4 socket
// for the dynamic mode (cfg.IPv4); the others send unicast adverts only to
// the peers on their own segment.
func StartStacks(cfg StackConfig, k Kernel) (*Stacks, error) {
	byName := map[string][]RouterSpec{"": nil}
	for _, r := range cfg.Routers {
		byName[r.Interface] = append(byName[r.Interface], r)
	}
	ss := &Stacks{done: make(chan struct{})}
	ss.names = append([]string{""}, slices.DeleteFunc(slices.Sorted(maps.Keys(byName)), func(n string) bool { return n == "" })...)
	for _, name := range ss.names {
		c := cfg
		c.Routers = byName[name]
		if name != "" {
			c.Interface, c.IPv4, c.OnLinkPeers = name, false, true
			c.VRRP.Source = nil // the agent's interface's addresses
			c.Notify = namedNotify(name, cfg.Notify)
		}
		c.Dev = devsOf(cfg.Dev, c.Routers)
		s, err := StartStack(c, k)
		if err != nil {
			ss.stop()
			if name != "" {
				return nil, fmt.Errorf("interface %s: %w", name, err)
			}
			return nil, err
		}
		ss.all = append(ss.all, s)
		go func() {
			<-s.Done()
			ss.once.Do(func() { ss.err = s.Err(); close(ss.done) })
		}()
	}
	ss.first = ss.all[0]
	return ss, nil
}

// devsOf is the part of dev that routers' VIPs name.
func devsOf(dev map[netip.Addr]string, routers []RouterSpec) map[netip.Addr]string {
	var out map[netip.Addr]string
	for _, r := range routers {
		for _, p := range r.VIPs {
			if d, ok := dev[p.Addr()]; ok {
				if out == nil {
					out = map[netip.Addr]string{}
				}
				out[p.Addr()] = d
			}
		}
	}
	return out
}

// namedNotify tells the hooks which interface a change happened on.
func namedNotify(name string, notify func(StateChange)) func(StateChange) {
	if notify == nil {
		return nil
	}
	return func(c StateChange) {
		c.Router.Interface = name
		notify(c)
	}
}

// Done is closed when a Stack has ended on its own or after Stop; Err
// says why.
func (ss *Stacks) Done() <-chan struct{} { return ss.done }

// Err is why the first Stack to end ended, once Done is closed.
func (ss *Stacks) Err() error {
	select {
	case <-ss.done:
		return ss.err
	default:
		return nil
	}
}

// Stop stops every Stack at once (each resigns its masters) and returns
// their errors.
func (ss *Stacks) Stop() error { return ss.stop() }

func (ss *Stacks) stop() error {
	errs := make([]error, len(ss.all))
	var wg sync.WaitGroup
	for i, s := range ss.all {
		wg.Go(func() { errs[i] = s.Stop() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// each runs f on every Stack, each with its RouterSpec.Interface key.
func (ss *Stacks) each(f func(name string, s *Stack) error) error {
	var errs []error
	for i, s := range ss.all {
		if err := f(ss.names[i], s); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Update hands each Stack its routers. A router on an interface no Stack
// runs on needs a restart (StartStacks).
func (ss *Stacks) Update(ctx context.Context, specs []RouterSpec) error {
	byName := map[string][]RouterSpec{}
	for _, r := range specs {
		if !slices.Contains(ss.names, r.Interface) {
			return fmt.Errorf("VRID %d: no virtual router runs on %s yet: restart the data plane", r.VRID, r.Interface)
		}
		byName[r.Interface] = append(byName[r.Interface], r)
	}
	return ss.each(func(name string, s *Stack) error { return s.Update(ctx, byName[name]) })
}

// SetFaults hands each Stack the faults of its routers.
func (ss *Stacks) SetFaults(ctx context.Context, faults map[RouterID]string) error {
	return ss.each(func(name string, s *Stack) error {
		own := map[RouterID]string{}
		for id, why := range faults {
			if id.Interface == name {
				own[id] = why
			}
		}
		return s.SetFaults(ctx, own)
	})
}

// SetGARP applies a garp section to every Stack.
func (ss *Stacks) SetGARP(ctx context.Context, g GARPConfig) error {
	return ss.each(func(_ string, s *Stack) error { return s.SetGARP(ctx, g) })
}

// SetAuth applies new advert keys to every Stack.
func (ss *Stacks) SetAuth(ctx context.Context, keys AuthKeys) error {
	return ss.each(func(_ string, s *Stack) error { return s.SetAuth(ctx, keys) })
}

// SetLegacyKeyID sets every Stack's signing key id (Engine.SetLegacyKeyID).
func (ss *Stacks) SetLegacyKeyID(ctx context.Context, legacy bool) error {
	return ss.each(func(_ string, s *Stack) error { return s.SetLegacyKeyID(ctx, legacy) })
}

// Resign resigns (or takes back) every Stack's routers.
func (ss *Stacks) Resign(ctx context.Context, resigned bool) error {
	return ss.each(func(_ string, s *Stack) error { return s.Resign(ctx, resigned) })
}

// SetPeers sets the first interface's unicast peers (the dynamic mode's
// members, which it runs alone).
func (ss *Stacks) SetPeers(ctx context.Context, peers []netip.Addr) error {
	return ss.first.SetPeers(ctx, peers)
}

// SetAdmission sets whose adverts the first interface accepts (the
// dynamic mode's, which it runs alone).
func (ss *Stacks) SetAdmission(ctx context.Context, a *Admission) error {
	return ss.first.SetAdmission(ctx, a)
}

// LastForeignKeyed is the first interface's (the dynamic mode's).
func (ss *Stacks) LastForeignKeyed(ctx context.Context) time.Time {
	return ss.first.LastForeignKeyed(ctx)
}

// Source is the address the first interface's adverts of a family leave
// from, which the dynamic mode gossips.
func (ss *Stacks) Source(v6 bool) netip.Addr { return ss.first.Source(v6) }

// SetEvents sets where every Stack's events go.
func (ss *Stacks) SetEvents(sink EventSink) {
	for _, s := range ss.all {
		s.SetEvents(sink)
	}
}

// Responsive reports whether every Stack's engine answers.
func (ss *Stacks) Responsive(ctx context.Context) bool {
	return ss.each(func(_ string, s *Stack) error {
		if !s.Responsive(ctx) {
			return ErrNotRunning
		}
		return nil
	}) == nil
}

// Status lists every Stack's routers with their interface.
func (ss *Stacks) Status(ctx context.Context) []RouterStatus {
	var out []RouterStatus
	for _, s := range ss.all {
		for _, r := range s.Status(ctx) {
			r.Interface = s.cfg.Interface
			out = append(out, r)
		}
	}
	return out
}

// Wave starts an announcement wave on every Stack: of only, or with only
// empty of every VIP this node holds. notHeld lists what of only no
// Stack holds.
func (ss *Stacks) Wave(ctx context.Context, only []netip.Addr) (queued, notHeld []netip.Addr, err error) {
	held := map[netip.Addr]bool{}
	err = ss.each(func(_ string, s *Stack) error {
		q, _, err := s.Wave(ctx, only)
		for _, a := range q {
			held[a] = true
		}
		queued = append(queued, q...)
		return err
	})
	for _, a := range only {
		if !held[a] {
			notHeld = append(notHeld, a)
		}
	}
	return queued, notHeld, err
}
