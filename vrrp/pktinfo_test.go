package vrrp

import (
	"encoding/binary"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// cmsg is one control message as the kernel lays it out.
func cmsg(level, typ int32, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}

func TestParsePacketInfo(t *testing.T) {
	ttl := binary.NativeEndian.AppendUint32(nil, 255)
	pkt4 := binary.NativeEndian.AppendUint32(nil, 7)
	pkt4 = append(pkt4, 192, 0, 2, 11) // the local address: not the destination
	pkt4 = append(pkt4, 224, 0, 0, 18)
	dst, ifindex, _ := parsePacketInfo(append(cmsg(unix.SOL_IP, unix.IP_TTL, ttl), cmsg(unix.SOL_IP, unix.IP_PKTINFO, pkt4)...), false)
	if dst != GroupV4 || ifindex != 7 {
		t.Fatalf("IPv4: %s on %d, want %s on 7", dst, ifindex, GroupV4)
	}
	pkt6 := append(GroupV6.AsSlice(), binary.NativeEndian.AppendUint32(nil, 3)...)
	dst, ifindex, hops := parsePacketInfo(append(cmsg(unix.SOL_IPV6, unix.IPV6_HOPLIMIT, ttl), cmsg(unix.SOL_IPV6, unix.IPV6_PKTINFO, pkt6)...), true)
	if dst != GroupV6 || ifindex != 3 || hops != 255 {
		t.Fatalf("IPv6: %s on %d with hop limit %d, want %s on 3 with 255", dst, ifindex, hops, GroupV6)
	}
	if dst, ifindex, hops := parsePacketInfo(nil, true); dst.IsValid() || ifindex != 0 || hops != -1 {
		t.Fatalf("no control message: %s, %d, %d", dst, ifindex, hops)
	}
	oob := cmsg(unix.SOL_IPV6, unix.IPV6_PKTINFO, pkt6)
	if allocs := testing.AllocsPerRun(100, func() { parsePacketInfo(oob, true) }); allocs != 0 {
		t.Fatalf("%.0f allocations per packet, want 0", allocs)
	}
}

// A kernel control message buffer of any shape never panics the reader.
func FuzzParsePacketInfo(f *testing.F) {
	f.Add(cmsg(unix.SOL_IP, unix.IP_PKTINFO, make([]byte, 12)), false)
	f.Add(cmsg(unix.SOL_IPV6, unix.IPV6_PKTINFO, make([]byte, 20)), true)
	f.Add([]byte{1, 2, 3}, true)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) {
		parsePacketInfo(b, v6)
	})
}
