package vrrp

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
)

// The authentication trailer of keepalived 2.4's auth_hmac
// (draft-cassen-vrrp-auth-hmac): 28 bytes after the VRRP PDU, the same for
// VRRPv2 and v3, IPv4 and IPv6.
//
//	0      1      2      4         8          10      12            28
//	| type | key  | zero | seconds | 1/65536 s | count | HMAC (16)    |
//
// The HMAC is HMAC-SHA256, truncated to 128 bits, over a 20-byte
// pseudo-header (family 4 or 6, VRRP version, VRID, zero, source address,
// zero padded), the PDU with its checksum read as zero, and the trailer
// with its HMAC read as zero. The IP header is not covered. The 64-bit
// sequence (seconds, fraction, count) is UTC time, made strictly
// increasing per sender, so a receiver refuses replays and, with the time
// window, stale adverts.
const (
	TrailerLen    = 28
	trailerMACOff = 12
	macLen        = 16
	hmacSHA256    = 1 // the trailer's type: HMAC-SHA256/128
	pseudoLen     = 20
	// AuthKeyMin and AuthKeyMax bound a key's length: at least 32 bytes
	// keeps a 128-bit margin.
	AuthKeyMin = 32
	AuthKeyMax = 64
)

// Trailer is an advert's authentication trailer.
type Trailer struct {
	Type     uint8 // hmacSHA256 on send
	KeyID    uint8
	Reserved uint16 // zero on send
	Seq      uint64
	MAC      [macLen]byte
}

// putTrailer writes t at the end of b (len(b) >= TrailerLen).
func putTrailer(b []byte, t Trailer) {
	b = b[len(b)-TrailerLen:]
	b[0], b[1] = t.Type, t.KeyID
	binary.BigEndian.PutUint16(b[2:4], t.Reserved)
	binary.BigEndian.PutUint64(b[4:12], t.Seq)
	copy(b[trailerMACOff:], t.MAC[:])
}

// readTrailer reads the trailer of b, the 28 bytes after the PDU.
func readTrailer(b []byte) Trailer {
	t := Trailer{Type: b[0], KeyID: b[1], Reserved: binary.BigEndian.Uint16(b[2:4]), Seq: binary.BigEndian.Uint64(b[4:12])}
	copy(t.MAC[:], b[trailerMACOff:TrailerLen])
	return t
}

// sequenceAt is the sequence of a clock reading: seconds since the epoch in
// the top 32 bits, the fraction of a second in 1/65536 in the next 16, a
// zero count.
func sequenceAt(t time.Time) uint64 {
	return uint64(uint32(t.Unix()))<<32 | (uint64(t.Nanosecond())<<16/1e9)<<16
}

// seqAfter reports whether sequence a comes after b, in serial number
// arithmetic (RFC 1982), so the order survives the wrap of the seconds.
func seqAfter(a, b uint64) bool { return int64(a-b) > 0 }

// signer computes trailer HMACs with one key. It keeps its HMAC state, so
// a sign or a check allocates nothing; it is used from one goroutine.
type signer struct {
	h   hash.Hash
	sum []byte
}

func newSigner(key []byte) *signer {
	return &signer{h: hmac.New(sha256.New, key), sum: make([]byte, 0, sha256.Size)}
}

var zeroMAC [macLen]byte

// mac is the truncated HMAC of pdu (the VRRP PDU without the trailer) sent
// from src, with the trailer t (its MAC read as zero).
func (s *signer) mac(pdu []byte, v6 bool, src netip.Addr, t Trailer) [macLen]byte {
	var pseudo [pseudoLen]byte
	pseudo[0] = 4
	if v6 {
		pseudo[0] = 6
	}
	pseudo[1], pseudo[2] = pdu[0]>>4, pdu[1]
	if src.Is4() {
		a := src.As4()
		copy(pseudo[4:], a[:])
	} else if src.Is6() {
		a := src.As16()
		copy(pseudo[4:], a[:])
	}
	var head [trailerMACOff]byte
	t.MAC = zeroMAC
	var tb [TrailerLen]byte
	putTrailer(tb[:], t)
	copy(head[:], tb[:trailerMACOff])
	s.h.Reset()
	s.h.Write(pseudo[:])
	s.h.Write(pdu[:6])
	s.h.Write(zeroMAC[:2]) // the checksum, read as zero
	s.h.Write(pdu[8:])
	s.h.Write(head[:])
	s.h.Write(zeroMAC[:])
	s.sum = s.h.Sum(s.sum[:0])
	var out [macLen]byte
	copy(out[:], s.sum)
	return out
}

