package vrrp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// Multicast groups VRRP adverts are sent to (RFC 5798 §5.1.1.2, §5.1.2.2).
var (
	GroupV4 = netip.MustParseAddr("224.0.0.18")
	GroupV6 = netip.MustParseAddr("ff02::12")
)

// Packet is one received VRRP payload with the IP facts validation needs.
type Packet struct {
	Payload []byte
	Src     netip.Addr
	Dst     netip.Addr
	TTL     int // TTL or hop limit; -1 when the kernel did not report it
	V6      bool
}

// Transport carries adverts for every virtual router on one interface. It is
// the seam between the engine and the network, so tests can use a fake wire.
type Transport interface {
	// Send sends a VRRP payload of the given family to the multicast group,
	// or to every unicast peer of that family. Build it with Encode using
	// Source and Destinations.
	Send(v6 bool, build func(src, dst netip.Addr) ([]byte, error)) error
	// Source is the address adverts of this family leave from.
	Source(v6 bool) netip.Addr
	// SetPeers replaces the unicast peers (unicast_peers: auto).
	SetPeers(peers []netip.Addr)
	// Packets delivers received packets until the transport is closed.
	Packets() <-chan Packet
	Close() error
}

// TransportConfig says which sockets to open.
type TransportConfig struct {
	Interface string
	IPv4      bool
	IPv6      bool
	// UnicastPeers, when not empty, replaces multicast: adverts of each
	// family go to the peers of that family.
	UnicastPeers []netip.Addr
	// Unicast sends only to the peers, even while there are none
	// (unicast_peers: auto, before any member is known).
	Unicast bool
}

// LinuxTransport is the raw-socket Transport: one socket per address family
// on one interface, shared by all virtual routers and demultiplexed by VRID.
type LinuxTransport struct {
	cfg     TransportConfig
	ifi     *net.Interface
	v4      *ipv4.PacketConn
	v6      *ipv6.PacketConn
	src4    netip.Addr
	src6    netip.Addr
	packets chan Packet
	done    chan struct{}
	peersMu sync.Mutex
	wg      sync.WaitGroup
	close   sync.Once
}

// ListenTransport opens the raw sockets for cfg. The IPv4 source is the
// interface's first IPv4 address, the IPv6 source its link-local address, as
// RFC 5798 requires.
func ListenTransport(cfg TransportConfig) (*LinuxTransport, error) {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("find interface %q: %w", cfg.Interface, err)
	}
	t := &LinuxTransport{cfg: cfg, ifi: ifi, packets: make(chan Packet, 256), done: make(chan struct{})}
	if cfg.IPv4 {
		if t.src4, err = interfaceAddr(ifi, false); err != nil {
			return nil, err
		}
		if t.v4, err = listenV4(ifi, !cfg.Unicast && len(t.peers(false)) == 0); err != nil {
			return nil, err
		}
	}
	if cfg.IPv6 {
		if t.src6, err = interfaceAddr(ifi, true); err != nil {
			t.Close()
			return nil, err
		}
		if t.v6, err = listenV6(ifi, !cfg.Unicast && len(t.peers(true)) == 0); err != nil {
			t.Close()
			return nil, err
		}
	}
	if t.v4 != nil {
		t.wg.Add(1)
		go t.readV4()
	}
	if t.v6 != nil {
		t.wg.Add(1)
		go t.readV6()
	}
	go func() { t.wg.Wait(); close(t.packets) }()
	return t, nil
}

// interfaceAddr picks the advert source: the first IPv4 address, or the
// IPv6 link-local address.
func interfaceAddr(ifi *net.Interface, v6 bool) (netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("list addresses of %s: %w", ifi.Name, err)
	}
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := p.Addr()
		if !v6 && ip.Is4() {
			return ip, nil
		}
		if v6 && ip.Is6() && ip.IsLinkLocalUnicast() {
			return ip.WithZone(ifi.Name), nil
		}
	}
	if v6 {
		return netip.Addr{}, fmt.Errorf("interface %s has no IPv6 link-local address: VRRPv3 over IPv6 sends from it (is IPv6 disabled on the interface?)", ifi.Name)
	}
	return netip.Addr{}, fmt.Errorf("interface %s has no IPv4 address: VRRP over IPv4 needs one as the advert source", ifi.Name)
}

func bindToDevice(name string) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, name)
		})
		if err != nil {
			return err
		}
		return serr
	}
}

func listenV4(ifi *net.Interface, multicast bool) (*ipv4.PacketConn, error) {
	lc := net.ListenConfig{Control: bindToDevice(ifi.Name)}
	c, err := lc.ListenPacket(context.Background(), "ip4:112", "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("open IPv4 VRRP socket on %s: %w", ifi.Name, err)
	}
	p := ipv4.NewPacketConn(c)
	steps := []func() error{
		func() error { return p.SetTTL(255) },
		func() error { return p.SetMulticastTTL(255) },
		func() error { return p.SetMulticastInterface(ifi) },
		func() error { return p.SetMulticastLoopback(false) },
		func() error { return p.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true) },
	}
	if multicast {
		steps = append(steps, func() error { return p.JoinGroup(ifi, &net.IPAddr{IP: GroupV4.AsSlice()}) })
	}
	for _, s := range steps {
		if err := s(); err != nil {
			p.Close()
			return nil, fmt.Errorf("configure IPv4 VRRP socket on %s: %w", ifi.Name, err)
		}
	}
	return p, nil
}

