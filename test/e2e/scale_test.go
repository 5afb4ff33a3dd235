package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// durations prints min / median / max.
type durations []time.Duration

func (d durations) String() string {
	if len(d) == 0 {
		return "no runs"
	}
	c := slices.Clone(d)
	slices.Sort(c)
	r := func(x time.Duration) time.Duration { return x.Round(time.Millisecond) }
	return fmt.Sprintf("min %s / median %s / max %s over %d runs", r(c[0]), r(c[len(c)/2]), r(c[len(c)-1]), len(c))
}

// takeover is one crash at scale as the router saw it.
type takeover struct {
	detect      time.Duration // crash → the backup's first router became master (garpd's log)
	first, last time.Duration // crash → the router's first and last entry on the backup's MAC
	peak        int           // the backup's ARP packets in its busiest second (garpd)
	missing     int           // VIPs the router never saw on the backup within the wait
	moved       []time.Duration
}

// wrongAt is how many of vips the router still sent to the dead node at
// d after the crash.
func (r takeover) wrongAt(vips int, d time.Duration) int {
	n := vips
	for _, m := range r.moved {
		if m <= d {
			n--
		}
	}
	return n
}

// crashAtScale: n1 holds vips, n2 is the backup; n1's link goes down and
// its process is killed at once, and the router's neighbour table is
// watched until every VIP maps to n2, for within at most.
func crashAtScale(t *testing.T, l *lab.Lab, master *lab.Proc, backup *lab.Proc, vips []netip.Addr, within time.Duration) takeover {
	t.Helper()
	n1, n2 := l.Node("n1"), l.Node("n2")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events, err := l.WatchNeighbours(ctx)
	if err != nil {
		t.Fatal(err)
	}
	capture, err := l.Start(l.Router, "arp-capture", "tcpdump", "-i", "br0", "-B", "16384", "-n", "-tt", "-l", "arp and ether src "+n2.MAC.String())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // tcpdump listening
	t0 := time.Now()
	n1.LinkDown()
	master.Signal(syscall.SIGKILL)
	left := map[netip.Addr]bool{}
	for _, v := range vips {
		left[v] = true
	}
	var res takeover
	deadline := time.After(within)
	for len(left) > 0 {
		select {
		case ev := <-events:
			if !left[ev.Addr] || ev.MAC != n2.MAC.String() {
				continue
			}
			delete(left, ev.Addr)
			if res.first == 0 {
				res.first = ev.At.Sub(t0)
			}
			res.last = ev.At.Sub(t0)
			res.moved = append(res.moved, res.last)
		case <-deadline:
			res.missing = len(left)
			clear(left)
		}
	}
	time.Sleep(1500 * time.Millisecond) // the rest of the burst, for the busiest second
	capture.Signal(syscall.SIGTERM)
	capture.Wait(5 * time.Second)
	var at []float64
	for _, line := range strings.Split(capture.Output(), "\n") {
		if f := strings.Fields(line); len(f) > 1 && strings.Contains(line, "ARP") {
			if x, err := strconv.ParseFloat(f[0], 64); err == nil {
				at = append(at, x)
			}
		}
	}
	for i := range at {
		n := 0
		for j := i; j < len(at) && at[j]-at[i] < 1; j++ {
			n++
		}
		res.peak = max(res.peak, n)
	}
	if tm, ok := logTime(backup.Output(), `"to":"master"`, t0); ok {
		res.detect = tm.Sub(t0)
	}
	return res
}

