package e2e

import (
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

func TestAgentLifecycle(t *testing.T) {
	l := newLab(t, 2)
	n1, n2 := l.Node("n1"), l.Node("n2")
	vip := vips3[0]

	t.Run("bad config exits 2 naming the key", func(t *testing.T) {
		p, err := n1.StartGarpd(garpdBin, "interface: eth0\nvips: [192.0.2.101]\nvrrp:\n  advert_interval: 15ms\n")
		if err != nil {
			t.Fatal(err)
		}
		code, err := p.Wait(5 * time.Second)
		if err != nil || code != 2 {
			t.Fatalf("exit %d (%v), want 2", code, err)
		}
		if !strings.Contains(p.Output(), "vrrp.advert_interval") {
			t.Fatalf("error does not name vrrp.advert_interval: %s", p.Output())
		}
		if n1.HasAddress(vip) {
			t.Fatal("a rejected config left a VIP behind")
		}
	})

	t.Run("a VIP that is the node's own address exits 2", func(t *testing.T) {
		own := n1.IPv4
		p, err := n1.StartGarpd(garpdBin, "interface: eth0\nvips: ["+own.String()+"]\npriorities: {"+own.String()+": 100}\n")
		if err != nil {
			t.Fatal(err)
		}
		code, err := p.Wait(5 * time.Second)
		if err != nil || code != 2 {
			t.Fatalf("exit %d (%v), want 2", code, err)
		}
		if want := own.String() + " is an address of eth0"; !strings.Contains(p.Output(), want) {
			t.Fatalf("error does not say %q: %s", want, p.Output())
		}
		if !n1.HasAddress(own) {
			t.Fatal("the node's own address was removed")
		}
	})

	// n2 is master; n1 starts as backup with the VIP left on its interface
	// by a crashed run, and must drop it before it says anything.
	p2, err := n2.StartGarpd(garpdBin, staticConfig("n2", vips3[:1], []int{200}, cfgOpts{}))
	if err != nil {
		t.Fatal(err)
	}
	waitNeigh(t, l, 10*time.Second, map[netip.Addr]string{vip: n2.MAC.String()})
	if _, err := lab.Exec(n1.NS, "ip", "addr", "add", vip.String()+"/32", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	p1, err := n1.StartGarpd(garpdBin, staticConfig("n1", vips3[:1], []int{100}, cfgOpts{}))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "n1 to remove the stale VIP", func() (bool, string) {
		return !n1.HasAddress(vip), "n1 still holds it"
	})
	if !strings.Contains(p1.Output(), "left on the interface by an earlier run") {
		t.Errorf("stale VIP removal not logged:\n%s", p1.Output())
	}

	t.Run("invalid reload keeps the running config", func(t *testing.T) {
		if err := n1.WriteGarpdConfig("interface: eth0\nvips: [nope]\n"); err != nil {
			t.Fatal(err)
		}
		p1.Signal(syscall.SIGHUP)
		waitFor(t, 15*time.Second, "the reload to be rejected", func() (bool, string) {
			return strings.Contains(p1.Output(), "reload rejected"), ""
		})
		if p1.Exited() {
			t.Fatal("garpd exited on an invalid reload")
		}
		st, err := lab.Exec(n1.NS, garpdBin, "status")
		if err != nil || !strings.Contains(st, "backup") {
			t.Fatalf("status after rejected reload: %v\n%s", err, st)
		}
	})

	t.Run("SIGTERM resigns and exits 0", func(t *testing.T) {
		start := time.Now()
		p2.Signal(syscall.SIGTERM)
		code, err := p2.Wait(10 * time.Second)
		if err != nil || code != 0 {
			t.Fatalf("exit %d (%v) after %s, want 0", code, err, time.Since(start))
		}
		t.Logf("SIGTERM: exited 0 after %s", time.Since(start).Round(time.Millisecond))
		if n2.HasAddress(vip) {
			t.Fatal("VIP left on the interface after exit")
		}
		// n1 (running its original config) takes over.
		waitNeigh(t, l, 10*time.Second, map[netip.Addr]string{vip: n1.MAC.String()})
	})
}
