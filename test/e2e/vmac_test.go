package e2e

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// The virtual MACs of IPv4 VRID 10 and IPv6 VRID 11 (RFC 5798 §7.3), spelt out rather than
// computed, so a wrong formula in garpd cannot pass its own test.
const (
	vmac4 = "00:00:5e:00:01:0a"
	vmac6 = "00:00:5e:00:02:0b"
)

var (
	vmacVIP4 = netip.MustParseAddr("192.0.2.101")
	vmacVIP6 = netip.MustParseAddr("2001:db8::101")
)

// vmacConfig is a static config for one IPv4 VIP (VRID 10) and one IPv6
// VIP (VRID 11) at prio, with use_vmac and the given vrrp extras.
func vmacConfig(node string, prio int, extra string) string {
	c := staticConfig(node, []netip.Addr{vmacVIP4, vmacVIP6}, []int{prio, prio}, cfgOpts{})
	return insertAfter(c, "  vrid_base: 10\n", "  use_vmac: true\n"+extra)
}

// vmacLinks returns the node's virtual MAC interfaces.
func vmacLinks(t *testing.T, n *lab.Node) []string {
	t.Helper()
	links, err := n.Links()
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(links, func(s string) bool { return !strings.HasPrefix(s, "vrrp") })
}

// waitSwitchPort waits until the lab's bridge has learnt every MAC on
// want's port, and returns how long that took from since.
func waitSwitchPort(t *testing.T, l *lab.Lab, want *lab.Node, since time.Time, macs ...string) time.Duration {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("the switch to learn %v on %s's port", macs, want.Name), func() (bool, string) {
		for _, mac := range macs {
			n, err := l.BridgePort(mac)
			if err != nil {
				return false, err.Error()
			}
			if n != want {
				name := "no port"
				if n != nil {
					name = n.Name
				}
				return false, mac + " on " + name
			}
		}
		return true, ""
	})
	return time.Since(since)
}

// routerReaches checks from the router that the VIP answers from its
// virtual MAC, and only from it. IPv4: arping's first request is broadcast
// (a base interface that answered for the VIP would show up here), its
// second is unicast to the MAC learnt, which the switch delivers to the
// port it learnt that MAC on. IPv6 (no neighbour solicitation tool in the
// lab): the router forgets its entry, sends the VIP a datagram, and must
// learn the virtual MAC again.
func routerReaches(t *testing.T, l *lab.Lab, vip netip.Addr, mac string) {
	t.Helper()
	if vip.Is6() {
		if _, err := lab.Exec(l.Router, "ip", "neigh", "flush", "to", vip.String()); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the router to resolve "+vip.String(), func() (bool, string) {
			lab.Exec(l.Router, "bash", "-c", "echo x >/dev/udp/"+vip.String()+"/9")
			got, err := l.Neighbours()
			if err != nil {
				return false, err.Error()
			}
			return got[vip] == mac, "router has " + got[vip]
		})
		return
	}
	waitFor(t, 10*time.Second, "the router to reach "+vip.String()+" at "+mac, func() (bool, string) {
		out, _ := lab.Exec(l.Router, "arping", "-c", "2", "-w", "3", "-I", "br0", vip.String())
		replies := 0
		for _, line := range strings.Split(out, "\n") {
			if !strings.Contains(line, "reply from") {
				continue
			}
			if !strings.Contains(strings.ToLower(line), mac) {
				t.Fatalf("%s answered ARP from another MAC than %s:\n%s", vip, mac, out)
			}
			replies++
		}
		return replies == 2, tail(out, 3)
	})
}

