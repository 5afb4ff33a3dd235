package e2e

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// vrrpOn captures adverts on one of the router's bridges and returns
// "VRID:first VIP" for each.
func vrrpOn(t *testing.T, l *lab.Lab, bridge string) []string {
	t.Helper()
	out, err := lab.Exec(l.Router, "timeout", "5", "tcpdump", "-i", bridge, "-n", "-v", "-c", "12", "ip proto 112")
	if err != nil && !strings.Contains(out, "packets captured") {
		t.Fatalf("capture adverts on %s: %v", bridge, err)
	}
	var seen []string
	for _, m := range regexp.MustCompile(`vrid (\d+), prio \d+.*addrs(?:\(\d+\))?: ([0-9a-f.:]+)`).FindAllStringSubmatch(out, -1) {
		seen = append(seen, m[1]+":"+m[2])
	}
	if len(seen) == 0 {
		t.Fatalf("no adverts captured on %s:\n%s", bridge, out)
	}
	return seen
}

// Issue 22: one agent on two interfaces, and VRRP on one interface with
// the VIP on another. Two nodes, two segments (eth0 on br0, eth1 on br1):
// VIP A's router runs on eth0 (VRID 10), VIP B's on eth1 (VRID 10 too:
// each segment's VRIDs are its own), VIP C's on eth0 (VRID 12) while C
// lives on eth1 (dev). The router's neighbour tables on both segments
// are the ground truth, and captures show where each advert goes.
func TestTwoInterfacesAndDev(t *testing.T) {
	l := newLab(t, 2)
	if err := l.AddSegment(); err != nil {
		t.Fatal(err)
	}
	n1, n2 := l.Node("n1"), l.Node("n2")
	a, b, c := netip.MustParseAddr("192.0.2.101"), netip.MustParseAddr("198.51.100.101"), netip.MustParseAddr("198.51.100.102")
	cfg := func(n *lab.Node, pa, pb, pc int) string {
		return fmt.Sprintf(`node: %s
interface: eth0
vips:
  - {address: %s, vrid: 10}
  - {address: %s/24, vrid: 10, interface: eth1}
  - {address: %s/24, vrid: 12, dev: eth1}
vrrp: {version: 3, advert_interval: 100ms}
priorities: {%s: %d, %s: %d, %s: %d}
log: {level: debug}
`, n.Name, a, b, c, a, pa, b, pb, c, pc)
	}
	p1, err := n1.StartGarpd(garpdBin, cfg(n1, 200, 150, 200))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n2.StartGarpd(garpdBin, cfg(n2, 150, 200, 150)); err != nil {
		t.Fatal(err)
	}
	want := map[netip.Addr]string{a: n1.MAC.String(), b: n2.Second.MAC.String(), c: n1.Second.MAC.String()}
	waitNeigh(t, l, 15*time.Second, want)
	if n1.HasAddress(c) {
		t.Errorf("n1 holds %s on eth0; want it on eth1 only (dev)", c)
	}

	// Adverts: VRID 10 (A) and 12 (C) on the first segment, VRID 10 (B)
	// alone on the second.
	for _, s := range vrrpOn(t, l, "br0") {
		if s != "10:"+a.String() && s != "12:"+c.String() {
			t.Errorf("br0 carried advert %s; want only 10:%s and 12:%s", s, a, c)
		}
	}
	for _, s := range vrrpOn(t, l, "br1") {
		if s != "10:"+b.String() {
			t.Errorf("br1 carried advert %s; want only 10:%s", s, b)
		}
	}
	out, err := lab.Exec(n1.NS, garpdBin, "status")
	if err != nil || !regexp.MustCompile(`eth1\s+ipv4\s+10\s+198\.51\.100\.101/24\s+backup`).MatchString(out) {
		t.Errorf("n1's status does not show B's router on eth1 as backup: %v\n%s", err, out)
	}
	// Metrics keep VRID 10 of each segment apart.
	out, err = lab.Exec(n1.NS, garpdBin, "status", "--metrics")
	for _, want := range []string{`garpd_vrrp_state{family="ipv4",interface="eth0",vips="192.0.2.101",vrid="10"} 2`,
		`garpd_vrrp_state{family="ipv4",interface="eth1",vips="198.51.100.101",vrid="10"} 1`} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("n1's metrics lack %s: %v", want, err)
		}
	}
	out, err = lab.Exec(n1.NS, garpdBin, "announce", "-c", n1.GarpdConfigPath(), "--count", "1", "--interval", "10ms")
	if err != nil || !strings.Contains(out, c.String()+": gratuitous ARP 1/1 sent on eth1") {
		t.Errorf("garpd announce does not announce %s on eth1: %v\n%s", c, err, out)
	}

	// n1 dies: n2 takes A on eth0 and C on its eth1; B stays.
	p1.Signal(syscall.SIGKILL)
	p1.Wait(5 * time.Second)
	waitNeigh(t, l, 10*time.Second, map[netip.Addr]string{a: n2.MAC.String(), b: n2.Second.MAC.String(), c: n2.Second.MAC.String()})
	// Back at 200, n1 preempts both.
	if _, err := n1.StartGarpd(garpdBin, cfg(n1, 200, 150, 200)); err != nil {
		t.Fatal(err)
	}
	waitNeigh(t, l, 10*time.Second, want)
}
