package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// IPProtocol is the IP protocol number VRRP adverts travel in.
const IPProtocol = 112

// Wire constants shared by VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798).
const (
	typeAdvertisement = 1
	headerLen         = 8
	authDataLen       = 8 // VRRPv2 trailer, present whatever the auth type
	maxAddrs          = 255
	// maxPacket4 and maxPacket6 are the largest VRRP payloads of each
	// family: 255 addresses, a VRRPv2 trailer and an auth_hmac trailer.
	// Each family's receive buffers hold that much.
	maxPacket4 = headerLen + maxAddrs*4 + authDataLen + TrailerLen
	maxPacket6 = headerLen + maxAddrs*16 + authDataLen + TrailerLen
)

// AuthType is the VRRPv2 authentication type. VRRPv3 has none.
type AuthType uint8

// VRRPv2 authentication types garpd speaks (RFC 3768 §5.3.6; type 2 was removed).
const (
	AuthNone     AuthType = 0
	AuthPassword AuthType = 1 // keepalived's "auth_type PASS"
)

// Advert is one decoded VRRP advertisement. The same struct serves both
// versions so the state machine never needs to know which one is on the wire.
type Advert struct {
	Version  int // 2 or 3
	VRID     uint8
	Priority uint8
	// Interval is the advertisement interval in centiseconds. VRRPv2 carries
	// whole seconds on the wire; Encode and Decode convert.
	Interval  uint16
	Addresses []netip.Addr
	AuthType  AuthType // VRRPv2 only
	AuthData  [8]byte  // VRRPv2 only: the password, NUL padded
	// Signed: the advert carries Trailer, the auth_hmac trailer, after the
	// PDU. Encode writes it as given (see auth.sign).
	Signed  bool
	Trailer Trailer
}

// DecodeReason names why a packet was rejected. Reasons double as metric
// label values, so they are short and stable.
type DecodeReason string

// Reasons the decoder rejects a packet.
const (
	ReasonTooShort     DecodeReason = "too_short"
	ReasonVersion      DecodeReason = "bad_version"
	ReasonType         DecodeReason = "bad_type"
	ReasonChecksum     DecodeReason = "bad_checksum"
	ReasonLength       DecodeReason = "bad_length"
	ReasonAddressCount DecodeReason = "bad_address_count"
	ReasonInterval     DecodeReason = "bad_interval"
	ReasonAddressType  DecodeReason = "bad_address"
)

// DecodeError is the typed error Decode returns, so callers can count drops by
// reason without string matching.
type DecodeError struct {
	Reason DecodeReason
	Detail string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("vrrp decode: %s: %s", e.Reason, e.Detail)
}

func decodeErr(r DecodeReason, format string, a ...any) error {
	return &DecodeError{Reason: r, Detail: fmt.Sprintf(format, a...)}
}

// ReasonOf returns the DecodeReason carried by err, or "" if it has none.
func ReasonOf(err error) DecodeReason {
	var de *DecodeError
	if errors.As(err, &de) {
		return de.Reason
	}
	return ""
}

// Encode builds the VRRP payload (without IP header) for adv sent from src to
// dst. src and dst are needed because VRRPv3 checksums cover the IP
// pseudo-header; VRRPv2 ignores them.
func Encode(adv Advert, src, dst netip.Addr) ([]byte, error) {
	return AppendAdvert(nil, adv, src, dst)
}

// AppendAdvert is Encode appending to buf: the engine encodes every tick's
// adverts into one buffer it reuses, so sending allocates nothing.
func AppendAdvert(buf []byte, adv Advert, src, dst netip.Addr) ([]byte, error) {
	if adv.Version != 2 && adv.Version != 3 {
		return nil, fmt.Errorf("vrrp encode: version %d is not 2 or 3", adv.Version)
	}
	if len(adv.Addresses) == 0 || len(adv.Addresses) > maxAddrs {
		return nil, fmt.Errorf("vrrp encode: %d addresses, want 1..%d", len(adv.Addresses), maxAddrs)
	}
	v6 := adv.Addresses[0].Is6()
	if adv.Version == 2 && v6 {
		return nil, errors.New("vrrp encode: VRRPv2 carries IPv4 only")
	}
	alen := 4
	if v6 {
		alen = 16
	}
	n := headerLen + alen*len(adv.Addresses)
	if adv.Version == 2 {
		n += authDataLen
	}
	pdu := n
	if adv.Signed {
		n += TrailerLen
	}
	start := len(buf)
	buf = slices.Grow(buf, n)[:start+n]
	b := buf[start:]
	clear(b)
	b[0] = byte(adv.Version<<4 | typeAdvertisement)
	b[1] = adv.VRID
	b[2] = adv.Priority
	b[3] = byte(len(adv.Addresses))
	if adv.Version == 2 {
		if adv.Interval == 0 || adv.Interval%100 != 0 || adv.Interval/100 > 255 {
			return nil, fmt.Errorf("vrrp encode: VRRPv2 interval %d cs is not whole seconds 1..255", adv.Interval)
		}
		b[4] = byte(adv.AuthType)
		b[5] = byte(adv.Interval / 100)
	} else {
		if adv.Interval == 0 || adv.Interval > 0x0fff {
			return nil, fmt.Errorf("vrrp encode: interval %d cs out of 1..4095", adv.Interval)
		}
		binary.BigEndian.PutUint16(b[4:6], adv.Interval&0x0fff)
	}
	off := headerLen
	for _, a := range adv.Addresses {
		if a.Is6() != v6 || (!v6 && !a.Is4()) {
			return nil, fmt.Errorf("vrrp encode: address %s is not of the advert's family", a)
		}
		copy(b[off:], a.AsSlice())
		off += alen
	}
	if adv.Version == 2 {
		copy(b[off:], adv.AuthData[:])
	}
	if adv.Signed {
		putTrailer(b, adv.Trailer)
	}
	binary.BigEndian.PutUint16(b[6:8], checksum(b[:checksummed(v6, pdu, len(b))], adv.Version, src, dst))
	return buf, nil
}