// checkVMACHolder checks what an operator would on the master and the
// backups: the VIPs on the master's virtual MAC interfaces and not on
// eth0, no virtual MAC interface on a live backup, the router's table on
// the virtual MACs, and the router answered from them even after it
// forgot the entries (the base interface must not answer for a VIP).
func checkVMACHolder(t *testing.T, l *lab.Lab, master *lab.Node, backups ...*lab.Node) {
	t.Helper()
	waitFor(t, 10*time.Second, master.Name+" to hold the VIPs on its virtual MACs", func() (bool, string) {
		a4, _ := master.AddressesOn("vrrp.10")
		a6, _ := master.AddressesOn("vrrp6.11")
		return slices.Contains(a4, vmacVIP4) && slices.Contains(a6, vmacVIP6), fmt.Sprint(a4, a6)
	})
	if master.HasAddress(vmacVIP4) || master.HasAddress(vmacVIP6) {
		t.Errorf("%s holds a VIP on eth0 as well as on its virtual MAC", master.Name)
	}
	for _, b := range backups {
		waitFor(t, 10*time.Second, b.Name+" to have no virtual MAC interface", func() (bool, string) {
			links := vmacLinks(t, b)
			return len(links) == 0, fmt.Sprint(links)
		})
	}
	routerReaches(t, l, vmacVIP4, vmac4)
	routerReaches(t, l, vmacVIP6, vmac6)
	waitNeigh(t, l, 10*time.Second, map[netip.Addr]string{vmacVIP4: vmac4, vmacVIP6: vmac6})
}

// die is a node's sudden death: its agent is killed and its link goes
// down with it, so whatever the agent left (the virtual MAC interfaces
// and their VIPs) is as silent as on a powered-off node.
func die(t *testing.T, n *lab.Node, p *lab.Proc) {
	t.Helper()
	p.Signal(syscall.SIGKILL)
	if err := n.LinkDown(); err != nil {
		t.Fatal(err)
	}
	p.Wait(3 * time.Second)
}

// reboot brings a dead node back: its interfaces lose what the agent
// added, and its link comes up.
func reboot(t *testing.T, n *lab.Node) {
	t.Helper()
	for _, name := range vmacLinks(t, n) {
		if _, err := lab.Exec(n.NS, "ip", "link", "del", name); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.LinkUp(); err != nil {
		t.Fatal(err)
	}
}

// advertSources captures a few adverts on the router's bridge and returns
// their Ethernet source addresses.
func advertSources(t *testing.T, l *lab.Lab) []string {
	t.Helper()
	out, err := lab.Exec(l.Router, "timeout", "5", "tcpdump", "-i", "br0", "-n", "-e", "-c", "6", "ip proto 112 or ip6 proto 112")
	if err != nil && !strings.Contains(out, "packets captured") {
		t.Fatalf("capture adverts: %v", err)
	}
	var srcs []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 2 && strings.Contains(line, "VRRP") {
			srcs = append(srcs, f[1])
		}
	}
	if len(srcs) == 0 {
		t.Fatalf("no adverts captured:\n%s", out)
	}
	return srcs
}

