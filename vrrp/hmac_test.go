package vrrp

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// The draft's appendix images (draft-cassen-vrrp-auth-hmac, as keepalived
// 2.4.3 tests them): key 00..1f as key 1, VRID 51, priority 200, one VIP,
// sequence 0x6800000080000000. IPv4 from 198.51.100.10 for 192.0.2.100
// with a message-only checksum; IPv6 from fe80::10 for fe80::100 with the
// transport checksum to fe80::20, which covers the trailer.
const (
	vectorPDU4 = "3133c80100644402c0000264"
	vectorPDU6 = "3133c8010064a2e9" + "fe800000000000000000000000000100"
	vectorTr   = "010100006800000080000000"
	vectorMAC4 = "1b84bc4e8e43892dc6d98448f8ee2265"
	vectorMAC6 = "c8c56146ebfd66ee10ec4d8186461b78"
)

var (
	vectorKey  = mustHex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
	vectorSrc4 = netip.MustParseAddr("198.51.100.10")
	vectorSrc6 = netip.MustParseAddr("fe80::10")
	vectorDst6 = netip.MustParseAddr("fe80::20")
	vectorV6   = routerKey{v6: true, vrid: 51}
	vectorV4   = routerKey{vrid: 51}
)

// vectorAuth checks with the vector's key and monotonic sequences: the
// vectors' timestamps lie outside any live window.
func vectorAuth() *auth {
	return newAuth(AuthKeys{Keys: map[uint8][]byte{1: vectorKey}, Active: 1, Mode: AuthEnforce})
}

func TestTrailerVectors(t *testing.T) {
	// IPv4: the MAC over the image as it stands.
	img := mustHex(vectorPDU4 + vectorTr + vectorMAC4)
	tr := readTrailer(img[len(img)-TrailerLen:])
	if tr.KeyID != 1 || tr.Seq != 0x6800000080000000 {
		t.Fatalf("IPv4 trailer read as %+v", tr)
	}
	if got := vectorAuth().check(time.Now(), vectorV4, vectorSrc4, img[:len(img)-TrailerLen], &tr); got != "" {
		t.Fatalf("IPv4 vector refused: %s", got)
	}

	// IPv6: through the decoder, whose checksum covers the trailer.
	img = mustHex(vectorPDU6 + vectorTr + vectorMAC6)
	adv, err := Decode(img, vectorSrc6, vectorDst6, true)
	if err != nil {
		t.Fatalf("IPv6 vector: %v", err)
	}
	if !adv.Signed || adv.VRID != 51 || adv.Priority != 200 {
		t.Fatalf("IPv6 vector decoded as %+v", adv)
	}
	pdu := img[:len(img)-TrailerLen]
	if got := vectorAuth().check(time.Now(), vectorV6, vectorSrc6, pdu, &adv.Trailer); got != "" {
		t.Fatalf("IPv6 vector refused: %s", got)
	}
	// Signing the same PDU with the same sequence gives the same MAC.
	s := newSigner(vectorKey)
	if mac := s.mac(pdu, true, vectorSrc6, Trailer{Type: hmacSHA256, KeyID: 1, Seq: 0x6800000080000000}); hex.EncodeToString(mac[:]) != vectorMAC6 {
		t.Fatalf("signing the IPv6 vector gives %x, want %s", mac, vectorMAC6)
	}
}

