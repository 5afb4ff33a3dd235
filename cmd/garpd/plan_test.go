package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func runCLI(args ...string) (string, error) {
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestPlanJSONShape(t *testing.T) {
	out, err := runCLI("plan", "--nodes", "n1,n2,n3", "--vips", "192.0.2.101,192.0.2.102", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		VIPs []struct {
			Address    string         `json:"address"`
			VRID       int            `json:"vrid"`
			Ranking    []string       `json:"ranking"`
			Priorities map[string]int `json:"priorities"`
		} `json:"vips"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(got.VIPs) != 2 || got.VIPs[0].Address != "192.0.2.101" || got.VIPs[0].VRID != 10 || got.VIPs[1].VRID != 11 {
		t.Fatalf("unexpected plan: %s", out)
	}
	for _, v := range got.VIPs {
		if len(v.Ranking) != 3 || v.Priorities[v.Ranking[0]] != 250 || v.Priorities[v.Ranking[1]] != 200 || v.Priorities[v.Ranking[2]] != 150 {
			t.Fatalf("ranking/priorities wrong: %+v", v)
		}
	}
	if got.VIPs[0].Ranking[0] == got.VIPs[1].Ranking[0] {
		t.Fatalf("2 VIPs over 3 nodes share an owner: %s", out)
	}
}

// --down keeps the ranking and moves holders to the next node that is up;
// --fail shows the same as a what-if.
func TestPlanDownAndFail(t *testing.T) {
	args := []string{"plan", "--nodes", "a,b,c,d", "--vip-range", "198.51.100.1-198.51.100.40", "--json"}
	out, err := runCLI(args...)
	if err != nil {
		t.Fatal(err)
	}
	var all planJSON
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		t.Fatal(err)
	}
	out, err = runCLI(append(args, "--down", "b", "--fail", "c")...)
	if err != nil {
		t.Fatal(err)
	}
	var got planJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if got.Owned["b"] != 10 || got.Held["b"] != 0 || !slices.Equal(got.Down, []string{"b"}) {
		t.Fatalf("want b owning 10 VIPs and holding none while down: %s", out)
	}
	for i, v := range got.VIPs {
		if !slices.Equal(v.Ranking, all.VIPs[i].Ranking) {
			t.Fatalf("%s: ranking %v changed with --down (was %v)", v.Address, v.Ranking, all.VIPs[i].Ranking)
		}
		want := v.Ranking[0]
		if want == "b" {
			want = v.Ranking[1]
		}
		if v.Holder != want {
			t.Fatalf("%s: holder %s, want %s (first of %v that is up)", v.Address, v.Holder, want, v.Ranking)
		}
	}
	if spread := maxMin(got.Held, "b"); spread > 1 {
		t.Fatalf("with b down the others hold %v: spread %d", got.Held, spread)
	}
	if got.Fail == nil || len(got.Fail.Moves) != got.Held["c"] {
		t.Fatalf("--fail c: want each of the %d VIPs c holds moved: %s", got.Held["c"], out)
	}
	for _, m := range got.Fail.Moves {
		if m.VRRP == "b" || m.VRRP == "c" {
			t.Fatalf("a VIP moved to a down node: %+v", m)
		}
	}
	text, err := runCLI("plan", "--nodes", "a,b,c,d", "--vip-range", "198.51.100.1-198.51.100.40", "--fail", "b")
	if err != nil || !strings.Contains(text, "If b goes down") || !strings.Contains(text, "no other VIP moves") {
		t.Fatalf("text --fail output: %v\n%s", err, text)
	}
}

func maxMin(m map[string]int, except string) int {
	lo, hi := -1, 0
	for k, v := range m {
		if k == except {
			continue
		}
		if lo < 0 || v < lo {
			lo = v
		}
		hi = max(hi, v)
	}
	return hi - lo
}

// Bad input exits 2 with a message naming the offending value.
func TestPlanBadInput(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--vips", "192.0.2.1"}, "--nodes"},
		{[]string{"--nodes", "a,a", "--vips", "192.0.2.1"}, `"a"`},
		{[]string{"--nodes", "a", "--vips", "192.0.2.300"}, "192.0.2.300"},
		{[]string{"--nodes", "a", "--vip-range", "192.0.2.9-192.0.2.1"}, "192.0.2.9-192.0.2.1"},
		{[]string{"--nodes", "a", "--vip-range", "192.0.2.1-2001:db8::1"}, "mixes"},
		{[]string{"--nodes", "a", "--vip-range", "bogus"}, "bogus"},
		{[]string{"--nodes", "a,b", "--vips", "192.0.2.1", "--weights", "a=2"}, "--weights"},
		{[]string{"--nodes", "a,b", "--vips", "192.0.2.1", "--fail", "z"}, `"z"`},
		{[]string{"--nodes", "a,b", "--vips", "192.0.2.1", "--down", "y"}, `"y"`},
		{[]string{"--nodes", "a"}, "no VIPs"},
		{[]string{"--nodes", "a", "--vips", "192.0.2.1", "--vrid-base", "0"}, "0"},
	}
	for _, c := range cases {
		_, err := runCLI(append([]string{"plan"}, c.args...)...)
		if err == nil {
			t.Errorf("plan %v succeeded", c.args)
			continue
		}
		if exitCode(err) != 2 || !strings.Contains(err.Error(), c.want) {
			t.Errorf("plan %v: %v (exit %d), want exit 2 naming %s", c.args, err, exitCode(err), c.want)
		}
	}
}

// garpd forget posts the node to the agent and reports its refusal.
func TestForgetCmd(t *testing.T) {
	var got forgetRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/forget" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		json.NewDecoder(r.Body).Decode(&got)
		if got.Node == "n1" {
			http.Error(w, `"n1" is alive: stop it first, then forget it`, http.StatusConflict)
			return
		}
		fmt.Fprintf(w, "forgot %s\n", got.Node)
	}))
	defer srv.Close()
	out, err := runCLI("forget", "n4", "--agent", srv.URL)
	if err != nil || got.Node != "n4" || !strings.Contains(out, "forgot n4") {
		t.Fatalf("forget n4: %v, agent got %+v, printed %q", err, got, out)
	}
	if _, err := runCLI("forget", "n1", "--agent", srv.URL); err == nil || !strings.Contains(err.Error(), "is alive") {
		t.Fatalf("forget of a live node: %v, want the agent's refusal", err)
	}
}

// garpd announce --agent asks the agent for a wave and reports VIPs the
// agent does not hold as an error.
func TestAnnounceAgent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req announceRequest
		json.NewDecoder(r.Body).Decode(&req)
		resp := announceResponse{Queued: []string{"192.0.2.101"}}
		if len(req.VIPs) > 1 {
			resp.NotHeld = req.VIPs[1:]
		}
		json.NewEncoder(w).Encode(resp)
	}))
	defer srv.Close()
	out, err := runCLI("announce", "--agent", srv.URL)
	if err != nil || !strings.Contains(out, "1 VIPs queued: 192.0.2.101") {
		t.Fatalf("wave: %v\n%s", err, out)
	}
	out, err = runCLI("announce", "--agent", srv.URL, "--vips", "192.0.2.101,192.0.2.102")
	if err == nil || !strings.Contains(out, "not held by this agent, not announced: 192.0.2.102") {
		t.Fatalf("wave with a VIP not held: %v\n%s", err, out)
	}
}

// garpd status finds the agent by each form an operator has: HOST:PORT
// as control.listen writes it, a URL, unix:PATH, and -c FILE, whose
// control.token_file it sends.
func TestAgentAddressForms(t *testing.T) {
	const token = "0123456789abcdef0123"
	var gotAuth string
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		w.Write([]byte(`{"node":"n1","mode":"static"}`))
	})
	tcp := httptest.NewServer(h)
	defer tcp.Close()
	dir := t.TempDir()
	sock := filepath.Join(dir, "control.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	unixSrv := &http.Server{Handler: h}
	go unixSrv.Serve(ln)
	defer unixSrv.Close()
	hostPort := strings.TrimPrefix(tcp.URL, "http://")
	for _, args := range [][]string{{"--agent", hostPort}, {"--agent", tcp.URL}, {"--agent", "unix:" + sock}} {
		if out, err := runCLI(append([]string{"status"}, args...)...); err != nil || !strings.Contains(out, "node n1") {
			t.Errorf("status %v: %v\n%s", args, err, out)
		}
	}
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte(token+"\n"), 0o600)
	cfg := filepath.Join(dir, "garpd.yaml")
	os.WriteFile(cfg, []byte("interface: eth0\nvips: [192.0.2.101]\npriorities: {192.0.2.101: 100}\ncontrol: {listen: unix:"+sock+", token_file: "+tokenFile+"}\n"), 0o600)
	if out, err := runCLI("status", "-c", cfg); err != nil || !strings.Contains(out, "node n1") || gotAuth != "Bearer "+token {
		t.Errorf("status -c: %v (Authorization %q)\n%s", err, gotAuth, out)
	}
	gotAuth = ""
	if _, err := runCLI("announce", "--agent", "config", "-c", cfg); gotAuth != "Bearer "+token {
		t.Errorf("announce --agent config -c: %v (Authorization %q)", err, gotAuth)
	}
}

// plan -c plans a config's VIPs, with their VRIDs and preferences, and
// says what the preferences cost; --prefer does the same from flags; a
// VIP whose nodes are all down says so; both families are counted apart.
func TestPlanConfigAndPreferences(t *testing.T) {
	path := filepath.Join(t.TempDir(), "garpd.yaml")
	cfg := "interface: eth0\ngossip: {insecure: true}\nvips:\n  - {address: 192.0.2.101, vrid: 51, prefer: n2}\n  - {address: 192.0.2.102, prefer: n2}\n  - 2001:db8::1\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := runCLI("plan", "--nodes", "n1,n2,n3", "-c", path, "--down", "n1,n2,n3")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"192.0.2.101  51", "(none: all down)", "preferences cost"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan -c lacks %q:\n%s", want, out)
		}
	}
	if out, err := runCLI("plan", "--nodes", "n1,n2,n3", "-c", path); err != nil || !strings.Contains(out, "2 (ipv4 2, ipv6 0)") {
		t.Errorf("plan -c without --down does not count the families apart: %v\n%s", err, out)
	}
	out, err = runCLI("plan", "--nodes", "n1,n2,n3", "-c", path, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		VIPs []struct {
			Address string   `json:"address"`
			Ranking []string `json:"ranking"`
		} `json:"vips"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	for _, v := range got.VIPs {
		if strings.HasPrefix(v.Address, "192.0.2.") && v.Ranking[0] != "n2" {
			t.Errorf("%s is owned by %s, prefers n2", v.Address, v.Ranking[0])
		}
	}
	if _, err := runCLI("plan", "--nodes", "n1,n2", "-c", path, "--vips", "192.0.2.9"); err == nil {
		t.Error("plan -c with --vips accepted")
	}
	if _, err := runCLI("plan", "--nodes", "n1,n2", "--vips", "192.0.2.9", "--prefer", "192.0.2.9=n7"); err == nil {
		t.Error("--prefer for a node not in --nodes accepted")
	}
}

// plan -c of a static config is refused: its priorities are its own, and
// a plan would print others (issue 37 item 12).
func TestPlanRefusesAStaticConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "static.yaml")
	if err := os.WriteFile(path, []byte("interface: eth0\nvips: [192.0.2.101]\npriorities: {192.0.2.101: 150}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI("plan", "--nodes", "n1,n2", "-c", path); err == nil || !strings.Contains(err.Error(), "keeps its own priorities") {
		t.Fatalf("plan -c of a static config: %v", err)
	}
}
