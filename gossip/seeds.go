package gossip

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"
)

// seedLoop keeps the admitted seeds current until ctx ends.
func (m *Membership) seedLoop(ctx context.Context) {
	t := time.NewTicker(seedRefresh)
	defer t.Stop()
	for {
		m.refreshSeeds(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(seedRefreshMin):
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.seedKick:
		}
	}
}

// refreshSeeds resolves the discoverer's seeds to the addresses the
// filter admits. A lookup that fails keeps the last set.
func (m *Membership) refreshSeeds(ctx context.Context) {
	if m.discover == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	seeds, err := m.discover.Seeds(ctx)
	if err != nil {
		m.log.Debug().Err(err).Msg("cannot list the gossip seeds; admitting the last ones")
		return
	}
	set := map[netip.Addr]bool{}
	for _, s := range seeds {
		host, _, err := net.SplitHostPort(s)
		if err != nil {
			continue
		}
		if a, err := netip.ParseAddr(host); err == nil {
			set[a.Unmap()] = true
			continue
		}
		addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			m.log.Debug().Err(err).Str("seed", s).Msg("cannot resolve a gossip seed")
			continue
		}
		for _, a := range addrs {
			set[a.Unmap()] = true
		}
	}
	m.mu.Lock()
	m.seeds = set
	m.mu.Unlock()
}

// joinLoop joins the seeds, with backoff, whenever this node is alone.
func (m *Membership) joinLoop(ctx context.Context) {
	backoff := 500 * time.Millisecond
	for {
		m.mu.Lock()
		alone := len(m.nodes) <= 1
		m.mu.Unlock()
		if m.discover != nil && alone {
			seeds, err := m.discover.Seeds(ctx)
			n := 0
			if err == nil && len(seeds) > 0 {
				n, err = m.joinAll(seeds)
			}
			if err != nil || n == 0 {
				m.log.Warn().Err(err).Strs("seeds", seeds).Dur("retry_in", backoff).
					Msg("cannot join the cluster yet; working alone meanwhile (a seed admits only its members, its own seeds and its gossip.allow_from)")
				backoff = min(backoff*2, 30*time.Second)
			} else {
				m.log.Info().Int("contacted", n).Msg("joined the cluster")
				backoff = 500 * time.Millisecond
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
	}
}

// joinAll contacts every seed at once: memberlist's Join tries them one
// after another, so a dead first seed would hold the join up for its TCP
// timeout while this node, alone, might take VIPs from a running cluster.
func (m *Membership) joinAll(seeds []string) (int, error) {
	type result struct {
		n   int
		err error
	}
	results := make(chan result, len(seeds))
	for _, s := range seeds {
		go func() {
			n, err := m.ml.Join([]string{s})
			results <- result{n, err}
		}()
	}
	n := 0
	var errs []error
	for range seeds {
		r := <-results
		n += r.n
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	if n > 0 {
		return n, nil
	}
	return 0, errors.Join(errs...)
}