// One flipped bit of the IPv6 image at a time, as the draft's tests do:
// only the checksum is outside the HMAC.
func TestTrailerTampering(t *testing.T) {
	img := mustHex(vectorPDU6 + vectorTr + vectorMAC6)
	pduLen := len(img) - TrailerLen
	for _, c := range []struct {
		what string
		off  int
		want string
	}{
		{"priority", 2, authBadHMAC},
		{"advert interval", 5, authBadHMAC},
		{"checksum", 6, ""},
		{"VIP", headerLen + 15, authBadHMAC},
		{"trailer type", pduLen, authMalformed},
		{"key id", pduLen + 1, authUnknownKey},
		{"reserved", pduLen + 2, authMalformed},
		{"seconds", pduLen + 4, authBadHMAC},
		{"counter", pduLen + 11, authBadHMAC},
		{"HMAC", pduLen + 12, authBadHMAC},
	} {
		b := bytes.Clone(img)
		b[c.off] ^= 1
		tr := readTrailer(b[pduLen:])
		if got := vectorAuth().check(time.Now(), vectorV6, vectorSrc6, b[:pduLen], &tr); got != c.want {
			t.Errorf("tampered %s: %q, want %q", c.what, got, c.want)
		}
	}
	tr := readTrailer(img[pduLen:])
	if got := vectorAuth().check(time.Now(), vectorV6, netip.MustParseAddr("fe80::20"), img[:pduLen], &tr); got != authBadHMAC {
		t.Errorf("another source address: %q, want the HMAC refused (the pseudo-header binds the source)", got)
	}
	if got := vectorAuth().check(time.Now(), routerKey{vrid: 51}, vectorSrc6, img[:pduLen], &tr); got != authBadHMAC {
		t.Errorf("as IPv4: %q, want the HMAC refused (the pseudo-header binds the family)", got)
	}
}

// Signed adverts round-trip through Encode and Decode in every family and
// version, each destination's copy checks, and a second copy of one is a
// replay.
func TestSignedAdvertRoundTrip(t *testing.T) {
	keys := AuthKeys{Keys: map[uint8][]byte{7: vectorKey}, Active: 7, Mode: AuthEnforce, Window: 5 * time.Second}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		version  int
		src, dst netip.Addr
		vip      string
	}{
		{2, vectorSrc4, GroupV4, "192.0.2.100"},
		{3, vectorSrc4, GroupV4, "192.0.2.100"},
		{3, vectorSrc6, GroupV6, "2001:db8::100"},
	} {
		v6 := c.src.Is6()
		k := routerKey{v6: v6, vrid: 51}
		adv := Advert{Version: c.version, VRID: 51, Priority: 200, Interval: 100, Addresses: []netip.Addr{netip.MustParseAddr(c.vip)}}
		pdu, err := Encode(adv, c.src, c.dst)
		if err != nil {
			t.Fatal(err)
		}
		sender, receiver := newAuth(keys), newAuth(keys)
		adv.Signed, adv.Trailer = true, sender.sign(now, pdu, v6, c.src)
		b, err := Encode(adv, c.src, c.dst)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b, c.src, c.dst, v6)
		if err != nil {
			t.Fatalf("v%d %s: %v", c.version, c.src, err)
		}
		if r := receiver.check(now, k, c.src, b[:len(b)-TrailerLen], &got.Trailer); r != "" || !got.Signed {
			t.Fatalf("v%d %s: %q (signed %v)", c.version, c.src, r, got.Signed)
		}
		if r := receiver.check(now, k, c.src, b[:len(b)-TrailerLen], &got.Trailer); r != authReplay {
			t.Errorf("v%d %s: the same advert again: %q, want a replay", c.version, c.src, r)
		}
		if r := newAuth(keys).check(now.Add(6*time.Second), k, c.src, b[:len(b)-TrailerLen], &got.Trailer); r != authStale {
			t.Errorf("v%d %s: 6 s later, window 5 s: %q, want stale", c.version, c.src, r)
		}
		if r := receiver.check(now, k, c.src, pdu, nil); r != authMissing {
			t.Errorf("v%d %s: unsigned, enforce: %q, want missing", c.version, c.src, r)
		}
	}
}

// The modes of a rolling roll-out: receive-only and permissive accept
// unsigned adverts and check signed ones; only permissive and enforce
// sign.
func TestAuthModes(t *testing.T) {
	for _, c := range []struct {
		mode           AuthMode
		signs, unsigne bool
	}{
		{AuthReceiveOnly, false, true},
		{AuthPermissive, true, true},
		{AuthEnforce, true, false},
	} {
		keys := AuthKeys{Keys: map[uint8][]byte{1: vectorKey}, Active: 1, Mode: c.mode}
		if keys.Signs() != c.signs {
			t.Errorf("%s signs: %v", c.mode, keys.Signs())
		}
		if got := newAuth(keys).check(time.Now(), vectorV4, vectorSrc4, mustHex(vectorPDU4), nil) == ""; got != c.unsigne {
			t.Errorf("%s accepts unsigned adverts: %v", c.mode, got)
		}
		tr := readTrailer(mustHex(vectorTr + strings.Repeat("00", macLen)))
		if got := newAuth(keys).check(time.Now(), vectorV4, vectorSrc4, mustHex(vectorPDU4), &tr); got != authBadHMAC {
			t.Errorf("%s, a bad trailer: %q, want it refused", c.mode, got)
		}
	}
}

