package lab

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// HolderTimeline records which nodes hold each watched address over time,
// from the address events of each node's namespace: the ground truth for
// "no holder" and "two holders", timed when netlink reports the change.
type HolderTimeline struct {
	mu     sync.Mutex
	start  time.Time
	init   map[netip.Addr]map[string]bool
	events []holderEvent
}

type holderEvent struct {
	at   time.Time
	node string
	addr netip.Addr
	held bool
}

// HolderStats is one address's holders over a window.
type HolderStats struct {
	NoHolder    time.Duration // total time nobody held it
	MaxNoHolder time.Duration // the longest such stretch
	Multi       time.Duration // total time two or more held it
	// MultiEpisodes counts the stretches with two or more holders;
	// MaxMulti is the longest.
	MultiEpisodes int
	MaxMulti      time.Duration
}

// WatchHolders watches addrs on the nodes' eth0 until ctx ends.
func (l *Lab) WatchHolders(ctx context.Context, nodes []*Node, addrs []netip.Addr) (*HolderTimeline, error) {
	h := &HolderTimeline{init: map[netip.Addr]map[string]bool{}}
	watched := map[netip.Addr]bool{}
	for _, a := range addrs {
		watched[a] = true
		h.init[a] = map[string]bool{}
	}
	for _, n := range nodes {
		ns, err := netns.GetFromName(n.NS)
		if err != nil {
			return nil, err
		}
		updates := make(chan netlink.AddrUpdate, 1024)
		done := make(chan struct{})
		err = netlink.AddrSubscribeWithOptions(updates, done, netlink.AddrSubscribeOptions{Namespace: &ns,
			ReceiveBufferSize: 4 << 20, ReceiveBufferForceSize: true, ErrorCallback: func(error) {}})
		if err != nil {
			ns.Close()
			return nil, fmt.Errorf("watch addresses in %s: %w", n.NS, err)
		}
		go func() {
			defer ns.Close()
			defer close(done)
			for {
				select {
				case <-ctx.Done():
					return
				case u, ok := <-updates:
					if !ok {
						return
					}
					a, ok := netip.AddrFromSlice(u.LinkAddress.IP)
					if !ok || !watched[a.Unmap()] {
						continue
					}
					h.mu.Lock()
					h.events = append(h.events, holderEvent{at: time.Now(), node: n.Name, addr: a.Unmap(), held: u.NewAddr})
					h.mu.Unlock()
				}
			}
		}()
	}
	// What each node holds now; later events are replayed over it.
	for _, n := range nodes {
		have, err := n.Addresses()
		if err != nil {
			return nil, err
		}
		for _, a := range have {
			if watched[a] {
				h.init[a][n.Name] = true
			}
		}
	}
	h.mu.Lock()
	h.start = time.Now()
	h.mu.Unlock()
	return h, nil
}

// Stats replays the events between from and to (from no earlier than the
// watch's start) and sums, per address, the time with no holder and with
// two or more.
func (h *HolderTimeline) Stats(from, to time.Time) map[netip.Addr]HolderStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	from = later(from, h.start)
	state := map[netip.Addr]map[string]bool{}
	for a, hs := range h.init {
		state[a] = map[string]bool{}
		for n := range hs {
			state[a][n] = true
		}
	}
	evs := slices.Clone(h.events)
	slices.SortStableFunc(evs, func(x, y holderEvent) int { return x.at.Compare(y.at) })
	i := 0
	for ; i < len(evs) && evs[i].at.Before(from); i++ {
		if evs[i].at.After(h.start) {
			state[evs[i].addr][evs[i].node] = evs[i].held
		}
	}
	out := map[netip.Addr]HolderStats{}
	gapStart := map[netip.Addr]time.Time{}
	multiStart := map[netip.Addr]time.Time{}
	last := from
	account := func(until time.Time) {
		d := until.Sub(last)
		for a, hs := range state {
			s := out[a]
			n := 0
			for _, held := range hs {
				if held {
					n++
				}
			}
			switch {
			case n == 0:
				s.NoHolder += d
				if gapStart[a].IsZero() {
					gapStart[a] = last
				}
				s.MaxNoHolder = max(s.MaxNoHolder, until.Sub(gapStart[a]))
			case n >= 2:
				s.Multi += d
				if multiStart[a].IsZero() {
					s.MultiEpisodes++
					multiStart[a] = last
				}
				s.MaxMulti = max(s.MaxMulti, until.Sub(multiStart[a]))
			}
			if n < 2 {
				multiStart[a] = time.Time{}
			}
			if n != 0 {
				gapStart[a] = time.Time{}
			}
			out[a] = s
		}
		last = until
	}
	for ; i < len(evs) && evs[i].at.Before(to); i++ {
		account(evs[i].at)
		state[evs[i].addr][evs[i].node] = evs[i].held
	}
	account(to)
	return out
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
