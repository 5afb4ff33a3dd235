package e2e

import (
	"fmt"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
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

// importedConfig is the dynamic-mode config garpd import keepalived --out
// dir wrote for node, with the lab's gossip key and a 3 s settle.
func importedConfig(t *testing.T, l *lab.Lab, dir, node string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, node+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "/etc/garpd/gossip.key", labKey(l), 1)
	return strings.Replace(cfg, "gossip:\n", "gossip:\n  settle: 3s\n", 1)
}

// startImported starts garpd on n with the config garpd import keepalived
// makes of its keepalived file.
func startImported(t *testing.T, n *lab.Node, file string) *lab.Proc {
	t.Helper()
	out, err := exec.Command(garpdBin, "import", "keepalived", file, "--node", n.Name).Output()
	if err != nil {
		t.Fatalf("import %s: %v", file, err)
	}
	p, err := n.StartGarpd(garpdBin, string(out))
	if err != nil {
		t.Fatalf("start garpd on %s with its imported config: %v\n%s", n.Name, err, out)
	}
	return p
}

// waitKeepalivedOwners waits until the router maps every VIP to the node
// keepalived had it on (want), and checks that node alone holds it.
func waitKeepalivedOwners(t *testing.T, l *lab.Lab, vips []netip.Addr, want map[netip.Addr]string) {
	t.Helper()
	waitFor(t, 30*time.Second, "the router to map every VIP where keepalived had it", func() (bool, string) {
		now := routerOwners(t, l, vips)
		return maps.Equal(now, want), fmt.Sprintf("now %v, keepalived had %v", now, want)
	})
	// The old master lets go when it hears the new one's advert: poll.
	waitFor(t, 5*time.Second, "each VIP held by its owner alone", func() (bool, string) {
		for v, owner := range want {
			for _, n := range l.Nodes {
				if held := n.HasAddress(v); held != (n.Name == owner) {
					return false, fmt.Sprintf("%s on %s: held %v, want it on %s only", v, n.Name, held, owner)
				}
			}
		}
		return true, ""
	})
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
		startImported(t, n, filepath.Join(l.Dir, n.Name+"-keepalived", "keepalived.conf"))
	}
	waitKeepalivedOwners(t, l, vips6, before)
	t.Logf("garpd with the imported configs holds every VIP where keepalived did: %v", before)
}

// renderedOwners reads rendered keepalived.conf files: per VIP, the node
// at each priority.
func renderedOwners(t *testing.T, files map[string]string) map[netip.Addr]map[int]string {
	t.Helper()
	inst := regexp.MustCompile(`(?s)priority (\d+)\n.*?virtual_ipaddress \{\n\s+([^/\s]+)/`)
	out := map[netip.Addr]map[int]string{}
	for node, text := range files {
		for _, m := range inst.FindAllStringSubmatch(text, -1) {
			a := netip.MustParseAddr(m[2])
			p, _ := strconv.Atoi(m[1])
			if out[a] == nil {
				out[a] = map[int]string{}
			}
			out[a][p] = node
		}
	}
	return out
}

// Issue 13: garpd render keepalived of a dynamic config over n1, n2, n3
// gives files keepalived -t accepts; n3 runs keepalived with its file,
// n1 and n2 run garpd with theirs imported back, and the router maps
// every VIP to the plan's owner, one holder each. Then garpd on n1 stops:
// its VIPs go to the plan's rank-1 node, keepalived or garpd.
func TestRenderedKeepalivedAgreesWithGarpd(t *testing.T) {
	// keepalived 2.2.7 has no auth_hmac: --target 2.2 leaves it out and
	// says what the garpd nodes beside it need. 2.4.3 speaks it: the
	// rendering carries the key the dynamic mode derives.
	t.Run("keepalived-2.2.7", func(t *testing.T) {
		needKeepalived(t)
		renderedAgrees(t, "keepalived", "2.2")
	})
	t.Run("keepalived-2.4.3-auth_hmac", func(t *testing.T) { renderedAgrees(t, keepalived243(t), "2.4") })
}

