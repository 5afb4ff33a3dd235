package vrrp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// AddressManager adds and removes VIPs on the interface. It is the kernel
// seam for VIPs; tests use a fake that records calls.
type AddressManager interface {
	AddVIP(p netip.Prefix) error
	DelVIP(p netip.Prefix) error
	// HasVIP reports whether the address is configured on the interface.
	HasVIP(a netip.Addr) (bool, error)
}

// NetlinkAddresses is the AddressManager for a Linux interface.
type NetlinkAddresses struct {
	link netlink.Link
}

// NewNetlinkAddresses looks the interface up once; the handle is reused.
func NewNetlinkAddresses(ifname string) (*NetlinkAddresses, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("find interface %q: %w", ifname, err)
	}
	return &NetlinkAddresses{link: l}, nil
}

func nlAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}}
	if p.Addr().Is6() {
		// A VIP must answer at once; DAD would hold it tentative, and would
		// fail outright while the old master still answers.
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// AddVIP implements AddressManager; adding an address that is present is not an error.
func (n *NetlinkAddresses) AddVIP(p netip.Prefix) error {
	err := netlink.AddrAdd(n.link, nlAddr(p))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add VIP %s to %s: %w", p, n.link.Attrs().Name, err)
	}
	return nil
}

// DelVIP implements AddressManager; removing an absent address is not an error.
func (n *NetlinkAddresses) DelVIP(p netip.Prefix) error {
	err := netlink.AddrDel(n.link, nlAddr(p))
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove VIP %s from %s: %w", p, n.link.Attrs().Name, err)
	}
	return nil
}

// HasVIP implements AddressManager.
func (n *NetlinkAddresses) HasVIP(a netip.Addr) (bool, error) {
	family := netlink.FAMILY_V4
	if a.Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := netlink.AddrList(n.link, family)
	if err != nil {
		return false, fmt.Errorf("list addresses of %s: %w", n.link.Attrs().Name, err)
	}
	for _, x := range addrs {
		if y, ok := netip.AddrFromSlice(x.IP); ok && y.Unmap() == a {
			return true, nil
		}
	}
	return false, nil
}

// AnnounceMode says which gratuitous ARP packets go out: routers differ in
// which they learn from, so the default is both.
type AnnounceMode int

// Announce modes.
const (
	AnnounceBoth AnnounceMode = iota
	AnnounceRequest
	AnnounceReply
)

// ParseAnnounceMode reads the garp.mode setting.
func ParseAnnounceMode(s string) (AnnounceMode, error) {
	switch s {
	case "both", "":
		return AnnounceBoth, nil
	case "request":
		return AnnounceRequest, nil
	case "reply":
		return AnnounceReply, nil
	}
	return 0, fmt.Errorf("%q: use request, reply or both", s)
}

// LinuxAnnouncer is the Sender for a Linux interface: gratuitous ARP and
// unsolicited NA, making the segment learn that a VIP lives at this node's
// MAC. Sockets are opened on first use and kept: one per family, not one
// per packet.
type LinuxAnnouncer struct {
	ifi  *net.Interface
	mode atomic.Int32 // AnnounceMode; a reload may change it

	mu  sync.Mutex
	arp *arp.Client
	ndp *ndp.Conn
}

// NewLinuxAnnouncer prepares an announcer for ifname.
func NewLinuxAnnouncer(ifname string, mode AnnounceMode) (*LinuxAnnouncer, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("find interface %q: %w", ifname, err)
	}
	l := &LinuxAnnouncer{ifi: ifi}
	l.mode.Store(int32(mode))
	return l, nil
}

// SetMode changes which gratuitous ARP packets go out from now on.
func (l *LinuxAnnouncer) SetMode(mode AnnounceMode) { l.mode.Store(int32(mode)) }

// dropAll is a socket filter that accepts no packet: the announcer only
// sends, so the kernel need not queue every ARP frame on the segment for it.
func dropAll() ([]bpf.RawInstruction, error) {
	return bpf.Assemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})
}

// setDropAll attaches dropAll with set (a connection's SetBPF).
func setDropAll(set func([]bpf.RawInstruction) error) error {
	f, err := dropAll()
	if err != nil {
		return err
	}
	return set(f)
}

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

// Send implements Sender.
func (l *LinuxAnnouncer) Send(a netip.Addr) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.Is4() {
		return l.garp(a)
	}
	return 1, l.unsolicitedNA(a)
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

var allNodes = netip.MustParseAddr("ff02::1")

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

// indexZoned returns ifi named by its index, for libraries that use the
// name as an IPv6 zone. Go maps zone names to indexes through a cache it
// refreshes once a minute, so the name of an interface recreated since (a
// virtual MAC interface, new at every takeover) would resolve to the old,
// dead index; an index is taken as it is.
func indexZoned(ifi *net.Interface) *net.Interface {
	z := *ifi
	z.Name = strconv.Itoa(ifi.Index)
	return &z
}

// Close releases the sockets.
func (l *LinuxAnnouncer) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	if l.arp != nil {
		errs = append(errs, l.arp.Close())
		l.arp = nil
	}
	if l.ndp != nil {
		errs = append(errs, l.ndp.Close())
		l.ndp = nil
	}
	return errors.Join(errs...)
}
