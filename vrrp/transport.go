package vrrp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/vishvananda/netlink"

	"golang.org/x/net/bpf"
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
	// Destinations are where adverts of a family go: every unicast peer
	// of that family, or the multicast group. The caller must not change
	// the slice.
	Destinations(v6 bool) []netip.Addr
	// SendBatch sends VRRP payloads of one family (built with Encode from
	// Source and their destination), leaving from via when that is not
	// nil: all in one system call per socket (sendmmsg), so a master of
	// hundreds of virtual routers pays one per tick, not one per advert. A
	// payload the kernel refused gets its Err; the error returned is one
	// that stopped the whole batch (no socket of that family).
	SendBatch(v6 bool, via Via, msgs []Outgoing) error
	// OpenVia opens a send-only socket on another interface with the same
	// source address: a use_vmac master advertises from its virtual MAC
	// interface this way (RFC 5798 §7.3), so the switch keeps the virtual
	// MAC on its port.
	OpenVia(v6 bool, ifname string) (Via, error)
	// Source is the address adverts of this family leave from.
	Source(v6 bool) netip.Addr
	// SetPeers replaces the unicast peers (unicast_peers: auto).
	SetPeers(peers []netip.Addr)
	// Packets delivers received packets, in batches of those that arrived
	// together, until the transport is closed. A batch and its payloads are
	// valid until the receiver takes the next one: the transport reuses
	// their memory, so a receiver must copy what it keeps.
	Packets() <-chan []Packet
	Close() error
}

// Outgoing is one payload of a SendBatch and where it goes.
type Outgoing struct {
	Payload []byte
	Dst     netip.Addr
	Err     error // set by SendBatch when this payload was not sent
}

// Via is a socket on another interface that Transport.OpenVia opened.
type Via interface{ Close() error }

// TransportConfig says which sockets to open.
type TransportConfig struct {
	Interface string
	IPv4      bool
	IPv6      bool
	// MaybeIPv4 opens the IPv4 socket too if the interface has an IPv4
	// address, and skips it quietly if not (IPv6-only nodes).
	MaybeIPv4 bool
	// UnicastPeers, when not empty, replaces multicast: adverts of each
	// family go to the peers of that family.
	UnicastPeers []netip.Addr
	// Unicast sends only to the peers, even while there are none
	// (unicast_peers: auto, before any member is known).
	Unicast bool
	// Source4 and Source6, when valid, are the advert sources instead of
	// the interface's first IPv4 and its link-local IPv6 address
	// (vrrp.source); each must be an address of the interface.
	Source4, Source6 netip.Addr
	// VIPs are never the IPv4 source: after a re-plug a VIP can be the
	// interface's first address when the agent starts.
	VIPs []netip.Addr
	// OnLinkPeers keeps of UnicastPeers those on the interface's own
	// subnets (and link-local ones): an agent's second interface sends to
	// the peers of its segment, not to every peer of the config.
	OnLinkPeers bool
	// Metrics counts read errors; nil: not counted.
	Metrics *Metrics
	// Log hears the wait for duplicate address detection.
	Log zerolog.Logger
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
	packets chan []Packet
	done    chan struct{}
	peersMu sync.Mutex
	// dests are Destinations per family (IPv4, IPv6), replaced whole by
	// SetPeers.
	dests [2][]netip.Addr
	// The send path's memory, reused by every SendBatch (the engine's
	// goroutine is its only caller): messages, socket addresses per
	// destination, and the control message per interface and source.
	sendMsgs  []ipv4.Message
	sendBufs  [][1][]byte
	sendAddrs map[netip.Addr]*net.IPAddr
	oobs      map[oobKey][]byte
	wg        sync.WaitGroup
	close     sync.Once
}

// oobKey is what a control message says: the family, source and interface.
type oobKey struct {
	src     netip.Addr
	ifindex int
}