// Done-when 3 of issue 13: with use_vmac the router's entry for each VIP
// keeps the virtual MAC through every failover, and the switch moves the
// virtual MAC to the new master's port. Each node in turn becomes master
// (n1 killed, then n2), and the first preempts again on its return.
func TestVirtualMACFailover(t *testing.T) {
	cases := []struct {
		name     string
		extra    string
		xmitBase bool
	}{
		{name: "adverts-from-virtual-mac"},
		{name: "vmac_xmit_base", extra: "  vmac_xmit_base: true\n", xmitBase: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, 3)
			n1, n2, n3 := l.Node("n1"), l.Node("n2"), l.Node("n3")
			prio := map[string]int{"n1": 200, "n2": 150, "n3": 100}
			procs := map[string]*lab.Proc{}
			start := func(n *lab.Node) {
				p, err := n.StartGarpd(garpdBin, vmacConfig(n.Name, prio[n.Name], tc.extra))
				if err != nil {
					t.Fatal(err)
				}
				procs[n.Name] = p
			}
			for _, n := range l.Nodes {
				start(n)
			}
			waitSwitchPort(t, l, n1, time.Now(), vmac4, vmac6)
			checkVMACHolder(t, l, n1, n2, n3)

			wantSrc := map[string]bool{vmac4: true, vmac6: true}
			if tc.xmitBase {
				wantSrc = map[string]bool{n1.MAC.String(): true}
			}
			for _, src := range advertSources(t, l) {
				if !wantSrc[src] {
					t.Errorf("an advert left from %s; want only %v", src, wantSrc)
				}
			}

			events := watch(t, l)
			for _, step := range []struct{ victim, next *lab.Node }{{n1, n2}, {n2, n3}} {
				t0 := time.Now()
				die(t, step.victim, procs[step.victim.Name])
				took := waitSwitchPort(t, l, step.next, t0, vmac4, vmac6)
				t.Logf("%s killed: the switch learnt the virtual MACs on %s's port after %s", step.victim.Name, step.next.Name, took.Round(time.Millisecond))
				procs[step.victim.Name].Wait(3 * time.Second)
				routerReaches(t, l, vmacVIP4, vmac4)
				routerReaches(t, l, vmacVIP6, vmac6)
			}
			reboot(t, n1)
			start(n1)
			took := waitSwitchPort(t, l, n1, time.Now(), vmac4, vmac6)
			t.Logf("n1 back at 200: the switch learnt the virtual MACs on its port after %s", took.Round(time.Millisecond))
			reboot(t, n2)
			start(n2)
			checkVMACHolder(t, l, n1, n2, n3)

			// An agent killed on a live node leaves its virtual MACs; the
			// next one removes them before it starts.
			procs["n1"].Signal(syscall.SIGKILL)
			procs["n1"].Wait(3 * time.Second)
			start(n1)
			waitFor(t, 10*time.Second, "n1's agent to remove what the killed one left", func() (bool, string) {
				b, _ := os.ReadFile(procs["n1"].Log)
				return strings.Contains(string(b), "left by an earlier run"), ""
			})
			waitSwitchPort(t, l, n1, time.Now(), vmac4, vmac6)
			checkVMACHolder(t, l, n1, n2, n3)

			// The arping -A replacement finds the VIPs on the virtual MACs
			// and announces them from there.
			out, err := lab.Exec(n1.NS, garpdBin, "announce", "-c", n1.GarpdConfigPath(), "--count", "1", "--interval", "10ms")
			if err != nil || !strings.Contains(out, vmacVIP4.String()+": gratuitous ARP 1/1 sent on vrrp.10") ||
				!strings.Contains(out, vmacVIP6.String()+": unsolicited NA 1/1 sent on vrrp6.11") {
				t.Errorf("garpd announce on the master: %v\n%s", err, out)
			}

			// Through every failover the router's entries kept the
			// virtual MACs: no neighbour event named another MAC.
			drainDeadline := time.After(200 * time.Millisecond)
		collect:
			for {
				select {
				case ev := <-events:
					if (ev.Addr == vmacVIP4 && ev.MAC != vmac4) || (ev.Addr == vmacVIP6 && ev.MAC != vmac6) {
						t.Errorf("the router's entry for %s changed to %s", ev.Addr, ev.MAC)
					}
				case <-drainDeadline:
					break collect
				}
			}
			for _, n := range l.Nodes {
				procs[n.Name].Stop()
				if links := vmacLinks(t, n); len(links) > 0 {
					t.Errorf("%s: virtual MAC interfaces left after garpd stopped: %v", n.Name, links)
				}
			}
			// n3 was never killed: its clean stop put back the base
			// interface's ARP settings. (A killed agent cannot; they stay
			// set, harmless without VIPs, as keepalived always leaves them.)
			for _, key := range []string{"arp_ignore", "arp_filter", "arp_announce"} {
				out, _ := lab.Exec(n3.NS, "sysctl", "-n", "net.ipv4.conf.eth0."+key)
				if strings.TrimSpace(out) != "0" {
					t.Errorf("n3: net.ipv4.conf.eth0.%s is %s after garpd stopped; want it restored to 0", key, strings.TrimSpace(out))
				}
			}
		})
	}
}