// AuthMode is how the trailer is used, keepalived's modes for a rolling
// roll-out: receive-only checks trailers that come but signs nothing;
// permissive signs and still accepts adverts without one; enforce signs
// and refuses adverts without a valid one.
type AuthMode int

// Auth modes.
const (
	AuthOff AuthMode = iota
	AuthReceiveOnly
	AuthPermissive
	AuthEnforce
)

var authModeNames = [...]string{"off", "receive-only", "permissive", "enforce"}

func (m AuthMode) String() string { return authModeNames[m] }

// ParseAuthMode reads an auth_hmac mode.
func ParseAuthMode(s string) (AuthMode, error) {
	if i := slices.Index(authModeNames[:], s); i >= 0 {
		return AuthMode(i), nil
	}
	return 0, fmt.Errorf("%q: use enforce, permissive, receive-only or off", s)
}

// AuthKeys are the resolved auth_hmac settings: the key material by id,
// the id adverts are signed with, the mode, and the anti-replay window
// (zero: monotonic sequences only, for nodes without a shared clock).
type AuthKeys struct {
	Keys   map[uint8][]byte
	Active uint8
	// Legacy is the id garpd 0.1 gave the active key when it is derived
	// from the gossip key (LegacyAuthKeyID; 0: none): Keys holds the key
	// under it too, and adverts are signed with it while a member may
	// know no other (Engine.SetLegacyKeyID).
	Legacy uint8
	Mode   AuthMode
	Window time.Duration
}

// Enabled reports whether adverts are signed or checked at all.
func (a AuthKeys) Enabled() bool { return a.Mode != AuthOff && len(a.Keys) > 0 }

// Signs reports whether adverts carry a trailer.
func (a AuthKeys) Signs() bool { return a.Enabled() && a.Mode != AuthReceiveOnly }

// ParseAuthKey reads key material exactly as keepalived 2.4 does: "hex:"
// and hex digits (a byte of one or two digits, blanks between bytes
// skipped), "file:" and a path whose file holds either form (its trailing
// line ends dropped, nothing else), or the bytes of the text itself.
func ParseAuthKey(s string) ([]byte, error) {
	if path, ok := strings.CutPrefix(s, "file:"); ok {
		text, err := readKeyFile(path)
		if err != nil {
			return nil, err
		}
		s = text
	}
	key, err := decodeAuthKey(s)
	if err != nil {
		return nil, err
	}
	if len(key) < AuthKeyMin || len(key) > AuthKeyMax {
		return nil, fmt.Errorf("%d bytes: a key has %d to %d (make one with: openssl rand -hex 32, and write hex:DIGITS)", len(key), AuthKeyMin, AuthKeyMax)
	}
	return key, nil
}

// keyFileMax is the most a key file holds, as keepalived reads one: "hex:",
// the longest key in hex digits, and a little slack.
const keyFileMax = 4 + AuthKeyMax*2 + 7

