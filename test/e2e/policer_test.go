package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// policedRate and policedBurst are the lab router's ARP policer: a
// control plane that passes 100 ARP packets a second, 50 at once.
const policedRate, policedBurst = 100, 50

// onNode maps every VIP to n's MAC: the router's table when n holds them.
func onNode(n *lab.Node, vips []netip.Addr) map[netip.Addr]string {
	m := map[netip.Addr]string{}
	for _, v := range vips {
		m[v] = n.MAC.String()
	}
	return m
}

// startMasterAndBackup starts garpd on n1 at priority 200 and, once the
// router holds vips on n1, on n2 at 100; it returns once n2 is backup of
// all for a moment.
func startMasterAndBackup(t *testing.T, l *lab.Lab, vips []netip.Addr, cfg func(node string, prio int) string) (master, backup *lab.Proc) {
	t.Helper()
	n1, n2 := l.Node("n1"), l.Node("n2")
	m, err := n1.StartGarpd(garpdBin, cfg("n1", 200))
	if err != nil {
		t.Fatal(err)
	}
	waitNeigh(t, l, 60*time.Second, onNode(n1, vips))
	b, err := n2.StartGarpd(garpdBin, cfg("n2", 100))
	if err != nil {
		t.Fatal(err)
	}
	waitMasters(t, n2, 0, 30*time.Second)
	time.Sleep(3 * time.Second) // n2 settled as backup of all
	return m, b
}

// waitAddresses waits until n has at least want addresses on eth0 (a
// keepalived master that added its VIPs).
func waitAddresses(t *testing.T, n *lab.Node, want int, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%s to hold %d addresses", n.Name, want), func() (bool, string) {
		addrs, err := n.Addresses()
		if err != nil {
			return false, err.Error()
		}
		return len(addrs) >= want, fmt.Sprintf("%d addresses", len(addrs))
	})
}

