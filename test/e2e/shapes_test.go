package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// deploymentShape is one of the keepalived deployments garpd's users run,
// as its keepalived.conf (a template in testdata/shapes, filled per node)
// would be in each pod or host.
type deploymentShape struct {
	file  string
	nodes int
	vips  []netip.Addr
	// multicast: the file names no peers, so the import needs --join.
	multicast bool
}

var deploymentShapes = []deploymentShape{
	{file: "konvoy.conf", nodes: 3, vips: addrs("192.0.2.101"), multicast: true},
	{file: "aaa-ipv6.conf", nodes: 3, vips: addrs("2001:db8::101", "2001:db8::102", "2001:db8::103")},
	{file: "openstack-vmac.conf", nodes: 2, vips: addrs("192.0.2.101")},
	{file: "ipfailover.conf", nodes: 3, vips: addrs("192.0.2.101", "192.0.2.102", "192.0.2.103"), multicast: true},
	{file: "ingress-vip.conf", nodes: 3, vips: addrs("192.0.2.110")},
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// shapeConfig fills a shape's template for node k of the lab.
func shapeConfig(t *testing.T, l *lab.Lab, file string, k int) string {
	t.Helper()
	n := l.Nodes[k]
	var peers4, peers6 []string
	for _, p := range l.Nodes {
		if p != n {
			peers4, peers6 = append(peers4, p.IPv4.String()), append(peers6, p.IPv6.String())
		}
	}
	funcs := template.FuncMap{
		"list": func(v ...any) []any { return v },
		"add":  func(a, b int) int { return a + b },
		// rotated: instance i's owner is node i; the next node backs it
		// up first (hand-rotated priorities).
		"rotated": func(i int) int { return []int{200, 150, 100}[(k-i%len(l.Nodes)+len(l.Nodes))%len(l.Nodes)] },
	}
	tmpl, err := template.New(file).Funcs(funcs).ParseFiles(filepath.Join("testdata", "shapes", file))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	err = tmpl.Execute(&b, map[string]any{"Node": n.Name, "Index": k, "Self4": n.IPv4, "Self6": n.IPv6,
		"Peers4": peers4, "Peers6": peers6, "Dir": l.Dir})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// Issue 37's done-when: each of the five deployment shapes goes from its
// own keepalived configuration to garpd node by node, with keepalived
// still running on the others: garpd import keepalived --dynamic of the
// nodes' files (one router_id for all in two shapes: --node NAME=FILE),
// then each node's keepalived stopped and garpd started on its config.
// Throughout, every VIP has one holder (the nodes' addresses, from
// netlink), but during one failover: none for at most two master-down
// intervals at a stretch, two for at most two advert intervals in all.
// The pods' keepalived is Debian's, run as the pod runs it; the shapes'
// checks have what they check (a kubelet, an ingress controller, a
// router's port) on every node.
func TestDeploymentShapesMoveNodeByNode(t *testing.T) {
	needKeepalived(t)
	for _, shape := range deploymentShapes {
		t.Run(strings.TrimSuffix(shape.file, ".conf"), func(t *testing.T) { moveShape(t, shape) })
	}
}

func moveShape(t *testing.T, shape deploymentShape) {
	l := newLab(t, shape.nodes)
	if err := os.WriteFile(filepath.Join(l.Dir, "check_apiserver.sh"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	www := filepath.Join(l.Dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(www, "healthz"), []byte("ok"), 0o644); err != nil {
		t.Fatal(err)
	}
	// What the shapes' checks ask: the kubelet, the ingress controller,
	// the router's stats port.
	for _, n := range l.Nodes {
		for _, port := range []string{"10248", "10254", "1936"} {
			if _, err := l.Start(n.NS, n.Name+"-www-"+port, "python3", "-m", "http.server", "-b", "127.0.0.1", "-d", www, port); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(time.Second) // the servers listen before the checks' first run

	kas := map[string]*lab.Proc{}
	var nodeFlags []string
	for k, n := range l.Nodes {
		p, err := n.StartKeepalived(n.Name+"-keepalived", shapeConfig(t, l, shape.file, k))
		if err != nil {
			t.Fatal(err)
		}
		kas[n.Name] = p
		nodeFlags = append(nodeFlags, "--node", n.Name+"="+filepath.Join(l.Dir, n.Name+"-keepalived", "keepalived.conf"))
	}
	oneHolder := func(why string, timeout time.Duration) {
		t.Helper()
		waitFor(t, timeout, "one holder per VIP ("+why+")", func() (bool, string) {
			hs := holdersOnAnyLink(t, l, shape.vips)
			for _, h := range hs {
				if len(h) != 1 {
					return false, fmt.Sprint(hs)
				}
			}
			return true, ""
		})
	}
	oneHolder("keepalived on every node", 20*time.Second)

	dir := filepath.Join(l.Dir, "garpd")
	args := append([]string{"import", "keepalived", "--dynamic", "--out", dir}, nodeFlags...)
	if shape.multicast {
		var join []string
		for _, n := range l.Nodes {
			join = append(join, n.IPv4.String()+":7946")
		}
		args = append(args, "--join", strings.Join(join, ","))
	}
	for i := 1; i < len(nodeFlags); i += 2 {
		_, file, _ := strings.Cut(nodeFlags[i], "=")
		args = append(args, file)
	}
	out, err := exec.Command(garpdBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	t.Logf("import:\n%s", out)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch, err := l.WatchHolders(ctx, l.Nodes, shape.vips)
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	var moved []string
	for _, n := range l.Nodes {
		kas[n.Name].Signal(syscall.SIGTERM)
		if _, err := kas[n.Name].Wait(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		if _, err := n.StartGarpd(garpdBin, importedConfig(t, l, dir, n.Name)); err != nil {
			t.Fatal(err)
		}
		moved = append(moved, n.Name)
		if len(moved) == 1 {
			time.Sleep(5 * time.Second) // alone among keepalived nodes: past its join grace
		} else {
			waitSettled(t, l, moved...)
		}
		oneHolder(n.Name+" moved to garpd", 15*time.Second)
		t.Logf("%s: keepalived replaced by garpd (%s on garpd)", n.Name, strings.Join(moved, ", "))
	}
	time.Sleep(2 * time.Second)
	oneHolder("garpd on every node", 5*time.Second)
	end := time.Now()

	oneHolderThroughout(t, watch, begin, end, time.Second, "the move")
}

// holdersOnAnyLink returns, per VIP, the nodes that have it on any of
// their interfaces (a VMAC interface's too).
func holdersOnAnyLink(t *testing.T, l *lab.Lab, vips []netip.Addr) map[netip.Addr][]string {
	t.Helper()
	out := map[netip.Addr][]string{}
	for _, v := range vips {
		out[v] = nil
	}
	for _, n := range l.Nodes {
		links, err := n.Links()
		if err != nil {
			t.Fatal(err)
		}
		held := map[netip.Addr]bool{}
		for _, link := range links {
			as, err := n.AddressesOn(link)
			if err != nil {
				continue // gone meanwhile
			}
			for _, a := range as {
				held[a] = true
			}
		}
		for _, v := range vips {
			if held[v] {
				out[v] = append(out[v], n.Name)
			}
		}
	}
	return out
}
