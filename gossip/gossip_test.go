package gossip

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	raw := []byte("0123456789abcdef0123456789abcdef")
	binary := bytes.Repeat([]byte{0xff, 0x00}, 16)
	if k, err := LoadKeys(write("raw", binary)); err != nil || len(k) != 1 || !bytes.Equal(k[0], binary) {
		t.Fatalf("raw 32-byte key: %v", err)
	}
	// openssl rand -hex 32, with or without its newline.
	hexKey := hex.EncodeToString(raw)
	for _, text := range []string{hexKey, hexKey + "\n"} {
		if k, err := LoadKeys(write("hex", []byte(text))); err != nil || len(k) != 1 || !bytes.Equal(k[0], raw) {
			t.Fatalf("hex key %q: %v %v", text, k, err)
		}
	}
	// The same base64 text is the same key, whatever its trailing newline.
	b64of24 := base64.StdEncoding.EncodeToString(raw[:24])
	for _, text := range []string{b64of24, b64of24 + "\n"} {
		if k, err := LoadKeys(write("b64-24", []byte(text))); err != nil || len(k) != 1 || !bytes.Equal(k[0], raw[:24]) {
			t.Fatalf("base64 of 24 bytes %q: %v %v", text, k, err)
		}
	}
	if _, err := LoadKeys(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "make one with") {
		t.Fatalf("a missing key file: %v", err)
	}
	b64 := base64.StdEncoding.EncodeToString(raw[:16])
	for _, text := range []string{b64, b64 + "\n", " " + b64 + "\n\n"} {
		if k, err := LoadKeys(write("b64", []byte(text))); err != nil || len(k) != 1 || !bytes.Equal(k[0], raw[:16]) {
			t.Fatalf("base64 16-byte key %q: %v", text, err)
		}
	}
	two := "# rotating\n" + base64.StdEncoding.EncodeToString(raw) + "\n\n" + b64 + "\n"
	if k, err := LoadKeys(write("two", []byte(two))); err != nil || len(k) != 2 || !bytes.Equal(k[0], raw) || !bytes.Equal(k[1], raw[:16]) {
		t.Fatalf("primary and secondary: %v %v", k, err)
	}
	for _, bad := range []string{"short", b64 + "\nshort\n", b64 + "\n" + b64, "\n# nothing\n"} {
		if _, err := LoadKeys(write("bad", []byte(bad))); err == nil || !strings.Contains(err.Error(), "key") {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

// fall failures take a check out, rise passes bring it back; the verdict
// callback fires once per change. The probes' results are fed in directly,
// so the counts do not depend on how fast the machine runs a probe.
// Run probes on the interval: a real exec check follows the file it tests.
func TestSeedListResolves(t *testing.T) {
	seeds, err := SeedList{Join: []string{"192.0.2.1:7946", "dns:localhost:7946"}}.Seeds(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(seeds) < 2 || seeds[0] != "192.0.2.1:7946" || !strings.HasSuffix(seeds[1], ":7946") {
		t.Fatalf("seeds %v: want the static one and localhost's addresses", seeds)
	}
}

type failingSeeds struct{}

func (failingSeeds) Seeds(context.Context) ([]string, error) { return nil, errors.New("API down") }

// Several sources give all their seeds; one that fails hides no other's,
// and only all failing is an error.
func TestDiscoverersUnion(t *testing.T) {
	ctx := context.Background()
	pods := SeedList{Join: []string{"192.0.2.11:7946"}}
	outside := SeedList{Join: []string{"192.0.2.12:7946", "192.0.2.13:7946"}}
	if got, err := (Discoverers{pods, outside}).Seeds(ctx); err != nil || !slices.Equal(got, []string{"192.0.2.11:7946", "192.0.2.12:7946", "192.0.2.13:7946"}) {
		t.Fatalf("seeds %v, %v: want both sources'", got, err)
	}
	if got, err := (Discoverers{failingSeeds{}, outside}).Seeds(ctx); err != nil || len(got) != 2 {
		t.Fatalf("with the API down: %v, %v, want the join list's 2", got, err)
	}
	if _, err := (Discoverers{failingSeeds{}, failingSeeds{}}).Seeds(ctx); err == nil {
		t.Fatal("every source failing is not an error")
	}
}

// An exec check whose pipeline hangs fails at its timeout, and nothing it
// started is left running; its output is capped.
// An exec check whose script cannot run here says why, not "no such
// file": the interpreter it names is missing (a script in the distroless
// image), or the program is.

// gossip.advertise: an address as given; else an address of the VIPs'
// interface or of the interface named, by family; never a VIP.
func TestAdvertisedAddress(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip("no loopback interface:", err)
	}
	vip := map[netip.Addr]bool{netip.MustParseAddr("127.0.0.1"): true}
	for _, c := range []struct {
		adv  string
		skip map[netip.Addr]bool
		want string // or the error's text
	}{
		{"192.0.2.11", nil, "192.0.2.11"},
		{"[2001:db8::11]:7946", nil, "[2001:db8::11]:7946"},
		{"", nil, "127.0.0.1"},
		{"ipv4", nil, "127.0.0.1"},
		{"lo", nil, "127.0.0.1"},
		{"ipv6", nil, "ipv6: lo has no such address"},   // ::1 is no global address
		{"", vip, "no IPv4 address and no global IPv6"}, // the VIP is not advertised
		{"nonexistent0", nil, "not an address, ipv4, ipv6 or an interface"},
	} {
		got, err := advertised(c.adv, lo, c.skip)
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("advertise %q: %q, want %q", c.adv, got, c.want)
		}
	}
	// A bind without a host binds the advertised address.
	r, err := Config{Bind: ":7946"}.Resolve(lo, nil)
	if err != nil || r.Advertise != "127.0.0.1" || r.Bind != "127.0.0.1:7946" {
		t.Errorf("Resolve(bind :7946) = %+v, %v; want advertise 127.0.0.1, bind 127.0.0.1:7946", r, err)
	}
}
