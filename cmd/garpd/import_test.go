package main

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/garpd/garpd/vrrp"
	"github.com/garpd/garpd/vrrp/keepalived"
)

// memFiles holds keepalived configs in memory.
type memFiles = keepalived.MapFiles

// activeActiveV6 is one node of a 3-node active-active-active IPv6
// cluster: three instances with priorities rotated per node, unicast
// peers, a kubelet curl check and authentication on v3 instances (which
// keepalived ignores). Written in the other brace style, with an include.
func activeActiveV6(node int) memFiles {
	prios := [][]int{{200, 150, 50}, {50, 200, 150}, {150, 50, 200}}[node-1]
	var b strings.Builder
	fmt.Fprintf(&b, `# lb%d
global_defs
{
    router_id lb%d
    vrrp_version 3
}
include /etc/keepalived/conf.d/*.conf
`, node, node)
	for i, p := range prios {
		var peers []string
		for n := 1; n <= 3; n++ {
			if n != node {
				peers = append(peers, fmt.Sprintf("        2001:db8::%d", 10+n))
			}
		}
		fmt.Fprintf(&b, `
vrrp_instance VI_%[1]d
{
    state BACKUP
    interface eth0
    virtual_router_id %[2]d
    priority %[3]d
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass k8s-vip
    }
    unicast_src_ip 2001:db8::%[4]d
    unicast_peer {
%[5]s
    }
    virtual_ipaddress {
        2001:db8:0:1::%[1]d/64 dev eth0
    }
    track_script {
        chk_kubelet
    }
    notify "/usr/local/bin/notify.sh"
}
`, i+1, 50+i+1, p, 10+node, strings.Join(peers, "\n"))
	}
	return memFiles{
		fmt.Sprintf("/nodes/lb%d/keepalived.conf", node): b.String(),
		"/etc/keepalived/conf.d/checks.conf": `vrrp_script chk_kubelet {
    script "/usr/bin/curl -s -k https://127.0.0.1:10250/healthz"   ! the kubelet
    interval 2
    timeout 1
    rise 2
    fall 3
}
`,
	}
}

// twoNodeVMAC is a 2-node unicast IPv4 cluster with use_vmac and
// vmac_xmit_base, VRRPv2 with PASS authentication.
func twoNodeVMAC(node int) memFiles {
	src, peer := "192.0.2.11", "192.0.2.12"
	prio := 150
	if node == 2 {
		src, peer, prio = peer, src, 100
	}
	return memFiles{fmt.Sprintf("/nodes/lb%d.conf", node): fmt.Sprintf(`global_defs {
  router_id edge%d
  vrrp_garp_master_repeat 3
  vrrp_garp_interval 0.5
}
vrrp_instance VIP_EDGE {
  state BACKUP
  interface ens5
  virtual_router_id 40
  priority %d
  advert_int 1
  use_vmac
  vmac_xmit_base
  nopreempt
  authentication {
    auth_type PASS
    auth_pass longer-than-8
  }
  unicast_src_ip %s
  unicast_peer {
    %s
  }
  virtual_ipaddress {
    198.51.100.20/24 dev ens5 label ens5:vip
    198.51.100.21/24
  }
}
`, node, prio, src, peer)}
}

// controlPlane is a single control-plane VIP with keepalived's default
// VRID 51, advert_int 1 and a track_script.
func controlPlane() memFiles {
	return memFiles{"/etc/keepalived/keepalived.conf": `vrrp_script check_apiserver {
  script "/etc/keepalived/check_apiserver.sh"
  interval 3
  weight -2
  fall 10
  rise 2
}

vrrp_instance VI_1 {
    state MASTER
    interface eth0
    virtual_router_id 51
    priority 101
    authentication {
        auth_type PASS
        auth_pass 42
    }
    virtual_ipaddress {
        192.0.2.100
    }
    track_script {
        check_apiserver
    }
}
`}
}