// ListenTransport opens the raw sockets for cfg. The IPv4 source is the
// interface's first IPv4 address, the IPv6 source its link-local address, as
// RFC 5798 requires.
func ListenTransport(cfg TransportConfig) (*LinuxTransport, error) {
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("find interface %q: %w", cfg.Interface, err)
	}
	if cfg.OnLinkPeers {
		if cfg.UnicastPeers, err = onLink(ifi, cfg.UnicastPeers); err != nil {
			return nil, err
		}
	}
	t := &LinuxTransport{cfg: cfg, ifi: ifi, packets: make(chan []Packet, batchQueue), done: make(chan struct{}),
		sendAddrs: map[netip.Addr]*net.IPAddr{}, oobs: map[oobKey][]byte{}}
	t.SetPeers(cfg.UnicastPeers)
	if cfg.IPv4 || cfg.MaybeIPv4 {
		if t.src4, err = interfaceAddr(ifi, false, cfg.Source4, cfg.VIPs); err != nil && !cfg.IPv4 {
			t.src4, err = netip.Addr{}, nil
		}
	}
	if err != nil {
		return nil, err
	}
	if t.src4.IsValid() {
		if t.v4, _, err = listen(ifi, false, t.multicast(false), true); err != nil {
			return nil, err
		}
	}
	if cfg.IPv6 {
		err = waitDAD(ifi, cfg.Log)
		if err == nil {
			t.src6, err = interfaceAddr(ifi, true, cfg.Source6, nil)
		}
		if err == nil {
			_, t.v6, err = listen(ifi, true, t.multicast(true), true)
		}
		if err != nil {
			t.Close()
			return nil, err
		}
	}
	if t.v4 != nil {
		t.wg.Go(t.readV4)
	}
	if t.v6 != nil {
		t.wg.Go(t.readV6)
	}
	go func() { t.wg.Wait(); close(t.packets) }()
	return t, nil
}

// onLink keeps the peers on ifi's subnets, and the link-local ones.
func onLink(ifi *net.Interface, peers []netip.Addr) ([]netip.Addr, error) {
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", ifi.Name, err)
	}
	var out []netip.Addr
	for _, p := range peers {
		on := p.IsLinkLocalUnicast()
		for _, a := range addrs {
			if pf, err := netip.ParsePrefix(a.String()); err == nil && pf.Masked().Contains(p) {
				on = true
			}
		}
		if on {
			out = append(out, p)
		}
	}
	return out, nil
}

// interfaceAddr picks the advert source: want (vrrp.source) if the
// interface has it, else the first IPv4 address that is not one of vips,
// or the IPv6 link-local address.
func interfaceAddr(ifi *net.Interface, v6 bool, want netip.Addr, vips []netip.Addr) (netip.Addr, error) {
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
		if want.IsValid() {
			if ip == want {
				return ip, nil
			}
			continue
		}
		if !v6 && ip.Is4() && !slices.Contains(vips, ip) {
			return ip, nil
		}
		if v6 && ip.Is6() && ip.IsLinkLocalUnicast() {
			return ip.WithZone(ifi.Name), nil
		}
	}
	if want.IsValid() {
		return netip.Addr{}, fmt.Errorf("vrrp.source: %s is not an address of %s: add it, or give one the interface has", want, ifi.Name)
	}
	if v6 {
		return netip.Addr{}, fmt.Errorf("interface %s has no IPv6 link-local address: VRRPv3 over IPv6 sends from it (is IPv6 disabled on the interface?)", ifi.Name)
	}
	return netip.Addr{}, fmt.Errorf("interface %s has no IPv4 address but VIPs: VRRP over IPv4 needs the host's own as the advert source", ifi.Name)
}

// dadWait bounds the wait for the IPv6 link-local address to pass
// duplicate address detection, which takes about two seconds at most with
// the kernel's defaults (a random delay of up to a second, one probe, a
// second's wait).
const dadWait = 5 * time.Second

