package vrrp

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
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

func (l *LinuxAnnouncer) garp(a netip.Addr, part Part) (int, error) {
	c, err := l.arpClient()
	if err != nil {
		return 0, err
	}
	kinds := AnnounceMode(l.mode.Load()).kinds()
	switch part {
	case PartFirst:
		kinds = kinds[:1]
	case PartSecond:
		kinds = kinds[1:]
	}
	mac := l.ifi.HardwareAddr
	sent := 0
	for _, op := range kinds {
		// Request: "who has VIP, tell VIP", sender and target both the
		// VIP. Reply: "VIP is at MAC", target hardware address our own, as
		// Linux requires of a gratuitous reply.
		target, name := ethernet.Broadcast, "request"
		if op == arp.OperationReply {
			target, name = mac, "reply"
		}
		p, err := arp.NewPacket(op, mac, a, target, a)
		if err != nil {
			return sent, fmt.Errorf("build gratuitous ARP %s for %s: %w", name, a, err)
		}
		if err := c.WriteTo(p, ethernet.Broadcast); err != nil {
			return sent, fmt.Errorf("send gratuitous ARP %s for %s on %s: %w", name, a, l.ifi.Name, err)
		}
		sent++
	}
	return sent, nil
}

// sendDirected sends one announcement of a to the router at (to, mac).
func (l *LinuxAnnouncer) sendDirected(a, to netip.Addr, mac net.HardwareAddr) error {
	if a.Is6() {
		c, err := l.ndpConn()
		if err != nil {
			return err
		}
		na := &ndp.NeighborAdvertisement{Override: true, TargetAddress: a,
			Options: []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: l.ifi.HardwareAddr}}}
		if err := c.WriteTo(na, nil, to.WithZone(strconv.Itoa(l.ifi.Index))); err != nil {
			return fmt.Errorf("send an NA for %s to %s on %s: %w", a, to, l.ifi.Name, err)
		}
		return nil
	}
	c, err := l.arpClient()
	if err != nil {
		return err
	}
	p, err := arp.NewPacket(arp.OperationReply, l.ifi.HardwareAddr, a, mac, to)
	if err != nil {
		return fmt.Errorf("build an ARP reply for %s to %s: %w", a, to, err)
	}
	if err := c.WriteTo(p, mac); err != nil {
		return fmt.Errorf("send an ARP reply for %s to %s on %s: %w", a, to, l.ifi.Name, err)
	}
	return nil
}

// neighbourMACs is the host's neighbour table of an interface: address →
// MAC, for the entries that hold one.
func neighbourMACs(ifindex int, v6 bool) (map[netip.Addr]net.HardwareAddr, error) {
	fam := netlink.FAMILY_V4
	if v6 {
		fam = netlink.FAMILY_V6
	}
	neighs, err := netlink.NeighList(ifindex, fam)
	if err != nil {
		return nil, fmt.Errorf("list the neighbours: %w", err)
	}
	out := map[netip.Addr]net.HardwareAddr{}
	for _, n := range neighs {
		if a, ok := netip.AddrFromSlice(n.IP); ok && len(n.HardwareAddr) == 6 && n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) == 0 {
			out[a.Unmap()] = n.HardwareAddr
		}
	}
	return out, nil
}