// Sequences grow strictly, also within one clock tick; a clock stepped
// back restarts from it in time mode once past the window, and keeps
// growing in monotonic mode.
func TestSendSequence(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, window := range []time.Duration{5 * time.Second, 0} {
		a := newAuth(AuthKeys{Keys: map[uint8][]byte{1: vectorKey}, Active: 1, Mode: AuthEnforce, Window: window})
		first := a.nextSeq(now)
		if second := a.nextSeq(now); second != first+1 {
			t.Fatalf("window %s: same instant gives %x then %x", window, first, second)
		}
		back := a.nextSeq(now.Add(-time.Minute))
		if window > 0 && back != sequenceAt(now.Add(-time.Minute)) {
			t.Errorf("time mode, clock stepped back a minute: %x, want the clock's %x", back, sequenceAt(now.Add(-time.Minute)))
		}
		if window == 0 && !seqAfter(back, first) {
			t.Errorf("monotonic mode, clock stepped back: %x does not follow %x", back, first)
		}
	}
	if s := sequenceAt(time.Unix(0x68000000, 500_000_000)); s != 0x6800000080000000 {
		t.Errorf("sequence at .5 s: %x", s)
	}
}

func TestParseAuthKey(t *testing.T) {
	dir := t.TempDir()
	hexFile := filepath.Join(dir, "hex")
	os.WriteFile(hexFile, []byte("hex:"+hex.EncodeToString(vectorKey)+"\n"), 0o600)
	big := filepath.Join(dir, "big")
	os.WriteFile(big, bytes.Repeat([]byte("k"), keyFileMax+1), 0o600)
	for _, c := range []struct {
		in, err string
	}{
		{"hex:" + hex.EncodeToString(vectorKey), ""},
		{"file:" + hexFile, ""},
		{strings.Repeat("k", 40), ""},
		{"hex:00ff", "2 bytes"},
		{"hex:zz", "not hex"},
		{"hex:", "no digits"},
		{"file:" + filepath.Join(dir, "missing"), "read key"},
		{"file:/dev/zero", "not a regular file"},
		{"file:" + dir, "not a regular file"},
		{"file:" + big, "too large"},
		{"short", "make one with"},
	} {
		_, err := ParseAuthKey(c.in)
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%q: %v, want %q", c.in, err, c.err)
		}
	}
	// As keepalived 2.4.3 reads them: blanks between hex bytes skipped, a
	// byte of one digit where a blank follows it; a file's trailing line
	// ends dropped and nothing else, so surrounding blanks are the key's.
	hexKey := hex.EncodeToString(vectorKey)
	var spaced strings.Builder
	for i := 0; i < len(hexKey); i += 2 {
		spaced.WriteString(hexKey[i:i+2] + " \t")
	}
	blankText := " " + strings.Repeat("k", 32) + " "
	blankFile := filepath.Join(dir, "blank")
	os.WriteFile(blankFile, []byte(blankText+"\r\n\n"), 0o600)
	for in, want := range map[string][]byte{
		"hex:" + spaced.String():          vectorKey,
		"hex:" + strings.Repeat("a ", 32): bytes.Repeat([]byte{0x0a}, 32),
		"file:" + blankFile:               []byte(blankText),
	} {
		got, err := ParseAuthKey(in)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%q: %x, %v; want %x as keepalived reads it", in, got, err, want)
		}
	}
	for advert, want := range map[time.Duration]time.Duration{100 * time.Millisecond: 5 * time.Second, time.Second: 5 * time.Second,
		2500 * time.Millisecond: 6 * time.Second, 3 * time.Second: 9 * time.Second, 255 * time.Second: 300 * time.Second} {
		if got := DefaultAuthWindow(advert); got != want {
			t.Errorf("advert_interval %s: time window %s, keepalived's %s", advert, got, want)
		}
	}
	id1, k1 := DeriveAuthKey([]byte("0123456789abcdef0123456789abcdef"))
	id2, k2 := DeriveAuthKey([]byte("0123456789abcdef0123456789abcdef"))
	_, k3 := DeriveAuthKey([]byte("fedcba9876543210fedcba9876543210"))
	if id1 != id2 || !bytes.Equal(k1, k2) || bytes.Equal(k1, k3) || id1 == 0 || len(k1) != 32 {
		t.Errorf("derived keys: id %d/%d, equal %v, differ %v", id1, id2, bytes.Equal(k1, k2), !bytes.Equal(k1, k3))
	}
}

