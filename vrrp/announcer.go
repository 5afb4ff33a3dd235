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
	"github.com/mdlayher/ndp"
	"golang.org/x/net/bpf"
)

// AnnounceMode says which gratuitous ARP packets go out, and in which
// order: routers differ in which they learn from, so the default is both,
// the request first.
type AnnounceMode int

// Announce modes.
const (
	AnnounceBoth AnnounceMode = iota
	AnnounceRequest
	AnnounceReply
	// AnnounceBothReplyFirst sends both, the reply first (garp.first: reply).
	AnnounceBothReplyFirst
)

// kinds lists the ARP operations a mode sends, the first kind first.
func (m AnnounceMode) kinds() []arp.Operation {
	switch m {
	case AnnounceRequest:
		return []arp.Operation{arp.OperationRequest}
	case AnnounceReply:
		return []arp.Operation{arp.OperationReply}
	case AnnounceBothReplyFirst:
		return []arp.Operation{arp.OperationReply, arp.OperationRequest}
	}
	return []arp.Operation{arp.OperationRequest, arp.OperationReply}
}

// Part says which of a VIP's announcement packets one send puts on the
// wire. A takeover sends the first kind of every VIP before the second
// kind of any, so an ARP policer's budget moves as many VIPs as it can.
type Part int

// Parts of an announcement.
const (
	PartAll    Part = iota // every packet the mode sends
	PartFirst              // the first kind alone; IPv6: the NA
	PartSecond             // the other kind when the mode sends both; else nothing
	// PartRepair is a reply sent to the verification targets alone (an
	// ARP reply, or an NA, to the router's MAC): a router whose entry
	// is wrong hears it first.
	PartRepair
)

// packets is how many packets at most one send of part takes.
func (p Part) packets() int {
	if p == PartAll {
		return 2
	}
	return 1
}

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
	ifi     *net.Interface
	mode    atomic.Int32 // AnnounceMode; a reload may change it
	targets atomic.Pointer[[]netip.Addr]

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

// SetTargets sets the routers PartRepair speaks to (garp.verify).
func (l *LinuxAnnouncer) SetTargets(t []netip.Addr) { l.targets.Store(&t) }

// Targets are the routers PartRepair speaks to.
func (l *LinuxAnnouncer) Targets() []netip.Addr {
	if t := l.targets.Load(); t != nil {
		return *t
	}
	return nil
}

// Mode is the mode announcements go out in now.
func (l *LinuxAnnouncer) Mode() AnnounceMode { return AnnounceMode(l.mode.Load()) }

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

// Send implements Sender.
func (l *LinuxAnnouncer) Send(a netip.Addr, part Part) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if part == PartRepair {
		return l.directed(a)
	}
	if a.Is4() {
		return l.garp(a, part)
	}
	if part == PartSecond {
		return 0, nil // an NA is one kind
	}
	return 1, l.unsolicitedNA(a)
}

var allNodes = netip.MustParseAddr("ff02::1")

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

// directed tells each target of a's family, at its own MAC, that a is at
// this node's: an ARP reply, or an NA with Override. A target whose MAC
// this host does not know is skipped.
func (l *LinuxAnnouncer) directed(a netip.Addr) (int, error) {
	var macs map[netip.Addr]net.HardwareAddr
	sent := 0
	for _, t := range l.Targets() {
		if t.Is4() != a.Is4() {
			continue
		}
		if macs == nil {
			var err error
			if macs, err = neighbourMACs(l.ifi.Index, a.Is6()); err != nil {
				return sent, err
			}
		}
		mac := macs[t]
		if mac == nil {
			continue
		}
		if err := l.sendDirected(a, t, mac); err != nil {
			return sent, err
		}
		sent++
	}
	return sent, nil
}
