package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/garpd/garpd/vrrp"
)

const goodConfig = `
node: n1
interface: eth0
vips:
  - 192.0.2.101
  - 192.0.2.102/24
  - address: 2001:db8::101/64
    vrid: 20
vrrp:
  version: 3
  advert_interval: 1s
  vrid_base: 10
  preempt: true
  preempt_delay: 0s
  auth_pass: ""
  unicast_peers: []
priorities:
  192.0.2.101: 200
garp:
  count: 3
  interval: 1100ms
http:
  listen: 127.0.0.1:9496
log:
  level: info
`

func TestParseGoodConfig(t *testing.T) {
	l, err := parseConfig([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.routers) != 3 {
		t.Fatalf("%d routers, want 3", len(l.routers))
	}
	want := map[string][2]int{"192.0.2.101/32": {10, 200}, "192.0.2.102/24": {11, 100}, "2001:db8::101/64": {20, 100}}
	for _, r := range l.routers {
		w, ok := want[r.VIPs[0].String()]
		if !ok || int(r.VRID) != w[0] || int(r.Priority) != w[1] {
			t.Errorf("router %v vrid %d prio %d, want %v", r.VIPs, r.VRID, r.Priority, w)
		}
	}
	if l.cfg.GARP.Interval != 1100*time.Millisecond || !*l.cfg.VRRP.Preempt {
		t.Errorf("defaults/values wrong: %+v", l.cfg)
	}
}

func TestConfigDefaults(t *testing.T) {
	l, err := parseConfig([]byte("interface: eth0\nvips: [192.0.2.101]\ngossip: {insecure: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	h, _ := os.Hostname()
	c := l.cfg
	if c.Node != h || c.VRRP.Version != 3 || c.VRRP.AdvertInterval != time.Second || c.VRRP.VRIDBase != 10 ||
		c.GARP.Count != 3 || c.HTTP.Listen != "127.0.0.1:9496" || c.Log.Level != "info" || c.Log.Format != "json" {
		t.Fatalf("defaults: %+v", c)
	}
	// No priorities: the dynamic mode, every VIP starting as a backup of
	// last resort until the controller has ranked the members.
	if !l.dynamic() || l.routers[0].Priority != 1 || l.routers[0].VRID != 10 {
		t.Fatalf("router %+v, want dynamic priority 1 VRID 10", l.routers[0])
	}
	if c.Gossip.Bind != ":7946" || c.Gossip.Settle != 10*time.Second { // the advertised address
		t.Fatalf("gossip defaults: %+v", c.Gossip)
	}
}

// Under Kubernetes the node is named as its Node, from the downward API's
// NODE_NAME, unless the config names it.
func TestKubeNodeName(t *testing.T) {
	t.Setenv("NODE_NAME", "worker-3")
	for _, tc := range []struct{ yaml, want string }{
		{"kubernetes: {}\n", "worker-3"},
		{"kubernetes: {}\nnode: edge-1\n", "edge-1"},
	} {
		l, err := parseConfig([]byte("interface: eth0\nvips: [192.0.2.101]\ngossip: {insecure: true}\n" + tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if l.cfg.Node != tc.want {
			t.Errorf("%q: node %q, want %q", tc.yaml, l.cfg.Node, tc.want)
		}
	}
	l, err := parseConfig([]byte("interface: eth0\nvips: [192.0.2.101]\ngossip: {insecure: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := os.Hostname(); l.cfg.Node != h {
		t.Errorf("without kubernetes: node %q, want the host name %q", l.cfg.Node, h)
	}
}

// Every bad config names the key at fault.
func TestConfigErrorsNameTheKey(t *testing.T) {
	base := "interface: eth0\nvips: [192.0.2.101]\n"
	cases := []struct{ yaml, key string }{
		{"vips: [192.0.2.101]\n", "interface"},
		{"interface: eth0\n", "vips"},
		{"interface: eth0\nvips: [not-an-ip]\n", "not-an-ip"},
		{"interface: eth0\nvips: [224.0.0.5]\n", "224.0.0.5"},
		{"interface: eth0\nvips: [192.0.2.101, 192.0.2.101]\n", "listed twice"},
		{base + "vrrp: {version: 4}\n", "vrrp.version"},
		{base + "vrrp: {advert_interval: 15ms}\n", "vrrp.advert_interval"},
		{base + "vrrp: {version: 2, advert_interval: 500ms}\n", "vrrp.advert_interval"},
		{base + "vrrp: {version: 2, advert_interval: 1s, auth_pass: waytoolongpass}\n", "vrrp.auth_pass"},
		{base + "vrrp: {auth_pass: x}\n", "vrrp.auth_pass"},
		{base + "vrrp: {vrid_base: 300}\n", "vrrp.vrid_base"},
		{base + "vrrp: {unicast_peers: [bogus]}\n", "unicast_peers[0]"},
		{base + "vrrp: {source: [192.0.2.1, 192.0.2.2]}\n", "vrrp.source: 192.0.2.1 and 192.0.2.2: give at most one address per family"},
		{base + "vrrp: {source: [eth0]}\n", "vrrp.source[0]: \"eth0\" is not an IP address"},
		{base + "vrrp: {unicast_peers: [2001:db8::2], accept_hop_limit_from: [2001:db8::3]}\n", "vrrp.accept_hop_limit_from: 2001:db8::3 is not one of unicast_peers"},
		{base + "priorities: {192.0.2.101: 255}\n", "priorities.192.0.2.101"},
		{base + "priorities: {192.0.2.199: 10}\n", "192.0.2.199"},
		{base + "garp: {count: 1000}\n", "garp.count"},
		{base + "garp: {interval: 1ms}\n", "garp.interval"},
		{base + "log: {level: loud}\n", "log.level"},
		{base + "log: {format: xml}\n", "log.format"},
		{base + "bogus_key: 1\n", "bogus_key"},
		{"interface: eth0\nvips:\n  - {address: 192.0.2.101, vrid: 0}\n", "vrid"},
		{base + "gossip: {bind: nowhere}\n", "gossip.bind"},
		{base + "gossip: {join: [\"dns:nope\"]}\n", "gossip.join[0]"},
		{base + "gossip: {settle: -1s}\n", "gossip.settle"},
		{base + "gossip: {secret_key_file: /dev/null}\nvrrp: {preempt: false}\n", "vrrp.preempt: false is the static mode's"},
		{base + "gossip: {secret_key_file: /nonexistent}\n", "gossip.secret_key_file"},
		{base + "gossip: {secret_key_file: /dev/zero}\n", "/dev/zero is not a regular file"},
		{base + "gossip: {settle: 5s}\n", "gossip.secret_key_file: required"},
		{base + "health: {checks: [{name: a}]}\n", "health.checks[0]"},
		{base + "health: {checks: [{name: a, tcp: x}]}\n", "health.checks[0].tcp"},
		{base + "health: {checks: [{name: a, http: \"ftp://x\"}]}\n", "health.checks[0].http"},
		{base + "health: {checks: [{name: a, exec: [true], timeout: 5s, interval: 1s}]}\n", "health.checks[0].timeout"},
		{base + "priorities: {192.0.2.101: 10}\nhealth: {checks: [{name: a, exec: [true], vips: [192.0.2.199]}]}\n", "health.checks[0].vips"},
		{base + "priorities: {192.0.2.101: 10}\nhealth: {checks: [{name: a, exec: [true], weight: 300}]}\n", "health.checks[0].weight"},
		{base + "health: {checks: [{name: a, exec: [true], weight: -300}]}\n", "health.checks[0].weight: -300"},
		{base + "priorities: {192.0.2.101: 10}\ntrack_interfaces: [{weight: -10}]\n", "track_interfaces[0]"},
		{base + "notify: {exec: [notify.sh]}\n", "notify.exec"},
		{base + "notify: {master: [sh, -c, x]}\n", "notify.master"},
		{base + "vrrp: {unicast_peers: [auto, 192.0.2.1]}\n", "unicast_peers[0]"},
		{base + "kubernetes: {peers: {selector: app=garpd}}\n", "kubernetes.peers.namespace"},
		{base + "kubernetes: {peers: {namespace: garpd, selector: \"a=(b\"}}\n", "kubernetes.peers.selector"},
		{base + "priorities: {192.0.2.101: 10}\nkubernetes: {}\n", "static priorities"},
		{base + "health: {checks: [{name: r, kubernetes_pod: {namespace: ingress, selector: app=router}}]}\n", "health.checks[0].kubernetes_pod: needs the kubernetes section"},
		{base + "kubernetes: {}\nhealth: {checks: [{name: r, kubernetes_pod: {selector: app=router}}]}\n", "kubernetes_pod.namespace"},
		{base + "kubernetes: {}\nhealth: {checks: [{name: r, kubernetes_pod: {namespace: ingress}}]}\n", "kubernetes_pod.selector"},
		{base + "kubernetes: {}\nhealth: {checks: [{name: r, http: http://127.0.0.1/, kubernetes_pod: {namespace: ingress, selector: a=b}}]}\n", "exactly one of"},
		{base + "kubernetes: {exclude_labels: [\"not a label\"]}\n", "kubernetes.exclude_labels[0]"},
		{base + "http: {listen: \"9496\"}\n", "http.listen"},
		{base + "garp: {refresh: 30 sec}\n", "refresh: 30 sec is not a duration"},
		{base + "garp: {count: 2.9}\n", "garp.count: 2.9: a whole number"},
		{base + "vrrp: {preempt: \"false\"}\n", `preempt: "false" is text, not true or false: write true or false without quotes`},
		{base + "garp: {refresh: 30s, schedule: \"@every 1m\"}\n", "refresh and schedule both set"},
		{base + "vrrp: {vrid_base: 0}\n", "vrrp.vrid_base: 0"},
		{base + "health: {checks: [{name: a, exec: [/bin/true], fall: 0}]}\n", "health.checks[0].fall: 0"},
		{base + "health: {checks: [{name: a, exec: \"/usr/bin/curl -sf URL\"}]}\n", "exec: /usr/bi...: write a list"},
		{base + "unicast_peers: [192.0.2.1]\n", "did you mean vrrp.unicast_peers?"},
		{"interface: eth0\nvips: [192.0.2.0/24]\n", "network address"},
		{"interface: eth0\nvips: [192.0.2.255/24]\n", "broadcast address"},
		{"interface: eth0\nvips: [192.0.2.1/0]\n", "/0"},
		{base + "health: {checks: [{name: a, exec: [\"\"]}]}\n", "health.checks[0].exec"},
		{base + "health: {checks: [{name: a, http: \"https://127.0.0.1/\", ca_file: /dev/null}]}\n", "holds no PEM"},
	}
	for _, c := range cases {
		y := c.yaml
		if !strings.Contains(y, "gossip:") && !strings.Contains(y, "priorities:") {
			y += "gossip: {insecure: true}\n" // not the error under test
		}
		_, err := parseConfig([]byte(y))
		if err == nil {
			t.Errorf("config %q accepted", c.yaml)
			continue
		}
		if !strings.Contains(err.Error(), c.key) {
			t.Errorf("config %q: error %q does not name %q", c.yaml, err, c.key)
		}
	}
}

func TestLoadConfigExitCode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(p, []byte("interface: eth0\nvips: [bogus]\n"), 0o644)
	_, err := loadConfig(p)
	if err == nil || exitCode(err) != 2 || !strings.Contains(err.Error(), p) {
		t.Fatalf("loadConfig: %v (exit %d), want a config error naming the file, exit 2", err, exitCode(err))
	}
	if _, err := loadConfig(filepath.Join(t.TempDir(), "missing.yaml")); exitCode(err) != 2 {
		t.Fatalf("missing file: exit %d, want 2", exitCode(err))
	}
}

// FuzzParseConfig: the loader never panics, and what it accepts is usable.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(goodConfig))
	f.Add([]byte("interface: eth0\nvips: [192.0.2.101]\n"))
	f.Add([]byte("interface: eth0\nvips:\n  - {address: 2001:db8::1/64, vrid: 7}\n"))
	f.Add([]byte("interface: eth0\nvips: [192.0.2.1-192.0.2.4/24, {address: 198.51.100.1-198.51.100.2, vrid: 9}]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := parseConfig(b)
		if err != nil {
			return
		}
		if l.cfg.Interface == "" || len(l.routers) == 0 {
			t.Fatalf("accepted config without interface or routers: %+v", l.cfg)
		}
		for _, r := range l.routers {
			if r.VRID == 0 || r.Priority == 0 || r.Priority == 255 || len(r.VIPs) == 0 {
				t.Fatalf("accepted config yields invalid router %+v", r)
			}
		}
	})
}

// The example configs shipped in deploy/ stay valid.
func TestDeployExamplesAreValid(t *testing.T) {
	files, _ := filepath.Glob("../../deploy/examples/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example configs found")
	}
	// The examples name the key where an operator would put it; here a
	// test key stands in.
	key := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(key, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		local := filepath.Join(t.TempDir(), filepath.Base(f))
		os.WriteFile(local, []byte(strings.ReplaceAll(string(raw), "/etc/garpd/gossip.key", key)), 0o644)
		if _, err := loadConfig(local); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// The config the static pod's comments show is valid.
func TestStaticPodExampleIsValid(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/kubernetes/static-pod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg []string
	in := false
	for _, line := range strings.Split(string(raw), "\n") {
		switch {
		case strings.HasPrefix(line, "#      node: "):
			in = true
		case strings.HasPrefix(line, "# 3. "):
			in = false
		}
		if in {
			cfg = append(cfg, strings.TrimPrefix(line, "#      "))
		}
	}
	if len(cfg) < 5 {
		t.Fatalf("no example config found in the static pod's comments")
	}
	key := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(key, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(strings.Join(cfg, "\n"), "/etc/garpd/gossip.key", key)
	l, err := parseConfig([]byte(text))
	if err != nil {
		t.Fatalf("%v\n%s", err, text)
	}
	if !l.dynamic() || len(l.cfg.Health.Checks) != 1 || !strings.HasSuffix(l.cfg.Health.Checks[0].HTTP, "/readyz") {
		t.Fatalf("the static pod's config should be dynamic with the API server's /readyz check: %+v", l.cfg)
	}
}

// The profiler is off unless http.pprof says so, and a reload can switch it.
func TestPProfSwitch(t *testing.T) {
	l, err := parseConfig([]byte("interface: eth0\nvips: [192.0.2.101]\npriorities: {192.0.2.101: 100}\nhttp:\n  pprof: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !l.cfg.HTTP.PProf {
		t.Fatal("http.pprof: true not parsed")
	}
	a := &agent{reg: prometheus.NewRegistry()}
	h := a.controlHandler(nil, true)
	get := func() int {
		rec := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil)
		r.Host = "127.0.0.1:9497"
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	if code := get(); code != http.StatusNotFound {
		t.Fatalf("profiler off: /debug/pprof/ answered %d, want 404", code)
	}
	a.pprof.Store(l.cfg.HTTP.PProf)
	if code := get(); code != http.StatusOK {
		t.Fatalf("profiler on: /debug/pprof/ answered %d, want 200", code)
	}
}

// A misspelt key names itself, its line and the key it probably meant;
// a duration without a unit says how to write one.
func TestMisspeltKeyHint(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"interfac: eth0\nvips: [192.0.2.101]\n", "line 1: interfac: unknown key; did you mean interface?"},
		{"interface: eth0\nvips: [192.0.2.101]\nvrrp: {advert_intervall: 1s}\n", "advert_intervall: unknown key; did you mean advert_interval?"},
		{"interface: eth0\nvips: [192.0.2.101]\ngossip: {secret_keyfile: /x}\n", "did you mean secret_key_file?"},
		{"interface: eth0\nvips: [192.0.2.101]\nzzz: 1\n", "zzz: unknown key (known here: node, interface,"},
		{"interface: eth0\nvips: [192.0.2.101]\ngarp:\n  refresh: 0\n", "line 4: `0` is a number without a unit: write a duration such as 0s"},
	}
	for _, c := range cases {
		_, err := parseConfig([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %q: %v; want %q", c.yaml, err, c.want)
		}
	}
}

// What the data plane refuses to run (a VIP that is an interface address,
// a router the engine refuses) exits 2 like a config error.
func TestStackConfigErrorExits2(t *testing.T) {
	if got := exitCode(fmt.Errorf("start: %w", &vrrp.ConfigError{Err: errors.New("vips: 192.0.2.11 is an address of eth0")})); got != 2 {
		t.Fatalf("exit %d, want 2", got)
	}
}

// The dynamic mode signs and enforces by default with a key derived from
// the gossip key; auth_hmac without keys sets only its mode; without a
// gossip key, or with mode off, nothing is signed. The static mode signs
// only with keys of its own.
func TestAuthKeys(t *testing.T) {
	dir := t.TempDir()
	gossipKey := filepath.Join(dir, "gossip.key")
	os.WriteFile(gossipKey, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600)
	dyn := "interface: eth0\nvips: [192.0.2.101]\ngossip: {secret_key_file: " + gossipKey + "}\n"
	static := "interface: eth0\nvips: [192.0.2.101]\npriorities: {192.0.2.101: 200}\n"
	key := "\"hex:" + strings.Repeat("5a", 32) + "\""
	for _, c := range []struct {
		desc, yaml string
		mode       vrrp.AuthMode
		keyID      int // 0: the derived key's
		err        string
	}{
		{"dynamic, by default", dyn, vrrp.AuthEnforce, 0, ""},
		{"dynamic, permissive", dyn + "vrrp: {auth_hmac: {mode: permissive}}\n", vrrp.AuthPermissive, 0, ""},
		{"dynamic, off", dyn + "vrrp: {auth_hmac: {mode: off}}\n", vrrp.AuthOff, -1, ""},
		{"dynamic, own keys", dyn + "vrrp: {auth_hmac: {keys: {9: " + key + "}, active_key: 9}}\n", vrrp.AuthEnforce, 9, ""},
		{"dynamic, insecure", "interface: eth0\nvips: [192.0.2.101]\ngossip: {insecure: true}\n", vrrp.AuthOff, -1, ""},
		{"static, none", static, vrrp.AuthOff, -1, ""},
		{"static, keys", static + "vrrp: {auth_hmac: {keys: {3: " + key + "}, active_key: 3, mode: receive-only}}\n", vrrp.AuthReceiveOnly, 3, ""},
		{"static, no keys", static + "vrrp: {auth_hmac: {mode: enforce}}\n", 0, 0, "vrrp.auth_hmac.keys: required"},
		{"static, unknown active key", static + "vrrp: {auth_hmac: {keys: {3: " + key + "}, active_key: 4}}\n", 0, 0, "active_key: 4 is not one of the keys"},
		{"v2 password beside keys: dropped, as keepalived drops it", static + "vrrp: {version: 2, auth_pass: x, auth_hmac: {keys: {3: " + key + "}, active_key: 3}}\n", vrrp.AuthEnforce, 3, ""},
		{"v2 password beside the derived key, enforced", dyn + "vrrp: {version: 2, auth_pass: x, auth_hmac: {mode: enforce}}\n", 0, 0, "auth_hmac replaces"},
		{"a short key", static + "vrrp: {auth_hmac: {keys: {3: \"hex:00\"}, active_key: 3}}\n", 0, 0, "auth_hmac.keys.3: 1 bytes"},
	} {
		l, err := parseConfig([]byte(c.yaml))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, want %q", c.desc, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.desc, err)
		}
		if l.auth.Mode != c.mode && !(c.keyID == -1 && !l.auth.Enabled()) {
			t.Errorf("%s: mode %s, want %s", c.desc, l.auth.Mode, c.mode)
		}
		switch {
		case c.keyID == -1 && l.auth.Enabled():
			t.Errorf("%s: auth on (%s), want off", c.desc, l.auth.Mode)
		case c.keyID == 0 && (len(l.auth.Keys) != 2 || l.auth.Keys[l.auth.Active] == nil || !bytes.Equal(l.auth.Keys[l.auth.Legacy], l.auth.Keys[l.auth.Active])):
			t.Errorf("%s: keys %v (active %d, legacy %d), want the derived one active, also under its garpd 0.1 id", c.desc, l.auth.Keys, l.auth.Active, l.auth.Legacy)
		case c.keyID == 0 && l.auth.Active == vrrp.LegacyAuthKeyID(l.auth.Keys[l.auth.Active]):
			t.Errorf("%s: the derived key's id %d is its first byte's: the id leaks the key", c.desc, l.auth.Active)
		case c.keyID > 0 && int(l.auth.Active) != c.keyID:
			t.Errorf("%s: active key %d, want %d", c.desc, l.auth.Active, c.keyID)
		}
	}
}

// The operator's endpoints are not on http.listen, which may face the
// network (the chart's ServiceMonitor needs it off loopback): /forget,
// /announce, /status and pprof answer 404 there, naming control.listen;
// /metrics and /healthz answer. On control.listen, POSTs take JSON only,
// and with a token every request needs it.
func TestControlSurface(t *testing.T) {
	a := &agent{reg: prometheus.NewRegistry()}
	a.run.Store(&running{}) // a static-mode agent
	a.pprof.Store(true)
	do := func(h http.Handler, method, path, ctype, auth string) *httptest.ResponseRecorder {
		body := strings.NewReader(`{"node": "n4"}`)
		r := httptest.NewRequest(method, path, body)
		r.RemoteAddr = "198.51.100.7:40000" // from the network
		r.Host = "127.0.0.1:9497"
		if ctype != "" {
			r.Header.Set("Content-Type", ctype)
		}
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	public := a.metricsHandler()
	for _, path := range []string{"/forget", "/announce", "/status", "/debug/pprof/"} {
		if rec := do(public, http.MethodPost, path, "application/json", ""); rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "control.listen") {
			t.Errorf("http.listen %s: %d %q, want 404 naming control.listen", path, rec.Code, rec.Body.String())
		}
	}
	if rec := do(public, http.MethodGet, "/metrics", "", ""); rec.Code != http.StatusOK {
		t.Errorf("http.listen /metrics: %d", rec.Code)
	}

	control := a.controlHandler(nil, true)
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", ""} {
		if rec := do(control, http.MethodPost, "/forget", ct, ""); rec.Code != http.StatusUnsupportedMediaType {
			t.Errorf("control /forget with Content-Type %q: %d, want 415", ct, rec.Code)
		}
	}
	// A bodiless POST a browser may send from any site starts no wave.
	r := httptest.NewRequest(http.MethodPost, "/announce", nil)
	r.Host = "localhost:9497"
	if rec := httptest.NewRecorder(); func() int { control.ServeHTTP(rec, r); return rec.Code }() != http.StatusUnsupportedMediaType {
		t.Errorf("control /announce, empty body, no Content-Type: %d %q, want 415", rec.Code, rec.Body.String())
	}
	// Without a token, a page whose name points at 127.0.0.1 (DNS
	// rebinding) is refused; loopback names pass; a unix socket or a
	// token does not need the check.
	for host, want := range map[string]int{"evil.example:9497": http.StatusForbidden, "garpd": http.StatusForbidden,
		"127.0.0.1:9497": http.StatusOK, "[::1]:9497": http.StatusOK, "localhost": http.StatusOK, "LOCALHOST:9497": http.StatusOK} {
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		r.Host = host
		rec := httptest.NewRecorder()
		control.ServeHTTP(rec, r)
		if rec.Code != want {
			t.Errorf("Host %q: %d, want %d", host, rec.Code, want)
		}
	}
	for _, h := range []http.Handler{a.controlHandler(nil, false), a.controlHandler([]byte("0123456789abcdef"), true)} {
		r := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		r.Host = "garpd"
		r.Header.Set("Authorization", "Bearer 0123456789abcdef")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			t.Errorf("a unix socket, or a token: Host garpd answered %d", rec.Code)
		}
	}
	if rec := do(control, http.MethodPost, "/forget", "application/json", ""); rec.Code != http.StatusConflict {
		t.Errorf("control /forget, JSON, static mode: %d %q, want 409", rec.Code, rec.Body.String())
	}
	guarded := a.controlHandler([]byte("0123456789abcdef"), true)
	for _, auth := range []string{"", "Bearer wrong", "0123456789abcdef"} {
		if rec := do(guarded, http.MethodGet, "/metrics", "", auth); rec.Code != http.StatusUnauthorized {
			t.Errorf("token set, Authorization %q: %d, want 401", auth, rec.Code)
		}
	}
	if rec := do(guarded, http.MethodGet, "/metrics", "", "Bearer 0123456789abcdef"); rec.Code != http.StatusOK {
		t.Errorf("the right token: %d", rec.Code)
	}
}

// control.listen off loopback needs a token; the token must be long
// enough; the two listeners must differ.
func TestControlConfig(t *testing.T) {
	dir := t.TempDir()
	good, short := filepath.Join(dir, "token"), filepath.Join(dir, "short")
	os.WriteFile(good, []byte("0123456789abcdef0123\n"), 0o600)
	os.WriteFile(short, []byte("abc\n"), 0o600)
	base := "interface: eth0\nvips: [192.0.2.101]\npriorities: {192.0.2.101: 100}\n"
	for _, c := range []struct{ yaml, err string }{
		{base, ""},
		{base + "control: {listen: unix:/run/garpd/control.sock}\n", ""},
		{base + "control: {listen: \"[::1]:9497\"}\n", ""},
		{base + "control: {listen: 0.0.0.0:9497}\n", "control.listen: 0.0.0.0:9497 is not loopback: set control.token_file"},
		{base + "control: {listen: 0.0.0.0:9497, token_file: " + good + "}\n", ""},
		{base + "control: {listen: 0.0.0.0:9497, token_file: " + short + "}\n", "use at least 16"},
		{base + "control: {token_file: /dev/zero}\n", "/dev/zero is not a regular file"},
		{base + "http: {listen: 127.0.0.1:9497}\ncontrol: {listen: 127.0.0.1:9497}\n", "control.listen: 127.0.0.1:9497 is http.listen too"},
	} {
		_, err := parseConfig([]byte(c.yaml))
		if (c.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%q: %v, want %q", c.yaml, err, c.err)
		}
	}
	// Loopback without a token is the operator's explicit choice, and
	// named in the log and --check; the default socket is not.
	for yaml, note := range map[string]bool{
		base: false,
		base + "control: {listen: 127.0.0.1:9497}\n":                           true,
		base + "control: {listen: 127.0.0.1:9497, token_file: " + good + "}\n": false,
	} {
		l, err := parseConfig([]byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Contains(strings.Join(l.accessNotes(false), "\n"), "has no control.token_file")
		if got != note {
			t.Errorf("%q: noted %v, want %v (listen %s)", yaml, got, note, l.cfg.Control.Listen)
		}
		if yaml == base && l.cfg.Control.Listen != "unix:/run/garpd/control.sock" {
			t.Errorf("the default control.listen is %s, want the socket no other local process reaches", l.cfg.Control.Listen)
		}
	}
}

// The clients find the agent by --agent, else -c's control.listen, else
// $GARPD_AGENT, else the default socket.
func TestAgentTargetDefaults(t *testing.T) {
	t.Setenv(agentEnv, "")
	if base, _, _, err := (agentTarget{}).resolve(); err != nil || base != "http://garpd" {
		t.Errorf("no --agent: %q, %v; want the default socket", base, err)
	}
	t.Setenv(agentEnv, "127.0.0.1:9497")
	if base, _, _, err := (agentTarget{}).resolve(); err != nil || base != "http://127.0.0.1:9497" {
		t.Errorf("$%s=127.0.0.1:9497: %q, %v", agentEnv, base, err)
	}
	if base, _, _, err := (agentTarget{agent: "[::1]:9497"}).resolve(); err != nil || base != "http://[::1]:9497" {
		t.Errorf("--agent over $%s: %q, %v", agentEnv, base, err)
	}
}

// --check finds the interface on the host, or says it did not look.
func TestCheckConfigHostFacts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "garpd.yaml")
	if err := os.WriteFile(path, []byte("interface: nonexistent0\nvips: [192.0.2.101]\ngossip: {insecure: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := checkConfig(&out, path, true); err == nil || !strings.Contains(err.Error(), "nonexistent0") || !strings.Contains(err.Error(), "--offline") {
		t.Fatalf("an interface not on this host: %v", err)
	}
	out.Reset()
	if err := checkConfig(&out, path, false); err != nil || !strings.Contains(out.String(), "not checked (--offline)") {
		t.Fatalf("--offline: %v\n%s", err, out.String())
	}
	// A dynamic config names a key that only the nodes have: --offline
	// checks it on a workstation.
	keyed := filepath.Join(t.TempDir(), "garpd.yaml")
	if err := os.WriteFile(keyed, []byte("interface: lo\nvips: [192.0.2.101]\ngossip: {secret_key_file: /nonexistent/gossip.key}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := checkConfig(&out, keyed, false); err != nil {
		t.Fatalf("--offline with the key elsewhere: %v", err)
	}
	if err := checkConfig(&out, keyed, true); err == nil || !strings.Contains(err.Error(), "make one with") {
		t.Fatalf("on the host without the key: %v", err)
	}
	// A dynamic config on the host with a key others can read and no way
	// to find members: --check says so, and what its priority 1 means.
	key := filepath.Join(t.TempDir(), "gossip.key")
	if err := os.WriteFile(key, []byte("MDEyMzQ1Njc4OWFiY2RlZg==\n"), 0o644); err != nil { // 16 bytes
		t.Fatal(err)
	}
	if err := os.WriteFile(keyed, []byte("interface: lo\nvips: [192.0.2.101]\ngossip: {secret_key_file: "+key+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := checkConfig(&out, keyed, true); err != nil {
		t.Fatalf("a dynamic config on the host: %v", err)
	}
	for _, want := range []string{"gossip.secret_key_file " + key + " is readable by group or others (mode -rw-r--r--): chmod 600", "gossip.join is empty", "priority 1 above is every VIP's until",
		"the gossip key has 16 bytes, so the VRRP key derived from it has 128 bits"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--check does not say %q:\n%s", want, out.String())
		}
	}
	// An exec check whose script's interpreter is missing (a script in the
	// distroless image) and a CA file that is not here: --check on the
	// host names both and the fix; --offline does not look.
	dir := t.TempDir()
	script := filepath.Join(dir, "check.sh")
	if err := os.WriteFile(script, []byte("#!/nonexistent/bash\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	execCfg := filepath.Join(dir, "garpd.yaml")
	if err := os.WriteFile(execCfg, []byte("interface: lo\nvips: [192.0.2.101]\npriorities: {192.0.2.101: 100}\n"+
		"health: {checks: [{name: api, exec: ["+script+"]}, {name: ca, http: \"https://127.0.0.1:6443/\", ca_file: /nonexistent/ca.crt}]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := checkConfig(&out, execCfg, false); err != nil {
		t.Fatalf("--offline with the script and CA elsewhere: %v", err)
	}
	if err := checkConfig(&out, execCfg, true); err == nil || !strings.Contains(err.Error(), "ca_file") {
		t.Fatalf("on the host without the CA file: %v", err)
	}
	if err := os.WriteFile(execCfg, []byte("interface: lo\nvips: [192.0.2.101]\npriorities: {192.0.2.101: 100}\n"+
		"health: {checks: [{name: api, exec: ["+script+"]}]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkConfig(&out, execCfg, true); err == nil || !strings.Contains(err.Error(), "health.checks[0] (api)") || !strings.Contains(err.Error(), "-checks variant") {
		t.Fatalf("on the host, a script whose interpreter is missing: %v", err)
	}
	// A truncated known-members file is reported, and left as it is.
	state := t.TempDir()
	known := filepath.Join(state, "known-members.json")
	if err := os.WriteFile(known, []byte(`{"n1":{"g`), 0o600); err != nil {
		t.Fatal(err)
	}
	stateCfg := filepath.Join(t.TempDir(), "garpd.yaml")
	if err := os.WriteFile(stateCfg, []byte("interface: lo\nvips: [192.0.2.101]\ngossip: {insecure: true, state_dir: "+state+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := checkConfig(&out, stateCfg, true); err != nil || !strings.Contains(out.String(), "does not parse") {
		t.Fatalf("a truncated state file: %v\n%s", err, out.String())
	}
	if _, err := os.Stat(known); err != nil {
		t.Fatalf("--check moved the state file: %v", err)
	}
}

// Dual stack: vrrp.version is IPv4's (IPv6 is always VRRPv3), and one VRID
// may serve an IPv4 and an IPv6 router.
func TestDualStackConfig(t *testing.T) {
	l, err := parseConfig([]byte("node: n1\ninterface: eth0\nvips:\n  - {address: 192.0.2.1, vrid: 5}\n  - {address: 2001:db8::1, vrid: 5}\npriorities: {192.0.2.1: 200, 2001:db8::1: 200}\nvrrp: {version: 2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.routers) != 2 || l.routers[0].VRID != 5 || l.routers[1].VRID != 5 || l.routers[0].V6() == l.routers[1].V6() {
		t.Fatalf("routers %+v, want an IPv4 and an IPv6 router on VRID 5", l.routers)
	}
	if got, want := versions(2, l.routers), "VRRPv2 for IPv4 and VRRPv3 for IPv6"; got != want {
		t.Errorf("--check says %q, want %q", got, want)
	}
	if got := versions(2, l.routers[1:]); got != "VRRPv3" {
		t.Errorf("an IPv6-only config: --check says %q, want VRRPv3", got)
	}
}

// A password beside auth_hmac keys is dropped, as keepalived 2.4 drops it,
// and said so; beside the dynamic mode's derived key in receive-only it
// stays (a move from keepalived nodes that use one).
func TestPasswordBesideAuthHMAC(t *testing.T) {
	key := "\"hex:" + strings.Repeat("ab", 32) + "\""
	static := "interface: eth0\nvips: [192.0.2.101]\npriorities: {192.0.2.101: 100}\n"
	l, err := parseConfig([]byte(static + "vrrp: {version: 2, auth_pass: secret, auth_hmac: {keys: {3: " + key + "}, active_key: 3, mode: receive-only}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l.cfg.VRRP.Password() != "" || len(l.cfg.VRRP.Notes()) != 1 {
		t.Errorf("beside keys: password %q, notes %q; want it dropped, and said so", l.cfg.VRRP.Password(), l.cfg.VRRP.Notes())
	}
	l, err = parseConfig([]byte("interface: eth0\nvips: [192.0.2.101]\ngossip: {insecure: true}\nvrrp: {version: 2, auth_pass: secret, auth_hmac: {mode: receive-only}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if l.cfg.VRRP.Password() != "secret" || len(l.cfg.VRRP.Notes()) != 0 {
		t.Errorf("beside the derived key: password %q, notes %q; want it kept", l.cfg.VRRP.Password(), l.cfg.VRRP.Notes())
	}
}

// A config with no settings (a fresh package's) says what to write, not
// the decoder's EOF.
func TestEmptyConfigSaysWhatToWrite(t *testing.T) {
	for _, text := range []string{"", "# only a comment\n# node: lb1\n"} {
		if _, err := parseConfig([]byte(text)); err == nil || !strings.Contains(err.Error(), "vips: required") {
			t.Errorf("%q: %v", text, err)
		}
	}
}

// A range in vips: is every address of it, as if listed one by one: the
// same routers, and the chart's values pass ranges through as they are.
func TestConfigVIPRanges(t *testing.T) {
	ranged, err := parseConfig([]byte("interface: eth0\nvips: [192.0.2.1-192.0.2.3, 2001:db8::1-2001:db8::2/64]\npriorities: {192.0.2.1: 100}\n"))
	if err != nil {
		t.Fatal(err)
	}
	listed, err := parseConfig([]byte("interface: eth0\nvips: [192.0.2.1, 192.0.2.2, 192.0.2.3, 2001:db8::1/64, 2001:db8::2/64]\npriorities: {192.0.2.1: 100}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ranged.routers) != fmt.Sprint(listed.routers) || len(ranged.routers) != 5 {
		t.Fatalf("ranged %v\nlisted %v", ranged.routers, listed.routers)
	}
	if _, err := parseConfig([]byte("interface: eth0\nvips: [192.0.2.1-192.0.2.3, 192.0.2.2]\npriorities: {192.0.2.1: 100}\n")); err == nil || !strings.Contains(err.Error(), "192.0.2.2") {
		t.Fatalf("a range overlapping another entry: %v, want an error naming 192.0.2.2", err)
	}
}

// A secret file named under ${CREDENTIALS_DIRECTORY} is read from the
// directory systemd's LoadCredential= gives the unit; unset, the agent
// says how to give it one (offline it is named, not read), and no other
// variable is expanded.
func TestConfigCredentials(t *testing.T) {
	dir := t.TempDir()
	key := "bGFiLWtleS1sYWIta2V5LWxhYi1rZXktbGFiLWtleSE=\n"
	if err := os.WriteFile(filepath.Join(dir, "gossip.key"), []byte(key), 0o400); err != nil {
		t.Fatal(err)
	}
	cfg := "interface: eth0\nvips: [192.0.2.101]\ngossip:\n  secret_key_file: ${CREDENTIALS_DIRECTORY}/gossip.key\n"

	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	l, err := parseConfig([]byte(cfg))
	if err != nil {
		t.Fatalf("with the credentials directory set: %v", err)
	}
	if want := filepath.Join(dir, "gossip.key"); l.cfg.Gossip.SecretKeyFile != want || len(l.gossipKeys) != 1 {
		t.Errorf("secret_key_file %q with %d keys, want %q and its key", l.cfg.Gossip.SecretKeyFile, len(l.gossipKeys), want)
	}
	if _, err := parseConfig([]byte(strings.ReplaceAll(cfg, "${CREDENTIALS_DIRECTORY}", "$HOME"))); err == nil || !strings.Contains(err.Error(), "only ${CREDENTIALS_DIRECTORY}") {
		t.Errorf("$HOME in a path: %v", err)
	}

	t.Setenv("CREDENTIALS_DIRECTORY", "")
	if _, err := parseConfig([]byte(cfg)); err == nil || !strings.Contains(err.Error(), "LoadCredential=gossip.key:/etc/garpd/gossip.key") {
		t.Errorf("without a credentials directory: %v", err)
	}
	if _, err := parseConfigAs([]byte(cfg), true); err != nil {
		t.Errorf("offline, without a credentials directory: %v", err)
	}
}