// Fuzz the trailer's path: any payload decodes or is refused, and a
// decoded one is checked without a panic.
func FuzzAuthCheck(f *testing.F) {
	f.Add(mustHex(vectorPDU6+vectorTr+vectorMAC6), true)
	f.Add(mustHex(vectorPDU4+vectorTr+vectorMAC4), false)
	f.Fuzz(func(t *testing.T, b []byte, v6 bool) {
		src, dst, k := vectorSrc4, GroupV4, vectorV4
		if v6 {
			src, dst, k = vectorSrc6, vectorDst6, vectorV6
		}
		adv, err := Decode(b, src, dst, v6)
		if err != nil {
			return
		}
		a := newAuth(AuthKeys{Keys: map[uint8][]byte{1: vectorKey}, Active: 1, Mode: AuthEnforce, Window: 5 * time.Second})
		var tr *Trailer
		pdu := b
		if adv.Signed {
			tr, pdu = &adv.Trailer, b[:len(b)-TrailerLen]
		}
		a.check(time.Now(), k, src, pdu, tr)
	})
}

// With auth_hmac the members elect as before, and adverts without the
// key move nothing: forged priority-0 adverts from the master's address
// and forged adverts from a member's address at a higher priority are
// refused and counted; a node with another key is not heard.
func TestEngineAuthHMAC(t *testing.T) {
	keys := AuthKeys{Keys: map[uint8][]byte{1: vectorKey}, Active: 1, Mode: AuthEnforce, Window: 5 * time.Second}
	other := AuthKeys{Keys: map[uint8][]byte{1: bytes.Repeat([]byte{7}, 32)}, Active: 1, Mode: AuthEnforce, Window: 5 * time.Second}
	s := newSim(t)
	a := s.start("192.0.2.11", nodeOpts{prio: 200, cfg: v3cfg(), auth: keys})
	b := s.start("192.0.2.12", nodeOpts{prio: 100, cfg: v3cfg(), auth: keys})
	s.run(2 * time.Second)
	if a.eng.routers[routerKey{vrid: 10}].m.State() != Master || b.eng.routers[routerKey{vrid: 10}].m.State() != Backup {
		t.Fatal("with the same key: a is not master over b")
	}
	dropped := func(n *simNode, reason string) float64 {
		return testutil.ToFloat64(n.metrics.Dropped.WithLabelValues("ipv4", reason))
	}
	for _, r := range []string{authMissing, authBadHMAC, authReplay, authStale} {
		if d := dropped(b, r); d != 0 {
			t.Fatalf("b dropped %v adverts of a as %s", d, r)
		}
	}

	forge := func(prio uint8, signWith *AuthKeys) []byte {
		adv := Advert{Version: 3, VRID: 10, Priority: prio, Interval: 10, Addresses: []netip.Addr{testVIP.Addr()}}
		if signWith != nil {
			pdu, _ := Encode(adv, a.port.src, GroupV4)
			adv.Signed, adv.Trailer = true, newAuth(*signWith).sign(s.clk.Now(), pdu, false, a.port.src)
		}
		b, _ := Encode(adv, a.port.src, GroupV4)
		return b
	}
	toMaster := func(n *simNode) float64 {
		return n.metrics.Transitions.WithLabelValues("ipv4", "10", "master").Value()
	}
	bMaster := toMaster(b)
	for range 30 { // forged priority-0 adverts from a's address, each right after a's own
		for i := 0; i < 200 && s.clk.Now().Sub(a.port.last) >= time.Millisecond; i++ {
			s.run(time.Millisecond)
		}
		s.inject(b, Packet{Payload: forge(0, nil), Src: a.port.src, Dst: GroupV4, TTL: 255})
		s.inject(b, Packet{Payload: forge(0, &other), Src: a.port.src, Dst: GroupV4, TTL: 255})
		s.run(90 * time.Millisecond) // past b's skew time (60 ms), before a's next advert
	}
	if n := toMaster(b) - bMaster; n != 0 {
		t.Fatalf("forged priority-0 adverts made b master %v times", n)
	}
	if dropped(b, authMissing) != 30 || dropped(b, authBadHMAC) != 30 {
		t.Fatalf("b counted %v missing and %v bad HMACs, want 30 each", dropped(b, authMissing), dropped(b, authBadHMAC))
	}

	// A captured advert of a, replayed: refused.
	capture := bytes.Clone(a.port.lastPayload)
	s.inject(b, Packet{Payload: capture, Src: a.port.src, Dst: GroupV4, TTL: 255})
	s.inject(b, Packet{Payload: capture, Src: a.port.src, Dst: GroupV4, TTL: 255})
	if dropped(b, authReplay) < 1 {
		t.Fatal("a replayed advert of a was not refused")
	}

	// c has another key: nobody hears it, and it hears nobody.
	c := s.start("192.0.2.13", nodeOpts{prio: 250, cfg: v3cfg(), auth: other})
	s.run(2 * time.Second)
	if a.eng.routers[routerKey{vrid: 10}].m.State() != Master {
		t.Fatal("a node with another key at priority 250 took a's VIP")
	}
	if c.eng.routers[routerKey{vrid: 10}].m.State() != Master || dropped(a, authBadHMAC) == 0 {
		t.Fatal("c, with another key, should hear nobody and be refused by a")
	}
	if c.eng.foreignKeyed.IsZero() || s.clk.Now().Sub(c.eng.foreignKeyed) > time.Second {
		t.Fatalf("c heard adverts for its VIPs under another key, but records it at %v", c.eng.foreignKeyed)
	}
}