// waitDAD waits until the interface's IPv6 link-local address has passed
// duplicate address detection, saying once that it waits: a tentative
// address cannot send, so adverts would otherwise fail by the thousand
// while the interface comes up. A failed detection is an error; an
// address still missing after dadWait is left to interfaceAddr.
func waitDAD(ifi *net.Interface, log zerolog.Logger) error {
	if b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + ifi.Name + "/disable_ipv6"); err != nil || strings.TrimSpace(string(b)) == "1" {
		return nil // no IPv6 here: interfaceAddr says so
	}
	link, err := netlink.LinkByIndex(ifi.Index)
	if err != nil {
		return fmt.Errorf("find interface %s: %w", ifi.Name, err)
	}
	start := time.Now()
	for waited := false; ; waited = true {
		addrs, err := netlink.AddrList(link, netlink.FAMILY_V6)
		if err != nil {
			return fmt.Errorf("list addresses of %s: %w", ifi.Name, err)
		}
		i := slices.IndexFunc(addrs, func(a netlink.Addr) bool { return a.IP.IsLinkLocalUnicast() })
		switch {
		case i >= 0 && addrs[i].Flags&unix.IFA_F_DADFAILED != 0:
			return fmt.Errorf("interface %s: duplicate address detection failed for its link-local address %s: another host on the segment has it; give one of them another address", ifi.Name, addrs[i].IP)
		case i >= 0 && (addrs[i].Flags&unix.IFA_F_TENTATIVE == 0 || addrs[i].Flags&unix.IFA_F_OPTIMISTIC != 0):
			if waited {
				log.Info().Str("interface", ifi.Name).Dur("waited", time.Since(start).Round(time.Millisecond)).Msg("the IPv6 link-local address passed duplicate address detection: adverts start")
			}
			return nil
		case time.Since(start) > dadWait:
			return nil
		case !waited:
			log.Info().Str("interface", ifi.Name).Msg("waiting for the IPv6 link-local address to pass duplicate address detection before sending adverts (about 2 s)")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// receiveBuffer is the socket receive buffer each VRRP socket asks for. A
// reader that waits for a burst to finish (readCoalesce) must find all of
// it queued: 510 virtual routers' adverts, at a few kilobytes of kernel
// overhead each, fit with room to spare.
const receiveBuffer = 4 << 20

// socketSetup binds the socket to the interface and raises its receive
// buffer: SO_RCVBUFFORCE where the agent may (CAP_NET_ADMIN), else
// SO_RCVBUF, which the kernel caps at net.core.rmem_max.
func socketSetup(name string) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, name); serr != nil {
				serr = fmt.Errorf("bind to %s: %w", name, serr)
				return
			}
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, receiveBuffer) != nil {
				// Best effort: the default buffer works, only a burst may drop.
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, receiveBuffer)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// ttl255 keeps only IPv4 packets with a TTL of 255 (RFC 5798 §7.1): the
// kernel drops an advert that crossed a router, or was sent with another
// TTL, before the agent reads it. The socket sees the IPv4 header; IPv6
// raw sockets do not, so the engine checks the hop limit.
var ttl255 = func() []bpf.RawInstruction {
	f, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: 8, Size: 1}, // the TTL
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 255, SkipFalse: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		panic(err) // a constant program
	}
	return f
}()

// vrrpSocket is what ipv4.PacketConn and ipv6.PacketConn share.
type vrrpSocket interface {
	SetMulticastInterface(*net.Interface) error
	SetMulticastLoopback(bool) error
	JoinGroup(*net.Interface, net.Addr) error
	SetBPF([]bpf.RawInstruction) error
	Close() error
}

// listen opens the family's VRRP socket on ifi: one of the two conns is
// set. A send-only socket (multicast false, receive false) drops every
// packet the kernel would queue for it.
func listen(ifi *net.Interface, v6, multicast, receive bool) (*ipv4.PacketConn, *ipv6.PacketConn, error) {
	family, network, any, group := "IPv4", "ip4:112", "0.0.0.0", GroupV4
	if v6 {
		family, network, any, group = "IPv6", "ip6:112", "::", GroupV6
	}
	lc := net.ListenConfig{Control: socketSetup(ifi.Name)}
	c, err := lc.ListenPacket(context.Background(), network, any)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s VRRP socket on %s: %w", family, ifi.Name, err)
	}
	var p4 *ipv4.PacketConn
	var p6 *ipv6.PacketConn
	var p vrrpSocket
	var hops [2]func(int) error // unicast and multicast TTL / hop limit
	var control func() error    // what a receiving socket reads of each packet
	if v6 {
		p6 = ipv6.NewPacketConn(c)
		p, hops = p6, [2]func(int) error{p6.SetHopLimit, p6.SetMulticastHopLimit}
		control = func() error { return p6.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true) }
	} else {
		p4 = ipv4.NewPacketConn(c)
		p, hops = p4, [2]func(int) error{p4.SetTTL, p4.SetMulticastTTL}
		control = func() error {
			if err := p4.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
				return err
			}
			return p4.SetBPF(ttl255)
		}
	}
	steps := []func() error{
		func() error { return hops[0](255) },
		func() error { return hops[1](255) },
		func() error { return p.SetMulticastInterface(ifi) },
		func() error { return p.SetMulticastLoopback(false) },
	}
	if receive {
		steps = append(steps, control)
	} else {
		steps = append(steps, func() error { return setDropAll(p.SetBPF) })
	}
	if multicast {
		steps = append(steps, func() error { return p.JoinGroup(ifi, &net.IPAddr{IP: group.AsSlice()}) })
	}
	for _, s := range steps {
		if err := s(); err != nil {
			p.Close()
			return nil, nil, fmt.Errorf("configure %s VRRP socket on %s: %w", family, ifi.Name, err)
		}
	}
	return p4, p6, nil
}

