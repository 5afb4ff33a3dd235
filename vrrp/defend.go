package vrrp

import (
	"bytes"
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

// claimGrace is how long a master waits before it answers another MAC's
// announcement of its VIP: a legitimate new master's advert, which it
// sends before its announcement, makes this node step down meanwhile.
// defendEvery rate-limits the answers per VIP. A claim that comes within
// answeredWithin of an answer is the other host answering ours: it
// defends the address too (another garpd, an address-conflict daemon),
// and answering at once would be an ARP war that floods the segment and
// flips the router's entry several times a second. The interval doubles
// with each such round, up to maxDefendEvery, and is back at defendEvery
// once a claim comes on its own (keepalived's takeover bursts, seconds
// apart, are each answered after claimGrace).
const (
	claimGrace     = 50 * time.Millisecond
	defendEvery    = 250 * time.Millisecond
	answeredWithin = time.Second
	maxDefendEvery = 32 * time.Second
)

// defense is a VIP's answers to other MACs' announcements.
type defense struct {
	last  time.Time     // the last answer
	every time.Duration // the least time to the next one
}

// ForeignClaim tells the engine that another MAC announced address a (a
// gratuitous ARP). In dynamic mode, if this node is, and stays, master for
// a, it answers with its own announcement: a speaker outside the cluster
// cannot keep the router's entry (answered after claimGrace), and neither
// can a member that was master for a moment because it missed our adverts
// and yielded at the next one, whose claiming advert we never heard
// (answered after contestQuiet, when VRRP has had its say: a member that
// is the rightful master by then has made this node a backup). The static
// mode, like keepalived, answers none.
func (e *Engine) ForeignClaim(ctx context.Context, a netip.Addr, mac net.HardwareAddr) error {
	return e.call(ctx, func() { e.foreignClaim(a, mac) })
}

func (e *Engine) foreignClaim(a netip.Addr, mac net.HardwareAddr) {
	if _, pending := e.claims[a]; pending || e.admit == nil {
		return
	}
	r := e.masterOf(a)
	if r == nil {
		return
	}
	// A claim from this router's virtual MAC is another master of it (our
	// own announcements never reach here: the watcher hears only frames
	// that arrive). The router's entry is the same, but the switch now
	// sends the MAC to that master's port. VRRP has its say first, as with
	// a member.
	member := !e.stranger(mac) || (e.deps.VMACs != nil && bytes.Equal(mac, VirtualMAC(r.spec.VRID, r.spec.V6())))
	now := e.deps.Clock.Now()
	d := e.defended[a]
	if !d.last.IsZero() && now.Sub(d.last) < answeredWithin {
		// An answer follows a claim, which set every: never below defendEvery.
		d.every = min(2*d.every, maxDefendEvery)
		if first, _ := e.warLogged.first(a, e.deps.Clock.Now()); first && member {
			e.deps.Log.Warn().Str("vip", a.String()).Str("mac", mac.String()).Dur("at_most_every", maxDefendEvery).
				Msg("a member answers our announcements of this VIP: both are master (VRRP between us cut: check the firewall for protocol 112); answering less and less often until VRRP heals")
		} else if first {
			e.deps.Log.Warn().Str("vip", a.String()).Str("mac", mac.String()).Dur("at_most_every", maxDefendEvery).
				Msg("another host answers our announcements of this VIP (it defends the address too): answering less and less often instead of an ARP war. The router follows whoever announced last: find the host by its MAC and remove the address there")
		}
	} else {
		d.every = defendEvery
	}
	e.defended[a] = d
	grace := claimGrace
	if member {
		grace = e.contestQuiet()
	}
	due := now.Add(grace)
	if next := d.last.Add(d.every); !d.last.IsZero() && next.After(due) {
		due = next
	}
	e.claims[a] = due
	e.next = earliest(e.next, due)
	if first, _ := e.claimLogged.first(mac.String(), e.deps.Clock.Now()); !first {
		return
	}
	if member {
		e.deps.Log.Info().Str("vip", a.String()).Str("mac", mac.String()).Dur("after", grace).
			Msg("a member announced a VIP this node is master for (it missed our adverts for a moment, or VRRP between us is cut): announcing it again once VRRP has had its say")
	} else {
		e.deps.Log.Warn().Str("vip", a.String()).Str("mac", mac.String()).
			Msg("another MAC announces a VIP this node is master for: answering each such announcement (a host outside the cluster? find it by its MAC)")
	}
}

// answerClaims answers the claims that are due, for the VIPs this node is
// still master of.
func (e *Engine) answerClaims(now time.Time) {
	for a, due := range e.claims {
		if now.Before(due) {
			continue
		}
		delete(e.claims, a)
		if r := e.masterOf(a); r != nil {
			d := e.defended[a]
			d.last = now
			e.defended[a] = d
			e.deps.Announcer.Defend(a)
		}
	}
}