// Issue 13: keepalived with use_vmac and garpd with use_vmac are one
// virtual router, whichever is master: the router's entry stays on the
// virtual MAC and the switch follows the master.
func TestVirtualMACKeepalivedInterop(t *testing.T) {
	needKeepalived(t)
	l := newLab(t, 2)
	g, k := l.Node("n1"), l.Node("n2")
	garpdCfg := insertAfter(staticConfig("n1", []netip.Addr{vmacVIP4}, []int{200}, cfgOpts{}), "  vrid_base: 10\n", "  use_vmac: true\n")
	conf := lab.KeepalivedConfig("n2", 3, lab.KeepalivedInstance{Name: "VI_1", Interface: "eth0", VRID: 10, Priority: 150,
		Advert: "0.1", VIPs: []string{vmacVIP4.String() + "/32"}})
	conf = strings.Replace(conf, "  virtual_ipaddress {", "  use_vmac\n  virtual_ipaddress {", 1)
	ka, err := k.StartKeepalived("n2-keepalived", conf)
	if err != nil {
		t.Fatal(err)
	}
	gp, err := g.StartGarpd(garpdBin, garpdCfg)
	if err != nil {
		t.Fatal(err)
	}
	events := watch(t, l)
	t0 := time.Now()
	waitSwitchPort(t, l, g, t0, vmac4)
	routerReaches(t, l, vmacVIP4, vmac4)
	waitNeigh(t, l, 10*time.Second, map[netip.Addr]string{vmacVIP4: vmac4})
	if a, _ := k.AddressesOn("vrrp.10"); slices.Contains(a, vmacVIP4) {
		t.Fatalf("keepalived (150) holds the VIP beside garpd (200)")
	}
	t.Logf("garpd master, keepalived backup: the switch has the virtual MAC on n1's port after %s", time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	die(t, g, gp)
	took := waitSwitchPort(t, l, k, t0, vmac4)
	t.Logf("n1 died: keepalived's announcement moved the virtual MAC to n2's port after %s", took.Round(time.Millisecond))
	routerReaches(t, l, vmacVIP4, vmac4)

	reboot(t, g)
	t0 = time.Now()
	if gp, err = g.StartGarpd(garpdBin, garpdCfg); err != nil {
		t.Fatal(err)
	}
	took = waitSwitchPort(t, l, g, t0, vmac4)
	t.Logf("garpd back at 200: it preempted keepalived, the virtual MAC is on n1's port after %s", took.Round(time.Millisecond))
	waitFor(t, 10*time.Second, "keepalived to release the VIP", func() (bool, string) {
		a, _ := k.AddressesOn("vrrp.10")
		return !slices.Contains(a, vmacVIP4), fmt.Sprint(a)
	})
	routerReaches(t, l, vmacVIP4, vmac4)

	ka.Signal(syscall.SIGTERM)
	ka.Wait(5 * time.Second)
	gp.Stop()
	for {
		select {
		case ev := <-events:
			if ev.Addr == vmacVIP4 && ev.MAC != vmac4 {
				t.Errorf("the router's entry for %s changed to %s", ev.Addr, ev.MAC)
			}
			continue
		default:
		}
		break
	}
	if bad := keepalivedComplaints.FindAllString(ka.Output(), -1); len(bad) > 0 {
		t.Errorf("keepalived complained about garpd's packets (%v):\n%s", bad, tail(ka.Output(), 40))
	}
	if out := ka.Output(); !strings.Contains(out, "Entering MASTER STATE") || !strings.Contains(out, "Entering BACKUP STATE") {
		t.Errorf("keepalived never logged both MASTER and BACKUP states:\n%s", tail(out, 40))
	}
}

// Issue 13, import on the lab: a 2-node unicast keepalived cluster with
// use_vmac, vmac_xmit_base and PASS authentication is stopped and replaced
// by garpd nodes running what garpd import keepalived makes of its files.
// The switch learns the virtual MAC on the port keepalived's master had,
// the router's entry is the virtual MAC, and the adverts leave from the
// master's own MAC.
func TestImportedVMACClusterKeepsItsMaster(t *testing.T) {
	needKeepalived(t)
	l := newLab(t, 2)
	n1, n2 := l.Node("n1"), l.Node("n2")
	files := map[*lab.Node]string{}
	var kas []*lab.Proc
	for _, n := range []*lab.Node{n1, n2} {
		peer, prio := n2, 100
		if n == n2 {
			peer, prio = n1, 150
		}
		conf := lab.KeepalivedConfig(n.Name, 2, lab.KeepalivedInstance{Name: "VIP_EDGE", Interface: "eth0", VRID: 10, Priority: prio,
			Advert: "1", VIPs: []string{vmacVIP4.String() + "/32"}, AuthPass: "s3cret", Unicast: []netip.Addr{peer.IPv4}, UnicastSrc: n.IPv4})
		conf = strings.Replace(conf, "  virtual_ipaddress {", "  use_vmac\n  vmac_xmit_base\n  virtual_ipaddress {", 1)
		p, err := n.StartKeepalived(n.Name+"-keepalived", conf)
		if err != nil {
			t.Fatal(err)
		}
		kas = append(kas, p)
		files[n] = filepath.Join(l.Dir, n.Name+"-keepalived", "keepalived.conf")
	}
	waitSwitchPort(t, l, n2, time.Now(), vmac4)
	routerReaches(t, l, vmacVIP4, vmac4)
	for _, p := range kas {
		p.Signal(syscall.SIGTERM)
		p.Wait(10 * time.Second)
	}
	// Forget what keepalived taught the router and the switch.
	if _, err := lab.Exec(l.Router, "ip", "neigh", "flush", "all"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Exec(l.Router, "ip", "link", "set", "br0", "type", "bridge", "fdb_flush"); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.BridgePort(vmac4); n != nil {
		t.Fatalf("the switch still has the virtual MAC on %s's port after the flush", n.Name)
	}
	for _, n := range []*lab.Node{n1, n2} {
		startImported(t, n, files[n])
	}
	took := waitSwitchPort(t, l, n2, time.Now(), vmac4)
	routerReaches(t, l, vmacVIP4, vmac4)
	if links := vmacLinks(t, n1); len(links) > 0 {
		t.Errorf("n1 (backup) has virtual MAC interfaces %v", links)
	}
	for _, src := range advertSources(t, l) {
		if src != n2.MAC.String() {
			t.Errorf("an advert left from %s; vmac_xmit_base wants n2's own MAC %s", src, n2.MAC)
		}
	}
	t.Logf("garpd with the imported configs: the virtual MAC is on n2's port, as under keepalived, after %s", took.Round(time.Millisecond))
}

// vmacOwners is which node's port the switch has learnt each VIP's
// virtual MAC on (VIP i of vips6 has VRID 10+i), and whether the router
// maps every VIP to its virtual MAC.
func vmacOwners(t *testing.T, l *lab.Lab) (map[string]int, bool) {
	t.Helper()
	neigh, err := l.Neighbours()
	if err != nil {
		t.Fatal(err)
	}
	counts, all := map[string]int{}, true
	for i, v := range vips6 {
		mac := fmt.Sprintf("00:00:5e:00:01:%02x", 10+i)
		n, err := l.BridgePort(mac)
		if err != nil {
			t.Fatal(err)
		}
		if n == nil || neigh[v] != mac {
			all = false
			continue
		}
		counts[n.Name]++
	}
	return counts, all
}

func waitVMACSpread(t *testing.T, l *lab.Lab, want map[string]int) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("the switch to spread the virtual MACs %v", want), func() (bool, string) {
		got, all := vmacOwners(t, l)
		return all && maps.Equal(got, want), fmt.Sprintf("%v (every router entry a virtual MAC: %v)", got, all)
	})
}

