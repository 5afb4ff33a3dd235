package vrrp

import (
	"fmt"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
)

func (l *LinuxAnnouncer) arpClient() (*arp.Client, error) {
	if l.arp != nil {
		return l.arp, nil
	}
	filter, err := dropAll()
	if err != nil {
		return nil, err
	}
	pc, err := packet.Listen(l.ifi, packet.Raw, int(ethernet.EtherTypeARP), &packet.Config{Filter: filter})
	if err != nil {
		return nil, fmt.Errorf("open ARP socket on %s: %w", l.ifi.Name, err)
	}
	c, err := arp.New(l.ifi, pc)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("open ARP client on %s: %w", l.ifi.Name, err)
	}
	l.arp = c
	return c, nil
}

func (l *LinuxAnnouncer) garp(a netip.Addr) (int, error) {
	c, err := l.arpClient()
	if err != nil {
		return 0, err
	}
	mac := l.ifi.HardwareAddr
	mode := AnnounceMode(l.mode.Load())
	sent := 0
	if mode != AnnounceReply {
		// Request: "who has VIP, tell VIP", sender and target both the VIP.
		p, err := arp.NewPacket(arp.OperationRequest, mac, a, ethernet.Broadcast, a)
		if err != nil {
			return sent, fmt.Errorf("build gratuitous ARP request for %s: %w", a, err)
		}
		if err := c.WriteTo(p, ethernet.Broadcast); err != nil {
			return sent, fmt.Errorf("send gratuitous ARP request for %s on %s: %w", a, l.ifi.Name, err)
		}
		sent++
	}
	if mode != AnnounceRequest {
		// Reply: "VIP is at MAC", target hardware address our own, as Linux
		// requires of a gratuitous reply.
		p, err := arp.NewPacket(arp.OperationReply, mac, a, mac, a)
		if err != nil {
			return sent, fmt.Errorf("build gratuitous ARP reply for %s: %w", a, err)
		}
		if err := c.WriteTo(p, ethernet.Broadcast); err != nil {
			return sent, fmt.Errorf("send gratuitous ARP reply for %s on %s: %w", a, l.ifi.Name, err)
		}
		sent++
	}
	return sent, nil
}