// readKeyFile reads a key file: a regular file (a device such as
// /dev/zero would never end) of at most keyFileMax bytes, its trailing
// line ends dropped.
func readKeyFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read key: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return "", fmt.Errorf("read key: %s is not a regular file: give the file that holds the key", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, keyFileMax+1))
	if err != nil {
		return "", fmt.Errorf("read key: %w", err)
	}
	if len(b) > keyFileMax {
		return "", fmt.Errorf("read key: %s is too large: a key file holds one key, at most %d bytes", path, keyFileMax)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// decodeAuthKey decodes an inline value: "hex:" digits, or text.
func decodeAuthKey(s string) ([]byte, error) {
	digits, ok := strings.CutPrefix(s, "hex:")
	if !ok {
		return []byte(s), nil
	}
	var out []byte
	for i := 0; ; {
		for i < len(digits) && (digits[i] == ' ' || digits[i] == '\t') {
			i++
		}
		if i == len(digits) {
			break
		}
		v, ok := hexDigit(digits[i])
		i++
		if ok && i < len(digits) && digits[i] != ' ' {
			var w byte
			w, ok = hexDigit(digits[i])
			v = v<<4 | w
			i++
		}
		if !ok {
			return nil, errors.New("hex: is followed by something that is not hex digits (make one with: openssl rand -hex 32)")
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("hex: is followed by no digits (make one with: openssl rand -hex 32)")
	}
	return out, nil
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// DeriveAuthKey is the VRRP key of a gossip key: HMAC-SHA256 of a fixed
// label under the gossip key, so a cluster provisions one secret. Its id
// (1..255) comes from the gossip key too, under another label, so every
// node names the same key alike, a rotated gossip key brings a new id,
// and the id, sent in every advert, says nothing of the key.
func DeriveAuthKey(gossipKey []byte) (uint8, []byte) {
	key := labelled(gossipKey, "garpd vrrp auth_hmac key v1")
	return 1 + labelled(gossipKey, "garpd vrrp auth_hmac key id v2")[0]%255, key
}

// LegacyAuthKeyID is the id garpd 0.1 gave a derived key: its first byte
// (mod 255, plus 1), which put a byte of the key in every advert. Nodes
// accept it beside DeriveAuthKey's, so a cluster upgrades node by node.
func LegacyAuthKeyID(key []byte) uint8 { return 1 + key[0]%255 }

// labelled is HMAC-SHA256 of label under key.
func labelled(key []byte, label string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(label))
	return h.Sum(nil)
}

// Authentication outcomes of a received advert: drop reasons, also the
// metric's label values.
const (
	authMissing    = "auth_missing"
	authMalformed  = "auth_malformed"
	authUnknownKey = "auth_unknown_key"
	authBadHMAC    = "auth_bad_hmac"
	authStale      = "auth_stale"
	authReplay     = "auth_replay"
)

// replayKey is one sender of one virtual router: each keeps its own
// sequence (keepalived has one per instance).
type replayKey struct {
	router routerKey
	src    netip.Addr
}

// auth signs the engine's adverts and checks received ones. The engine's
// goroutine owns it.
type auth struct {
	keys    AuthKeys
	signers map[uint8]*signer
	// legacy: sign with keys.Legacy (Engine.SetLegacyKeyID).
	legacy  bool
	sendSeq uint64
	// marks are the highest accepted sequence per sender, set only after
	// a valid HMAC, so only key holders make entries.
	marks map[replayKey]uint64
}

func newAuth(k AuthKeys) *auth {
	a := &auth{keys: k, signers: map[uint8]*signer{}, marks: map[replayKey]uint64{}}
	for id, key := range k.Keys {
		a.signers[id] = newSigner(key)
	}
	return a
}

// nextSeq is the sequence of the next advert: the clock's, or one more
// than the last if the clock has not moved past it. In time mode a
// sequence stranded ahead of the clock by more than the window (the clock
// was stepped back) restarts from the clock, or receivers would refuse it.
func (a *auth) nextSeq(now time.Time) uint64 {
	clk := sequenceAt(now)
	ahead := int32(uint32(a.sendSeq>>32) - uint32(clk>>32))
	switch {
	case seqAfter(clk, a.sendSeq):
		a.sendSeq = clk
	case a.keys.Window > 0 && time.Duration(ahead)*time.Second > a.keys.Window:
		a.sendSeq = clk
	default:
		a.sendSeq++
	}
	return a.sendSeq
}

// sign returns the trailer for pdu sent from src.
func (a *auth) sign(now time.Time, pdu []byte, v6 bool, src netip.Addr) Trailer {
	t := Trailer{Type: hmacSHA256, KeyID: a.keys.Active, Seq: a.nextSeq(now)}
	if a.legacy && a.keys.Legacy != 0 {
		t.KeyID = a.keys.Legacy
	}
	if s := a.signers[t.KeyID]; s != nil {
		t.MAC = s.mac(pdu, v6, src, t)
	}
	return t
}

// check is "" when an advert may go on, else the drop reason. pdu is the
// received PDU without its trailer; t is the trailer, if it had one.
// Cheap refusals (stale) come before the HMAC, and the replay mark moves
// only after it, never on forged data.
func (a *auth) check(now time.Time, k routerKey, src netip.Addr, pdu []byte, t *Trailer) string {
	if t == nil {
		if a.keys.Mode == AuthEnforce {
			return authMissing
		}
		return ""
	}
	if t.Type != hmacSHA256 || t.Reserved != 0 {
		return authMalformed
	}
	if w := a.keys.Window; w > 0 {
		if skew := now.Unix() - int64(t.Seq>>32); time.Duration(max(skew, -skew))*time.Second > w {
			return authStale
		}
	}
	s := a.signers[t.KeyID]
	if s == nil {
		return authUnknownKey
	}
	if want := s.mac(pdu, k.v6, src, *t); subtle.ConstantTimeCompare(want[:], t.MAC[:]) != 1 {
		return authBadHMAC
	}
	rk := replayKey{router: k, src: src}
	if last, ok := a.marks[rk]; ok {
		// A mark older than the window orders only what the window
		// refuses anyway: forget it, so a sender whose clock was
		// stepped back is heard again.
		expired := a.keys.Window > 0 && time.Duration(max(now.Unix()-int64(last>>32), int64(last>>32)-now.Unix()))*time.Second > a.keys.Window
		if !expired && !seqAfter(t.Seq, last) {
			return authReplay
		}
	}
	a.marks[rk] = t.Seq
	return ""
}
