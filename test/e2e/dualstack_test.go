package e2e

import (
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// Issue 22: a dual-stack pair of routers on one VRID, IPv4 at VRRPv2 and
// IPv6 at VRRPv3, interoperates with keepalived 2.2.7 in both roles: with
// the higher priority garpd holds both VIPs; stopped, keepalived takes
// both; back at a lower priority it stays backup, and takes both when
// keepalived dies. The router's neighbour tables are the ground truth.
func TestDualStackOneVRIDWithKeepalived(t *testing.T) {
	needKeepalived(t)
	l := newLab(t, 2)
	g, k := l.Node("n1"), l.Node("n2")
	v4, v6 := netip.MustParseAddr("192.0.2.150"), netip.MustParseAddr("2001:db8::150")
	garpdCfg := func(prio string) string {
		return "node: n1\ninterface: eth0\nvips:\n  - {address: " + v4.String() + ", vrid: 50}\n  - {address: " + v6.String() + ", vrid: 50}\n" +
			"priorities: {" + v4.String() + ": " + prio + ", \"" + v6.String() + "\": " + prio + "}\nvrrp: {version: 2, advert_interval: 1s}\nlog: {level: debug}\n"
	}
	ka := lab.KeepalivedConfig("n2", 2,
		lab.KeepalivedInstance{Name: "VI_4", Interface: "eth0", VRID: 50, Priority: 150, Advert: "1", VIPs: []string{v4.String() + "/32"}},
		lab.KeepalivedInstance{Name: "VI_6", Interface: "eth0", VRID: 50, Priority: 150, Advert: "1", VIPs: []string{v6.String() + "/128"}, Extra: "  version 3\n"})
	kp, err := k.StartKeepalived("n2-keepalived", ka)
	if err != nil {
		t.Fatal(err)
	}
	gp, err := g.StartGarpd(garpdBin, garpdCfg("200"))
	if err != nil {
		t.Fatal(err)
	}
	on := func(n *lab.Node) map[netip.Addr]string {
		return map[netip.Addr]string{v4: n.MAC.String(), v6: n.MAC.String()}
	}
	// 1. garpd master of both, keepalived backup of both.
	waitNeigh(t, l, 15*time.Second, on(g))
	if out, err := lab.Exec(g.NS, garpdBin, "status"); err != nil || strings.Count(out, " master ") != 2 {
		t.Fatalf("garpd is not master of both routers of VRID 50: %v\n%s", err, out)
	}
	// 2. garpd stops: keepalived takes both.
	gp.Signal(syscall.SIGTERM)
	gp.Wait(10 * time.Second)
	waitNeigh(t, l, 15*time.Second, on(k))
	// 3. garpd back at a lower priority: keepalived stays master; it dies:
	// garpd takes both.
	if gp, err = g.StartGarpd(garpdBin, garpdCfg("100")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second) // past garpd's master-down interval
	if now, _ := l.Neighbours(); now[v4] != k.MAC.String() || now[v6] != k.MAC.String() {
		t.Fatalf("garpd at the lower priority took a VIP from keepalived: %v", now)
	}
	kp.Signal(syscall.SIGKILL)
	kp.Wait(5 * time.Second)
	waitNeigh(t, l, 15*time.Second, on(g))
	if out := kp.Output(); keepalivedComplaints.MatchString(out) {
		t.Errorf("keepalived complained about garpd's adverts:\n%s", tail(out, 20))
	}
}
