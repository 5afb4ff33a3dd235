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
func (l *LinuxAnnouncer) Send(a netip.Addr) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a.Is4() {
		return l.garp(a)
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
