package health

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestHealthFallRise(t *testing.T) {
	var verdicts []bool
	h, err := NewChecker(Config{Checks: []CheckConfig{{Name: "flag", Exec: []string{"true"}, Fall: 2, Rise: 3}}}, nil,
		zerolog.Nop(), nil, func(healthy bool, failing []string) { verdicts = append(verdicts, healthy) })
	if err != nil {
		t.Fatal(err)
	}
	fail := errors.New("probe failed")
	steps := []struct {
		err     error
		healthy bool
	}{
		{nil, true}, {fail, true}, {nil, true}, // one failure, then a pass: fall needs 2 in a row
		{fail, true}, {fail, false}, // two in a row: out
		{fail, false}, {nil, false}, {nil, false}, {fail, false}, // rise needs 3 in a row
		{nil, false}, {nil, false}, {nil, true},
	}
	for i, s := range steps {
		h.record(0, s.err)
		ok, failing := healthy(h)
		if ok != s.healthy {
			t.Fatalf("step %d (err %v): healthy %v, want %v", i, s.err, ok, s.healthy)
		}
		if !ok && (len(failing) != 1 || failing[0] != "flag") {
			t.Fatalf("step %d: failing %v, want [flag]", i, failing)
		}
	}
	if !slices.Equal(verdicts, []bool{false, true}) {
		t.Fatalf("verdicts %v, want [false true]: one callback per change", verdicts)
	}
}

func TestHealthRun(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "healthy")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := NewChecker(Config{Checks: []CheckConfig{{Name: "flag", Exec: []string{"test", "-f", flag},
		Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, Fall: 1, Rise: 1}}}, nil, zerolog.Nop(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	wait := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			if ok, _ := healthy(h); ok == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("healthy never became %v in 20s", want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	wait(false)
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wait(true)
}

func TestHealthCheckKinds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	ctx := context.Background()
	tcp, _ := newProbe(CheckConfig{TCP: srv.Listener.Addr().String()}, nil, Runner{})
	if err := tcp(ctx); err != nil {
		t.Fatalf("tcp check against a listener: %v", err)
	}
	httpProbe, _ := newProbe(CheckConfig{HTTP: srv.URL + "/healthz"}, nil, Runner{})
	if err := httpProbe(ctx); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("http check against a 503: %v", err)
	}
	closed, _ := newProbe(CheckConfig{TCP: "127.0.0.1:1"}, nil, Runner{})
	if err := closed(ctx); err == nil {
		t.Fatal("tcp check against a closed port passed")
	}
}

// An HTTP check passes on 2xx only, not on a redirect (to a login page, a
// maintenance site), and asks the service itself, whatever proxy the
// environment names.
func TestHTTPCheckPassesOn2xxOnly(t *testing.T) {
	if tr, err := httpTransport(CheckConfig{}); err != nil || tr.Proxy != nil {
		t.Fatalf("the check's transport takes a proxy from the environment (%v)", err)
	}
	for code, pass := range map[int]bool{200: true, 204: true, 302: false, 301: false, 404: false} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if code/100 == 3 {
				w.Header().Set("Location", "/login")
			}
			w.WriteHeader(code)
		}))
		probe, err := newProbe(CheckConfig{HTTP: srv.URL + "/healthz"}, nil, Runner{})
		if err != nil {
			t.Fatal(err)
		}
		err = probe(context.Background())
		srv.Close()
		if (err == nil) != pass {
			t.Errorf("status %d: check error %v, want passing %v", code, err, pass)
		}
	}
}

