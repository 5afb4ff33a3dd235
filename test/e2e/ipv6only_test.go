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

// Issue 22: three IPv6-only nodes (no IPv4 address on eth0) in dynamic
// mode with no address set anywhere: gossip finds each node's global IPv6
// address, the router's IPv6 neighbour table maps the 3 VIPs 1/1/1, and a
// crash moves the dead node's VIP alone.
func TestIPv6OnlyDynamic(t *testing.T) {
	l := newLab(t, 3)
	vips := []netip.Addr{netip.MustParseAddr("2001:db8::101"), netip.MustParseAddr("2001:db8::102"), netip.MustParseAddr("2001:db8::103")}
	procs := map[string]*lab.Proc{}
	for _, n := range l.Nodes {
		if err := n.DropIPv4(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range l.Nodes {
		cfg := dynConfig(l, n.Name, vips, "")
		for _, o := range l.Nodes {
			cfg = strings.ReplaceAll(cfg, o.IPv4.String()+":7946", "\"["+o.IPv6.String()+"]:7946\"")
		}
		p, err := n.StartGarpd(garpdBin, cfg)
		if err != nil {
			t.Fatal(err)
		}
		procs[n.Name] = p
	}
	one := map[string]int{"n1": 1, "n2": 1, "n3": 1}
	d := waitSpread(t, l, vips, 30*time.Second, one)
	t.Logf("1/1/1 on the router's IPv6 neighbour table %s after start", d.Round(10*time.Millisecond))
	waitSettled(t, l, "n1", "n2", "n3")
	if out := procs["n1"].Output(); !strings.Contains(out, `"advertise":"`+l.Node("n1").IPv6.String()+`"`) {
		t.Errorf("n1 does not say it gossips on its IPv6 address %s:\n%s", l.Node("n1").IPv6, tail(out, 20))
	}

	before, _ := l.Neighbours()
	victim := l.Node("n2")
	var lost netip.Addr
	for _, v := range vips {
		if before[v] == victim.MAC.String() {
			lost = v
		}
	}
	moves := recordMoves(t, l)
	start := time.Now()
	procs["n2"].Signal(syscall.SIGKILL)
	waitFor(t, 10*time.Second, fmt.Sprintf("n2's VIP %s to move", lost), func() (bool, string) {
		got, _ := l.Neighbours()
		return got[lost] != "" && got[lost] != victim.MAC.String(), got[lost]
	})
	t.Logf("n2's VIP moved %s after SIGKILL", time.Since(start).Round(10*time.Millisecond))
	time.Sleep(5 * time.Second) // gossip notices the death; nothing is re-ranked
	got, _ := l.Neighbours()
	for _, v := range vips {
		if v != lost && got[v] != before[v] {
			t.Errorf("%s moved from %s to %s, though its node is alive", v, before[v], got[v])
		}
	}
	for v, n := range moves.snapshot() {
		if n > 1 || (v != lost && n > 0) {
			t.Errorf("%s moved %d times after n2's crash", v, n)
		}
	}
}

// Issue 22: an agent started while the interface's IPv6 link-local
// address is still tentative (the link just came up, DAD on) waits for
// duplicate address detection, says so once, and sends no advert that
// fails; the router learns the VIP once the address is usable.
func TestTentativeLinkLocalWaitsForDAD(t *testing.T) {
	l := newLab(t, 1)
	n := l.Node("n1")
	vip := netip.MustParseAddr("2001:db8::150")
	if _, err := lab.Exec(n.NS, "sysctl", "-qw", "net.ipv6.conf.eth0.accept_dad=1"); err != nil {
		t.Fatal(err)
	}
	if err := n.LinkDown(); err != nil {
		t.Fatal(err)
	}
	if err := n.LinkUp(); err != nil {
		t.Fatal(err)
	}
	out, _ := lab.Exec(n.NS, "ip", "-6", "addr", "show", "dev", "eth0", "scope", "link")
	if !strings.Contains(out, "tentative") {
		t.Fatalf("the link-local address is not tentative after the link came up, so this test proves nothing:\n%s", out)
	}
	p, err := n.StartGarpd(garpdBin, staticConfig("n1", []netip.Addr{vip}, []int{200}, cfgOpts{}))
	if err != nil {
		t.Fatal(err)
	}
	waitNeigh(t, l, 15*time.Second, map[netip.Addr]string{vip: n.MAC.String()})
	log := p.Output()
	if strings.Count(log, "waiting for the IPv6 link-local address") != 1 {
		t.Errorf("want one line saying garpd waits for DAD:\n%s", tail(log, 20))
	}
	if c := strings.Count(log, "cannot send"); c > 0 {
		t.Errorf("%d failed sends logged while the address was tentative:\n%s", c, tail(log, 20))
	}
}