// A derived key's id comes from another label than the key: the id sent
// in every advert is not the key's first byte. A node signs with garpd
// 0.1's id while told to, and a receiver that holds the key under both ids
// accepts either, as an old node accepts the old id alone.
func TestDerivedKeyIDs(t *testing.T) {
	leaks := 0
	for i := range 256 {
		id, key := DeriveAuthKey([]byte{byte(i), 1, 2, 3})
		if id == LegacyAuthKeyID(key) {
			leaks++
		}
	}
	if leaks > 8 { // about 1 in 255 by chance
		t.Fatalf("%d of 256 derived ids are the key's first byte", leaks)
	}
	id, key := DeriveAuthKey(bytes.Repeat([]byte{7}, 32))
	legacy := LegacyAuthKeyID(key)
	if id == legacy {
		t.Skip("this key's ids coincide")
	}
	both := AuthKeys{Keys: map[uint8][]byte{id: key, legacy: key}, Active: id, Legacy: legacy, Mode: AuthEnforce, Window: 5 * time.Second}
	old := AuthKeys{Keys: map[uint8][]byte{legacy: key}, Active: legacy, Mode: AuthEnforce, Window: 5 * time.Second}
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	k := routerKey{vrid: 51}
	adv := Advert{Version: 3, VRID: 51, Priority: 200, Interval: 100, Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.100")}}
	pdu, err := Encode(adv, vectorSrc4, GroupV4)
	if err != nil {
		t.Fatal(err)
	}
	sender := newAuth(both)
	for _, c := range []struct {
		legacy  bool
		id      uint8
		oldNode string // what a garpd 0.1 node says of it
	}{{true, legacy, ""}, {false, id, authUnknownKey}} {
		sender.legacy = c.legacy
		tr := sender.sign(now, pdu, false, vectorSrc4)
		if tr.KeyID != c.id {
			t.Fatalf("legacy %v: signed with id %d, want %d", c.legacy, tr.KeyID, c.id)
		}
		if r := newAuth(both).check(now, k, vectorSrc4, pdu, &tr); r != "" {
			t.Errorf("legacy %v: a new node refuses it: %q", c.legacy, r)
		}
		if r := newAuth(old).check(now, k, vectorSrc4, pdu, &tr); r != c.oldNode {
			t.Errorf("legacy %v: an old node says %q, want %q", c.legacy, r, c.oldNode)
		}
	}
}