func TestExecCheckHungPipeline(t *testing.T) {
	marker := fmt.Sprintf("%d.%d", os.Getpid(), time.Now().UnixNano()%1000)
	p, err := newProbe(CheckConfig{Exec: []string{"sh", "-c", "sleep 3" + marker + " | cat"}}, nil, Runner{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = p(ctx)
	if err == nil || !strings.Contains(err.Error(), "did not finish in time") {
		t.Fatalf("hung check: %v, want a timeout failure", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the check returned after %s: its children kept it waiting", took)
	}
	// The sleep was in the check's process group: it is gone.
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := exec.Command("pgrep", "-f", "sleep 3"+marker).Output()
		if len(strings.TrimSpace(string(out))) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hung check's sleep still runs: pids %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}

	chatty, _ := newProbe(CheckConfig{Exec: []string{"sh", "-c", "yes | head -c 100000; exit 1"}}, nil, Runner{})
	err = chatty(context.Background())
	if err == nil || len(err.Error()) > execOutputLimit+100 {
		t.Fatalf("chatty failing check: %d bytes of error, want it capped", len(err.Error()))
	}
}

func TestRunnableSaysWhyAScriptCannotRun(t *testing.T) {
	dir := t.TempDir()
	script := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ok := script("ok.sh", "#!/bin/sh\nexit 0\n")
	env := script("env.sh", "#!/usr/bin/env sh\nexit 0\n")
	bash := script("bash.sh", "#!/nonexistent/bash\nexit 0\n")
	for _, c := range []struct{ program, want string }{
		{ok, ""}, {env, ""},
		{bash, "runs under /nonexistent/bash, which is not here"},
		{filepath.Join(dir, "missing.sh"), "not found here"},
	} {
		err := Runnable(c.program)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("Runnable(%s) = %v, want %q", filepath.Base(c.program), err, c.want)
		}
	}
	err := Runner{}.Run(context.Background(), []string{bash}, nil)
	if err == nil || !strings.Contains(err.Error(), "-checks variant") {
		t.Errorf("running a script without its interpreter: %v, want the reason and the fix", err)
	}
}

// An agent running as root refuses, as keepalived's script_security does,
// a script someone else could change: writable by group or others, in a
// directory they may write (not a sticky one like /tmp), or owned by
// another user, links resolved; it runs what only root can change.
func TestScriptSafeRefusesWhatOthersCanChange(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: ScriptSafe checks only for an agent running as root")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	script := filepath.Join(dir, "check.sh")
	marker := filepath.Join(dir, "ran")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ntouch "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ScriptSafe(script); err != nil {
		t.Fatalf("a root-owned 0755 script in a root-owned directory: %v", err)
	}
	link := filepath.Join(dir, "link.sh")
	os.Symlink(script, link)
	for _, c := range []struct {
		name  string
		setup func()
		undo  func()
		want  string
	}{
		{"world-writable script", func() { os.Chmod(script, 0o757) }, func() { os.Chmod(script, 0o755) }, "writable by group or others"},
		{"group-writable directory", func() { os.Chown(dir, 0, 100); os.Chmod(dir, 0o775) }, func() { os.Chown(dir, 0, 0); os.Chmod(dir, 0o755) }, "writable by group or others"},
		{"another user's script", func() { os.Chown(script, 65534, 0) }, func() { os.Chown(script, 0, 0) }, "belongs to uid 65534"},
	} {
		c.setup()
		for _, p := range []string{script, link} {
			if err := ScriptSafe(p); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s (%s): %v, want %q", c.name, filepath.Base(p), err, c.want)
			}
		}
		if err := (Runner{}).Run(context.Background(), []string{script}, nil); err == nil {
			t.Errorf("%s: Run ran it", c.name)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("%s: the script ran", c.name)
		}
		c.undo()
	}
	// A sticky directory (like /tmp) is safe: nobody else can replace
	// what is in it.
	os.Chmod(dir, 0o777|os.ModeSticky)
	if err := (Runner{}).Run(context.Background(), []string{script}, nil); err != nil {
		t.Fatalf("in a sticky directory: %v", err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("the safe script did not run")
	}
}

// healthy is the checker's verdict: whether every check passes, and which fail.
func healthy(h *Checker) (bool, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.verdict()
}

// capsClear is a shell test that its own process holds no capability:
// none effective, none permitted, none ambient.
const capsClear = `for c in CapEff CapPrm CapAmb; do grep -q "^$c:[[:space:]]*0000000000000000$" /proc/self/status || exit 1; done`

// An agent that systemd runs as a user of its own with
// AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW passes none of them to an
// exec check or a hook. The test runs itself as nobody with ambient
// CAP_NET_RAW (setpriv), and there runs a script that must hold none.
func TestRunnerDropsAmbientCapabilities(t *testing.T) {
	if os.Getenv("GARPD_AMBIENT_CHILD") != "" {
		status, err := os.ReadFile("/proc/self/status")
		if err != nil || !regexp.MustCompile(`(?m)^CapAmb:\s*0*2000$`).Match(status) {
			t.Fatalf("the test process was to hold ambient CAP_NET_RAW (%v):\n%s", err, status)
		}
		if err := (Runner{}).Run(context.Background(), []string{"sh", "-c", capsClear}, nil); err != nil {
			t.Fatalf("the script holds capabilities its agent had as ambient ones: %v", err)
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping: starting a process with ambient capabilities needs root")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("skipping: no setpriv (util-linux) to start a process with ambient capabilities")
	}
	// nobody must reach the test binary: a copy in a directory of its own.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "garpd-ambient-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "health.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=+net_raw", "--ambient-caps=+net_raw",
		bin, "-test.run=^TestRunnerDropsAmbientCapabilities$", "-test.v")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GARPD_AMBIENT_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("as nobody with ambient CAP_NET_RAW: %v\n%s", err, out)
	}
}

// script_user: an agent that is root runs checks and hooks as that user,
// with no capability left.
func TestRunnerScriptUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: running a script as another user needs root")
	}
	r, err := NewRunner("nobody")
	if err != nil {
		t.Skip("skipping: no user nobody here:", err)
	}
	if err := r.Run(context.Background(), []string{"sh", "-c", `test "$(id -u)" = 65534 && ` + capsClear}, nil); err != nil {
		t.Fatalf("as script_user nobody: %v", err)
	}
	// Root's scripts keep their capabilities: the check above can fail.
	if err := (Runner{}).Run(context.Background(), []string{"sh", "-c", capsClear}, nil); err == nil {
		t.Fatal("a script run as root holds no capability: the check proves nothing")
	}
	if _, err := NewRunner("no-such-user-garpd"); err == nil || !strings.Contains(err.Error(), "no such user") {
		t.Fatalf("an unknown script_user: %v", err)
	}
}