// SetPeers implements Transport.
func (t *LinuxTransport) SetPeers(peers []netip.Addr) {
	t.peersMu.Lock()
	defer t.peersMu.Unlock()
	t.cfg.UnicastPeers = slices.Clone(peers)
	for i, group := range []netip.Addr{GroupV4, GroupV6} {
		var out []netip.Addr
		for _, p := range peers {
			if p.Is6() == (i == 1) {
				out = append(out, p)
			}
		}
		if len(out) == 0 && !t.cfg.Unicast {
			out = []netip.Addr{group}
		}
		t.dests[i] = out
	}
}

// multicast reports whether adverts of a family go to the group.
func (t *LinuxTransport) multicast(v6 bool) bool {
	d := t.Destinations(v6)
	return len(d) == 1 && d[0].IsMulticast()
}

// Destinations implements Transport.
func (t *LinuxTransport) Destinations(v6 bool) []netip.Addr {
	t.peersMu.Lock()
	defer t.peersMu.Unlock()
	if v6 {
		return t.dests[1]
	}
	return t.dests[0]
}

// Source implements Transport.
func (t *LinuxTransport) Source(v6 bool) netip.Addr {
	if v6 {
		return t.src6
	}
	return t.src4
}

// Packets implements Transport.
func (t *LinuxTransport) Packets() <-chan []Packet { return t.packets }

// SendBatch implements Transport.
func (t *LinuxTransport) SendBatch(v6 bool, via Via, msgs []Outgoing) error {
	ifi, c4, c6 := t.ifi, t.v4, t.v6
	if v, ok := via.(*viaConn); ok && v != nil {
		ifi, c4, c6 = v.ifi, v.v4, v.v6
	}
	write := func(ms []ipv4.Message) (int, error) { return c4.WriteBatch(ms, 0) }
	if v6 {
		if c6 == nil {
			return errors.New("send IPv6 adverts: no IPv6 socket")
		}
		write = func(ms []ipv4.Message) (int, error) { return c6.WriteBatch(ms, 0) }
	} else if c4 == nil {
		return errors.New("send IPv4 adverts: no IPv4 socket")
	}
	oob := t.oob(v6, t.Source(v6), ifi.Index)
	if cap(t.sendMsgs) < len(msgs) {
		t.sendMsgs = make([]ipv4.Message, len(msgs))
		t.sendBufs = make([][1][]byte, len(msgs))
	}
	ms := t.sendMsgs[:len(msgs)]
	for i := range msgs {
		addr, ok := t.sendAddrs[msgs[i].Dst]
		if !ok {
			addr = &net.IPAddr{IP: msgs[i].Dst.AsSlice()}
			t.sendAddrs[msgs[i].Dst] = addr
		}
		t.sendBufs[i][0] = msgs[i].Payload
		ms[i] = ipv4.Message{Buffers: t.sendBufs[i][:], OOB: oob, Addr: addr}
	}
	// sendmmsg stops at a message the kernel refuses, reports what went
	// before it, and the refusal on the next call: skip past it.
	for i := 0; i < len(ms); {
		n, err := write(ms[i:])
		i += max(n, 0) // -1 with the error of a call that sent nothing
		if err != nil && i < len(ms) {
			msgs[i].Err = fmt.Errorf("send advert to %s via %s: %w", msgs[i].Dst, ifi.Name, err)
			i++
		} else if n == 0 {
			break
		}
	}
	clear(t.sendBufs[:len(msgs)]) // keep no payload alive
	return nil
}

// oob is the control message adverts leave with: the source address, the
// interface by index (not as the destination's zone: a zone string costs a
// dump of every link per send, Go's zone cache missing on an index) and,
// for IPv6, the hop limit 255 VRRP requires. It is built once per source.
func (t *LinuxTransport) oob(v6 bool, src netip.Addr, ifindex int) []byte {
	k := oobKey{src: src, ifindex: ifindex}
	if b, ok := t.oobs[k]; ok {
		return b
	}
	var b []byte
	if v6 {
		b = (&ipv6.ControlMessage{HopLimit: 255, Src: src.WithZone("").AsSlice(), IfIndex: ifindex}).Marshal()
	} else {
		b = (&ipv4.ControlMessage{Src: src.AsSlice(), IfIndex: ifindex}).Marshal()
	}
	t.oobs[k] = b
	return b
}