// TestPolicedRouterTakeover: 2 nodes in static mode, 100 ms adverts, all
// else default, behind a router that polices ARP input at 100 packets a
// second (burst 50) and keeps its entries for an hour. n1, master of 255
// IPv4 VIPs, crashes (link down and SIGKILL): the router holds n2's MAC
// for every VIP within 15 s, long before the rolling refresh (60 s) would
// mend what a policer dropped. The announcement budget (100 a second, one
// kind of each VIP first) fits the policer, so nothing needs mending.
//
// GARPD_POLICED_RUNS=5 makes it a measurement, side by side with
// keepalived 2.2.7 on the same router:
//
//	GARPD_POLICED_RUNS=5 go test ./test/e2e -run TestPolicedRouterTakeover -v
func TestPolicedRouterTakeover(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("GARPD_POLICED_RUNS"))
	measure := runs > 0
	runs = max(runs, 1)
	if measure {
		needKeepalived(t)
	}
	const advert = 100 * time.Millisecond
	vips := vips255
	var gLast, gDetect durations
	var gWrong3, kWrong3, kWrong10, kMissing, gDrops []int
	for run := range runs {
		l := newLab(t, 2)
		if err := l.BehaveLikeHardware(policedRate, policedBurst); err != nil {
			t.Fatal(err)
		}
		n1, n2 := l.Node("n1"), l.Node("n2")
		// n1's own start goes through the policer too: paced, it is heard.
		m, b := startMasterAndBackup(t, l, vips, func(node string, prio int) string {
			return scaleConfig(node, prio, vips, advert, "log:\n  level: info\n")
		})
		before, err := l.PolicedDrops()
		if err != nil {
			t.Fatal(err)
		}
		g := crashAtScale(t, l, m, b, vips, 15*time.Second)
		after, err := l.PolicedDrops()
		if err != nil {
			t.Fatal(err)
		}
		if g.missing > 0 {
			t.Errorf("run %d: 15 s after the crash the router still sends %d of %d VIPs to the dead node (policer drops during the takeover: %d)",
				run+1, g.missing, len(vips), after-before)
		}
		gLast, gDetect = append(gLast, g.last), append(gDetect, g.detect)
		gWrong3, gDrops = append(gWrong3, g.wrongAt(len(vips), 3*time.Second)), append(gDrops, after-before)
		t.Logf("run %d garpd: crash → detected %s, router holds all %d at %s; wrong at 3 s: %d; policer drops: %d; busiest second %d ARP packets",
			run+1, g.detect.Round(time.Millisecond), len(vips), g.last.Round(time.Millisecond), g.wrongAt(len(vips), 3*time.Second), after-before, g.peak)
		b.Stop()
		if !measure {
			break
		}
		n1.LinkUp()
		kaCfg := func(name string, prio int) string { return keepalivedScale(name, prio, vips, advert) }
		km, err := n1.StartKeepalived("n1-keepalived", kaCfg("n1", 200))
		if err != nil {
			t.Fatal(err)
		}
		// keepalived's start bursts past the policer: the router is given
		// the entries it would have learnt over time.
		waitAddresses(t, n1, len(vips), 120*time.Second)
		for _, v := range vips {
			if err := l.SetNeighbour(v, n1.MAC.String()); err != nil {
				t.Fatal(err)
			}
		}
		kb, err := n2.StartKeepalived("n2-keepalived", kaCfg("n2", 100))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(12 * time.Second) // past the master's two GARP rounds
		k := crashAtScale(t, l, km, kb, vips, 20*time.Second)
		kWrong3, kWrong10, kMissing = append(kWrong3, k.wrongAt(len(vips), 3*time.Second)), append(kWrong10, k.wrongAt(len(vips), 10*time.Second)), append(kMissing, k.missing)
		t.Logf("run %d keepalived: wrong at 3 s: %d, at 10 s: %d, after 20 s: %d", run+1, k.wrongAt(len(vips), 3*time.Second), k.wrongAt(len(vips), 10*time.Second), k.missing)
		kb.Stop()
		l.Close()
	}
	if !measure {
		return
	}
	t.Logf("255 IPv4 VIPs, 100 ms adverts, router policing ARP at %d/s (burst %d), master crashed:", policedRate, policedBurst)
	t.Logf("  garpd      crash → detection              %s", gDetect)
	t.Logf("  garpd      crash → router holds all 255    %s", gLast)
	t.Logf("  garpd      wrong at 3 s %v; policer drops %v", gWrong3, gDrops)
	t.Logf("  keepalived wrong at 3 s %v, at 10 s %v, after 20 s %v", kWrong3, kWrong10, kMissing)
}

// TestDAIProfileKeepsPortUnder15: with garp.profile dai, a backup that
// takes over 32 VIPs (a takeover burst of 3 announcements each, request
// and reply) never puts more than 15 ARP packets on its port in any
// second, Catalyst dynamic ARP inspection's default before it
// err-disables the port; and the router still hears every VIP.
func TestDAIProfileKeepsPortUnder15(t *testing.T) {
	l := newLab(t, 2)
	vips := vips255[:32]
	m, b := startMasterAndBackup(t, l, vips, func(node string, prio int) string {
		return scaleConfig(node, prio, vips, 100*time.Millisecond, "log:\n  level: info\ngarp:\n  profile: dai\n")
	})
	g := crashAtScale(t, l, m, b, vips, 20*time.Second)
	t.Logf("dai: router holds all %d on n2 %s after the crash; busiest second on n2's port: %d ARP packets", len(vips), g.last.Round(time.Millisecond), g.peak)
	if g.missing > 0 {
		t.Errorf("20 s after the crash %d of %d VIPs are not on n2", g.missing, len(vips))
	}
	if g.peak > 15 || g.peak == 0 {
		t.Errorf("the busiest second on n2's port carried %d ARP packets, want 1..15", g.peak)
	}
}
