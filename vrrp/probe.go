package vrrp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// LinuxProber is the Prober of a Linux interface: ICMP echo requests sent
// from the VIP (as the source address) out of the interface, answers read
// from a raw ICMP socket per family, matched by identifier and sequence.
type LinuxProber struct {
	ifindex int
	id      int

	mu      sync.Mutex
	c4, c6  *icmp.PacketConn
	seq     int
	waiting map[int]chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
}

// NewLinuxProber prepares a prober for ifname; sockets open on first use.
func NewLinuxProber(ifname string) (*LinuxProber, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("find interface %q: %w", ifname, err)
	}
	var b [2]byte
	rand.Read(b[:])
	return &LinuxProber{ifindex: ifi.Index, id: int(binary.BigEndian.Uint16(b[:])), waiting: map[int]chan struct{}{}, done: make(chan struct{})}, nil
}

// conn opens the socket of a's family once, with its reader; callers hold mu.
func (p *LinuxProber) conn(v6 bool) (*icmp.PacketConn, error) {
	if !v6 && p.c4 != nil {
		return p.c4, nil
	}
	if v6 && p.c6 != nil {
		return p.c6, nil
	}
	network, addr := "ip4:icmp", "0.0.0.0"
	if v6 {
		network, addr = "ip6:ipv6-icmp", "::"
	}
	c, err := icmp.ListenPacket(network, addr)
	if err != nil {
		return nil, fmt.Errorf("open the ICMP socket that verifies announcements: %w", err)
	}
	if v6 {
		// Only echo replies: the segment's neighbour discovery stays out.
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeEchoReply)
		if err := c.IPv6PacketConn().SetICMPFilter(&f); err != nil {
			c.Close()
			return nil, fmt.Errorf("filter the ICMPv6 socket: %w", err)
		}
		p.c6 = c
	} else {
		var f ipv4.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv4.ICMPTypeEchoReply)
		if err := c.IPv4PacketConn().SetICMPFilter(&f); err != nil {
			c.Close()
			return nil, fmt.Errorf("filter the ICMP socket: %w", err)
		}
		p.c4 = c
	}
	p.wg.Go(func() { p.read(c, v6) })
	return c, nil
}

// read delivers the echo replies to this prober until the socket closes.
func (p *LinuxProber) read(c *icmp.PacketConn, v6 bool) {
	proto := 1
	if v6 {
		proto = 58
	}
	buf := make([]byte, 1500)
	for {
		n, _, err := c.ReadFrom(buf)
		if err != nil {
			select {
			case <-p.done:
				return
			default:
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return
		}
		m, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok || (m.Type != ipv4.ICMPTypeEchoReply && m.Type != ipv6.ICMPTypeEchoReply) || echo.ID != p.id {
			continue
		}
		p.mu.Lock()
		if ch := p.waiting[echo.Seq]; ch != nil {
			close(ch)
			delete(p.waiting, echo.Seq)
		}
		p.mu.Unlock()
	}
}

// Probe implements Prober; from invalid: from the host's own address.
func (p *LinuxProber) Probe(ctx context.Context, from, to netip.Addr, timeout time.Duration) (bool, error) {
	p.mu.Lock()
	c, err := p.conn(to.Is6())
	if err != nil {
		p.mu.Unlock()
		return false, err
	}
	p.seq = (p.seq + 1) & 0xffff
	seq := p.seq
	ch := make(chan struct{})
	p.waiting[seq] = ch
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.waiting, seq)
		p.mu.Unlock()
	}()
	typ := icmp.Type(ipv4.ICMPTypeEcho)
	if to.Is6() {
		typ = ipv6.ICMPTypeEchoRequest
	}
	var src net.IP
	if from.IsValid() {
		src = from.AsSlice()
	}
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: p.id, Seq: seq, Data: []byte("garpd verify")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return false, err
	}
	dst := &net.IPAddr{IP: to.AsSlice()}
	if to.Is6() {
		_, err = c.IPv6PacketConn().WriteTo(b, &ipv6.ControlMessage{Src: src, IfIndex: p.ifindex, HopLimit: 64}, dst)
	} else {
		_, err = c.IPv4PacketConn().WriteTo(b, &ipv4.ControlMessage{Src: src, IfIndex: p.ifindex}, dst)
	}
	if err != nil {
		return false, fmt.Errorf("send an echo from %s to %s: %w", from, to, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
		return true, nil
	case <-t.C:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// Close implements Prober.
func (p *LinuxProber) Close() error {
	p.mu.Lock()
	close(p.done)
	for _, c := range []*icmp.PacketConn{p.c4, p.c6} {
		if c != nil {
			c.Close()
		}
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}