// viaConn is a send-only socket on another interface.
type viaConn struct {
	ifi *net.Interface
	v4  *ipv4.PacketConn
	v6  *ipv6.PacketConn
}

// Close implements Via.
func (v *viaConn) Close() error {
	if v.v4 != nil {
		return v.v4.Close()
	}
	return v.v6.Close()
}

// OpenVia implements Transport.
func (t *LinuxTransport) OpenVia(v6 bool, ifname string) (Via, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("find interface %q: %w", ifname, err)
	}
	v := &viaConn{ifi: ifi}
	if v.v4, v.v6, err = listen(ifi, v6, false, false); err != nil {
		return nil, err
	}
	return v, nil
}

// readBatch is how many packets one read takes at most.
const readBatch = 64

// burstPackets caps one hand-over to the engine: the adverts of every
// virtual router a node can have (255 per family), with room for a peer.
const burstPackets = 512

// readCoalesce is how long a reader waits after the first packet of a
// burst before it takes the rest. A master sends the adverts of all its
// virtual routers together but one packet at a time, so a backup that
// woke for each would pay a system call and an engine wake-up per advert,
// thousands a second; waiting gathers a burst into one hand-over. It
// delays an advert by at most this much, well inside the skew time that
// separates two priorities.
const readCoalesce = 2 * time.Millisecond

// batchQueue is how many batches wait for the engine at most. Each reader
// cycles through batchQueue+2 batch buffers: when it fills one again, the
// engine has taken a later batch, so it is done with that one.
const batchQueue = 8

// maxIPv4Header is the longest IPv4 header, options included.
const maxIPv4Header = 60

func (t *LinuxTransport) readV4() {
	oob := ipv4.NewControlMessage(ipv4.FlagTTL | ipv4.FlagDst | ipv4.FlagInterface)
	t.readLoop(false, maxIPv4Header+maxPacket4, len(oob), func(ms []ipv4.Message, flags int) (int, error) { return t.v4.ReadBatch(ms, flags) },
		func(m *ipv4.Message) (payload []byte, src, dst netip.Addr, ttl, ifindex int) {
			// Read in a batch, a raw IPv4 socket's packets keep their IP
			// header (ReadFrom strips it); IPv6 ones never carry it.
			b := m.Buffers[0][:m.N]
			if len(b) < ipv4.HeaderLen || b[0]>>4 != 4 || len(b) < int(b[0]&0x0f)*4 {
				return nil, src, dst, ttl, ifindex
			}
			payload, ttl = b[int(b[0]&0x0f)*4:], int(b[8])
			if a, ok := m.Addr.(*net.IPAddr); ok {
				src, _ = netip.AddrFromSlice(a.IP.To4())
			}
			dst, ifindex, _ = parsePacketInfo(m.OOB[:m.NN], false)
			return payload, src, dst, ttl, ifindex
		})
}

func (t *LinuxTransport) readV6() {
	oob := ipv6.NewControlMessage(ipv6.FlagHopLimit | ipv6.FlagDst | ipv6.FlagInterface)
	t.readLoop(true, maxPacket6, len(oob), func(ms []ipv6.Message, flags int) (int, error) { return t.v6.ReadBatch(ms, flags) },
		func(m *ipv6.Message) (payload []byte, src, dst netip.Addr, ttl, ifindex int) {
			payload, ttl = m.Buffers[0][:m.N], -1
			if a, ok := m.Addr.(*net.IPAddr); ok {
				src, _ = netip.AddrFromSlice(a.IP.To16())
			}
			dst, ifindex, ttl = parsePacketInfo(m.OOB[:m.NN], true)
			return payload, src, dst, ttl, ifindex
		})
}

