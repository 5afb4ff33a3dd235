package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/garpd/garpd/vrrp"
)

// A reload changes the log level and format in place, for every holder of
// the logger.
func TestLogOutputReload(t *testing.T) {
	var buf bytes.Buffer
	o := newLogOutput(logConfig{Level: "info", Format: "json"}, &buf)
	log := o.logger()
	log.Debug().Msg("hidden")
	log.Info().Msg("shown")
	if s := buf.String(); strings.Contains(s, "hidden") || !strings.Contains(s, `"message":"shown"`) {
		t.Fatalf("at info: %q", s)
	}
	buf.Reset()
	o.set(logConfig{Level: "debug", Format: "console"})
	log.Debug().Msg("now shown")
	if s := buf.String(); !strings.Contains(s, "now shown") || strings.Contains(s, `"message"`) {
		t.Fatalf("after reload to debug, console: %q", s)
	}
	buf.Reset()
	o.set(logConfig{Level: "error", Format: "json"})
	log.Warn().Msg("hidden")
	if buf.Len() != 0 {
		t.Fatalf("at error: %q", buf.String())
	}
}

// authV2 is a vrrp section with n auth_hmac keys, signing with active.
func authV2(n, active int) string {
	keys := []string{}
	for i := 1; i <= n; i++ {
		keys = append(keys, fmt.Sprintf("%d: \"hex:%s\"", i, strings.Repeat(fmt.Sprintf("%02x", i), 32)))
	}
	return fmt.Sprintf("vrrp: {auth_hmac: {keys: {%s}, active_key: %d}}\n", strings.Join(keys, ", "), active)
}

// What a reload does, for each kind of change, in both modes.
func TestClassifyReload(t *testing.T) {
	const dyn = "interface: eth0\nvips: [192.0.2.101]\ngossip: {insecure: true}\n"
	const static = "interface: eth0\nvips: [192.0.2.101, 192.0.2.102]\npriorities: {192.0.2.101: 200, 192.0.2.102: 100}\nnode: n1\n"
	for _, c := range []struct {
		desc, from, to string
		want           reloadKind
	}{
		{"dynamic, unchanged", dyn, dyn, reloadNothing},
		{"dynamic, log and http", dyn, dyn + "log: {level: debug, format: console}\nhttp: {listen: 127.0.0.1:9999, pprof: true}\n", reloadInPlace},
		{"dynamic, garp", dyn, dyn + "garp: {refresh: 30s, count: 1, mode: reply}\n", reloadInPlace},
		{"dynamic, health checks", dyn, dyn + "health: {checks: [{name: a, exec: [\"true\"]}]}\n", reloadInPlace},
		{"dynamic, gossip", dyn, "interface: eth0\nvips: [192.0.2.101]\ngossip: {insecure: true, settle: 9s}\n", reloadRestart},
		{"dynamic, vrrp", dyn, dyn + "vrrp: {advert_interval: 2s}\n", reloadRestart},
		{"dynamic, VIPs", dyn, "interface: eth0\nvips: [192.0.2.101, 192.0.2.102]\ngossip: {insecure: true}\n", reloadRestart},
		{"dynamic to static", dyn, static, reloadRestart},
		{"static to dynamic", static, dyn, reloadRestart},
		{"static, unchanged", static, static, reloadNothing},
		{"static, garp", static, static + "garp: {refresh: 30s}\n", reloadInPlace},
		{"static, priorities", static, "interface: eth0\nvips: [192.0.2.101, 192.0.2.102]\npriorities: {192.0.2.101: 100, 192.0.2.102: 200}\nnode: n1\n", reloadRouters},
		{"static, VIPs", static, "interface: eth0\nvips: [192.0.2.101, 192.0.2.103]\npriorities: {192.0.2.101: 200, 192.0.2.103: 100}\nnode: n1\n", reloadRouters},
		{"static, VIPs and garp", static, "interface: eth0\nvips: [192.0.2.101, 192.0.2.103]\npriorities: {192.0.2.101: 200, 192.0.2.103: 100}\nnode: n1\ngarp: {refresh: 30s}\n", reloadRestart},
		{"static, vrrp", static, static + "vrrp: {advert_interval: 2s}\n", reloadRestart},
		{"static, a check added", static, static + "health: {checks: [{name: a, exec: [/bin/true]}]}\n", reloadRestart},
		{"static, priorities and a check", static, "interface: eth0\nvips: [192.0.2.101, 192.0.2.102]\npriorities: {192.0.2.101: 100, 192.0.2.102: 200}\nnode: n1\ntrack_interfaces: [eth1]\n", reloadRestart},
		{"static, notify hooks", static, static + "notify: {exec: [/bin/true]}\n", reloadInPlace},
		{"dynamic, a tracked interface", dyn, dyn + "track_interfaces: [eth1]\n", reloadInPlace},
		{"dynamic, the migration's keepalived peers go", dyn + "vrrp: {keepalived_peers: [192.0.2.12]}\n", dyn, reloadInPlace},
		{"static, auth_hmac added", static, static + authV2(1, 1), reloadInPlace},
		{"static, a key rotates in", static + authV2(1, 1), static + authV2(2, 1), reloadInPlace},
		{"static, the active key moves", static + authV2(2, 1), static + authV2(2, 2), reloadInPlace},
		{"dynamic, auth_hmac mode", dyn, dyn + "vrrp: {auth_hmac: {mode: permissive, keys: {1: \"hex:" + strings.Repeat("ab", 32) + "\"}, active_key: 1}}\n", reloadInPlace},
		{"static, interface", static, "interface: eth1\nvips: [192.0.2.101, 192.0.2.102]\npriorities: {192.0.2.101: 200, 192.0.2.102: 100}\nnode: n1\n", reloadRestart},
	} {
		from, err := parseConfig([]byte(c.from))
		if err != nil {
			t.Fatal(err)
		}
		to, err := parseConfig([]byte(c.to))
		if err != nil {
			t.Fatalf("%s: %v", c.desc, err)
		}
		if got := classifyReload(from, to); got != c.want {
			t.Errorf("%s: %v, want %v", c.desc, got, c.want)
		}
	}
}

