// Command demo shows garpd's main job on the built-in lab, in about 30
// seconds: three nodes in the dynamic mode (gossip, no priorities in the
// config) spread six VIPs 2/2/2 over the router's ARP table; one node is
// killed and its VIPs go to the two survivors; it comes back and takes only
// its own VIPs back after settle; a poisoned router entry is repaired by the
// next rolling refresh. With -static it walks through the static mode
// (hand-set priorities) instead.
//
// It needs root (network namespaces) and removes every namespace and
// process it made on every exit path, Ctrl-C included.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/garpd/garpd/test/lab"
)

func main() {
	static := flag.Bool("static", false, "walk through the static mode (hand-set priorities) instead")
	victim := flag.String("kill", "n1", "the node to kill and bring back (n1, n2 or n3)")
	flag.Parse()
	demo := runDynamic
	if *static {
		demo = runStatic
	}
	if err := setUp(func(ctx context.Context, s *session) error { return demo(ctx, s, *victim) }); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

func step(format string, a ...any) { fmt.Printf("\n==> "+format+"\n", a...) }
func say(format string, a ...any)  { fmt.Printf("    "+format+"\n", a...) }

// session is what both walk-throughs share: the lab, the garpd binary and
// a directory for configs.
type session struct {
	lab *lab.Lab
	bin string
	dir string
}

// setUp builds garpd, creates a 3-node lab and runs demo in it. The lab,
// its namespaces and processes go on every way out: an error, a panic,
// Ctrl-C or SIGTERM.
func setUp(demo func(context.Context, *session) error) error {
	if err := lab.Available(); err != nil {
		return fmt.Errorf("%w; run it as: sudo make demo", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "garpd-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	step("building garpd")
	bin, err := lab.BuildGarpd(dir)
	if err != nil {
		return err
	}
	step("creating the lab: a router namespace with a bridge (arp_accept=1), nodes n1, n2, n3 on it")
	l, err := lab.New(3, dir)
	if err != nil {
		return err
	}
	defer func() {
		step("cleaning up: stopping garpd, deleting the lab's namespaces")
		if err := l.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "cleanup: %v\n", err)
		}
	}()
	for _, n := range l.Nodes {
		say("%s  %s  %s", n.Name, n.MAC, n.IPv4)
	}
	err = demo(ctx, &session{lab: l, bin: bin, dir: dir})
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	return err
}

var vips6 = func() []netip.Addr {
	var out []netip.Addr
	for i := 101; i <= 106; i++ {
		out = append(out, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
	}
	return out
}()

const settle = 3 * time.Second

// dynamicConfig is one node's whole config: no priorities, so gossip and
// the balancer set them.
func dynamicConfig(l *lab.Lab, node, keyFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node: %s\ninterface: eth0\nvips:\n", node)
	for _, v := range vips6 {
		fmt.Fprintf(&b, "  - %s\n", v)
	}
	var seeds []string
	for _, n := range l.Nodes {
		if n.Name != node {
			seeds = append(seeds, n.IPv4.String()+":7946")
		}
	}
	fmt.Fprintf(&b, "vrrp:\n  advert_interval: 100ms\ngarp:\n  refresh: 5s\ngossip:\n  settle: %s\n  secret_key_file: %s\n  join: [%s]\n",
		settle, keyFile, strings.Join(seeds, ", "))
	return b.String()
}

func runDynamic(ctx context.Context, s *session, victimName string) error {
	l := s.lab
	victim := l.Node(victimName)
	if victim == nil {
		return fmt.Errorf("-kill %q: no such node; use n1, n2 or n3", victimName)
	}
	keyFile := filepath.Join(s.dir, "gossip.key")
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		return err
	}
	watch, err := l.CountMoves(ctx)
	if err != nil {
		return err
	}

	step("1. starting garpd on every node: dynamic mode, 6 VIPs, no priorities in the config")
	say("the nodes gossip (encrypted), every node computes the same balanced ranking and sets its VRRP priorities from it")
	start := time.Now()
	procs := map[string]*lab.Proc{}
	for _, n := range l.Nodes {
		p, err := n.StartGarpd(s.bin, dynamicConfig(l, n.Name, keyFile))
		if err != nil {
			return err
		}
		procs[n.Name] = p
	}
	table, err := waitFor(ctx, l, vips6, 30*time.Second, "2/2/2", func(c map[string]int, _ map[netip.Addr]string) bool {
		return c["n1"] == 2 && c["n2"] == 2 && c["n3"] == 2
	})
	if err != nil {
		return err
	}
	say("the router's table is 2/2/2 after %s:", since(start))
	printTable(l, vips6, table)

	// 2. SIGKILL the victim.
	var victimVIPs []netip.Addr
	for _, v := range vips6 {
		if table[v] == victim.MAC.String() {
			victimVIPs = append(victimVIPs, v)
		}
	}
	step("2. killing %s (SIGKILL), the owner of %s", victim.Name, joinAddrs(victimVIPs))
	watch.Reset()
	start = time.Now()
	if err := procs[victim.Name].Signal(syscall.SIGKILL); err != nil {
		return err
	}
	table, err = waitFor(ctx, l, vips6, 10*time.Second, "3/3", func(c map[string]int, _ map[netip.Addr]string) bool {
		return c[victim.Name] == 0
	})
	if err != nil {
		return err
	}
	say("VRRP moved %s's VIPs in %s (master-down interval at 100 ms adverts: about 0.35 s):", victim.Name, since(start))
	printTable(l, vips6, table)
	say("watching 5 s more: gossip notices the death, and nothing is re-ranked...")
	if err := sleep(ctx, 5*time.Second); err != nil {
		return err
	}
	say("VIPs that moved since the kill: %s", summary(watch))

	step("3. restarting %s: it settles for %s, then takes back its own VIPs", victim.Name, settle)
	watch.Reset()
	start = time.Now()
	p, err := victim.StartGarpd(s.bin, dynamicConfig(l, victim.Name, keyFile))
	if err != nil {
		return err
	}
	procs[victim.Name] = p
	table, err = waitFor(ctx, l, vips6, 30*time.Second, "2/2/2", func(c map[string]int, _ map[netip.Addr]string) bool {
		return c["n1"] == 2 && c["n2"] == 2 && c["n3"] == 2
	})
	if err != nil {
		return err
	}
	say("2/2/2 again %s after the restart:", since(start))
	printTable(l, vips6, table)
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	say("VIPs that moved since the restart: %s", summary(watch))

	poisoned := vips6[0]
	owner := l.NodeByMAC(table[poisoned])
	wrong := l.Nodes[0]
	if wrong == owner {
		wrong = l.Nodes[1]
	}
	step("4. overwriting the router's entry for %s with %s's MAC (a stale entry, a missed GARP)", poisoned, wrong.Name)
	if err := l.SetNeighbour(poisoned, wrong.MAC.String()); err != nil {
		return err
	}
	start = time.Now()
	say("the router now sends %s's traffic to %s; %s re-announces it once per refresh (5 s), at its own phase", poisoned, wrong.Name, owner.Name)
	if _, err := waitFor(ctx, l, vips6, 15*time.Second, "the repair", func(_ map[string]int, t map[netip.Addr]string) bool {
		return t[poisoned] == owner.MAC.String()
	}); err != nil {
		return err
	}
	say("repaired by %s's rolling refresh %s after the poisoning", owner.Name, since(start))

	step("5. done: garpd balanced 6 VIPs over 3 nodes, failed over in well under a second, moved back only what it had to, and kept the router's table right")
	return nil
}

// waitFor polls the router's table until ok holds for the lab nodes' counts
// and the table, or timeout passes.
func waitFor(ctx context.Context, l *lab.Lab, vips []netip.Addr, timeout time.Duration, what string,
	ok func(counts map[string]int, table map[netip.Addr]string) bool) (map[netip.Addr]string, error) {
	deadline := time.Now().Add(timeout)
	var counts map[string]int
	for {
		table, err := l.Neighbours()
		if err != nil {
			return nil, err
		}
		counts = map[string]int{}
		for _, v := range vips {
			if n := l.NodeByMAC(table[v]); n != nil {
				counts[n.Name]++
			}
		}
		if ok(counts, table) {
			return table, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the router's table did not reach %s within %s (now %v)", what, timeout, counts)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func since(t time.Time) string { return time.Since(t).Round(10 * time.Millisecond).String() }

func printTable(l *lab.Lab, vips []netip.Addr, table map[netip.Addr]string) {
	say("  VIP            MAC                NODE")
	for _, v := range vips {
		node := "-"
		if n := l.NodeByMAC(table[v]); n != nil {
			node = n.Name
		}
		say("  %-14s %-18s %s", v, table[v], node)
	}
}

// summary says which VIPs moved, and how often.
func summary(c *lab.MoveCounter) string {
	moves := c.Snapshot()
	var parts []string
	for _, v := range vips6 {
		if n := moves[v]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s (%d×)", v, n))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return fmt.Sprintf("%d: %s", len(parts), strings.Join(parts, ", "))
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	slices.Sort(s)
	return strings.Join(s, ", ")
}