func renderedAgrees(t *testing.T, keepalived, target string) {
	l := newLab(t, 3)
	cfg := filepath.Join(l.Dir, "dynamic.yaml")
	// A check and a notify hook render as keepalived's track_script and
	// notify, which keepalived runs too.
	const hooks = "health:\n  checks:\n    - {name: alive, exec: [/usr/bin/true], interval: 1s}\nnotify: {exec: [/usr/bin/true]}\n"
	if err := os.WriteFile(cfg, []byte(dynConfig(l, "n1", vips6, hooks)), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(l.Dir, "rendered")
	out, err := exec.Command(garpdBin, "render", "keepalived", "--config", cfg, "--nodes", "n1,n2,n3", "--target", target, "--out", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("render: %v\n%s", err, out)
	}
	if noted := strings.Contains(string(out), "auth_hmac: {mode: receive-only}"); noted != (target == "2.2") {
		t.Errorf("render --target %s: the note on what the garpd nodes need is there: %v, want %v\n%s", target, noted, target == "2.2", out)
	}
	files := map[string]string{}
	for _, n := range l.Nodes {
		path := filepath.Join(dir, n.Name+".conf")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		files[n.Name] = string(b)
		if _, err := lab.Exec(n.NS, keepalived, "-t", "-f", path); err != nil {
			t.Errorf("keepalived -t refuses %s: %v", path, err)
		}
	}
	owners := renderedOwners(t, files)
	if len(owners) != len(vips6) {
		t.Fatalf("rendered priorities for %d VIPs, want %d: %v", len(owners), len(vips6), owners)
	}
	procs := map[string]*lab.Proc{}
	for _, name := range []string{"n1", "n2"} {
		procs[name] = startImported(t, l.Node(name), filepath.Join(dir, name+".conf"))
	}
	if _, err := l.Node("n3").StartKeepalivedBinary(keepalived, "n3-keepalived", files["n3"]); err != nil {
		t.Fatal(err)
	}
	want := func(down string) map[netip.Addr]string {
		w := map[netip.Addr]string{}
		for a, byPrio := range owners {
			w[a] = byPrio[250]
			if w[a] == down {
				w[a] = byPrio[200]
			}
		}
		return w
	}
	agree := func(down string) {
		t.Helper()
		w := want(down)
		waitFor(t, 30*time.Second, "every VIP on the plan's holder, and held there only", func() (bool, string) {
			now := routerOwners(t, l, vips6)
			if !maps.Equal(now, w) {
				return false, fmt.Sprintf("router %v, plan %v", now, w)
			}
			for a, owner := range w {
				for _, n := range l.Nodes {
					if n.HasAddress(a) != (n.Name == owner) {
						return false, fmt.Sprintf("%s held by %s too", a, n.Name)
					}
				}
			}
			return true, ""
		})
	}
	agree("")
	procs["n1"].Signal(syscall.SIGTERM)
	procs["n1"].Wait(10 * time.Second)
	agree("n1")
	t.Logf("keepalived (n3) and garpd (n1, n2) agree on every master, also with n1 stopped: %v", want("n1"))
}

// Issue 13, the 3-node active-active-active IPv6 shape on the lab:
// priorities rotated 200/150/50, unicast peers, authentication on the v3
// instances (which keepalived ignores) and a kubelet health check (curl of
// its healthz port, served on every node). The keepalived cluster is
// replaced by garpd nodes running their imported configs, and the router
// ends with every VIP on the node keepalived had it on.
func TestImportedKeepalivedV6ClusterKeepsItsMasters(t *testing.T) {
	needKeepalived(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("skipping: the kubelet check needs curl (apt-get install curl)")
	}
	l := newLab(t, 3)
	vips := []netip.Addr{netip.MustParseAddr("2001:db8::201"), netip.MustParseAddr("2001:db8::202"), netip.MustParseAddr("2001:db8::203")}
	kas := map[string]*lab.Proc{}
	files := map[string]string{}
	for k, n := range l.Nodes {
		dir := filepath.Join(l.Dir, n.Name+"-kubelet")
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "healthz"), []byte("ok"), 0o644)
		if _, err := l.Start(n.NS, n.Name+"-kubelet", "python3", "-m", "http.server", "-b", "127.0.0.1", "-d", dir, "10248"); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		fmt.Fprintf(&b, "global_defs {\n  router_id %s\n  vrrp_version 3\n}\n", n.Name)
		b.WriteString("vrrp_script chk_kubelet {\n  script \"/usr/bin/curl -sf http://127.0.0.1:10248/healthz\"\n  interval 1\n  timeout 1\n  rise 1\n  fall 2\n}\n")
		for i, v := range vips {
			prio := []int{200, 150, 50}[(k-i+3)%3] // VIP i's owner is node i
			var peers []string
			for _, p := range l.Nodes {
				if p != n {
					peers = append(peers, "    "+p.IPv6.String())
				}
			}
			fmt.Fprintf(&b, `vrrp_instance VI_%d {
  state BACKUP
  interface eth0
  virtual_router_id %d
  priority %d
  advert_int 1
  authentication {
    auth_type PASS
    auth_pass k8s-vip
  }
  unicast_src_ip %s
  unicast_peer {
%s
  }
  virtual_ipaddress {
    %s/64 dev eth0
  }
  track_script {
    chk_kubelet
  }
}
`, i+1, 51+i, prio, n.IPv6, strings.Join(peers, "\n"), v)
		}
		p, err := n.StartKeepalived(n.Name+"-keepalived", b.String())
		if err != nil {
			t.Fatal(err)
		}
		kas[n.Name] = p
		files[n.Name] = filepath.Join(l.Dir, n.Name+"-keepalived", "keepalived.conf")
	}
	want := map[netip.Addr]string{vips[0]: "n1", vips[1]: "n2", vips[2]: "n3"}
	waitFor(t, 30*time.Second, "keepalived to put VIP i on node i", func() (bool, string) {
		now := routerOwners(t, l, vips)
		return maps.Equal(now, want), fmt.Sprint(now)
	})
	for _, p := range kas {
		p.Signal(syscall.SIGTERM)
	}
	for _, p := range kas {
		p.Wait(10 * time.Second)
	}
	if _, err := lab.Exec(l.Router, "ip", "-6", "neigh", "flush", "all"); err != nil {
		t.Fatal(err)
	}
	if now := routerOwners(t, l, vips); len(now) > 0 {
		t.Fatalf("router entries left after the flush: %v", now)
	}
	for _, n := range l.Nodes {
		startImported(t, n, files[n.Name])
	}
	waitKeepalivedOwners(t, l, vips, want)
}