// The dynamic mode with use_vmac: the plan spreads the six virtual
// routers 2/2/2 over the switch's ports while the router's table holds
// only virtual MACs; a dead node's two go to the survivors, and come back
// when it returns. A wave of announcements is answered by nobody: a node
// never takes its own virtual MAC's announcements for another master's
// claim.
func TestVirtualMACDynamicSpread(t *testing.T) {
	l := newLab(t, 3)
	procs := map[string]*lab.Proc{}
	start := func(n *lab.Node) {
		c := insertAfter(dynConfig(l, n.Name, vips6, "garp:\n  refresh: 0s\n"), "  advert_interval: 100ms\n", "  use_vmac: true\n")
		p, err := n.StartGarpd(garpdBin, c)
		if err != nil {
			t.Fatal(err)
		}
		procs[n.Name] = p
	}
	for _, n := range l.Nodes {
		start(n)
	}
	waitVMACSpread(t, l, map[string]int{"n1": 2, "n2": 2, "n3": 2})
	for _, n := range l.Nodes {
		waitMasters(t, n, 2, 15*time.Second)
	}
	// Quiet first: takeover bursts done (refresh is off), so every
	// announcement from here on is the wave's or an answer to a claim.
	announced := func() map[string]float64 {
		out := map[string]float64{}
		for _, n := range l.Nodes {
			out[n.Name] = metricSum(t, n, "garpd_announcements_sent_total")
		}
		return out
	}
	var before map[string]float64
	waitFor(t, 20*time.Second, "the takeover bursts to end", func() (bool, string) {
		a := announced()
		time.Sleep(2500 * time.Millisecond) // more than garp.interval
		before = announced()
		return maps.Equal(a, before), fmt.Sprint(a, before)
	})
	for _, n := range l.Nodes {
		if out, err := lab.Exec(n.NS, garpdBin, "announce", "--agent", "127.0.0.1:9497"); err != nil {
			t.Fatalf("announce wave on %s: %v\n%s", n.Name, err, out)
		}
	}
	// An announcement taken for a member's claim would be answered 0.3 s
	// later, and that answer again, and so on.
	time.Sleep(3 * time.Second)
	after := announced()
	for _, n := range l.Nodes {
		if d := after[n.Name] - before[n.Name]; d != 2 {
			t.Errorf("%s sent %v announcements for a wave over its 2 VIPs; want 2 (none answering its own)", n.Name, d)
		}
	}

	n1 := l.Node("n1")
	die(t, n1, procs["n1"])
	waitVMACSpread(t, l, map[string]int{"n2": 3, "n3": 3})
	reboot(t, n1)
	start(n1)
	waitVMACSpread(t, l, map[string]int{"n1": 2, "n2": 2, "n3": 2})
}

