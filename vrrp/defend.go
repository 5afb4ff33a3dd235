package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
)

// ForeignClaim is a gratuitous ARP, heard on the interface, that points an
// address at another MAC: if this node is master for that address, a
// speaker outside the cluster (or a misconfigured host) is taking it on
// the router, and the master answers with its own announcement.
type ForeignClaim struct {
	Addr netip.Addr
	MAC  net.HardwareAddr
}

// garpOnly is a socket filter that passes only gratuitous ARP (sender and
// target protocol address equal) from a MAC other than own, so the kernel
// queues nothing else of the segment's ARP traffic for the watcher.
func garpOnly(own net.HardwareAddr) ([]bpf.RawInstruction, error) {
	const (
		arpOff = 14          // after the Ethernet header
		spa    = arpOff + 14 // sender protocol address
		tpa    = arpOff + 24 // target protocol address
		sha    = arpOff + 8  // sender hardware address
	)
	if len(own) != 6 {
		return nil, fmt.Errorf("MAC %s: want 6 bytes", own)
	}
	hi := uint32(own[0])<<24 | uint32(own[1])<<16 | uint32(own[2])<<8 | uint32(own[3])
	lo := uint32(own[4])<<8 | uint32(own[5])
	return bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: spa, Size: 4},
		bpf.TAX{},
		bpf.LoadAbsolute{Off: tpa, Size: 4},
		bpf.JumpIfX{Cond: bpf.JumpNotEqual, SkipTrue: 5},
		// Our own announcements: sender MAC = own.
		bpf.LoadAbsolute{Off: sha, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: hi, SkipTrue: 2},
		bpf.LoadAbsolute{Off: sha + 4, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: lo, SkipTrue: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
}

// WatchForeignClaims streams gratuitous ARPs from other MACs on ifname
// until ctx ends (IPv4; the channel closes when the watch ends).
func WatchForeignClaims(ctx context.Context, ifname string) (<-chan ForeignClaim, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("find interface %q: %w", ifname, err)
	}
	filter, err := garpOnly(ifi.HardwareAddr)
	if err != nil {
		return nil, err
	}
	pc, err := packet.Listen(ifi, packet.Raw, int(ethernet.EtherTypeARP), &packet.Config{Filter: filter})
	if err != nil {
		return nil, fmt.Errorf("open ARP watch socket on %s: %w", ifname, err)
	}
	c, err := arp.New(ifi, pc)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("open ARP watch on %s: %w", ifname, err)
	}
	out := make(chan ForeignClaim, 64)
	go func() {
		<-ctx.Done()
		c.Close()
	}()
	go func() {
		defer close(out)
		for {
			p, _, err := c.Read()
			if err != nil {
				if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
					return
				}
				// A malformed frame, or a transient error: not worth a spin.
				select {
				case <-ctx.Done():
					return
				case <-time.After(10 * time.Millisecond):
				}
				continue
			}
			if p.SenderIP != p.TargetIP || p.SenderHardwareAddr.String() == ifi.HardwareAddr.String() {
				continue
			}
			select {
			case out <- ForeignClaim{Addr: p.SenderIP, MAC: p.SenderHardwareAddr}:
			default: // the engine is behind: a later claim will do
			}
		}
	}()
	return out, nil
}