func listenV6(ifi *net.Interface, multicast bool) (*ipv6.PacketConn, error) {
	lc := net.ListenConfig{Control: bindToDevice(ifi.Name)}
	c, err := lc.ListenPacket(context.Background(), "ip6:112", "::")
	if err != nil {
		return nil, fmt.Errorf("open IPv6 VRRP socket on %s: %w", ifi.Name, err)
	}
	p := ipv6.NewPacketConn(c)
	steps := []func() error{
		func() error { return p.SetHopLimit(255) },
		func() error { return p.SetMulticastHopLimit(255) },
		func() error { return p.SetMulticastInterface(ifi) },
		func() error { return p.SetMulticastLoopback(false) },
		func() error {
			return p.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true)
		},
	}
	if multicast {
		steps = append(steps, func() error { return p.JoinGroup(ifi, &net.IPAddr{IP: GroupV6.AsSlice()}) })
	}
	for _, s := range steps {
		if err := s(); err != nil {
			p.Close()
			return nil, fmt.Errorf("configure IPv6 VRRP socket on %s: %w", ifi.Name, err)
		}
	}
	return p, nil
}

// SetPeers implements Transport.
func (t *LinuxTransport) SetPeers(peers []netip.Addr) {
	t.peersMu.Lock()
	t.cfg.UnicastPeers = slices.Clone(peers)
	t.peersMu.Unlock()
}

func (t *LinuxTransport) peers(v6 bool) []netip.Addr {
	t.peersMu.Lock()
	defer t.peersMu.Unlock()
	var out []netip.Addr
	for _, p := range t.cfg.UnicastPeers {
		if p.Is6() == v6 {
			out = append(out, p)
		}
	}
	return out
}

// Source implements Transport.
func (t *LinuxTransport) Source(v6 bool) netip.Addr {
	if v6 {
		return t.src6
	}
	return t.src4
}

// Packets implements Transport.
func (t *LinuxTransport) Packets() <-chan Packet { return t.packets }

// Send implements Transport.
func (t *LinuxTransport) Send(v6 bool, build func(src, dst netip.Addr) ([]byte, error)) error {
	dsts := t.peers(v6)
	if len(dsts) == 0 && !t.cfg.Unicast {
		dsts = []netip.Addr{GroupV4}
		if v6 {
			dsts = []netip.Addr{GroupV6}
		}
	}
	var errs []error
	for _, dst := range dsts {
		src := t.Source(v6)
		b, err := build(src.WithZone(""), dst)
		if err != nil {
			return err
		}
		if v6 {
			if t.v6 == nil {
				return errors.New("send IPv6 advert: no IPv6 socket")
			}
			cm := &ipv6.ControlMessage{HopLimit: 255, Src: src.AsSlice(), IfIndex: t.ifi.Index}
			_, err = t.v6.WriteTo(b, cm, &net.IPAddr{IP: dst.AsSlice(), Zone: t.ifi.Name})
		} else {
			if t.v4 == nil {
				return errors.New("send IPv4 advert: no IPv4 socket")
			}
			cm := &ipv4.ControlMessage{Src: src.AsSlice(), IfIndex: t.ifi.Index}
			_, err = t.v4.WriteTo(b, cm, &net.IPAddr{IP: dst.AsSlice()})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("send advert to %s: %w", dst, err))
		}
	}
	return errors.Join(errs...)
}

// received is what a family's socket reports of one packet.
type received struct {
	n        int
	src, dst netip.Addr
	ttl      int // -1: not reported
	ifindex  int // 0: not reported
}

func (t *LinuxTransport) readV4() {
	t.readLoop(false, func(buf []byte) (received, error) {
		n, cm, src, err := t.v4.ReadFrom(buf)
		r := received{n: n, ttl: -1}
		if a, ok := src.(*net.IPAddr); ok {
			r.src, _ = netip.AddrFromSlice(a.IP.To4())
		}
		if cm != nil {
			r.ttl, r.ifindex = cm.TTL, cm.IfIndex
			r.dst, _ = netip.AddrFromSlice(cm.Dst.To4())
		}
		return r, err
	})
}

func (t *LinuxTransport) readV6() {
	t.readLoop(true, func(buf []byte) (received, error) {
		n, cm, src, err := t.v6.ReadFrom(buf)
		r := received{n: n, ttl: -1}
		if a, ok := src.(*net.IPAddr); ok {
			r.src, _ = netip.AddrFromSlice(a.IP.To16())
		}
		if cm != nil {
			r.ttl, r.ifindex = cm.HopLimit, cm.IfIndex
			r.dst, _ = netip.AddrFromSlice(cm.Dst.To16())
		}
		return r, err
	})
}

// readLoop delivers one family's packets until its socket is closed,
// skipping packets of other interfaces and our own (a unicast peer list
// that names this node loops them back).
func (t *LinuxTransport) readLoop(v6 bool, read func([]byte) (received, error)) {
	defer t.wg.Done()
	own := t.Source(v6).WithZone("")
	buf := make([]byte, 1500)
	for {
		r, err := read(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if (r.ifindex != 0 && r.ifindex != t.ifi.Index) || r.src == own {
			continue
		}
		p := Packet{Payload: append([]byte(nil), buf[:r.n]...), Src: r.src, Dst: r.dst, TTL: r.ttl, V6: v6}
		if !t.deliver(p) {
			return
		}
	}
}

// deliver hands p to the engine; false once the transport is closed.
func (t *LinuxTransport) deliver(p Packet) bool {
	select {
	case t.packets <- p:
		return true
	case <-t.done:
		return false
	}
}

// Close closes the sockets; Packets is closed once the readers have ended.
func (t *LinuxTransport) Close() error {
	var errs []error
	t.close.Do(func() {
		close(t.done)
		if t.v4 != nil {
			errs = append(errs, t.v4.Close())
		}
		if t.v6 != nil {
			errs = append(errs, t.v6.Close())
		}
	})
	return errors.Join(errs...)
}