// checksummed is how much of a packet of n bytes whose PDU has pdu bytes
// the VRRP checksum covers: the PDU over IPv4; over IPv6, the whole
// payload, trailer included, as the kernel computes it for keepalived.
func checksummed(v6 bool, pdu, n int) int {
	if v6 {
		return n
	}
	return pdu
}

// Decode parses a VRRP payload received from src for dst. It checks
// everything that can be checked without knowing the local configuration:
// version, type, length, checksum and address count (RFC 5798 §7.1 and RFC
// 3768 §7.1). v6 says which address family the packet arrived on.
func Decode(b []byte, src, dst netip.Addr, v6 bool) (Advert, error) {
	var adv Advert
	err := DecodeInto(&adv, b, src, dst, v6)
	return adv, err
}

// DecodeInto is Decode into adv, reusing the storage of adv.Addresses: the
// engine decodes every advert into one Advert, so the receive path of a
// backup that hears hundreds of adverts a second allocates nothing.
func DecodeInto(adv *Advert, b []byte, src, dst netip.Addr, v6 bool) error {
	*adv = Advert{Addresses: adv.Addresses[:0]}
	if len(b) < headerLen {
		return decodeErr(ReasonTooShort, "%d bytes", len(b))
	}
	adv.Version = int(b[0] >> 4)
	if adv.Version != 2 && adv.Version != 3 {
		return decodeErr(ReasonVersion, "version %d", adv.Version)
	}
	if v6 && adv.Version != 3 {
		return decodeErr(ReasonVersion, "version %d over IPv6", adv.Version)
	}
	if t := b[0] & 0x0f; t != typeAdvertisement {
		return decodeErr(ReasonType, "type %d", t)
	}
	adv.VRID = b[1]
	adv.Priority = b[2]
	count := int(b[3])
	if count == 0 {
		return decodeErr(ReasonAddressCount, "no addresses")
	}
	alen := 4
	if v6 {
		alen = 16
	}
	want := headerLen + count*alen
	if adv.Version == 2 {
		want += authDataLen
	}
	// Trailing bytes are tolerated (some stacks pad), missing ones are not.
	// Exactly a trailer's length more is an auth_hmac trailer: padding
	// never reaches that much.
	if len(b) < want {
		return decodeErr(ReasonLength, "%d bytes, %d addresses need %d", len(b), count, want)
	}
	n := want
	if len(b) == want+TrailerLen {
		adv.Signed, adv.Trailer, n = true, readTrailer(b[want:]), want+TrailerLen
	}
	if sum := checksum(b[:checksummed(v6, want, n)], adv.Version, src, dst); sum != 0 {
		return decodeErr(ReasonChecksum, "checksum mismatch (0x%04x)", binary.BigEndian.Uint16(b[6:8]))
	}
	if adv.Version == 2 {
		adv.AuthType = AuthType(b[4])
		if b[5] == 0 {
			return decodeErr(ReasonInterval, "zero advert interval")
		}
		adv.Interval = uint16(b[5]) * 100
	} else {
		adv.Interval = binary.BigEndian.Uint16(b[4:6]) & 0x0fff
		if adv.Interval == 0 {
			return decodeErr(ReasonInterval, "zero advert interval")
		}
	}
	adv.Addresses = slices.Grow(adv.Addresses, count)[:count]
	off := headerLen
	for i := range count {
		a, _ := netip.AddrFromSlice(b[off : off+alen])
		if !a.IsGlobalUnicast() && !a.IsPrivate() && !a.IsLinkLocalUnicast() {
			return decodeErr(ReasonAddressType, "address %s is not unicast", a)
		}
		adv.Addresses[i] = a
		off += alen
	}
	if adv.Version == 2 {
		copy(adv.AuthData[:], b[off:off+authDataLen])
	}
	return nil
}

// checksum returns the Internet checksum of b, preceded for VRRPv3 by the
// IP pseudo-header for protocol 112 (VRRPv2 has none). Over a packet
// whose checksum field is filled in correctly the result is 0.
func checksum(b []byte, version int, src, dst netip.Addr) uint16 {
	if version != 3 {
		src = netip.Addr{}
	}
	var s uint32
	add := func(p []byte) {
		for len(p) >= 2 {
			s += uint32(p[0])<<8 | uint32(p[1])
			p = p[2:]
		}
		if len(p) == 1 {
			s += uint32(p[0]) << 8
		}
	}
	if src.IsValid() {
		add(src.AsSlice())
		add(dst.AsSlice())
		if src.Is4() {
			s += IPProtocol + uint32(len(b)) // zero, protocol, 16-bit length
		} else {
			s += uint32(len(b)) + IPProtocol // 32-bit length, 3 zero bytes, next header
		}
	}
	add(b)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// PasswordData returns the VRRPv2 auth data field for a simple password: the
// first 8 bytes, NUL padded, as keepalived's auth_type PASS sends it.
func PasswordData(pass string) [8]byte {
	var d [8]byte
	copy(d[:], pass)
	return d
}