// parsePacketInfo reads a received packet's control messages: its
// destination and interface (IP_PKTINFO, IPV6_PKTINFO) and, for IPv6, its
// hop limit (-1 when absent). x/net's ControlMessage.Parse would do the
// same with two allocations per packet, thousands a second on a backup;
// the headers are read by value, so no buffer shape can fault.
func parsePacketInfo(oob []byte, v6 bool) (dst netip.Addr, ifindex, hopLimit int) {
	hopLimit = -1
	hdr := unix.CmsgLen(0) // the header, aligned: where the data starts
	for len(oob) >= hdr {
		// struct cmsghdr, read by value: len (size_t), level, type.
		var n int
		var level, typ int32
		if unix.SizeofCmsghdr == 16 {
			n = int(binary.NativeEndian.Uint64(oob[0:8]))
			level, typ = int32(binary.NativeEndian.Uint32(oob[8:12])), int32(binary.NativeEndian.Uint32(oob[12:16]))
		} else {
			n = int(binary.NativeEndian.Uint32(oob[0:4]))
			level, typ = int32(binary.NativeEndian.Uint32(oob[4:8])), int32(binary.NativeEndian.Uint32(oob[8:12]))
		}
		if n < hdr || n > len(oob) {
			break
		}
		data := oob[hdr:n]
		switch {
		case !v6 && level == unix.SOL_IP && typ == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo:
			// struct in_pktinfo: ifindex, local address, header destination.
			ifindex = int(int32(binary.NativeEndian.Uint32(data[0:4])))
			dst = netip.AddrFrom4([4]byte(data[8:12]))
		case v6 && level == unix.SOL_IPV6 && typ == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			// struct in6_pktinfo: destination, ifindex.
			dst = netip.AddrFrom16([16]byte(data[0:16]))
			ifindex = int(binary.NativeEndian.Uint32(data[16:20]))
		case v6 && level == unix.SOL_IPV6 && typ == unix.IPV6_HOPLIMIT && len(data) >= 4:
			hopLimit = int(int32(binary.NativeEndian.Uint32(data[0:4])))
		}
		next := unix.CmsgSpace(n - hdr)
		if next > len(oob) {
			break
		}
		oob = oob[next:]
	}
	return dst, ifindex, hopLimit
}

// readLoop delivers one family's packets until its socket is closed: it
// waits for a packet, lets the rest of the burst arrive (readCoalesce),
// drains the socket without blocking and hands the engine everything as one
// batch. Packets of other interfaces and our own (a unicast peer list that
// names this node loops them back) are skipped. ipv4.Message and
// ipv6.Message are one type, so one loop serves both families.
func (t *LinuxTransport) readLoop(v6 bool, bufLen, oobLen int, read func(ms []ipv4.Message, flags int) (int, error),
	meta func(*ipv4.Message) (payload []byte, src, dst netip.Addr, ttl, ifindex int)) {
	own := t.Source(v6).WithZone("")
	ms := make([]ipv4.Message, readBatch)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, bufLen)}
		ms[i].OOB = make([]byte, oobLen)
	}
	type batchBuf struct {
		packets []Packet
		ends    []int // where each packet's payload ends in arena
		arena   []byte
	}
	ring := make([]batchBuf, batchQueue+2)
	next := 0
	backoff := time.Duration(0)
	pause := time.NewTimer(0)
	defer pause.Stop()
	wait := func(d time.Duration) bool {
		pause.Reset(d)
		select {
		case <-t.done:
			return false
		case <-pause.C:
			return true
		}
	}
	for {
		// ring[next] is free: next advances only when a batch is delivered.
		buf := &ring[next]
		buf.packets, buf.ends, buf.arena = buf.packets[:0], buf.ends[:0], buf.arena[:0]
		add := func(n int) {
			for i := range n {
				payload, src, dst, ttl, ifindex := meta(&ms[i])
				if payload == nil || (ifindex != 0 && ifindex != t.ifi.Index) || src == own {
					continue
				}
				buf.arena = append(buf.arena, payload...)
				buf.ends = append(buf.ends, len(buf.arena))
				buf.packets = append(buf.packets, Packet{Src: src, Dst: dst, TTL: ttl, V6: v6})
			}
		}
		n, err := read(ms, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if t.cfg.Metrics != nil {
				t.cfg.Metrics.ReadErrors.WithLabelValues(routerKey{v6: v6}.family()).Inc()
			}
			// A persistent error must not spin: back off, up to a second.
			backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
			if !wait(backoff) {
				return
			}
			continue
		}
		backoff = 0
		add(n)
		if !wait(readCoalesce) {
			return
		}
		for len(buf.packets) < burstPackets {
			n, err := read(ms, unix.MSG_DONTWAIT)
			if err != nil || n == 0 {
				break // EAGAIN: the burst is all read; other errors show on the next blocking read
			}
			add(n)
		}
		if len(buf.packets) == 0 {
			continue
		}
		// The arena is filled: payloads may point into it now.
		start := 0
		for i, end := range buf.ends {
			buf.packets[i].Payload = buf.arena[start:end:end]
			start = end
		}
		if !t.deliver(buf.packets) {
			return
		}
		next = (next + 1) % len(ring)
	}
}

// deliver hands a batch to the engine; false once the transport is closed.
func (t *LinuxTransport) deliver(batch []Packet) bool {
	select {
	case t.packets <- batch:
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
