package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// hostCase is one way VIPs sit beside the host's own addresses.
type hostCase struct {
	name    string
	promote string // net.ipv4.conf.DEV.promote_secondaries
	dev     string // the interface whose host addresses are re-plugged
	extra   string // config beyond the VIPs
	vips    []string
	// judges are destinations of the host's own traffic: the source the
	// kernel picks for each must never be a VIP.
	judges []netip.Addr
}

// TestVIPNeverHostAddress: a node master of its VIPs has its own
// addresses removed and added back (a re-plug, a DHCP renewal, a network
// manager re-applying), with promote_secondaries 0 and 1, IPv4 and IPv6,
// VIPs on the interface, on a dev interface and on virtual MACs, a VIP in
// a subnet the host has no address in among them. Polled every 50 ms
// through each re-plug, the source the kernel picks for the host's own
// traffic (ip route get) is never a VIP; the host's IPv4 address is the
// interface's first again soon after it is back; the VIPs stay held.
// Then the agent is killed, the addresses re-plugged with nobody to put
// the host's first, and the agent started again: it advertises from the
// host's address, not from the VIP now first on the interface.
func TestVIPNeverHostAddress(t *testing.T) {
	router4, router6 := lab.RouterV4, lab.RouterV6
	offSubnet := netip.MustParseAddr("198.51.100.1") // only a VIP is in 198.51.100.0/24 on eth0
	cases := []hostCase{
		{name: "promote0", promote: "0", dev: "eth0", vips: []string{"192.0.2.101/24", "198.51.100.101/24", "2001:db8::101/64"},
			judges: []netip.Addr{router4, offSubnet, router6}},
		{name: "promote1", promote: "1", dev: "eth0", vips: []string{"192.0.2.101/24", "198.51.100.101/24", "2001:db8::101/64"},
			judges: []netip.Addr{router4, offSubnet, router6}},
		{name: "vmac", promote: "0", dev: "eth0", extra: "vrrp:\n  use_vmac: true\n  advert_interval: 100ms\n",
			vips: []string{"192.0.2.101/24", "2001:db8::101/64"}, judges: []netip.Addr{router4, router6}},
		{name: "dev", promote: "0", dev: "eth1", vips: []string{"198.51.100.101/24 dev eth1", "2001:db8:1::101/64 dev eth1"},
			judges: []netip.Addr{lab.RouterV4Second, lab.RouterV6Second}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { hostAddressCase(t, c) })
	}
}

