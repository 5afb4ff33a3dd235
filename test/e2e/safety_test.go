package e2e

import (
	"bufio"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// metricsText is one scrape of a node's metrics (`garpd status --metrics`):
// counters read from one scrape are consistent with each other.
type metricsText string

func scrape(t *testing.T, n *lab.Node) metricsText {
	t.Helper()
	out, err := lab.Exec(n.NS, garpdBin, "status", "--metrics")
	if err != nil {
		t.Fatalf("read metrics of %s: %v", n.Name, err)
	}
	return metricsText(out)
}

// sum adds up every sample of a metric whose labels contain all of the
// given fragments.
func (m metricsText) sum(name string, labelFragments ...string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(string(m)))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for _, f := range labelFragments {
			ok = ok && strings.Contains(line, f)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}

// metricSum scrapes n and sums one metric.
func metricSum(t *testing.T, n *lab.Node, name string, labelFragments ...string) float64 {
	t.Helper()
	return scrape(t, n).sum(name, labelFragments...)
}

// Done-when 4: an IPv6 VIP fails over and the router's `ip -6 neigh` follows.
func TestIPv6Failover(t *testing.T) {
	l := newLab(t, 2)
	n1, n2 := l.Node("n1"), l.Node("n2")
	vip := netip.MustParseAddr("2001:db8::101")
	cfg := func(node string, prio int) string {
		return fmt.Sprintf(`node: %s
interface: eth0
vips:
  - address: %s/64
    vrid: 20
vrrp:
  version: 3
  advert_interval: 100ms
priorities:
  %s: %d
log:
  level: debug
`, node, vip, vip, prio)
	}
	p1, err := n1.StartGarpd(garpdBin, cfg("n1", 200))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n2.StartGarpd(garpdBin, cfg("n2", 100)); err != nil {
		t.Fatal(err)
	}
	waitNeigh(t, l, 10*time.Second, map[netip.Addr]string{vip: n1.MAC.String()})
	if !n1.HasAddress(vip) || n2.HasAddress(vip) {
		t.Fatalf("holders: n1 %v n2 %v, want n1 only", n1.HasAddress(vip), n2.HasAddress(vip))
	}
	events := watch(t, l)
	time.Sleep(200 * time.Millisecond)
	drain(events)
	start := time.Now()
	p1.Signal(syscall.SIGKILL)
	d := waitNeighChange(t, events, vip, n2.MAC.String(), start, 5*time.Second)
	t.Logf("IPv6 SIGKILL failover: router's ip -6 neigh follows after %s", d.Round(time.Millisecond))
	if !n2.HasAddress(vip) {
		t.Errorf("n2 is master but does not hold %s", vip)
	}
	if got := metricSum(t, n2, "garpd_announcements_sent_total", `kind="na"`); got < 1 {
		t.Errorf("n2 counted %v unsolicited NAs, want at least 1", got)
	}
}

// Done-when 5: a foreign keepalived with the same VRID, a different VIP and
// a higher priority. garpd keeps its VIP, logs the collision once, counts
// it, and sends no more GARPs than its usual takeover burst.
func TestVRIDCollision(t *testing.T) {
	needKeepalived(t)
	l := newLab(t, 2)
	g, foreign := l.Node("n1"), l.Node("n2")
	vip := vips3[0]
	capture, err := l.Start(l.Router, "tcpdump", "tcpdump", "-i", "br0", "-n", "-l", "-e", "arp")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "tcpdump to listen", func() (bool, string) {
		return strings.Contains(capture.Output(), "listening on"), capture.Output()
	})
	// Refresh off: the capture below counts the takeover burst, and the
	// VIP's refresh slot, anchored to the wall clock, could fall inside it.
	gp, err := g.StartGarpd(garpdBin, staticConfig("n1", vips3[:1], []int{100}, cfgOpts{advert: "100ms", extra: "garp:\n  refresh: 0s\n"}))
	if err != nil {
		t.Fatal(err)
	}
	waitNeigh(t, l, 10*time.Second, map[netip.Addr]string{vip: g.MAC.String()})
	// garpd scan, run from the router over the whole time the foreign
	// router speaks, must list both users of VRID 10.
	scan, err := l.Start(l.Router, "scan", garpdBin, "scan", "-i", "br0", "--duration", "40s")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "garpd scan to listen", func() (bool, string) {
		return strings.Contains(scan.Output(), "listening on"), scan.Output()
	})
	ka, err := foreign.StartKeepalived("n2-foreign-keepalived", lab.KeepalivedConfig("other-cluster", 3,
		lab.KeepalivedInstance{Name: "OTHER", Interface: "eth0", VRID: 10, Priority: 250, Advert: "0.1",
			VIPs: []string{"192.0.2.201"}}))
	if err != nil {
		t.Fatal(err)
	}
	// keepalived starts as a backup and takes VRID 10 (for its own VIP)
	// after its master-down interval: wait until garpd hears it, then let
	// 10 of its adverts a second arrive for 3 s.
	waitFor(t, 30*time.Second, "keepalived's adverts to reach garpd", func() (bool, string) {
		c := metricSum(t, g, "garpd_vrrp_vrid_collisions_total", `vrid="10"`)
		return c >= 3, fmt.Sprintf("%v collisions", c)
	})
	time.Sleep(3 * time.Second)
	if !g.HasAddress(vip) {
		t.Fatalf("garpd lost %s to a foreign VRRP router with another VIP list", vip)
	}
	if got, _ := l.Neighbours(); got[vip] != g.MAC.String() {
		t.Fatalf("router maps %s to %s, want garpd's %s", vip, got[vip], g.MAC)
	}
	// Ending it early prints what it heard so far.
	scan.Signal(syscall.SIGINT)
	if _, err := scan.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if out := scan.Output(); !strings.Contains(out, "192.0.2.201") || !strings.Contains(out, g.IPv4.String()) {
		t.Errorf("garpd scan does not list both routers on VRID 10:\n%s", out)
	}
	t.Logf("garpd scan:\n%s", scan.Output())
	// Every foreign advert is counted as a collision and dropped; how many
	// arrive depends on when keepalived became master. Stop the source
	// first and read both counters from one scrape.
	ka.Stop()
	m := scrape(t, g)
	collisions := m.sum("garpd_vrrp_vrid_collisions_total", `vrid="10"`)
	dropped := m.sum("garpd_vrrp_packets_dropped_total", `reason="vip_mismatch"`)
	t.Logf("foreign adverts: %v collisions counted, %v vip_mismatch drops", collisions, dropped)
	if collisions < 3 || collisions != dropped {
		t.Errorf("collisions counted %v, vip_mismatch drops %v: want several, and equal", collisions, dropped)
	}
	if got := m.sum("garpd_vrrp_transitions_total", `to="backup"`); got != 1 {
		t.Errorf("garpd entered backup %v times, want once (at start-up)", got)
	}
	gp.Stop()
	if n := strings.Count(gp.Output(), "VRID collision"); n != 1 {
		t.Errorf("collision logged %d times, want once per source", n)
	}
	if !strings.Contains(gp.Output(), "vrid_base") {
		t.Errorf("the collision log does not say how to fix it")
	}
	capture.Stop()
	garps := 0
	for _, line := range strings.Split(capture.Output(), "\n") {
		// Gratuitous: from garpd's MAC to broadcast, about the VIP.
		if strings.HasPrefix(strings.Fields(line + " x x")[1], strings.ToLower(g.MAC.String())) &&
			strings.Contains(line, "ff:ff:ff:ff:ff:ff") && strings.Contains(line, vip.String()) {
			garps++
		}
	}
	// The takeover burst is garp.count (3) × request and reply.
	if garps != 6 {
		t.Errorf("capture saw %d gratuitous ARP packets for %s from garpd, want exactly its takeover burst of 6:\n%s", garps, vip, capture.Output())
	}
}
