package vrrp

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/ipv6"
)

func (l *LinuxAnnouncer) ndpConn() (*ndp.Conn, error) {
	if l.ndp != nil {
		return l.ndp, nil
	}
	c, _, err := ndp.Listen(indexZoned(l.ifi), ndp.LinkLocal)
	if err != nil {
		return nil, fmt.Errorf("open NDP socket on %s: %w", l.ifi.Name, err)
	}
	var f ipv6.ICMPFilter
	f.SetAll(true) // send only
	if err := c.SetICMPFilter(&f); err != nil {
		c.Close()
		return nil, fmt.Errorf("filter NDP socket on %s: %w", l.ifi.Name, err)
	}
	l.ndp = c
	return c, nil
}

func (l *LinuxAnnouncer) unsolicitedNA(a netip.Addr) error {
	c, err := l.ndpConn()
	if err != nil {
		return err
	}
	na := &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: a,
		Options: []ndp.Option{&ndp.LinkLayerAddress{
			Direction: ndp.Target,
			Addr:      l.ifi.HardwareAddr,
		}},
	}
	if err := c.WriteTo(na, nil, allNodes.WithZone(strconv.Itoa(l.ifi.Index))); err != nil {
		return fmt.Errorf("send unsolicited NA for %s on %s: %w", a, l.ifi.Name, err)
	}
	return nil
}