// TestTakeoverAtScale is a measurement, not a check: 2 nodes, 255 IPv4
// virtual routers (the most one family has), n1 master of all at
// GARPD_SCALE_ADVERT (default 20ms), garp.profile GARPD_SCALE_PROFILE
// (default open: a router that polices nothing); n1 crashes (link down and SIGKILL)
// and the router's table is watched until it maps every VIP to n2; the
// same with keepalived 2.2.7. Prints min / median / max of
// GARPD_SCALE_RUNS runs:
//
//	GARPD_SCALE_RUNS=5 go test ./test/e2e -run TestTakeoverAtScale -v
func TestTakeoverAtScale(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("GARPD_SCALE_RUNS"))
	if runs <= 0 {
		t.Skip("a measurement: GARPD_SCALE_RUNS=5 go test ./test/e2e -run TestTakeoverAtScale -v")
	}
	needKeepalived(t)
	advert, err := time.ParseDuration(cmpOr(os.Getenv("GARPD_SCALE_ADVERT"), "20ms"))
	if err != nil || advert < 10*time.Millisecond {
		t.Fatalf("GARPD_SCALE_ADVERT %q: a duration of at least 10ms", os.Getenv("GARPD_SCALE_ADVERT"))
	}
	profile := cmpOr(os.Getenv("GARPD_SCALE_PROFILE"), "open")
	vips := vips255
	var gDetect, gDetectToLast, gLast, kLast durations
	var gPeak, kMissing []int
	for run := range runs {
		l := newLab(t, 2)
		n1, n2 := l.Node("n1"), l.Node("n2")
		m, b := startMasterAndBackup(t, l, vips, func(node string, prio int) string {
			return scaleConfig(node, prio, vips, advert, "log:\n  level: info\ngarp:\n  profile: "+profile+"\n")
		})
		g := crashAtScale(t, l, m, b, vips, 20*time.Second)
		if g.missing > 0 {
			t.Errorf("garpd: 20 s after the crash %d VIPs are not on n2", g.missing)
		}
		gDetect, gLast, gPeak = append(gDetect, g.detect), append(gLast, g.last), append(gPeak, g.peak)
		gDetectToLast = append(gDetectToLast, g.last-g.detect)
		t.Logf("run %d garpd: crash → detected %s, router first %s, last %s (%s after detection); busiest second %d ARP packets",
			run+1, g.detect.Round(time.Millisecond), g.first.Round(time.Millisecond), g.last.Round(time.Millisecond), (g.last - g.detect).Round(time.Millisecond), g.peak)
		b.Stop()
		n1.LinkUp()

		kaCfg := func(name string, prio int) string { return keepalivedScale(name, prio, vips, advert) }
		km, err := n1.StartKeepalived("n1-keepalived", kaCfg("n1", 200))
		if err != nil {
			t.Fatal(err)
		}
		waitNeigh(t, l, 120*time.Second, onNode(n1, vips))
		kb, err := n2.StartKeepalived("n2-keepalived", kaCfg("n2", 100))
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(12 * time.Second) // past the master's two GARP rounds
		k := crashAtScale(t, l, km, kb, vips, 20*time.Second)
		if k.missing > 0 {
			kMissing = append(kMissing, k.missing)
			t.Logf("run %d keepalived: crash → router first %s; %d VIPs never on n2 within 20 s", run+1, k.first.Round(time.Millisecond), k.missing)
		} else {
			kLast = append(kLast, k.last)
			t.Logf("run %d keepalived: crash → router first %s, last %s", run+1, k.first.Round(time.Millisecond), k.last.Round(time.Millisecond))
		}
		kb.Stop()
		l.Close()
	}
	slices.Sort(gPeak)
	t.Logf("255 IPv4 virtual routers at %s adverts, garp.profile %s, master crashed (link down + SIGKILL):", advert, profile)
	t.Logf("  garpd      crash → detection               %s", gDetect)
	t.Logf("  garpd      detection → router holds all 255 %s", gDetectToLast)
	t.Logf("  garpd      crash → router holds all 255     %s", gLast)
	t.Logf("  keepalived crash → router holds all 255     %s; runs where some VIPs never moved: %v", kLast, kMissing)
	t.Logf("  garpd      busiest second of the backup's ARP: %v packets", gPeak)
}

// scaleConfig is a static config with a virtual router per VIP from
// VRID 1 (IPv4 and IPv6 apart), all at prio, adverts every advert; extra
// ends it.
func scaleConfig(node string, prio int, vips []netip.Addr, advert time.Duration, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node: %s\ninterface: eth0\nvips:\n", node)
	for _, v := range vips {
		fmt.Fprintf(&b, "  - %s\n", v)
	}
	fmt.Fprintf(&b, "vrrp:\n  advert_interval: %s\n  vrid_base: 1\npriorities:\n", advert)
	for _, v := range vips {
		fmt.Fprintf(&b, "  \"%s\": %d\n", v, prio)
	}
	return b.String() + extra
}

// keepalivedScale is scaleConfig for keepalived: an instance per VIP.
func keepalivedScale(name string, prio int, vips []netip.Addr, advert time.Duration) string {
	var insts []lab.KeepalivedInstance
	for i, v := range vips {
		insts = append(insts, lab.KeepalivedInstance{Name: fmt.Sprintf("VI_%d", i+1), Interface: "eth0", VRID: i%255 + 1, Priority: prio,
			Advert: strconv.FormatFloat(advert.Seconds(), 'f', -1, 64), VIPs: []string{netip.PrefixFrom(v, v.BitLen()).String()}})
	}
	return lab.KeepalivedConfig(name, 3, insts...)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
