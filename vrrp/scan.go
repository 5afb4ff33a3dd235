package vrrp

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// HeardRouter is one VRRP router heard on the segment: a source advertising
// a VRID.
type HeardRouter struct {
	Family   string    `json:"family"`
	VRID     int       `json:"vrid"`
	Version  int       `json:"version"`
	Source   string    `json:"source"`
	Priority int       `json:"priority"`
	Interval string    `json:"interval"`
	VIPs     []string  `json:"vips"`
	Adverts  int       `json:"adverts"`
	LastSeen time.Time `json:"last_seen"`
}

// Scan listens on the interface's VRRP sockets for d and lists every
// virtual router heard, so an operator can pick VRIDs nobody uses. IPv6 is
// scanned when the interface has a link-local address, IPv4 when it has an
// IPv4 address.
func Scan(ctx context.Context, ifname string, d time.Duration) ([]HeardRouter, error) {
	tr, err := ListenTransport(TransportConfig{Interface: ifname, MaybeIPv4: true, IPv6: true})
	if err != nil {
		// No IPv6 on the interface: scan IPv4 alone.
		if tr, err = ListenTransport(TransportConfig{Interface: ifname, IPv4: true}); err != nil {
			return nil, err
		}
	}
	defer tr.Close()
	heard := map[string]*HeardRouter{}
	timeout := time.After(d)
	for {
		select {
		case <-ctx.Done():
			return collect(heard), ctx.Err()
		case <-timeout:
			return collect(heard), nil
		case batch, ok := <-tr.Packets():
			if !ok {
				return collect(heard), nil
			}
			for _, p := range batch {
				Heard(heard, p, time.Now())
			}
		}
	}
}

// Heard records one received packet in the scan table; undecodable ones
// are skipped.
func Heard(table map[string]*HeardRouter, p Packet, now time.Time) {
	adv, err := Decode(p.Payload, p.Src, p.Dst, p.V6)
	if err != nil {
		return
	}
	fam := routerKey{v6: p.V6}.family()
	key := fmt.Sprintf("%s/%s/%d", fam, p.Src, adv.VRID)
	h, ok := table[key]
	if !ok {
		h = &HeardRouter{Family: fam, VRID: int(adv.VRID), Source: p.Src.String()}
		table[key] = h
	}
	h.Version, h.Priority, h.Adverts, h.LastSeen = adv.Version, int(adv.Priority), h.Adverts+1, now
	h.Interval = (time.Duration(adv.Interval) * 10 * time.Millisecond).String()
	h.VIPs = h.VIPs[:0]
	addrs := slices.Clone(adv.Addresses)
	slices.SortFunc(addrs, netip.Addr.Compare)
	for _, a := range addrs {
		h.VIPs = append(h.VIPs, a.String())
	}
}

func collect(table map[string]*HeardRouter) []HeardRouter {
	out := make([]HeardRouter, 0, len(table))
	for _, h := range table {
		out = append(out, *h)
	}
	slices.SortFunc(out, func(a, b HeardRouter) int {
		if c := strings.Compare(a.Family, b.Family); c != 0 {
			return c
		}
		if a.VRID != b.VRID {
			return a.VRID - b.VRID
		}
		return strings.Compare(a.Source, b.Source)
	})
	return out
}
