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

// vips255 are 255 IPv4 VIPs: the most virtual routers one family can have.
var vips255 = func() []netip.Addr {
	var out []netip.Addr
	for i := 1; i <= 200; i++ {
		out = append(out, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	}
	for i := 200; i < 255; i++ {
		out = append(out, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
	}
	return out
}()

// cpuShares measures the CPU share (% of one core) each process used over
// the same window.
func cpuShares(t *testing.T, window time.Duration, procs ...*lab.Proc) []float64 {
	t.Helper()
	read := func() []time.Duration {
		var out []time.Duration
		for _, p := range procs {
			c, err := lab.CPUTime(p.Cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, c)
		}
		return out
	}
	c0, start := read(), time.Now()
	time.Sleep(window)
	c1, took := read(), time.Since(start)
	out := make([]float64, len(procs))
	for i := range procs {
		out[i] = 100 * float64(c1[i]-c0[i]) / float64(took)
	}
	return out
}

type shares []float64

func (s shares) String() string {
	c := slices.Clone(s)
	slices.Sort(c)
	return fmt.Sprintf("min %.2f %% / median %.2f %% / max %.2f %% over %d runs", c[0], c[len(c)/2], c[len(c)-1], len(c))
}

// TestReceiveCPU is a measurement, not a check: 2 nodes, 255 virtual
// routers at 100 ms adverts (GARPD_CPU_VRS=510: 255 IPv4 and 255 IPv6;
// GARPD_CPU_ADVERT=20ms), one node master of all; the CPU each process
// uses over 15 s, first for garpd, then for keepalived 2.2.7 on the same
// lab, and whether every VIP had exactly one holder on the router
// throughout. GARPD_CPU_RUNS=3 runs it.
func TestReceiveCPU(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("GARPD_CPU_RUNS"))
	if runs <= 0 {
		t.Skip("a measurement: GARPD_CPU_RUNS=3 go test ./test/e2e -run TestReceiveCPU -v")
	}
	needKeepalived(t)
	window := 15 * time.Second
	vips255 := vips255
	if os.Getenv("GARPD_CPU_VRS") == "510" {
		vips255, window = vips510, 30*time.Second
	}
	advert, err := time.ParseDuration(cmpOr(os.Getenv("GARPD_CPU_ADVERT"), "100ms"))
	if err != nil {
		t.Fatal(err)
	}
	var gHeld, kHeld []string
	var gMaster, gBackup, kMaster, kBackup shares
	for range runs {
		l := newLab(t, 2)
		n1, n2 := l.Node("n1"), l.Node("n2")
		extra := "garp:\n  count: 1\nlog:\n  level: warn\n"
		if os.Getenv("GARPD_CPU_PROFILE") != "" {
			extra += "http:\n  pprof: true\n"
		}
		garpdCfg := func(node string, prio int) string { return scaleConfig(node, prio, vips255, advert, extra) }
		m, err := n1.StartGarpd(garpdBin, garpdCfg("n1", 200))
		if err != nil {
			t.Fatal(err)
		}
		b, err := n2.StartGarpd(garpdBin, garpdCfg("n2", 100))
		if err != nil {
			t.Fatal(err)
		}
		waitMasters(t, n1, len(vips255), 60*time.Second)
		time.Sleep(5 * time.Second) // past the takeover announcements
		held := watchHeld(t, l, vips255)
		if dir := os.Getenv("GARPD_CPU_PROFILE"); dir != "" {
			// A CPU profile of each node over the window, for go tool pprof.
			for _, n := range []*lab.Node{n1, n2} {
				out := filepath.Join(dir, n.Name+".pprof")
				go lab.Exec(n.NS, "curl", "-s", "-o", out, "http://127.0.0.1:9497/debug/pprof/profile?seconds=9")
			}
		}
		g := cpuShares(t, window, m, b)
		if out, err := lab.Exec(n2.NS, garpdBin, "status"); err == nil {
			if c := strings.Count(out, " master "); c != 0 {
				m := scrape(t, n2)
				t.Errorf("the backup is master of %d virtual routers: it does not hear the master (received %v adverts, dropped %v)",
					c, m.sum("garpd_vrrp_adverts_received_total"), m.sum("garpd_vrrp_packets_dropped_total"))
				for _, line := range strings.Split(string(m), "\n") {
					if strings.HasPrefix(line, "garpd_vrrp_packets_dropped_total") {
						t.Log(line)
					}
				}
			}
		}
		gHeld = append(gHeld, held())
		gMaster, gBackup = append(gMaster, g[0]), append(gBackup, g[1])
		t.Logf("garpd: master %.2f %%, backup %.2f %%", g[0], g[1])
		m.Stop()
		b.Stop()

		kaCfg := func(name string, prio int) string { return keepalivedScale(name, prio, vips255, advert) }
		// The master first, so the backup starts as a backup: two keepalived
		// that start together fight an election storm over 255 VRIDs.
		km, err := n1.StartKeepalived("n1-keepalived", kaCfg("n1", 200))
		if err != nil {
			t.Fatal(err)
		}
		waitAddresses(t, n1, len(vips255), 120*time.Second)
		kb, err := n2.StartKeepalived("n2-keepalived", kaCfg("n2", 100))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(12 * time.Second) // past the master's two GARP rounds
		held = watchHeld(t, l, vips255)
		k := cpuShares(t, window, km, kb)
		kHeld = append(kHeld, held())
		kMaster, kBackup = append(kMaster, k[0]), append(kBackup, k[1])
		t.Logf("keepalived: master %.2f %%, backup %.2f %%", k[0], k[1])
		km.Stop()
		kb.Stop()
		l.Close()
	}
	t.Logf("%d virtual routers at %s, CPU %% of one core over %s:", len(vips255), advert, window)
	t.Logf("  garpd      master %s", gMaster)
	t.Logf("  garpd      backup %s", gBackup)
	t.Logf("  keepalived master %s", kMaster)
	t.Logf("  keepalived backup %s", kBackup)
	t.Logf("  holders on the router through each window: garpd %v; keepalived %v", gHeld, kHeld)
}

// watchHeld watches the router's holders of vips from now; the function
// it returns says, for the time since, how many VIPs had no holder or two
// holders at some moment.
func watchHeld(t *testing.T, l *lab.Lab, vips []netip.Addr) func() string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	tl, err := l.WatchHolders(ctx, l.Nodes, vips)
	if err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	return func() string {
		stats := tl.Stats(from, time.Now())
		none, multi := 0, 0
		for _, v := range vips {
			st := stats[v]
			if st.NoHolder > 0 {
				none++
			}
			if st.Multi > 0 {
				multi++
			}
		}
		cancel()
		return fmt.Sprintf("%d of %d VIPs without a holder at some moment, %d with two", none, len(vips), multi)
	}
}