// Issue 21: the 3-node active-active-active keepalived cluster (rotated
// 200/150/50, a track_script on each node) imported with --dynamic runs
// with each VIP on the node keepalived had it on; killing each node in turn
// moves only its VIP, and it comes back after settle; a failing check does
// the same.
func TestImportedDynamicKeepsKeepalivedMasters(t *testing.T) {
	l := newLab(t, 3)
	var paths []string
	okFile := map[string]string{}
	for k, n := range l.Nodes {
		okFile[n.Name] = filepath.Join(l.Dir, "ok-"+n.Name)
		touch(t, okFile[n.Name], true)
		var b strings.Builder
		fmt.Fprintf(&b, "global_defs {\n  router_id %s\n  vrrp_version 3\n}\n", n.Name)
		fmt.Fprintf(&b, "vrrp_script chk_ok {\n  script \"/usr/bin/test -e %s\"\n  interval 1\n  timeout 1\n  rise 1\n  fall 1\n}\n", okFile[n.Name])
		for i, v := range vips3 {
			var peers []string
			for _, p := range l.Nodes {
				if p != n {
					peers = append(peers, "    "+p.IPv4.String())
				}
			}
			fmt.Fprintf(&b, "vrrp_instance VI_%d {\n  state BACKUP\n  interface eth0\n  virtual_router_id %d\n  priority %d\n  advert_int 0.1\n"+
				"  unicast_src_ip %s\n  unicast_peer {\n%s\n  }\n  virtual_ipaddress {\n    %s/24 dev eth0\n  }\n  track_script {\n    chk_ok\n  }\n}\n",
				i+1, 61+i, []int{200, 150, 50}[(k-i+3)%3], n.IPv4, strings.Join(peers, "\n"), v)
		}
		dir := filepath.Join(l.Dir, n.Name+"-keepalived")
		os.MkdirAll(dir, 0o755)
		path := filepath.Join(dir, "keepalived.conf")
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	out := filepath.Join(l.Dir, "imported")
	if b, err := exec.Command(garpdBin, append([]string{"import", "keepalived", "--dynamic", "--out", out}, paths...)...).CombinedOutput(); err != nil {
		t.Fatalf("import: %v\n%s", err, b)
	}
	config := func(name string) string { return importedConfig(t, l, out, name) }
	procs := map[string]*lab.Proc{}
	start := func(name string) {
		p, err := l.Node(name).StartGarpd(garpdBin, config(name))
		if err != nil {
			t.Fatal(err)
		}
		procs[name] = p
	}
	for _, n := range l.Nodes {
		start(n.Name)
	}
	masters := map[netip.Addr]string{vips3[0]: "n1", vips3[1]: "n2", vips3[2]: "n3"}
	waitKeepalivedOwners(t, l, vips3, masters)
	waitSettled(t, l, "n1", "n2", "n3")

	// onlyItsVIP waits until node's VIP is on another node and checks
	// that nothing else moved; then undo brings it back after settle.
	onlyItsVIP := func(what, node string, do, undo func()) {
		t.Helper()
		vip := vips3[slices.Index([]string{"n1", "n2", "n3"}, node)]
		do()
		waitFor(t, 15*time.Second, what+": "+node+"'s VIP elsewhere", func() (bool, string) {
			now := routerOwners(t, l, vips3)
			return now[vip] != "" && now[vip] != node, fmt.Sprint(now)
		})
		now := routerOwners(t, l, vips3)
		for v, owner := range masters {
			if v != vip && now[v] != owner {
				t.Errorf("%s: %s moved from %s to %s; only %s's VIP may move", what, v, owner, now[v], node)
			}
		}
		t.Logf("%s: %s's VIP went to %s, nothing else moved", what, node, now[vip])
		undo()
		waitKeepalivedOwners(t, l, vips3, masters)
		waitSettled(t, l, "n1", "n2", "n3")
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		onlyItsVIP("SIGKILL", n, func() {
			procs[n].Signal(syscall.SIGKILL)
			procs[n].Wait(5 * time.Second)
		}, func() { start(n) })
	}
	onlyItsVIP("n2's check fails", "n2", func() { touch(t, okFile["n2"], false) }, func() { touch(t, okFile["n2"], true) })
}
