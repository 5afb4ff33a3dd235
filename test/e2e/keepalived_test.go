package e2e

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// keepalivedComplaints matches what keepalived logs about packets it
// considers invalid, mismatched or badly checksummed.
var keepalivedComplaints = regexp.MustCompile(`(?i)invalid|mismatch|checksum|bogus|not present|wrong|malformed|ignoring|error`)

func needKeepalived(t *testing.T) {
	t.Helper()
	if err := lab.KeepalivedAvailable(); err != nil {
		t.Skipf("skipping keepalived interop: %v", err)
	}
}

// Done-when 3: keepalived 2.2.7 as a peer. The higher priority wins
// whichever side it is on, failover works both ways, and keepalived logs
// nothing about invalid, mismatched or bad-checksum packets from garpd.
func TestKeepalivedInterop(t *testing.T) {
	needKeepalived(t)
	cases := []struct {
		name     string
		version  int
		advert   string // garpd
		kaAdvert string // keepalived
		pass     string
		unicast  bool
	}{
		{name: "v3-100ms-multicast", version: 3, advert: "100ms", kaAdvert: "0.1"},
		{name: "v2-1s-auth-pass", version: 2, advert: "1s", kaAdvert: "1", pass: "s3cret"},
		{name: "v3-100ms-unicast", version: 3, advert: "100ms", kaAdvert: "0.1", unicast: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, 2)
			g, k := l.Node("n1"), l.Node("n2")
			vip := vips3[0]
			extra := ""
			if tc.pass != "" {
				extra += "  auth_pass: " + tc.pass + "\n"
			}
			if tc.unicast {
				extra += fmt.Sprintf("  unicast_peers: [%s]\n", k.IPv4)
			}
			garpdCfg := func(prio int) string {
				c := staticConfig("n1", vips3[:1], []int{prio}, cfgOpts{advert: tc.advert, version: tc.version})
				// vrrp extras belong in the vrrp section, which ends before "priorities:".
				return insertAfter(c, "  vrid_base: 10\n", extra)
			}
			inst := lab.KeepalivedInstance{Name: "VI_1", Interface: "eth0", VRID: 10, Priority: 150,
				Advert: tc.kaAdvert, VIPs: []string{vip.String()}, AuthPass: tc.pass}
			if tc.unicast {
				inst.Unicast = []netip.Addr{g.IPv4}
				inst.UnicastSrc = k.IPv4
			}
			ka, err := k.StartKeepalived("n2-keepalived", lab.KeepalivedConfig("n2", tc.version, inst))
			if err != nil {
				t.Fatal(err)
			}
			gp, err := g.StartGarpd(garpdBin, garpdCfg(200))
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			step := func(what string, mac string) {
				t.Helper()
				waitNeigh(t, l, 15*time.Second, map[netip.Addr]string{vip: mac})
				t.Logf("%s: router follows after %s", what, time.Since(start).Round(10*time.Millisecond))
			}
			step("garpd 200 vs keepalived 150: garpd is master", g.MAC.String())
			// keepalived, master for a moment at start, lets go once it
			// hears garpd: on a busy machine a little after the router
			// followed garpd.
			waitFor(t, 5*time.Second, "garpd alone to hold the VIP", func() (bool, string) {
				return g.HasAddress(vip) && !k.HasAddress(vip), fmt.Sprintf("garpd %v, keepalived %v", g.HasAddress(vip), k.HasAddress(vip))
			})

			start = time.Now()
			gp.Signal(syscall.SIGKILL)
			gp.Wait(3 * time.Second)
			step("garpd killed: keepalived takes over", k.MAC.String())

			start = time.Now()
			if gp, err = g.StartGarpd(garpdBin, garpdCfg(200)); err != nil {
				t.Fatal(err)
			}
			step("garpd back at 200: preempts keepalived", g.MAC.String())
			waitFor(t, 15*time.Second, "keepalived to release the VIP", func() (bool, string) {
				return !k.HasAddress(vip), "keepalived still holds it"
			})

			if err := g.WriteGarpdConfig(garpdCfg(100)); err != nil {
				t.Fatal(err)
			}
			start = time.Now()
			gp.Signal(syscall.SIGHUP)
			step("garpd reloaded at 100: keepalived (150) preempts", k.MAC.String())
			waitFor(t, 15*time.Second, "garpd to release the VIP", func() (bool, string) {
				return !g.HasAddress(vip), "garpd still holds it"
			})

			start = time.Now()
			ka.Signal(syscall.SIGTERM)
			ka.Wait(5 * time.Second)
			step("keepalived stopped: garpd takes over", g.MAC.String())

			gp.Stop()
			if bad := keepalivedComplaints.FindAllString(ka.Output(), -1); len(bad) > 0 {
				t.Errorf("keepalived complained about garpd's packets (%v):\n%s", bad, tail(ka.Output(), 40))
			}
			if out := ka.Output(); !regexp.MustCompile(`Entering MASTER STATE`).MatchString(out) ||
				!regexp.MustCompile(`Entering BACKUP STATE`).MatchString(out) {
				t.Errorf("keepalived never logged both MASTER and BACKUP states:\n%s", tail(out, 40))
			}
		})
	}
}

func insertAfter(s, marker, add string) string {
	i := strings.Index(s, marker)
	if i < 0 {
		return s + add
	}
	i += len(marker)
	return s[:i] + add + s[i:]
}
