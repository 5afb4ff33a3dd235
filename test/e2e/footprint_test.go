package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// vips510 are 255 IPv4 and 255 IPv6 VIPs: the most one interface carries.
var vips510 = func() []netip.Addr {
	out := slices.Clone(vips255)
	for i := 1; i <= 255; i++ {
		out = append(out, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 15: byte(i)}))
	}
	return out
}()

// rssOf is a process's resident set size in bytes.
func rssOf(t *testing.T, p *lab.Proc) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.Atoi(f[1])
			return kb * 1024
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

type megabytes []int

func (m megabytes) String() string {
	c := slices.Clone(m)
	slices.Sort(c)
	mb := func(b int) string { return fmt.Sprintf("%.1f MB", float64(b)/(1<<20)) }
	return fmt.Sprintf("min %s / median %s / max %s over %d runs", mb(c[0]), mb(c[len(c)/2]), mb(c[len(c)-1]), len(c))
}

// TestFootprint is a measurement, not a check: the RSS of one node master
// of all its VIPs, 10 s after it took them, in the static mode, the
// dynamic mode and the dynamic mode with Kubernetes (a real API server),
// at 6, 255 and 510 virtual routers, of the binary as released (static,
// stripped: lab.BuildRelease):
//
//	GARPD_RSS_RUNS=3 go test ./test/e2e -run TestFootprint -v
func TestFootprint(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("GARPD_RSS_RUNS"))
	if runs <= 0 {
		t.Skip("a measurement: GARPD_RSS_RUNS=3 go test ./test/e2e -run TestFootprint -v")
	}
	bin := filepath.Join(t.TempDir(), "garpd")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := lab.BuildRelease(ctx, bin, "./cmd/garpd"); err != nil {
		t.Fatal(err)
	}
	l := newLab(t, 1)
	n := l.Node("n1")
	var k *lab.Kube
	if lab.EtcdAvailable() == nil {
		k = startKube(t, l)
		addKubeNode(t, l, k, n)
	}
	config := func(mode string, vips []netip.Addr) string {
		var b strings.Builder
		fmt.Fprintf(&b, "node: n1\ninterface: eth0\nvips:\n")
		for _, v := range vips {
			fmt.Fprintf(&b, "  - %s\n", v)
		}
		b.WriteString("vrrp:\n  advert_interval: 100ms\n  vrid_base: 1\nlog:\n  level: warn\n")
		switch mode {
		case "static":
			b.WriteString("priorities:\n")
			for _, v := range vips {
				fmt.Fprintf(&b, "  \"%s\": 200\n", v)
			}
		default:
			fmt.Fprintf(&b, "gossip:\n  secret_key_file: %s\n  settle: 1s\n", labKey(l))
		}
		if mode == "dynamic+kubernetes" {
			fmt.Fprintf(&b, "kubernetes:\n  kubeconfig: %s\n", k.Agents["n1"])
		}
		return b.String()
	}
	var lines []string
	for _, mode := range []string{"static", "dynamic", "dynamic+kubernetes"} {
		if mode == "dynamic+kubernetes" && k == nil {
			lines = append(lines, "  dynamic+kubernetes: skipped (no etcd)")
			continue
		}
		for _, vips := range [][]netip.Addr{vips6, vips255, vips510} {
			var rss megabytes
			for range runs {
				p, err := n.StartGarpd(bin, config(mode, vips))
				if err != nil {
					t.Fatal(err)
				}
				waitMasters(t, n, len(vips), 60*time.Second)
				time.Sleep(10 * time.Second)
				rss = append(rss, rssOf(t, p))
				p.Stop()
			}
			lines = append(lines, fmt.Sprintf("  %-19s %3d VRs: %s", mode, len(vips), rss))
		}
	}
	t.Logf("RSS of a master of every VR:\n%s", strings.Join(lines, "\n"))
}