// A gossip key rotates by SIGHUP in place, and the derived VRRP keys with
// it: the first key of the file signs, all are accepted.
func TestReloadRotatesGossipKeys(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "gossip.key")
	k1, k2 := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	cfg := "interface: eth0\nvips: [192.0.2.101]\ngossip: {secret_key_file: " + keyFile + "}\n"
	load := func(keys ...[]byte) *loaded {
		t.Helper()
		var text string
		for _, k := range keys {
			text += base64.StdEncoding.EncodeToString(k) + "\n"
		}
		if err := os.WriteFile(keyFile, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := parseConfig([]byte(cfg))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	id1, _ := vrrp.DeriveAuthKey(k1)
	id2, _ := vrrp.DeriveAuthKey(k2)
	steps := []struct {
		keys   [][]byte
		active uint8
	}{{[][]byte{k1}, id1}, {[][]byte{k1, k2}, id1}, {[][]byte{k2, k1}, id2}, {[][]byte{k2}, id2}}
	prev := load(steps[0].keys...)
	for i, s := range steps[1:] {
		next := load(s.keys...)
		if got := classifyReload(prev, next); got != reloadInPlace {
			t.Fatalf("step %d: %v, want in place", i+1, got)
		}
		if next.auth.Active != s.active || len(next.auth.Keys) != 2*len(s.keys) { // each also under its garpd 0.1 id
			t.Fatalf("step %d: VRRP keys %v active %d, want %d keys, active %d", i+1, next.auth.Keys, next.auth.Active, 2*len(s.keys), s.active)
		}
		prev = next
	}
	if got := classifyReload(prev, load(k2)); got != reloadNothing {
		t.Fatalf("same keys again: %v", got)
	}
}

// --check says when preferences cannot be balanced over the nodes they
// name, and nothing when they cost nothing.
func TestPreferenceNote(t *testing.T) {
	load := func(prefs ...string) *loaded {
		t.Helper()
		y := "interface: eth0\ngossip: {insecure: true}\nvips:\n"
		for i, p := range prefs {
			y += fmt.Sprintf("  - {address: 192.0.2.%d, prefer: %s}\n", 101+i, p)
		}
		l, err := parseConfig([]byte(y))
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	if n := preferenceNote(load("n1", "n2", "n3", "n1").alloc.Groups); n != "" {
		t.Errorf("balanced preferences noted: %s", n)
	}
	if n := preferenceNote(load("n1", "n1", "n1", "n2").alloc.Groups); !strings.Contains(n, "up to 2 VIPs with the preferences and 0 without") {
		t.Errorf("unbalanced preferences: note %q", n)
	}
}
