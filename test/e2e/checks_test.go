package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// hook writes an executable shell script into the lab's directory.
func hook(t *testing.T, l *lab.Lab, name, body string) string {
	t.Helper()
	p := filepath.Join(l.Dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// touch creates (ok) or removes the file a lab check tests for.
func touch(t *testing.T, path string, ok bool) {
	t.Helper()
	var err error
	if ok {
		err = os.WriteFile(path, nil, 0o644)
	} else {
		err = os.Remove(path)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// keepalived's control semantics in the static mode, on the rotated
// 200/150/50 cluster, with the router's neighbour table as ground truth:
//   - a check without a weight (n1's, on VIP 1) puts the router in FAULT
//     while it fails: VIP 1 moves to its next priority (n3), and back when
//     the check passes;
//   - a weighted check (n2's, weight -100 on VIP 2) moves VIP 2 to the node
//     now ahead (n1 at 150 over n2's 200-100) and back;
//   - a tracked interface (n3's uplink, on VIP 3) down moves VIP 3 to n2
//     within an advert interval and skew;
//   - n1's notify hook hears each transition once, in keepalived's words;
//     n3's master hook hangs for 60 s and its takeovers stay as fast.
func TestStaticChecksKeepalivedSemantics(t *testing.T) {
	l := newLab(t, 3)
	n1, n2, n3 := l.Node("n1"), l.Node("n2"), l.Node("n3")
	okFile := map[string]string{}
	for _, n := range l.Nodes {
		okFile[n.Name] = filepath.Join(l.Dir, "ok-"+n.Name)
		touch(t, okFile[n.Name], true)
	}
	// n3's uplink: a veth pair of its own, both ends in its namespace.
	for _, cmd := range [][]string{{"link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p"},
		{"link", "set", "uplink0p", "up"}, {"link", "set", "uplink0", "up"}} {
		if _, err := lab.Exec(n3.NS, append([]string{"ip"}, cmd...)...); err != nil {
			t.Fatal(err)
		}
	}
	notifyLog := filepath.Join(l.Dir, "notify-n1.log")
	notify := hook(t, l, "notify.sh", `echo "$*" >> `+notifyLog)
	hang := hook(t, l, "hang.sh", "sleep 60")
	check := func(name, vip string, weight int) string {
		return fmt.Sprintf("health:\n  checks:\n    - {name: ok, exec: [/usr/bin/test, -e, %s], interval: 100ms, timeout: 100ms, fall: 1, rise: 1, vips: [%s], weight: %d}\n",
			okFile[name], vip, weight)
	}
	extra := map[string]string{
		"n1": check("n1", vips3[0].String(), 0) + "notify: {exec: [" + notify + "]}\n",
		"n2": check("n2", vips3[1].String(), -100),
		"n3": check("n3", vips3[2].String(), 0) + "track_interfaces: [{name: uplink0, vips: [" + vips3[2].String() + "]}]\n" +
			"notify: {master: [" + hang + "], timeout: 90s}\n",
	}
	procs := map[string]*lab.Proc{}
	for _, name := range []string{"n1", "n2", "n3"} {
		p, err := l.Node(name).StartGarpd(garpdBin, staticConfig(name, vips3, rotated[name], cfgOpts{advert: "100ms", extra: extra[name]}))
		if err != nil {
			t.Fatal(err)
		}
		procs[name] = p
	}
	home := map[netip.Addr]string{vips3[0]: n1.MAC.String(), vips3[1]: n2.MAC.String(), vips3[2]: n3.MAC.String()}
	waitNeigh(t, l, 10*time.Second, home)
	events := watch(t, l)

	// moves does something and reports how long the router took to point
	// vip at want.
	moves := func(what string, vip netip.Addr, want *lab.Node, do func()) time.Duration {
		t.Helper()
		time.Sleep(300 * time.Millisecond)
		drain(events)
		start := time.Now()
		do()
		d := waitNeighChange(t, events, vip, want.MAC.String(), start, 5*time.Second)
		t.Logf("%s: the router points %s at %s %s later", what, vip, want.Name, d.Round(time.Millisecond))
		return d
	}

	// 1. A check without a weight: FAULT, and back. The router follows
	// the check's verdict (the agent's log line) within skew time.
	var removed time.Time
	d := moves("n1's check fails (no weight)", vips3[0], n3, func() { removed = time.Now(); touch(t, okFile["n1"], false) })
	if verdict, ok := logTime(procs["n1"].Output(), "health check failing", removed.Add(-time.Second)); !ok {
		t.Error("n1 does not log its check's verdict")
	} else if after := removed.Add(d).Sub(verdict); after > time.Second {
		t.Errorf("the router followed n1's check verdict %s later", after)
	} else {
		t.Logf("the router followed n1's check verdict %s later", after.Round(time.Millisecond))
	}
	waitFor(t, 5*time.Second, "n1 to report its router in FAULT", func() (bool, string) {
		out, err := lab.Exec(n1.NS, garpdBin, "status")
		return err == nil && strings.Contains(out, " fault "), out
	})
	moves("n1's check passes again", vips3[0], n1, func() { touch(t, okFile["n1"], true) })

	// 2. A weighted check shifts the priority: the VIP follows the order.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("n2:\n%s", tail(procs["n2"].Output(), 30))
		}
	})
	moves("n2's weighted check fails (200-100 < n1's 150)", vips3[1], n1, func() { touch(t, okFile["n2"], false) })
	waitFor(t, 5*time.Second, "n2 to advertise 100 for VIP 2", func() (bool, string) {
		out, err := lab.Exec(n2.NS, garpdBin, "status")
		return err == nil && strings.Contains(out, " 100 "), out
	})
	moves("n2's weighted check passes again", vips3[1], n2, func() { touch(t, okFile["n2"], true) })

	// 3. A tracked interface down: VIP 3 leaves n3 within an advert
	// interval and skew (its priority-0 advert makes n2 take over at once).
	d = moves("n3's tracked uplink down", vips3[2], n2, func() {
		if _, err := lab.Exec(n3.NS, "ip", "link", "set", "uplink0", "down"); err != nil {
			t.Fatal(err)
		}
	})
	if d > 2*time.Second {
		t.Errorf("VIP 3 left n3 %s after its tracked link went down; the check runs every 100 ms", d)
	}
	// n3 takes VIP 3 back; its master hook now hangs for 60 s.
	moves("n3's tracked uplink up", vips3[2], n3, func() {
		if _, err := lab.Exec(n3.NS, "ip", "link", "set", "uplink0", "up"); err != nil {
			t.Fatal(err)
		}
	})

	// 4. With n3's master hook hanging, n3 still takes VIP 1 from a
	// killed n1 as fast as without hooks (master-down interval ≈ 0.4 s).
	kill := moves("n1 killed, n3's master hook hanging", vips3[0], n3, func() {
		if err := procs["n1"].Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	})
	if kill > 2*time.Second {
		t.Errorf("n3 took VIP 1 %s after n1 died: a hanging hook held the takeover", kill)
	}

	// 5. n1's hook heard every transition once, in keepalived's words
	// (VRID 10 is VIP 1's; 11 and 12 are not tracked by its check).
	b, err := os.ReadFile(notifyLog)
	if err != nil {
		t.Fatal(err)
	}
	var vrid10 []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "INSTANCE" && f[1] == "garpd_ipv4_10" {
			vrid10 = append(vrid10, f[2])
		}
	}
	want := "BACKUP MASTER FAULT BACKUP MASTER"
	if got := strings.Join(vrid10, " "); got != want {
		t.Fatalf("n1's hook heard %q for VRID 10, want %q:\n%s", got, want, b)
	}
}

// logTime is the time of the first JSON log line after since whose
// message contains what.
func logTime(output, what string, since time.Time) (time.Time, bool) {
	for _, line := range strings.Split(output, "\n") {
		if !strings.Contains(line, what) {
			continue
		}
		var rec struct {
			Time time.Time `json:"time"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Time.After(since) {
			return rec.Time, true
		}
	}
	return time.Time{}, false
}
