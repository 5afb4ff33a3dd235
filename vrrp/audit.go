package vrrp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

// AuditStatus is the verdict on one VIP as seen from the segment.
type AuditStatus string

// Audit verdicts.
const (
	AuditOK         AuditStatus = "ok"         // exactly one MAC answers (the expected one, if given)
	AuditNone       AuditStatus = "none"       // nobody answers
	AuditDuplicate  AuditStatus = "duplicate"  // several MACs answer: split brain
	AuditUnexpected AuditStatus = "unexpected" // one MAC answers, not the expected one
)

// Classify turns the MACs that answered for a VIP into a verdict. expected
// may be empty (any single MAC is fine).
func Classify(macs []string, expected string) AuditStatus {
	switch {
	case len(macs) == 0:
		return AuditNone
	case len(macs) > 1:
		return AuditDuplicate
	case expected != "" && !strings.EqualFold(macs[0], expected):
		return AuditUnexpected
	}
	return AuditOK
}

// AuditResult is what one VIP's probe found.
type AuditResult struct {
	VIP      string      `json:"vip"`
	Status   AuditStatus `json:"status"`
	MACs     []string    `json:"macs"`
	Expected string      `json:"expected,omitempty"`
}

// Audit asks the segment on ifname who answers for each VIP: an ARP request
// (IPv6: a neighbour solicitation) per VIP, then every answer within timeout
// is collected. expected maps VIPs to the MAC that should answer.
func Audit(ctx context.Context, ifname string, vips []netip.Addr, expected map[netip.Addr]string, timeout time.Duration) ([]AuditResult, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("find interface %q: %w", ifname, err)
	}
	answers := map[netip.Addr]map[string]bool{}
	var v4, v6 []netip.Addr
	for _, v := range vips {
		answers[v] = map[string]bool{}
		if v.Is4() {
			v4 = append(v4, v)
		} else {
			v6 = append(v6, v)
		}
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	errs := make(chan error, 2)
	go func() { errs <- probeARP(ifi, v4, answers, deadline) }()
	go func() { errs <- probeNDP(ifi, v6, answers, deadline) }()
	err = errors.Join(<-errs, <-errs)
	if err != nil {
		return nil, err
	}
	out := make([]AuditResult, 0, len(vips))
	for _, v := range vips {
		macs := slices.Sorted(maps.Keys(answers[v]))
		out = append(out, AuditResult{VIP: v.String(), Status: Classify(macs, expected[v]), MACs: macs, Expected: expected[v]})
	}
	return out, nil
}

// probeARP writes to its own VIPs' entries of answers only; the two probes
// never share a VIP, and the maps inside are created before they start.
func probeARP(ifi *net.Interface, vips []netip.Addr, answers map[netip.Addr]map[string]bool, deadline time.Time) error {
	if len(vips) == 0 {
		return nil
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		return fmt.Errorf("open ARP socket on %s (audit needs an IPv4 address on it to ask from): %w", ifi.Name, err)
	}
	defer c.Close()
	for _, v := range vips {
		if err := c.Request(v); err != nil {
			return fmt.Errorf("send ARP request for %s: %w", v, err)
		}
	}
	if err := c.SetReadDeadline(deadline); err != nil {
		return err
	}
	for {
		p, _, err := c.Read()
		if err != nil {
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				return nil
			}
			return fmt.Errorf("read ARP answers: %w", err)
		}
		if p.Operation != arp.OperationReply {
			continue
		}
		if set, ok := answers[p.SenderIP]; ok && slices.Contains(vips, p.SenderIP) {
			set[p.SenderHardwareAddr.String()] = true
		}
	}
}

func probeNDP(ifi *net.Interface, vips []netip.Addr, answers map[netip.Addr]map[string]bool, deadline time.Time) error {
	if len(vips) == 0 {
		return nil
	}
	c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
	if err != nil {
		return fmt.Errorf("open NDP socket on %s (audit needs an IPv6 link-local address on it): %w", ifi.Name, err)
	}
	defer c.Close()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeNeighborAdvertisement)
	if err := c.SetICMPFilter(&f); err != nil {
		return err
	}
	for _, v := range vips {
		snm, err := ndp.SolicitedNodeMulticast(v)
		if err != nil {
			return err
		}
		ns := &ndp.NeighborSolicitation{TargetAddress: v, Options: []ndp.Option{
			&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr},
		}}
		if err := c.WriteTo(ns, nil, snm.WithZone(ifi.Name)); err != nil {
			return fmt.Errorf("send neighbour solicitation for %s: %w", v, err)
		}
	}
	if err := c.SetReadDeadline(deadline); err != nil {
		return err
	}
	for {
		msg, _, _, err := c.ReadFrom()
		if err != nil {
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				return nil
			}
			return fmt.Errorf("read neighbour advertisements: %w", err)
		}
		na, ok := msg.(*ndp.NeighborAdvertisement)
		if !ok || !slices.Contains(vips, na.TargetAddress) {
			continue
		}
		for _, o := range na.Options {
			if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
				answers[na.TargetAddress][lla.Addr.String()] = true
			}
		}
	}
}