// Issue 22: a use_vmac node whose host starts with strict reverse-path
// filtering (rp_filter=1, as many distributions ship) serves the IPv4 VIP
// with nothing set by hand: the router's HTTP requests to the VIP are
// answered through the virtual MAC. garpd relaxes "all" as keepalived does, keeps eth0 strict,
// and puts the host back as it found it when it stops.
func TestVirtualMACStrictRPFilter(t *testing.T) {
	l := newLab(t, 1)
	n := l.Node("n1")
	sysctl := func(key string) string {
		out, _ := lab.Exec(n.NS, "sysctl", "-n", "net.ipv4.conf."+key+".rp_filter")
		return strings.TrimSpace(out)
	}
	for _, key := range []string{"all", "default", "eth0"} {
		if _, err := lab.Exec(n.NS, "sysctl", "-qw", "net.ipv4.conf."+key+".rp_filter=1"); err != nil {
			t.Fatal(err)
		}
	}
	p, err := n.StartGarpd(garpdBin, vmacConfig("n1", 200, "")+"http:\n  listen: 0.0.0.0:9496\n")
	if err != nil {
		t.Fatal(err)
	}
	checkVMACHolder(t, l, n)
	url := "http://" + vmacVIP4.String() + ":9496/healthz"
	waitFor(t, 10*time.Second, "the router to reach "+url, func() (bool, string) {
		out, err := lab.Exec(l.Router, "curl", "-sS", "--max-time", "1", url)
		return err == nil, tail(out, 2)
	})
	if all, eth0 := sysctl("all"), sysctl("eth0"); all != "0" || eth0 != "1" {
		t.Errorf("while garpd runs: rp_filter all=%s eth0=%s, want all relaxed to 0 and eth0 kept strict at 1", all, eth0)
	}
	if !strings.Contains(p.Output(), "use_vmac: changed a host setting") {
		t.Errorf("garpd did not log the host settings it changed:\n%s", tail(p.Output(), 20))
	}
	p.Signal(syscall.SIGTERM)
	if _, err := p.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if all, eth0 := sysctl("all"), sysctl("eth0"); all != "1" || eth0 != "1" {
		t.Errorf("after garpd stopped: rp_filter all=%s eth0=%s, want both back at 1", all, eth0)
	}
}