func merge(ms ...memFiles) memFiles {
	out := memFiles{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// checkImported runs each imported config through the agent's loader
// (what garpd agent --check does), with a test gossip key.
func checkImported(t *testing.T, out []nodeFile) map[string]*loaded {
	t.Helper()
	key := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(key, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got := map[string]*loaded{}
	for _, c := range out {
		text := strings.ReplaceAll(string(c.data), "/etc/garpd/gossip.key", key)
		l, err := parseConfig([]byte(text))
		if err != nil {
			t.Fatalf("node %s: the imported config does not load: %v\n%s", c.node, err, c.data)
		}
		got[c.node] = l
	}
	return got
}

func notesText(notes []keepalived.Note) string {
	var s []string
	for _, n := range notes {
		s = append(s, n.String())
	}
	return strings.Join(s, "\n")
}

func TestImportActiveActiveV6(t *testing.T) {
	files := merge(activeActiveV6(1), activeActiveV6(2), activeActiveV6(3))
	paths := []string{"/nodes/lb1/keepalived.conf", "/nodes/lb2/keepalived.conf", "/nodes/lb3/keepalived.conf"}
	out, notes, err := importKeepalived(files, paths, importOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := checkImported(t, out)
	wantPrio := map[string][]int{"lb1": {200, 150, 50}, "lb2": {50, 200, 150}, "lb3": {150, 50, 200}}
	for node, prios := range wantPrio {
		l := got[node]
		if l == nil {
			t.Fatalf("no config for %s (got %v)", node, out)
		}
		c := l.cfg
		if c.Node != node || c.Interface != "eth0" || c.VRRP.Version != 3 || c.VRRP.AdvertInterval != time.Second || c.VRRP.AuthPass != "" {
			t.Errorf("%s: node %q interface %q version %d advert %s auth %q", node, c.Node, c.Interface, c.VRRP.Version, c.VRRP.AdvertInterval, c.VRRP.AuthPass)
		}
		own := fmt.Sprintf("2001:db8::%d", 10+int(node[2]-'0'))
		if len(c.VRRP.UnicastPeers) != 2 || slices.Contains(c.VRRP.UnicastPeers, own) {
			t.Errorf("%s: unicast peers %v, want the other two", node, c.VRRP.UnicastPeers)
		}
		// keepalived's source is kept, and its IPv6 unicast adverts (hop
		// limit 64, unsigned) are accepted from the peers while it runs.
		if !slices.Equal(c.VRRP.Source, []string{own}) || !slices.Equal(c.VRRP.AcceptHopLimitFrom, c.VRRP.UnicastPeers) {
			t.Errorf("%s: source %v, accept_hop_limit_from %v; want [%s] and the peers %v", node, c.VRRP.Source, c.VRRP.AcceptHopLimitFrom, own, c.VRRP.UnicastPeers)
		}
		for i, p := range prios {
			vip := fmt.Sprintf("2001:db8:0:1::%d", i+1)
			if c.Priorities[vip] != p {
				t.Errorf("%s: priority of %s is %d, want %d", node, vip, c.Priorities[vip], p)
			}
			if c.VIPs[i].VRID != 51+i || c.VIPs[i].Prefix.Bits() != 64 {
				t.Errorf("%s: VIP %d is %v, want VRID %d with /64", node, i, c.VIPs[i], 51+i)
			}
		}
	}
	n := notesText(notes)
	for _, want := range []string{"lb1/keepalived.conf:", "authentication on a VRRPv3 or IPv6 instance", "curl without -f", "no garp settings"} {
		if !strings.Contains(n, want) {
			t.Errorf("notes lack %q:\n%s", want, n)
		}
	}
	// What keepalived ignores too, or garpd does the same way, is harmless
	// (--strict lets it pass); the behaviour changes are not.
	for _, note := range notes {
		harmless := strings.Contains(note.What, "keepalived ignores too")
		if note.Harmless != harmless {
			t.Errorf("note %q marked harmless %v", note, note.Harmless)
		}
	}
	// Files that disagree are refused with --dynamic, each difference named.
	odd := merge(activeActiveV6(1), activeActiveV6(2), activeActiveV6(3))
	odd["/nodes/lb3/keepalived.conf"] = strings.Replace(odd["/nodes/lb3/keepalived.conf"], "advert_int 1", "advert_int 2", 1)
	if _, _, err := importKeepalived(odd, paths, importOptions{dynamic: true}); err == nil || !strings.Contains(err.Error(), "advert_int 1s on lb1, 2s on lb3") {
		t.Errorf("disagreeing files imported --dynamic: %v", err)
	}
	master := merge(activeActiveV6(1), activeActiveV6(2), activeActiveV6(3))
	master["/nodes/lb1/keepalived.conf"] = strings.Replace(master["/nodes/lb1/keepalived.conf"], "state BACKUP", "state MASTER", 1)
	if _, mn, err := importKeepalived(master, paths, importOptions{}); err != nil || !strings.Contains(notesText(mn), "state MASTER") {
		t.Errorf("state MASTER is not noted: %v\n%s", err, notesText(mn))
	}
	// The static mode keeps the track_script (no weight: FAULT while it
	// fails, on every router, as keepalived) and the notify script.
	for node, l := range got {
		c := l.cfg
		if len(c.Health.Checks) != 1 || c.Health.Checks[0].Weight != 0 || len(c.Health.Checks[0].VIPs) != 0 || c.Health.Checks[0].HTTP == "" {
			t.Errorf("%s: checks %+v, want the kubelet check on every router", node, c.Health.Checks)
		}
		if !slices.Equal(c.Notify.Exec, []string{"/usr/local/bin/notify.sh"}) {
			t.Errorf("%s: notify %+v, want exec /usr/local/bin/notify.sh", node, c.Notify)
		}
	}

	// --dynamic: the same VIPs and VRIDs, no priorities, the kubelet check
	// as an http check, and the other nodes as gossip seeds.
	out, _, err = importKeepalived(files, paths, importOptions{dynamic: true})
	if err != nil {
		t.Fatal(err)
	}
	got = checkImported(t, out)
	c := got["lb2"].cfg
	if !got["lb2"].dynamic() || len(c.VIPs) != 3 || c.VIPs[2].VRID != 53 {
		t.Errorf("dynamic lb2: dynamic %v, VIPs %v", got["lb2"].dynamic(), c.VIPs)
	}
	// Each VIP prefers the node keepalived made its master.
	for i, want := range []string{"lb1", "lb2", "lb3"} {
		if c.VIPs[i].Prefer != want {
			t.Errorf("dynamic lb2: VIP %s prefers %q, want %s (keepalived's master)", c.VIPs[i].Prefix, c.VIPs[i].Prefer, want)
		}
	}
	if n := preferenceNote(got["lb2"].alloc.Groups); n != "" {
		t.Errorf("the imported preferences cost balance: %s", n)
	}
	if !slices.Equal(c.Gossip.Join, []string{"[2001:db8::11]:7946", "[2001:db8::13]:7946"}) {
		t.Errorf("dynamic lb2: join %v, want the other nodes' unicast_src_ip", c.Gossip.Join)
	}
	// IPv6 seeds: gossip advertises an IPv6 address, which they answer,
	// even on a host that has an IPv4 one too.
	if c.Gossip.Advertise != "ipv6" {
		t.Errorf("dynamic lb2: gossip.advertise %q with IPv6 seeds, want ipv6", c.Gossip.Advertise)
	}
	hc := c.Health.Checks
	if len(hc) != 1 || hc[0].HTTP != "https://127.0.0.1:10250/healthz" || !hc[0].Insecure || hc[0].Interval != 2*time.Second ||
		hc[0].Timeout != time.Second || hc[0].Fall != 3 || hc[0].Rise != 2 {
		t.Errorf("dynamic lb2: checks %+v, want the kubelet curl as an insecure http check", hc)
	}
	// Comments say where each value came from.
	if !strings.Contains(string(out[0].data), "virtual_router_id") && !strings.Contains(string(out[0].data), "vrrp_instance VI_1 (lb1/keepalived.conf:") {
		t.Errorf("the output does not say where the VIPs came from:\n%s", out[0].data)
	}
}

func TestImportTwoNodeVMAC(t *testing.T) {
	files := merge(twoNodeVMAC(1), twoNodeVMAC(2))
	out, notes, err := importKeepalived(files, []string{"/nodes/lb1.conf", "/nodes/lb2.conf"}, importOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := checkImported(t, out)
	c := got["edge1"].cfg
	if c.VRRP.Version != 2 || c.VRRP.AuthPass != "longer-t" || *c.VRRP.Preempt || c.Interface != "ens5" {
		t.Errorf("edge1: version %d auth %q preempt %v interface %s", c.VRRP.Version, c.VRRP.AuthPass, *c.VRRP.Preempt, c.Interface)
	}
	if !slices.Equal(c.VRRP.UnicastPeers, []string{"192.0.2.12"}) || got["edge2"].cfg.Priorities["198.51.100.21"] != 100 {
		t.Errorf("edge1 peers %v, edge2 priorities %v", c.VRRP.UnicastPeers, got["edge2"].cfg.Priorities)
	}
	if c.GARP.Count != 3 || c.GARP.Interval != 500*time.Millisecond {
		t.Errorf("garp %+v, want count 3 every 500ms", c.GARP)
	}
	if len(got["edge1"].alloc.Groups) != 1 || len(got["edge1"].alloc.Groups[0].VIPs) != 2 {
		t.Errorf("the two VIPs of one instance are not one virtual router: %+v", got["edge1"].alloc.Groups)
	}
	if !c.VRRP.UseVMAC || !c.VRRP.VMACXmitBase {
		t.Errorf("use_vmac %v, vmac_xmit_base %v; want both imported", c.VRRP.UseVMAC, c.VRRP.VMACXmitBase)
	}
	if !strings.Contains(string(out[0].data), "use_vmac: true # use_vmac (nodes/lb1.conf:12)") {
		t.Errorf("use_vmac's comment does not say where it came from:\n%s", out[0].data)
	}
	if n := notesText(notes); strings.Contains(n, "vmac") {
		t.Errorf("virtual MACs are listed as not imported:\n%s", n)
	}
}

func TestImportControlPlaneVIP(t *testing.T) {
	// A multicast file names no peers: --dynamic needs --join.
	if _, _, err := importKeepalived(controlPlane(), []string{"/etc/keepalived/keepalived.conf"}, importOptions{names: map[string]string{"/etc/keepalived/keepalived.conf": "cp1"}, dynamic: true}); err == nil ||
		!strings.Contains(err.Error(), "--join") {
		t.Fatalf("a multicast cluster imported --dynamic without --join: %v", err)
	}
	join := []string{"192.0.2.12:7946", "192.0.2.13:7946"}
	out, notes, err := importKeepalived(controlPlane(), []string{"/etc/keepalived/keepalived.conf"}, importOptions{names: map[string]string{"/etc/keepalived/keepalived.conf": "cp1"}, dynamic: true, join: join})
	if err != nil {
		t.Fatal(err)
	}
	got := checkImported(t, out)
	c := got["cp1"].cfg
	if !slices.Equal(c.Gossip.Join, join) {
		t.Errorf("join %v, want --join's %v", c.Gossip.Join, join)
	}
	if got["cp1"].auth.Mode != vrrp.AuthReceiveOnly {
		t.Errorf("auth_hmac mode %v: keepalived signs nothing, so the migration starts receive-only", got["cp1"].auth.Mode)
	}
	if c.VIPs[0].VRID != 51 || c.VRRP.Version != 2 || c.VRRP.AdvertInterval != time.Second || c.VRRP.AuthPass != "42" {
		t.Errorf("cp1: %+v / %+v", c.VIPs, c.VRRP)
	}
	// The dynamic mode keeps the weight too: a soft check, which orders
	// the members' rankings.
	if hc := c.Health.Checks; len(hc) != 1 || !slices.Equal(hc[0].Exec, []string{"/etc/keepalived/check_apiserver.sh"}) || hc[0].Fall != 10 || hc[0].Interval != 3*time.Second || hc[0].Weight != -2 {
		t.Errorf("cp1 checks %+v, want the script as an exec check of weight -2", hc)
	}
	if n := notesText(notes); strings.Contains(n, "weight") {
		t.Errorf("notes speak of the weight, which is imported as it is:\n%s", n)
	}
	// The static mode keeps keepalived's weight, and a per-instance
	// weight on the track_script line wins over the script's.
	for files, want := range map[string]int{
		controlPlane()["/etc/keepalived/keepalived.conf"]: -2,
		strings.Replace(controlPlane()["/etc/keepalived/keepalived.conf"], "check_apiserver\n    }", "check_apiserver weight -30\n    }", 1): -30,
	} {
		out, _, err := importKeepalived(memFiles{"/etc/keepalived/keepalived.conf": files}, []string{"/etc/keepalived/keepalived.conf"}, importOptions{names: map[string]string{"/etc/keepalived/keepalived.conf": "cp1"}})
		if err != nil {
			t.Fatal(err)
		}
		if hc := checkImported(t, out)["cp1"].cfg.Health.Checks; len(hc) != 1 || hc[0].Weight != want {
			t.Errorf("static import: checks %+v, want one with weight %d", hc, want)
		}
	}
}

// Template placeholders, unknown tracks and broken syntax are errors that
// name the line; --strict turns every note into an error.
func TestImportErrors(t *testing.T) {
	base := controlPlane()["/etc/keepalived/keepalived.conf"]
	for _, tc := range []struct{ text, want string }{
		{strings.Replace(base, "192.0.2.100", "{{VIP1}}", 1), "line 19: {{VIP1}}"},
		{strings.Replace(base, "check_apiserver\n    }", "chk_missing\n    }", 1), "track_script chk_missing names no vrrp_script"},
		{strings.Replace(base, "virtual_router_id 51", "virtual_router_id 300", 1), "keepalived.conf:12: virtual_router_id \"300\": use 1..255"},
		{strings.TrimSuffix(base, "}\n"), "the block of vrrp_instance is not closed"},
		{base + "}\n", "a block closes that was not opened"},
	} {
		_, _, err := importKeepalived(memFiles{"/etc/keepalived/keepalived.conf": tc.text}, []string{"/etc/keepalived/keepalived.conf"}, importOptions{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want it to say %q", err, tc.want)
		}
	}
	cmd := newRootCmd()
	dir := t.TempDir()
	p := filepath.Join(dir, "keepalived.conf")
	os.WriteFile(p, []byte(base+"vrrp_sync_group G { group { VI_1 } }\n"), 0o644)
	cmd.SetArgs([]string{"import", "keepalived", p, "--strict"})
	cmd.SetOut(&strings.Builder{})
	var stderr strings.Builder
	cmd.SetErr(&stderr)
	if err := cmd.Execute(); err == nil || exitCode(err) != 2 || !strings.Contains(stderr.String(), "keepalived.conf:25: vrrp_sync_group") {
		t.Errorf("--strict: %v (exit %d), stderr %q; want exit 2 naming the sync group's line", err, exitCode(err), stderr.String())
	}
}

// FuzzKeepalivedImport: the parser and the import never panic, and what
// they accept loads as a garpd config.
func FuzzKeepalivedImport(f *testing.F) {
	f.Add(controlPlane()["/etc/keepalived/keepalived.conf"])
	f.Add(twoNodeVMAC(1)["/nodes/lb1.conf"])
	f.Add("vrrp_instance X { virtual_router_id 1\n interface eth0\n virtual_ipaddress { 192.0.2.1 } }\n")
	f.Fuzz(func(t *testing.T, text string) {
		out, _, err := importKeepalived(memFiles{"/k.conf": text}, []string{"/k.conf"}, importOptions{})
		if err != nil {
			return
		}
		for _, c := range out {
			if _, err := parseConfig(c.data); err != nil {
				t.Fatalf("an accepted keepalived config imports to a garpd config that does not load: %v\n%s", err, c.data)
			}
		}
	})
}

// keepalived's auth_hmac block becomes vrrp.auth_hmac, keys, mode, replay
// and window alike, and the legacy password beside it is dropped with a
// note, as keepalived drops it.
func TestImportAuthHMAC(t *testing.T) {
	key := strings.Repeat("ab", 32)
	text := `vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 150
    advert_int 1
    authentication {
        auth_type PASS
        auth_pass secret
    }
    auth_hmac {
        key 1 hex:` + key + `
        key 2 hex:` + strings.Repeat("cd", 32) + `
        active_key 2
        anti_replay time
        time_window 7
        mode permissive
    }
    virtual_ipaddress {
        192.0.2.100/32
    }
}
`
	out, notes, err := importKeepalived(memFiles{"/k.conf": text}, []string{"/k.conf"}, importOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := parseConfig(out[0].data)
	if err != nil {
		t.Fatalf("%v\n%s", err, out[0].data)
	}
	if l.auth.Mode != vrrp.AuthPermissive || l.auth.Active != 2 || len(l.auth.Keys) != 2 || l.auth.Window != 7*time.Second || l.cfg.VRRP.AuthPass != "" {
		t.Fatalf("imported auth %+v (auth_pass %q) from\n%s", l.auth, l.cfg.VRRP.AuthPass, out[0].data)
	}
	if !slices.ContainsFunc(notes, func(n keepalived.Note) bool { return strings.Contains(n.What, "beside auth_hmac") }) {
		t.Errorf("no note on the dropped password: %v", notes)
	}
	if !out[0].secret {
		t.Error("a config holding keys is not marked secret (written 0600)")
	}
}

// An untrusted keepalived file cannot make the import write outside --out
// (its router_id names the file) nor read files outside its directory.
func TestImportConfined(t *testing.T) {
	base := controlPlane()["/etc/keepalived/keepalived.conf"]
	for _, id := range []string{"../../x", "a/b", "..", "-x", ""} {
		text := strings.Replace(base, "vrrp_instance", "global_defs {\n    router_id \""+id+"\"\n}\nvrrp_instance", 1)
		_, _, err := importKeepalived(memFiles{"/etc/keepalived/keepalived.conf": text}, []string{"/etc/keepalived/keepalived.conf"}, importOptions{})
		if id == "" {
			continue // an empty router_id falls back to the file name
		}
		if err == nil || !strings.Contains(err.Error(), "is not a host name") {
			t.Errorf("router_id %q: %v, want it refused as a file name", id, err)
		}
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "keepalived.conf")
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("root:x:0:0\n"), 0o600)
	os.WriteFile(conf, []byte("include "+secret+"\n"+base), 0o600)
	if _, _, err := importKeepalived(keepalived.OSFiles{}, []string{conf}, importOptions{}); err == nil || !strings.Contains(err.Error(), "outside") || strings.Contains(err.Error(), "root:x") {
		t.Errorf("an include outside the config's directory: %v", err)
	}
	if _, _, err := importKeepalived(keepalived.OSFiles{IncludeAnywhere: true}, []string{conf}, importOptions{}); err != nil && strings.Contains(err.Error(), "outside") {
		t.Errorf("--include-anywhere still refuses it: %v", err)
	}
	if _, _, err := importKeepalived(keepalived.OSFiles{}, []string{dir}, importOptions{}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("a directory as the config: %v", err)
	}
}

// A dual-stack keepalived node (IPv4 at VRRPv2, IPv6 at v3, one VRID)
// imports as it runs: version 2 for IPv4, the IPv6 router beside it.
func TestImportDualStack(t *testing.T) {
	files := memFiles{"/ds/keepalived.conf": `global_defs {
  router_id ds1
  vrrp_version 2
}
vrrp_instance VI_6 {
  interface eth0
  virtual_router_id 50
  priority 200
  advert_int 1
  version 3
  virtual_ipaddress {
    2001:db8::150/128
  }
}
vrrp_instance VI_4 {
  interface eth0
  virtual_router_id 50
  priority 200
  advert_int 1
  virtual_ipaddress {
    192.0.2.150/32
  }
}
`}
	out, _, err := importKeepalived(files, []string{"/ds/keepalived.conf"}, importOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l := checkImported(t, out)["ds1"]
	if l.cfg.VRRP.Version != 2 || len(l.routers) != 2 || l.routers[0].VRID != 50 || l.routers[1].VRID != 50 {
		t.Fatalf("dual stack imported as version %d, routers %+v; want version 2 and both routers on VRID 50", l.cfg.VRRP.Version, l.routers)
	}
}

// One node's file imported --dynamic: its unicast peers are the seeds.
func TestImportSingleFileUnicastSeeds(t *testing.T) {
	files := activeActiveV6(1)
	out, _, err := importKeepalived(files, []string{"/nodes/lb1/keepalived.conf"}, importOptions{names: map[string]string{"/nodes/lb1/keepalived.conf": "lb1"}, dynamic: true})
	if err != nil {
		t.Fatal(err)
	}
	c := checkImported(t, out)["lb1"].cfg
	if !slices.Equal(c.Gossip.Join, []string{"[2001:db8::12]:7946", "[2001:db8::13]:7946"}) {
		t.Fatalf("join %v, want the unicast peers", c.Gossip.Join)
	}
	if !slices.Equal(c.VRRP.KeepalivedPeers, []string{"2001:db8::12", "2001:db8::13"}) {
		t.Fatalf("keepalived_peers %v, want the unicast peers", c.VRRP.KeepalivedPeers)
	}
}

// Issue 22: instances on two interfaces, and a VIP on another interface
// than its instance's (dev). The static mode runs each router where it
// ran and holds the VIP on its dev; the dynamic mode runs VRRP on the
// first interface only, so it leaves the other instance out and says so.
func TestImportTwoInterfaces(t *testing.T) {
	files := memFiles{"/two/keepalived.conf": `global_defs {
  router_id two1
}
vrrp_instance VI_1 {
  interface eth0
  virtual_router_id 51
  priority 200
  advert_int 1
  virtual_ipaddress {
    192.0.2.101/32
    198.51.100.102/24 dev eth1
  }
}
vrrp_instance VI_2 {
  interface eth1
  virtual_router_id 51
  priority 150
  advert_int 1
  virtual_ipaddress {
    198.51.100.101/24
  }
}
`}
	out, _, err := importKeepalived(files, []string{"/two/keepalived.conf"}, importOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l := checkImported(t, out)["two1"]
	want := []vrrp.RouterSpec{
		{VRID: 51, VIPs: mustPrefixes("192.0.2.101/32", "198.51.100.102/24"), Priority: 200, Name: "VI_1"},
		{VRID: 51, VIPs: mustPrefixes("198.51.100.101/24"), Priority: 150, Interface: "eth1", Name: "VI_2"},
	}
	if fmt.Sprint(l.routers) != fmt.Sprint(want) {
		t.Errorf("static import: routers %+v, want %+v\n%s", l.routers, want, out[0].data)
	}
	if d := l.dev(); len(d) != 1 || d[mustPrefixes("198.51.100.102/32")[0].Addr()] != "eth1" {
		t.Errorf("static import: dev %v, want 198.51.100.102 on eth1", d)
	}
	if got := l.interfaces(); !slices.Equal(got, []string{"eth0", "eth1"}) {
		t.Errorf("interfaces %v, want [eth0 eth1]", got)
	}

	out, notes, err := importKeepalived(files, []string{"/two/keepalived.conf"}, importOptions{dynamic: true, join: []string{"192.0.2.12:7946"}})
	if err != nil {
		t.Fatal(err)
	}
	l = checkImported(t, out)["two1"]
	if len(l.routers) != 1 || len(l.routers[0].VIPs) != 2 || !strings.Contains(notesText(notes), "vrrp_instance VI_2 runs on eth1") {
		t.Errorf("dynamic import: routers %+v, notes:\n%s\nwant VI_1 alone and a note on VI_2", l.routers, notesText(notes))
	}
}

func mustPrefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// import --out and render --out write each file anew: a link planted at a
// node's path is replaced, not followed (as root, it would overwrite its
// target), and a file created there in advance (by someone who hopes to
// read the secrets) is replaced by one of ours with the file's mode.
func TestWriteNodeFilesReplacesWhatWasPlanted(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, "n1.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "n2.yaml"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	files := []nodeFile{{node: "n1", data: []byte("a: 1\n")}, {node: "n2", data: []byte("secret: 2\n"), secret: true}}
	if err := writeNodeFiles(io.Discard, io.Discard, dir, ".yaml", files); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the link's target was written: %q", b)
	}
	for _, c := range []struct {
		node string
		mode os.FileMode
		data string
	}{{"n1", 0o644, "a: 1\n"}, {"n2", 0o600, "secret: 2\n"}} {
		path := filepath.Join(dir, c.node+".yaml")
		st, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if !st.Mode().IsRegular() || st.Mode().Perm() != c.mode {
			t.Errorf("%s: %s, want a regular file %s", path, st.Mode(), c.mode)
		}
		if b, _ := os.ReadFile(path); string(b) != c.data {
			t.Errorf("%s holds %q", path, b)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// global_defs script_user becomes script_user, and the checks and hooks
// of the imported config run as it; render keepalived writes it back.
func TestImportScriptUser(t *testing.T) {
	conf := `global_defs {
    router_id cp1
    script_user nobody
    enable_script_security
}
vrrp_script chk {
    script "/usr/local/bin/check"
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 51
    priority 150
    virtual_ipaddress { 192.0.2.10 }
    track_script { chk }
}
`
	out, _, err := importKeepalived(memFiles{"/etc/keepalived/keepalived.conf": conf}, []string{"/etc/keepalived/keepalived.conf"}, importOptions{names: map[string]string{"/etc/keepalived/keepalived.conf": "cp1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || !strings.Contains(string(out[0].data), "script_user: nobody") {
		t.Fatalf("script_user not imported:\n%s", out[0].data)
	}
	l, err := parseConfigAs(out[0].data, true)
	if err != nil {
		t.Fatal(err)
	}
	if l.cfg.Health.ScriptUser != "nobody" || l.cfg.Notify.ScriptUser != "nobody" {
		t.Errorf("checks run as %q, hooks as %q; want nobody", l.cfg.Health.ScriptUser, l.cfg.Notify.ScriptUser)
	}
	if l.scriptsRunAsRoot() {
		t.Error("a config with script_user nobody is said to run its scripts as root")
	}
}

// Files that share a router_id (ipfailover's are all "ipfailover") import
// together, each named with --node NAME=FILE; without names they are
// refused with how to name them.
func TestImportNamesEachFile(t *testing.T) {
	conf := func(prio int) string {
		return fmt.Sprintf("global_defs {\n  router_id ipfailover\n}\nvrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  priority %d\n  virtual_ipaddress { 192.0.2.10 }\n}\n", prio)
	}
	files := memFiles{"/a/keepalived.conf": conf(150), "/b/keepalived.conf": conf(100)}
	paths := []string{"/a/keepalived.conf", "/b/keepalived.conf"}
	if _, _, err := importKeepalived(files, paths, importOptions{}); err == nil || !strings.Contains(err.Error(), "--node NAME=FILE") {
		t.Fatalf("two files named ipfailover: %v", err)
	}
	names, err := nodeNames([]string{"lb1=/a/keepalived.conf", "lb2=/b/keepalived.conf"}, paths)
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := importKeepalived(files, paths, importOptions{names: names})
	if err != nil || len(out) != 2 || out[0].node != "lb1" || out[1].node != "lb2" {
		t.Fatalf("named: %v %v", out, err)
	}
	for _, bad := range [][]string{{"lb1"}, {"lb1=/c/keepalived.conf"}, {"lb1=/a/keepalived.conf", "lb1=/b/keepalived.conf"}} {
		if _, err := nodeNames(bad, paths); err == nil {
			t.Errorf("--node %v accepted", bad)
		}
	}
}

// Per-instance notify scripts stay per instance: each instance's VIPs
// carry its name, its hooks go under notify.instances, and a router's
// hooks hear its instance's name. Rendered back, the instances keep their
// names and scripts, so import → render → import is stable.
func TestImportKeepsInstanceNamesAndHooks(t *testing.T) {
	files := memFiles{"/ha/keepalived.conf": `global_defs {
  router_id ha1
  enable_script_security
  script_user root
}
vrrp_instance INT {
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority 150
  virtual_ipaddress {
    192.0.2.10/24
  }
  notify /etc/keepalived/int.sh
}
vrrp_instance EXT {
  state BACKUP
  interface eth0
  virtual_router_id 52
  priority 100
  virtual_ipaddress {
    192.0.2.11/24
  }
  notify_master "/etc/keepalived/ext.sh master"
}
vrrp_instance QUIET {
  state BACKUP
  interface eth0
  virtual_router_id 53
  priority 100
  virtual_ipaddress {
    192.0.2.12/24
  }
}
`}
	for _, dynamic := range []bool{false, true} {
		out, notes, err := importKeepalived(files, []string{"/ha/keepalived.conf"}, importOptions{dynamic: dynamic, join: []string{"192.0.2.2:7946"}})
		if err != nil {
			t.Fatal(err)
		}
		if n := notesText(notes); strings.Contains(n, "notify") {
			t.Errorf("dynamic %v: notes about notify scripts, which are imported as they are:\n%s", dynamic, n)
		}
		l := checkImported(t, out)["ha1"]
		names := map[uint8]string{}
		for _, r := range l.routers {
			names[r.VRID] = r.Name
		}
		if names[51] != "INT" || names[52] != "EXT" || names[53] != "QUIET" {
			t.Errorf("dynamic %v: router names %v, want each instance's", dynamic, names)
		}
		n := l.cfg.Notify
		if n.Enabled() && (len(n.Exec) > 0 || len(n.Master) > 0) {
			t.Errorf("dynamic %v: common hooks %+v, want each instance's own", dynamic, n)
		}
		if got := n.For("INT").Exec; !slices.Equal(got, []string{"/etc/keepalived/int.sh"}) {
			t.Errorf("dynamic %v: INT's exec hook %v", dynamic, got)
		}
		if got := n.For("EXT"); !slices.Equal(got.Master, []string{"/etc/keepalived/ext.sh", "master"}) || len(got.Exec) > 0 {
			t.Errorf("dynamic %v: EXT's hooks %+v", dynamic, got)
		}
		if got := n.For("QUIET"); len(got.Hooks()) > 0 {
			t.Errorf("dynamic %v: QUIET has no notify scripts in keepalived, hooks %+v here", dynamic, got.Hooks())
		}
		if dynamic {
			continue
		}
		// Round trip: the rendered file names the instances as they were,
		// each with its own scripts, and imports to the same routers.
		rendered, _, err := renderKeepalived(l, "ha1.yaml", nil, latestKeepalived)
		if err != nil {
			t.Fatal(err)
		}
		text := string(rendered[0].data)
		for _, want := range []string{"vrrp_instance INT {", "vrrp_instance EXT {", "vrrp_instance QUIET {", `notify "/etc/keepalived/int.sh"`, `notify_master "/etc/keepalived/ext.sh master"`} {
			if !strings.Contains(text, want) {
				t.Errorf("rendered file lacks %q:\n%s", want, text)
			}
		}
		again, _, err := importKeepalived(memFiles{"/ha/keepalived.conf": text}, []string{"/ha/keepalived.conf"}, importOptions{})
		if err != nil {
			t.Fatal(err)
		}
		l2 := checkImported(t, again)["ha1"]
		if fmt.Sprint(l2.routers) != fmt.Sprint(l.routers) || !reflect.DeepEqual(l2.cfg.Notify.Instances, l.cfg.Notify.Instances) {
			t.Errorf("import → render → import changed the routers or hooks:\n%+v\n%+v\n%+v\n%+v", l.routers, l2.routers, l.cfg.Notify, l2.cfg.Notify)
		}
	}
}