func hostAddressCase(t *testing.T, c hostCase) {
	l := newLab(t, 1)
	n1 := l.Node("n1")
	if c.dev != "eth0" {
		if err := l.AddSegment(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := lab.Exec(n1.NS, "sysctl", "-qw", "net.ipv4.conf."+c.dev+".promote_secondaries="+c.promote); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("node: n1\ninterface: eth0\nvips:\n")
	var vips []netip.Addr
	for _, v := range c.vips {
		addr, dev, _ := strings.Cut(v, " dev ")
		if dev != "" {
			fmt.Fprintf(&b, "  - address: %s\n    dev: %s\n", addr, dev)
		} else {
			fmt.Fprintf(&b, "  - %s\n", addr)
		}
		vips = append(vips, netip.MustParsePrefix(addr).Addr())
	}
	b.WriteString("priorities:\n")
	for _, v := range vips {
		fmt.Fprintf(&b, "  \"%s\": 200\n", v)
	}
	b.WriteString(cmpOr(c.extra, "vrrp:\n  advert_interval: 100ms\n"))
	p, err := n1.StartGarpd(garpdBin, b.String())
	if err != nil {
		t.Fatal(err)
	}
	waitMasters(t, n1, len(vips), 30*time.Second)
	host := n1.IPv4
	if c.dev != "eth0" {
		host = n1.Second.IPv4
	}

	// Poll the host's sources every 50 ms through the re-plug.
	stop := make(chan struct{})
	var mu sync.Mutex
	var bad []string
	polls := 0
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			for _, d := range c.judges {
				src, err := n1.SourceFor(d)
				mu.Lock()
				polls++
				if err != nil {
					bad = append(bad, err.Error())
				} else if slices.Contains(vips, src) {
					bad = append(bad, fmt.Sprintf("%s from the VIP %s", d, src))
				}
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	time.Sleep(300 * time.Millisecond)
	if err := n1.Replug(c.dev, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	first := func() (netip.Addr, error) {
		addrs, err := n1.AddressesOn(c.dev)
		if err != nil {
			return netip.Addr{}, err
		}
		for _, a := range addrs {
			if a.Is4() {
				return a, nil
			}
		}
		return netip.Addr{}, nil
	}
	waitFor(t, 10*time.Second, "the host's address first on "+c.dev+" again", func() (bool, string) {
		a, err := first()
		if err != nil {
			return false, err.Error()
		}
		return a == host, "first " + a.String()
	})
	firstAgain := time.Since(back)
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	mu.Lock()
	t.Logf("%s: %d polls through the re-plug; the host's %s first again %s after it came back", c.name, polls, host, firstAgain.Round(time.Microsecond))
	if len(bad) > 0 {
		t.Errorf("the host's own traffic left from a VIP (or the query failed) %d times, first: %s", len(bad), bad[0])
	}
	mu.Unlock()
	waitMasters(t, n1, len(vips), 10*time.Second)
	if c.name != "vmac" { // there, the VIPs are on the virtual MACs
		addrs, err := n1.AddressesOn(c.dev)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vips {
			if !slices.Contains(addrs, v) {
				t.Errorf("the VIP %s is no longer on %s after the re-plug", v, c.dev)
			}
		}
	}
	if c.name != "promote0" {
		return
	}

	// Killed, re-plugged with nobody to put the host first, restarted.
	p.Signal(syscall.SIGKILL)
	p.Wait(10 * time.Second)
	if err := n1.Replug(c.dev, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if a, _ := first(); !slices.Contains(vips, a) {
		t.Fatalf("after a re-plug without the agent the first IPv4 address is %s, want a VIP (the case to test)", a)
	}
	if _, err := n1.StartGarpd(garpdBin, b.String()); err != nil {
		t.Fatal(err)
	}
	out, err := lab.Exec(l.Router, "timeout", "10", "tcpdump", "-i", "br0", "-n", "-c", "3", "ip proto 112")
	if err != nil {
		t.Fatalf("capture adverts: %v\n%s", err, out)
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) > 3 && f[1] == "IP" && f[2] != host.String() {
			t.Errorf("the restarted agent advertises from %s, want the host's %s: %s", f[2], host, line)
		}
	}
	waitMasters(t, n1, len(vips), 30*time.Second)
}

// While the host has no IPv6 address of its own (a re-plug that brings
// the IPv4 address back first), no IPv6 VIP becomes the host's source:
// garpd adds no on-link route for the VIPs' IPv6 subnet then, so the
// host's traffic there has no route rather than the VIP's address; once
// the host's address is back, it is the source again.
func TestIPv6VIPNotSourceWithoutHostAddress(t *testing.T) {
	l := newLab(t, 1)
	n1 := l.Node("n1")
	cfg := "node: n1\ninterface: eth0\nvips: [192.0.2.101/24, 2001:db8::101/64]\npriorities: {192.0.2.101: 200, \"2001:db8::101\": 200}\nvrrp:\n  advert_interval: 100ms\n"
	if _, err := n1.StartGarpd(garpdBin, cfg); err != nil {
		t.Fatal(err)
	}
	waitMasters(t, n1, 2, 30*time.Second)
	vip6 := netip.MustParseAddr("2001:db8::101")
	ip := func(args ...string) {
		t.Helper()
		if out, err := lab.Exec(n1.NS, append([]string{"ip"}, args...)...); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	ip("addr", "del", n1.IPv6.String()+"/64", "dev", "eth0")
	ip("addr", "del", n1.IPv4.String()+"/24", "dev", "eth0")
	ip("addr", "add", n1.IPv4.String()+"/24", "dev", "eth0")
	// garpd puts the host's IPv4 address first again (and, before, added
	// the IPv6 subnet's route too): wait for it, then judge.
	waitFor(t, 10*time.Second, "the host's IPv4 address first again", func() (bool, string) {
		addrs, err := n1.AddressesOn("eth0")
		for _, a := range addrs {
			if a.Is4() {
				return a == n1.IPv4, a.String()
			}
		}
		return false, fmt.Sprint(addrs, err)
	})
	time.Sleep(500 * time.Millisecond)
	if src, err := n1.SourceFor(lab.RouterV6); err != nil || src == vip6 {
		t.Fatalf("with no IPv6 address of the host's, its traffic to %s leaves from %s (%v), the VIP", lab.RouterV6, src, err)
	}
	ip("addr", "add", n1.IPv6.String()+"/64", "dev", "eth0", "nodad")
	waitFor(t, 10*time.Second, "the host's IPv6 address as the source again", func() (bool, string) {
		src, err := n1.SourceFor(lab.RouterV6)
		return err == nil && src == n1.IPv6, fmt.Sprint(src, err)
	})
}
