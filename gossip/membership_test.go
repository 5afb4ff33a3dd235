package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// A node that starts with a state_dir from an earlier run knows the members
// saved there, as down until it sees them: a cluster whose nodes all
// restarted at once comes back to the same plan. What it learns is saved.
func TestMembershipStateDir(t *testing.T) {
	dir := t.TempDir()
	saved := KnownSet{}
	saved.Join("a", "d")
	saved.Join("b", "d")
	saved.Join("x", "other") // another config: not in this node's plan
	if err := SaveKnown(dir, saved); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := Start(ctx, Config{Bind: "127.0.0.1:0", Advertise: "127.0.0.1", StateDir: dir, ForgetAfter: time.Hour},
		"c", Meta{Healthy: true, Digest: "d"}, Options{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	var names []string
	for _, k := range m.Known() {
		names = append(names, k.Name)
		if k.Name != "c" && k.DownSince.IsZero() {
			t.Errorf("%s is listed as up before it was seen", k.Name)
		}
	}
	if !slices.Equal(names, []string{"a", "b", "c"}) {
		t.Fatalf("known %v, want a, b and this node c", names)
	}
	if err := m.Forget("c"); err == nil {
		t.Fatal("a node forgot itself")
	}
	if err := m.Forget("a"); err != nil {
		t.Fatal(err)
	}
	got, _, err := LoadKnown(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Names("d"), []string{"b", "c"}) {
		t.Fatalf("saved %v after forgetting a, want b and c", got.Names("d"))
	}
}

// The health checks and the controller update different metadata fields at
// the same time; neither may undo the other's change.
func TestUpdateMetaKeepsConcurrentChanges(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, err := Start(ctx, Config{Bind: "127.0.0.1:0", Advertise: "127.0.0.1"}, "a", Meta{Healthy: true, Digest: "d"}, Options{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const rounds = 200
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range rounds {
			m.UpdateMeta(func(meta *Meta) { meta.Failing = []string{string(rune('a' + i%26))} })
		}
		m.UpdateMeta(func(meta *Meta) { meta.Failing = []string{"last"} })
	}()
	for i := range rounds {
		m.UpdateMeta(func(meta *Meta) { meta.Settled = i%2 == 0 })
	}
	m.UpdateMeta(func(meta *Meta) { meta.Settled = true })
	<-done
	if got := m.Meta(); !got.Settled || !slices.Equal(got.Failing, []string{"last"}) || !got.Healthy {
		t.Fatalf("meta %+v: a concurrent change was lost", got)
	}
}

// Every metadata field reaches the other members when it alone changes:
// the soft checks' standings, then the key id flag.
func TestEveryMetaFieldIsGossiped(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := Start(ctx, Config{Bind: "127.0.0.1:0", Advertise: "127.0.0.1"}, "a", Meta{Healthy: true, Digest: "d"}, Options{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Start(ctx, Config{Bind: "127.0.0.1:0", Advertise: "127.0.0.1"}, "b", Meta{Healthy: true, Digest: "d"},
		Options{Discoverer: SeedList{Join: []string{a.LocalAddr()}}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	seenByB := func(what string, cond func(Meta) bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			for _, m := range b.Members() {
				if m.Name == "a" && cond(m.Meta) {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("b never saw a's %s: %+v", what, b.Members())
			}
		}
	}
	seenByB("join", func(Meta) bool { return true })
	a.UpdateMeta(func(m *Meta) { m.Standing = map[string]int{"*": -40} })
	seenByB("standings", func(m Meta) bool { return m.Standing["*"] == -40 })
	a.UpdateMeta(func(m *Meta) { m.KeyID2 = true })
	seenByB("key id flag", func(m Meta) bool { return m.KeyID2 })
}

// A member whose Node is deleted is forgotten at once when it is down,
// and, when it is still alive (gossip has not noticed its host is gone),
// the moment it goes down rather than after forget_after.
func TestForgetDeleted(t *testing.T) {
	dir := t.TempDir()
	saved := KnownSet{}
	saved.Join("a", "d")
	if err := SaveKnown(dir, saved); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := Start(ctx, Config{Bind: "127.0.0.1:0", Advertise: "127.0.0.1", StateDir: dir, ForgetAfter: time.Hour},
		"c", Meta{Healthy: true, Digest: "d"}, Options{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b, err := Start(ctx, Config{Bind: "127.0.0.1:0", Advertise: "127.0.0.1", ForgetAfter: time.Hour},
		"b", Meta{Healthy: true, Digest: "d"}, Options{Discoverer: SeedList{Join: []string{c.LocalAddr()}}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	known := func() []string {
		var names []string
		for _, k := range c.Known() {
			names = append(names, k.Name)
		}
		return names
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; known %v", what, known())
			}
		}
	}
	waitUntil("b to join", func() bool { return slices.Equal(known(), []string{"a", "b", "c"}) && len(c.Members()) == 2 })
	c.ForgetDeleted("a") // down: at once
	if got := known(); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("known %v after a's Node was deleted, want b and c", got)
	}
	c.ForgetDeleted("b") // alive: not yet
	c.ForgetDeleted("c") // this node: never
	if got := known(); !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("known %v right after b's Node was deleted while b is alive, want b kept until it goes down", got)
	}
	b.Close()
	waitUntil("b to be forgotten when it left", func() bool { return slices.Equal(known(), []string{"c"}) })
}

// Strangers' packets that memberlist refuses (another key, garbage) can
// come thousands a second: each kind of warning is logged once per
// logEvery, with how many were left out, whatever address it names.
func TestMemberlistLogRateLimited(t *testing.T) {
	var buf bytes.Buffer
	w := &memberlistLog{log: zerolog.New(&buf)}
	for i := range 1000 {
		fmt.Fprintf(w, "2026/12/01 12:00:00 [ERR] memberlist: Failed to decrypt packet from=198.51.100.%d:7946: no key\n", i%250)
	}
	fmt.Fprintf(w, "2026/12/01 12:00:00 [WARN] memberlist: Got ping for unexpected node 'x' from=198.51.100.1:7946\n")
	if lines := strings.Count(buf.String(), "\n"); lines != 2 {
		t.Fatalf("1000 refused packets and one other warning logged %d lines, want 2:\n%s", lines, buf.String())
	}
	w.kinds[logKindOf("[ERR] memberlist: Failed to decrypt packet from=")].last = time.Now().Add(-logEvery)
	fmt.Fprintf(w, "2026/12/01 12:00:10 [ERR] memberlist: Failed to decrypt packet from=198.51.100.9:7946: no key\n")
	if !strings.Contains(buf.String(), `"like_it_since_last":999`) {
		t.Fatalf("the next line does not say how many were left out:\n%s", buf.String())
	}
}

// Two nodes under one name (a copied config): the one that started later
// hears it and is told to stay out; the first keeps going.
func TestDuplicateNameResigns(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfg := Config{Bind: "127.0.0.1:0", Advertise: "127.0.0.1", ForgetAfter: time.Hour}
	meta := Meta{Healthy: true, Digest: "d"}
	b, err := Start(ctx, cfg, "b", meta, Options{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	seeds := SeedList{Join: []string{b.LocalAddr()}}
	var mu sync.Mutex
	dup := map[string]string{}
	told := func(who string) func(string) {
		return func(why string) { mu.Lock(); dup[who] = why; mu.Unlock() }
	}
	first, err := Start(ctx, cfg, "a", meta, Options{Discoverer: seeds, Duplicate: told("first")}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	for deadline := time.Now().Add(10 * time.Second); len(b.Members()) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a did not join b")
		}
	}
	second, err := Start(ctx, cfg, "a", meta, Options{Discoverer: seeds, Duplicate: told("second")}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		why, ok := dup["second"]
		_, firstTold := dup["first"]
		mu.Unlock()
		if firstTold {
			t.Fatal("the node that started first was told to stay out")
		}
		if ok {
			if !strings.Contains(why, "duplicate name") {
				t.Fatalf("why: %q", why)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the second node under the name a never heard of the first")
		}
	}
}

// With admit_subnet off, gossip from a source that is neither a member, a
// seed nor in allow_from is dropped before memberlist reads it: a stream
// is closed at once (memberlist would wait out its TCP timeout for the
// 10 MB the header promises) and a packet is counted, while a node in
// allow_from joins.
func TestStrangersAreDroppedUnread(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	meta := Meta{Healthy: true, Digest: "d"}
	off := false
	b, err := Start(ctx, Config{Bind: "127.0.0.2:0", Advertise: "127.0.0.2", ForgetAfter: time.Hour, AllowFrom: []string{"127.0.0.4"}, AdmitSubnet: &off},
		"b", meta, Options{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", b.LocalAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// An encrypted message's header: type 9, then a 10 MB length.
	if _, err := c.Write([]byte{9, 0x00, 0x98, 0x96, 0x80}); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a stranger's stream is still open (read: %v)", err)
	}
	u, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.3")}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(b.LocalAddr())))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if _, err := u.Write([]byte("not gossip")); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); b.Refused() < 2; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("refused %d of a stranger's stream and packet, want 2", b.Refused())
		}
	}

	a, err := Start(ctx, Config{Bind: "127.0.0.4:0", Advertise: "127.0.0.4", ForgetAfter: time.Hour},
		"a", meta, Options{Discoverer: SeedList{Join: []string{b.LocalAddr()}}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for deadline := time.Now().Add(10 * time.Second); len(b.Members()) < 2 || len(a.Members()) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a node in allow_from did not join: b sees %d members, a %d", len(b.Members()), len(a.Members()))
		}
	}
}

// By default a new node on the seed's subnet (loopback's 127.0.0.0/8
// here) joins through it, though the seed lists it nowhere, as
// memberlist clusters grow; one without the cluster's key does not.
func TestSubnetNodesJoinThroughASeed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	key, other := filepath.Join(dir, "key"), filepath.Join(dir, "other")
	if err := errors.Join(os.WriteFile(key, bytes.Repeat([]byte{7}, 32), 0o600), os.WriteFile(other, bytes.Repeat([]byte{8}, 32), 0o600)); err != nil {
		t.Fatal(err)
	}
	meta := Meta{Healthy: true, Digest: "d"}
	start := func(name, ip, keyFile string, seeds ...string) *Membership {
		t.Helper()
		m, err := Start(ctx, Config{Bind: ip + ":0", Advertise: ip, ForgetAfter: time.Hour, SecretKeyFile: keyFile},
			name, meta, Options{Discoverer: SeedList{Join: seeds}}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	seed := start("seed", "127.0.0.2", key)
	if seed.subnet != netip.MustParsePrefix("127.0.0.0/8") {
		t.Fatalf("the seed admits %v, want loopback's 127.0.0.0/8", seed.subnet)
	}
	joiner := start("joiner", "127.0.0.3", key, seed.LocalAddr())
	for deadline := time.Now().Add(10 * time.Second); len(seed.Members()) < 2 || len(joiner.Members()) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a node on the seed's subnet did not join through it: the seed sees %d members, the joiner %d", len(seed.Members()), len(joiner.Members()))
		}
	}
	if seed.Refused() != 0 {
		t.Errorf("the seed refused %d packets or streams from the joiner", seed.Refused())
	}
	outsider := start("outsider", "127.0.0.5", other, seed.LocalAddr())
	time.Sleep(time.Second)
	if n := len(outsider.Members()); n != 1 || len(seed.Members()) != 2 {
		t.Fatalf("a node without the cluster's key joined: it sees %d members, the seed %d", n, len(seed.Members()))
	}
}

// subnetOf finds the address's own interface prefix, masked.
func TestSubnetOf(t *testing.T) {
	addrs := []net.Addr{
		&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
		&net.IPNet{IP: net.ParseIP("192.0.2.12"), Mask: net.CIDRMask(24, 32)},
		&net.IPNet{IP: net.ParseIP("2001:db8::12"), Mask: net.CIDRMask(64, 128)},
	}
	for a, want := range map[string]string{"192.0.2.12": "192.0.2.0/24", "2001:db8::12": "2001:db8::/64", "::ffff:192.0.2.12": "192.0.2.0/24", "198.51.100.1": ""} {
		p, ok := subnetOf(netip.MustParseAddr(a), addrs)
		if got := p.String(); !ok && want != "" || ok && got != want {
			t.Errorf("subnetOf(%s) = %v %v, want %q", a, p, ok, want)
		}
	}
}

// A key rotates in three steps on live members without a partition: the
// members never lose each other, and at the end a node with only the old
// key is refused while one with the new key joins.
func TestKeyRotationKeepsMembers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	keyFile := func(name string, k []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, k, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	old, fresh := keyFile("old", k1), keyFile("new", k2)
	meta := Meta{Healthy: true, Digest: "d"}
	start := func(name, key string, seeds ...string) *Membership {
		t.Helper()
		m, err := Start(ctx, Config{Bind: "127.0.0.1:0", Advertise: "127.0.0.1", ForgetAfter: time.Hour, SecretKeyFile: key},
			name, meta, Options{Discoverer: SeedList{Join: seeds}, ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond,
				GossipInterval: 20 * time.Millisecond, PushPullInterval: 200 * time.Millisecond}, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	a := start("a", old)
	b := start("b", old, a.LocalAddr())
	waitMembers := func(what string, want int, ms ...*Membership) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			ok := true
			for _, m := range ms {
				ok = ok && len(m.Members()) == want
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: members %d and %d, want %d", what, len(ms[0].Members()), len(ms[1].Members()), want)
			}
		}
	}
	waitMembers("before", 2, a, b)
	for i, step := range [][][]byte{{k1, k2}, {k2, k1}, {k2}} {
		for _, m := range []*Membership{a, b} {
			if err := m.SetKeys(step); err != nil {
				t.Fatal(err)
			}
			// Each node's change gossips under the keys it holds now.
			time.Sleep(time.Second)
			if n := len(a.Members()) + len(b.Members()); n != 4 {
				t.Fatalf("step %d: the members lost each other (%d and %d)", i+1, len(a.Members()), len(b.Members()))
			}
		}
	}
	c := start("c", fresh, a.LocalAddr())
	waitMembers("a node with the new key", 3, a, c)
	stale := start("stale", old, a.LocalAddr())
	time.Sleep(time.Second)
	if n := len(stale.Members()); n != 1 {
		t.Fatalf("a node with the old key joined (%d members)", n)
	}
}

// An admitted source cannot make memberlist buffer without bound: at most
// maxStreams streams are open at once (more are closed unread), and each
// is read up to maxStreamBytes, whatever its header announces.
func TestStreamsAreBounded(t *testing.T) {
	f := &sourceFilter{open: make(chan struct{}, maxStreams), strangers: make(chan struct{}, maxStrangerStreams)}
	var conns []net.Conn
	for i := range maxStreams + 1 {
		local, remote := net.Pipe()
		t.Cleanup(func() { local.Close(); remote.Close() })
		c, ok := f.bound(local, admitted)
		if i < maxStreams {
			if !ok {
				t.Fatalf("stream %d of %d refused", i+1, maxStreams)
			}
			conns = append(conns, c)
			continue
		}
		if ok {
			t.Fatalf("stream %d admitted with %d open", i+1, maxStreams)
		}
		remote.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := remote.Read(make([]byte, 1)); err == nil {
			t.Fatal("the refused stream was not closed")
		}
	}
	if f.busyClosed() != 1 {
		t.Fatalf("busy %d, want 1", f.busyClosed())
	}
	// The subnet's strangers have slots of their own: members' full does
	// not shut them out, and they never take more than theirs.
	for i := range maxStrangerStreams + 1 {
		local, remote := net.Pipe()
		t.Cleanup(func() { local.Close(); remote.Close() })
		if _, ok := f.bound(local, stranger); ok != (i < maxStrangerStreams) {
			t.Fatalf("stranger stream %d: admitted %v with %d stranger slots", i+1, ok, maxStrangerStreams)
		}
	}
	if f.busyClosed() != 2 {
		t.Fatalf("busy %d, want 2", f.busyClosed())
	}
	conns[0].Close()
	local, remote := net.Pipe()
	defer remote.Close()
	c, ok := f.bound(local, admitted)
	if !ok {
		t.Fatal("a stream was refused after one closed")
	}
	go func() {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := remote.Write(chunk); err != nil {
				return
			}
		}
	}()
	n, err := io.Copy(io.Discard, c)
	if n != maxStreamBytes || !errors.Is(err, errStreamTooLong) {
		t.Fatalf("read %d bytes (%v) of an endless stream, want %d and the cap's error", n, err, maxStreamBytes)
	}
	c.Close()
}

// A forget reaches the other members as a broadcast, with push-pull as
// good as off (an hour), and each receiver passes it on.
func TestForgetTravelsAsABroadcast(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := Options{ProbeInterval: 200 * time.Millisecond, ProbeTimeout: 100 * time.Millisecond, GossipInterval: 50 * time.Millisecond,
		SuspicionMult: 2, PushPullInterval: time.Hour}
	var ms []*Membership
	for i := range 4 {
		o := opts
		if i > 0 {
			o.Discoverer = SeedList{Join: []string{ms[0].LocalAddr()}}
		}
		m, err := Start(ctx, Config{Bind: "127.0.0.1:0", Advertise: "127.0.0.1", ForgetAfter: time.Hour}, fmt.Sprintf("m%d", i), Meta{Healthy: true, Digest: "d"}, o, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	defer func() {
		for _, m := range ms[:3] {
			m.Close()
		}
	}()
	waitKnown := func(what string, live, known int, of ...*Membership) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			ok := true
			for _, m := range of {
				ok = ok && len(m.Members()) == live && len(m.Known()) == known
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 15 s", what)
			}
		}
	}
	waitKnown("4 members", 4, 4, ms...)
	if err := ms[3].Crash(); err != nil {
		t.Fatal(err)
	}
	waitKnown("m3 down everywhere", 3, 4, ms[:3]...)
	if err := ms[1].Forget("m3"); err != nil {
		t.Fatal(err)
	}
	waitKnown("the forget everywhere", 3, 3, ms[:3]...)
}
