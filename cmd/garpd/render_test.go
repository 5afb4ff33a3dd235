package main

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/garpd/garpd/balancer"
)

// A dynamic config renders each node's keepalived.conf with the plan's
// priorities (importing each back gives them again); a VRRPv2 static
// config renders its own priorities, authentication, peers and
// preemption. (keepalived -t, which needs the interface to exist, runs on
// renderings in the lab: TestRenderedKeepalivedAgreesWithGarpd.)
func TestRenderKeepalived(t *testing.T) {
	dyn, err := parseConfig([]byte(`node: n1
interface: eth0
vips: [192.0.2.101, 192.0.2.102, 192.0.2.103, "2001:db8::101/64"]
vrrp: {advert_interval: 100ms}
gossip: {insecure: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"n1", "n2", "n3"}
	out, _, err := renderKeepalived(dyn, "garpd.yaml", names, latestKeepalived)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := balancer.Rank([]string{"n1", "n2", "n3"}, dyn.alloc.Groups)
	if err != nil {
		t.Fatal(err)
	}
	for i, conf := range out {
		if conf.node != names[i] {
			t.Fatalf("rendered %s in place of %s", conf.node, names[i])
		}
		back, _, err := importKeepalived(memFiles{"/k.conf": string(conf.data)}, []string{"/k.conf"}, importOptions{})
		if err != nil {
			t.Fatalf("%s: the rendering does not import back: %v\n%s", conf.node, err, string(conf.data))
		}
		l := checkImported(t, back)[conf.node]
		for gi, g := range dyn.alloc.Groups {
			want := plan.Groups[gi].Priorities()[conf.node]
			if got := l.cfg.Priorities[g.VIPs[0].Addr().String()]; got != want {
				t.Errorf("%s: %v at priority %d, the plan says %d", conf.node, g.VIPs, got, want)
			}
		}
		if l.cfg.VRRP.AdvertInterval != dyn.cfg.VRRP.AdvertInterval || l.cfg.VRRP.Version != 3 {
			t.Errorf("%s: vrrp %+v", conf.node, l.cfg.VRRP)
		}
	}

	static, err := parseConfig([]byte(`node: edge1
interface: ens5
vips: [198.51.100.20/24]
priorities: {198.51.100.20: 150}
vrrp: {version: 2, advert_interval: 1s, auth_pass: secret, preempt: false, unicast_peers: [192.0.2.12], use_vmac: true, vmac_xmit_base: true}
garp: {count: 5, interval: 500ms, refresh: 0s}
`))
	if err != nil {
		t.Fatal(err)
	}
	out, _, err = renderKeepalived(static, "edge1.yaml", nil, latestKeepalived)
	if err != nil {
		t.Fatal(err)
	}
	text := string(out[0].data)
	for _, want := range []string{"router_id edge1", "vrrp_version 2", "priority 150", "advert_int 1\n", "auth_pass secret", "nopreempt",
		"unicast_peer {\n        192.0.2.12\n    }", "198.51.100.20/24 dev ens5", "use_vmac vrrp.10\n", "vmac_xmit_base\n", "vrrp_garp_master_repeat 5", "vrrp_garp_interval 0.5"} {
		if !strings.Contains(text, want) {
			t.Errorf("static rendering lacks %q:\n%s", want, text)
		}
	}
	back, notes, err := importKeepalived(memFiles{"/k.conf": text}, []string{"/k.conf"}, importOptions{})
	if err != nil {
		t.Fatalf("the static rendering does not import back: %v", err)
	}
	if v := checkImported(t, back)["edge1"].cfg.VRRP; !v.UseVMAC || !v.VMACXmitBase || strings.Contains(notesText(notes), "vmac") {
		t.Errorf("virtual MACs did not survive render and import: use_vmac %v, vmac_xmit_base %v, notes:\n%s", v.UseVMAC, v.VMACXmitBase, notesText(notes))
	}
	if strings.Contains(text, "vrrp_garp_master_refresh") {
		t.Errorf("refresh 0s rendered as a keepalived refresh:\n%s", text)
	}
	if _, _, err := renderKeepalived(static, "edge1.yaml", names, latestKeepalived); err == nil {
		t.Error("--nodes accepted for a static config")
	}
	if _, _, err := renderKeepalived(dyn, "garpd.yaml", nil, latestKeepalived); err == nil || !strings.Contains(err.Error(), "--nodes") {
		t.Errorf("a dynamic config without --nodes: %v", err)
	}
}

// auth_hmac renders as keepalived's block and imports back the same; the
// dynamic mode's derived key renders in hex, so keepalived can speak with
// the garpd nodes.
func TestRenderAuthHMAC(t *testing.T) {
	key := "hex:" + strings.Repeat("ab", 32)
	static, err := parseConfig([]byte("node: edge1\ninterface: eth0\nvips: [192.0.2.20]\npriorities: {192.0.2.20: 150}\n" +
		"vrrp: {advert_interval: 1s, auth_hmac: {keys: {4: \"" + key + "\"}, active_key: 4, mode: permissive, time_window: 9s}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := renderKeepalived(static, "edge1.yaml", nil, latestKeepalived)
	if err != nil {
		t.Fatal(err)
	}
	text := string(out[0].data)
	if !strings.Contains(text, "auth_hmac {\n        key 4 "+key+"\n        active_key 4\n        anti_replay time\n        time_window 9\n        mode permissive\n    }") || !out[0].secret {
		t.Fatalf("rendering (secret %v):\n%s", out[0].secret, text)
	}
	back, _, err := importKeepalived(memFiles{"/k.conf": text}, []string{"/k.conf"}, importOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := checkImported(t, back)["edge1"].auth; !reflect.DeepEqual(got, static.auth) {
		t.Errorf("auth_hmac did not survive render and import: %+v, want %+v", got, static.auth)
	}

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "gossip.key"), []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600)
	dyn, err := parseConfig([]byte("interface: eth0\nvips: [192.0.2.20]\ngossip: {secret_key_file: " + filepath.Join(dir, "gossip.key") + "}\n"))
	if err != nil {
		t.Fatal(err)
	}
	out, _, err = renderKeepalived(dyn, "garpd.yaml", []string{"n1", "n2"}, latestKeepalived)
	if err != nil {
		t.Fatal(err)
	}
	derived := fmt.Sprintf("key %d hex:%x\n", dyn.auth.Active, dyn.auth.Keys[dyn.auth.Active])
	if text := string(out[1].data); !strings.Contains(text, derived) || !strings.Contains(text, "mode enforce") {
		t.Errorf("the dynamic rendering lacks the derived key %q:\n%s", derived, text)
	}
}

// Checks with weights and VIP scopes, tracked interfaces and notify hooks
// render as keepalived's track_script, track_interface and notify lines,
// and import back the same.
func TestRenderChecksAndHooks(t *testing.T) {
	src := `node: n1
interface: eth0
vips: [192.0.2.101, 192.0.2.102]
priorities: {192.0.2.101: 200, 192.0.2.102: 150}
health:
  checks:
    - {name: api, exec: [/etc/keepalived/check_apiserver.sh, --fast], interval: 3s, timeout: 2s, fall: 10, rise: 2, weight: -20, vips: [192.0.2.101]}
    - {name: ingress, http: "http://127.0.0.1:10254/healthz", vips: [192.0.2.102]}
track_interfaces: [{name: uplink0, weight: -50}]
notify: {exec: [/usr/local/bin/notify.sh], master: [/usr/local/bin/became-master.sh, now]}
`
	l, err := parseConfig([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := renderKeepalived(l, "n1.yaml", nil, latestKeepalived)
	if err != nil {
		t.Fatal(err)
	}
	text := string(out[0].data)
	for _, want := range []string{"vrrp_script api {\n    script \"/etc/keepalived/check_apiserver.sh --fast\"\n    interval 3\n    timeout 2\n    fall 10\n    rise 2\n}",
		"track_script {\n        api weight -20\n    }", "track_script {\n        ingress\n    }", "track_interface {\n        uplink0 weight -50\n    }",
		`notify "/usr/local/bin/notify.sh"`, `notify_master "/usr/local/bin/became-master.sh now"`} {
		if !strings.Contains(text, want) {
			t.Errorf("rendering lacks %q:\n%s", want, text)
		}
	}
	back, _, err := importKeepalived(memFiles{"/k.conf": text}, []string{"/k.conf"}, importOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := checkImported(t, back)["n1"].cfg
	byName := map[string]int{}
	for _, hc := range c.Health.Checks {
		byName[hc.Name] = hc.Weight
		if hc.Name == "api" && (!reflect.DeepEqual(hc.VIPs, []string{"192.0.2.101"}) || hc.Fall != 10) {
			t.Errorf("api came back as %+v", hc)
		}
	}
	if !reflect.DeepEqual(byName, map[string]int{"api": -20, "ingress": 0, "interface:uplink0": -50}) {
		t.Errorf("checks came back as %v", byName)
	}
	if !reflect.DeepEqual(c.Notify.Master, []string{"/usr/local/bin/became-master.sh", "now"}) || len(c.Notify.Exec) != 1 {
		t.Errorf("notify came back as %+v", c.Notify)
	}
}

// A unicast dynamic config renders each node's peers as the other nodes,
// never itself, from --nodes NAME=ADDR; without the addresses it says so.
func TestRenderPerNodePeers(t *testing.T) {
	l, err := parseConfig([]byte("node: n1\ninterface: eth0\nvips: [192.0.2.101, 192.0.2.102, 192.0.2.103]\nvrrp: {unicast_peers: [192.0.2.12, 192.0.2.13]}\ngossip: {insecure: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := renderKeepalived(l, "n1.yaml", []string{"n1", "n2", "n3"}, latestKeepalived); err == nil || !strings.Contains(err.Error(), "n1=192.0.2.11") {
		t.Fatalf("unicast without the nodes' addresses: %v", err)
	}
	out, _, err := renderKeepalived(l, "n1.yaml", []string{"n1=192.0.2.11", "n2=192.0.2.12", "n3=192.0.2.13"}, latestKeepalived)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range out {
		own := fmt.Sprintf("192.0.2.1%d", i+1)
		text := string(f.data)
		if strings.Contains(text, "        "+own+"\n") {
			t.Errorf("%s peers with itself:\n%s", f.node, text)
		}
		if !strings.Contains(text, "    unicast_src_ip "+own+"\n") {
			t.Errorf("%s does not send from its own address %s:\n%s", f.node, own, text)
		}
		for j := 1; j <= 3; j++ {
			if other := fmt.Sprintf("192.0.2.1%d", j); other != own && !strings.Contains(text, "        "+other+"\n") {
				t.Errorf("%s does not peer with %s", f.node, other)
			}
		}
	}
}

// --target: keepalived before 2.4 cannot parse auth_hmac, so the rendering
// leaves it out and says what the garpd nodes beside it need; 2.4 keeps it.
func TestRenderTargetsKeepalivedVersion(t *testing.T) {
	l, err := parseConfig([]byte(`node: n1
interface: eth0
vips: [192.0.2.101]
priorities: {192.0.2.101: 150}
vrrp: {auth_hmac: {keys: {1: "hex:` + strings.Repeat("ab", 32) + `"}, active_key: 1}}
`))
	if err != nil {
		t.Fatal(err)
	}
	out, notes, err := renderKeepalived(l, "n1.yaml", nil, keepalivedVersion{2, 2})
	if err != nil {
		t.Fatal(err)
	}
	if conf := string(out[0].data); strings.Contains(conf, "auth_hmac") {
		t.Errorf("--target 2.2 renders auth_hmac, which keepalived 2.2 refuses:\n%s", conf)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "auth_hmac: {mode: receive-only}") {
		t.Errorf("--target 2.2 notes %q, want the garpd nodes' auth_hmac setting", notes)
	}
	out, notes, err = renderKeepalived(l, "n1.yaml", nil, keepalivedVersion{2, 4})
	if err != nil || !strings.Contains(string(out[0].data), "auth_hmac {") || len(notes) != 0 {
		t.Errorf("--target 2.4: %v, notes %q:\n%s", err, notes, out[0].data)
	}
	for text, want := range map[string]string{"2.2": "2.2", "v2.4.3": "2.4", "3": "error", "two": "error"} {
		v, _, err := keepalivedTarget(text)
		if got := v.String(); err != nil {
			got = "error"
		} else if got != want {
			t.Errorf("--target %q: %s, want %s", text, got, want)
		}
		if (err != nil) != (want == "error") {
			t.Errorf("--target %q: %v", text, err)
		}
	}
}
