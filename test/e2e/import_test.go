package e2e

import (
	"fmt"
	"maps"
	"net/netip"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// routerOwners is which node the router maps each VIP to.
func routerOwners(t *testing.T, l *lab.Lab, vips []netip.Addr) map[netip.Addr]string {
	t.Helper()
	got, err := l.Neighbours()
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Addr]string{}
	for _, v := range vips {
		if n := l.NodeByMAC(got[v]); n != nil {
			out[v] = n.Name
		}
	}
	return out
}

// Issue 13: a keepalived cluster (3 nodes, 6 VIPs, rotated priorities,
// 100 ms adverts) is stopped and replaced by garpd nodes running the
// configs garpd import keepalived makes of its files: the router ends
// with every VIP on the node keepalived had it on.
func TestImportedKeepalivedClusterKeepsItsMasters(t *testing.T) {
	needKeepalived(t)
	l := newLab(t, 3)
	kas := map[string]*lab.Proc{}
	for _, n := range []string{"n1", "n2", "n3"} {
		kas[n] = startKeepalivedNode(t, l, n)
	}
	waitSpread(t, l, vips6, 30*time.Second, even)
	before := routerOwners(t, l, vips6)
	for _, p := range kas {
		p.Signal(syscall.SIGTERM)
	}
	for _, p := range kas {
		p.Wait(10 * time.Second)
	}
	// Forget what keepalived taught the router: garpd must teach it again.
	if _, err := lab.Exec(l.Router, "ip", "neigh", "flush", "all"); err != nil {
		t.Fatal(err)
	}
	if now := routerOwners(t, l, vips6); len(now) > 0 {
		t.Fatalf("router entries left after the flush: %v", now)
	}
	for _, n := range l.Nodes {
		file := filepath.Join(l.Dir, n.Name+"-keepalived", "keepalived.conf")
		out, err := exec.Command(garpdBin, "import", "keepalived", file, "--node", n.Name).Output()
		if err != nil {
			t.Fatalf("import %s: %v", file, err)
		}
		if _, err := n.StartGarpd(garpdBin, string(out)); err != nil {
			t.Fatalf("start garpd on %s with its imported config: %v\n%s", n.Name, err, out)
		}
	}
	waitFor(t, 30*time.Second, "the router to map every VIP where keepalived had it", func() (bool, string) {
		now := routerOwners(t, l, vips6)
		return maps.Equal(now, before), fmt.Sprintf("now %v, keepalived had %v", now, before)
	})
	for v, owner := range before {
		for _, n := range l.Nodes {
			if held := n.HasAddress(v); held != (n.Name == owner) {
				t.Errorf("%s on %s: held %v, want it on %s only", v, n.Name, held, owner)
			}
		}
	}
	t.Logf("garpd with the imported configs holds every VIP where keepalived did: %v", before)
}
