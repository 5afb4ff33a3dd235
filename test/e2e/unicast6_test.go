package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// keepalived's refusals of a unicast peer's adverts.
var keepalivedUnicastComplaints = []string{"not a unicast peer", "Expected unicast packet"}

// garpd beside keepalived 2.4.3 in IPv6 unicast, both sending from their
// global addresses (keepalived's unicast_src_ip, garpd's vrrp.source) with
// auth_hmac enforcing. keepalived sends its unicast adverts with hop limit
// 64: garpd counts them because they are signed and come from its unicast
// peer, and keepalived accepts garpd's because they come from its
// configured peer. In both roles, through a crash and return of either
// side, each VIP ends on one node, and the router follows.
func TestKeepalivedIPv6UnicastInterop(t *testing.T) {
	bin := keepalived243(t)
	l := newLab(t, 2)
	g, k := l.Node("n1"), l.Node("n2")
	vip := netip.MustParseAddr("2001:db8::101")
	keys := map[int]string{1: hmacKey(t, l, "vrrp-1.key", 0x33)}
	gAuth, kAuth := authBlocks(keys, 1, "enforce")
	garpdCfg := func(prio int) string {
		extra := fmt.Sprintf("  unicast_peers: [%s]\n  source: [%s]\n", k.IPv6, g.IPv6) + gAuth
		return insertAfter(staticConfig("n1", []netip.Addr{vip}, []int{prio}, cfgOpts{}), "  vrid_base: 10\n", extra)
	}
	kaConf := lab.KeepalivedConfig("n2", 3, lab.KeepalivedInstance{Name: "VI_6", Interface: "eth0", VRID: 10, Priority: 150,
		Advert: "0.1", VIPs: []string{vip.String() + "/64"}, Unicast: []netip.Addr{g.IPv6}, UnicastSrc: k.IPv6, Extra: kAuth})
	startKA := func() *lab.Proc {
		p, err := k.StartKeepalivedBinary(bin, "n2-keepalived", kaConf)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	startG := func(prio int) *lab.Proc {
		p, err := g.StartGarpd(garpdBin, garpdCfg(prio))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// settledOn waits until the router sends the VIP to holder's MAC and
	// the other node lets go, then checks that for 3 s exactly one node
	// holds it.
	settledOn := func(holder, other *lab.Node, why string) {
		t.Helper()
		waitNeigh(t, l, 15*time.Second, map[netip.Addr]string{vip: holder.MAC.String()})
		waitFor(t, 10*time.Second, other.Name+" to let go of the VIP ("+why+")", func() (bool, string) {
			return holder.HasAddress(vip) && !other.HasAddress(vip), fmt.Sprintf("%s holds %v, %s %v", holder.Name, holder.HasAddress(vip), other.Name, other.HasAddress(vip))
		})
		for range 30 {
			if !holder.HasAddress(vip) || other.HasAddress(vip) {
				t.Fatalf("%s: the VIP left %s or came back to %s", why, holder.Name, other.Name)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	ka := startKA()
	gp := startG(100)
	// keepalived 150 over garpd 100.
	settledOn(k, g, "keepalived the master")
	m := scrape(t, g)
	if m.sum("garpd_vrrp_adverts_off_link_total") == 0 || m.sum("garpd_vrrp_adverts_received_total") == 0 {
		t.Errorf("garpd did not count keepalived's hop-limit-64 adverts:\n%s", m)
	}
	if d := m.sum("garpd_vrrp_packets_dropped_total", `reason="bad_ttl"`); d > 0 {
		t.Errorf("garpd dropped %v of keepalived's unicast adverts as bad_ttl", d)
	}

	// keepalived crashes: garpd takes over, and yields when it returns.
	signalTree(ka, syscall.SIGKILL)
	ka.Wait(5 * time.Second)
	waitNeigh(t, l, 5*time.Second, map[netip.Addr]string{vip: g.MAC.String()})
	ka = startKA()
	settledOn(k, g, "keepalived back")

	// garpd the master: keepalived hears it from garpd's global address.
	if err := g.WriteGarpdConfig(garpdCfg(200)); err != nil {
		t.Fatal(err)
	}
	gp.Signal(syscall.SIGHUP)
	settledOn(g, k, "garpd the master")
	// garpd crashes: keepalived takes over, and yields when garpd returns.
	gp.Signal(syscall.SIGKILL)
	gp.Wait(5 * time.Second)
	waitNeigh(t, l, 5*time.Second, map[netip.Addr]string{vip: k.MAC.String()})
	startG(200)
	settledOn(g, k, "garpd back")

	out := ka.Output()
	for _, c := range keepalivedUnicastComplaints {
		if strings.Contains(out, c) {
			t.Errorf("keepalived refused garpd's adverts (%q):\n%s", c, tail(out, 20))
		}
	}
	if bad := keepalivedAuthComplaints.FindAllString(out, -1); len(bad) > 0 {
		t.Errorf("keepalived refused garpd's signatures (%v):\n%s", bad, tail(out, 20))
	}
}
