package gossip

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	raw := []byte("0123456789abcdef0123456789abcdef")
	binary := bytes.Repeat([]byte{0xff, 0x00}, 16)
	if k, err := LoadKeys(write("raw", binary)); err != nil || len(k) != 1 || !bytes.Equal(k[0], binary) {
		t.Fatalf("raw 32-byte key: %v", err)
	}
	// openssl rand -hex 32, with or without its newline.
	hexKey := hex.EncodeToString(raw)
	for _, text := range []string{hexKey, hexKey + "\n"} {
		if k, err := LoadKeys(write("hex", []byte(text))); err != nil || len(k) != 1 || !bytes.Equal(k[0], raw) {
			t.Fatalf("hex key %q: %v %v", text, k, err)
		}
	}
	// The same base64 text is the same key, whatever its trailing newline.
	b64of24 := base64.StdEncoding.EncodeToString(raw[:24])
	for _, text := range []string{b64of24, b64of24 + "\n"} {
		if k, err := LoadKeys(write("b64-24", []byte(text))); err != nil || len(k) != 1 || !bytes.Equal(k[0], raw[:24]) {
			t.Fatalf("base64 of 24 bytes %q: %v %v", text, k, err)
		}
	}
	if _, err := LoadKeys(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "make one with") {
		t.Fatalf("a missing key file: %v", err)
	}
	b64 := base64.StdEncoding.EncodeToString(raw[:16])
	for _, text := range []string{b64, b64 + "\n", " " + b64 + "\n\n"} {
		if k, err := LoadKeys(write("b64", []byte(text))); err != nil || len(k) != 1 || !bytes.Equal(k[0], raw[:16]) {
			t.Fatalf("base64 16-byte key %q: %v", text, err)
		}
	}
	two := "# rotating\n" + base64.StdEncoding.EncodeToString(raw) + "\n\n" + b64 + "\n"
	if k, err := LoadKeys(write("two", []byte(two))); err != nil || len(k) != 2 || !bytes.Equal(k[0], raw) || !bytes.Equal(k[1], raw[:16]) {
		t.Fatalf("primary and secondary: %v %v", k, err)
	}
	for _, bad := range []string{"short", b64 + "\nshort\n", b64 + "\n" + b64, "\n# nothing\n"} {
		if _, err := LoadKeys(write("bad", []byte(bad))); err == nil || !strings.Contains(err.Error(), "key") {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

// fall failures take a check out, rise passes bring it back; the verdict
// callback fires once per change. The probes' results are fed in directly,
// so the counts do not depend on how fast the machine runs a probe.
func TestHealthFallRise(t *testing.T) {
	var verdicts []bool
	h, err := NewHealth(HealthConfig{Checks: []CheckConfig{{Name: "flag", Exec: []string{"true"}, Fall: 2, Rise: 3}}}, nil,
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
		ok, failing := h.Healthy()
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

// Run probes on the interval: a real exec check follows the file it tests.
func TestHealthRun(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "healthy")
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := NewHealth(HealthConfig{Checks: []CheckConfig{{Name: "flag", Exec: []string{"test", "-f", flag},
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
			if ok, _ := h.Healthy(); ok == want {
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
	tcp, _ := newProbe(CheckConfig{TCP: srv.Listener.Addr().String()}, nil)
	if err := tcp(ctx); err != nil {
		t.Fatalf("tcp check against a listener: %v", err)
	}
	httpProbe, _ := newProbe(CheckConfig{HTTP: srv.URL + "/healthz"}, nil)
	if err := httpProbe(ctx); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("http check against a 503: %v", err)
	}
	closed, _ := newProbe(CheckConfig{TCP: "127.0.0.1:1"}, nil)
	if err := closed(ctx); err == nil {
		t.Fatal("tcp check against a closed port passed")
	}
}

func TestSeedListResolves(t *testing.T) {
	seeds, err := SeedList{Join: []string{"192.0.2.1:7946", "dns:localhost:7946"}}.Seeds(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(seeds) < 2 || seeds[0] != "192.0.2.1:7946" || !strings.HasSuffix(seeds[1], ":7946") {
		t.Fatalf("seeds %v: want the static one and localhost's addresses", seeds)
	}
}

type failingSeeds struct{}

func (failingSeeds) Seeds(context.Context) ([]string, error) { return nil, errors.New("API down") }

// Several sources give all their seeds; one that fails hides no other's,
// and only all failing is an error.
func TestDiscoverersUnion(t *testing.T) {
	ctx := context.Background()
	pods := SeedList{Join: []string{"192.0.2.11:7946"}}
	outside := SeedList{Join: []string{"192.0.2.12:7946", "192.0.2.13:7946"}}
	if got, err := (Discoverers{pods, outside}).Seeds(ctx); err != nil || !slices.Equal(got, []string{"192.0.2.11:7946", "192.0.2.12:7946", "192.0.2.13:7946"}) {
		t.Fatalf("seeds %v, %v: want both sources'", got, err)
	}
	if got, err := (Discoverers{failingSeeds{}, outside}).Seeds(ctx); err != nil || len(got) != 2 {
		t.Fatalf("with the API down: %v, %v, want the join list's 2", got, err)
	}
	if _, err := (Discoverers{failingSeeds{}, failingSeeds{}}).Seeds(ctx); err == nil {
		t.Fatal("every source failing is not an error")
	}
}

// An exec check whose pipeline hangs fails at its timeout, and nothing it
// started is left running; its output is capped.
func TestExecCheckHungPipeline(t *testing.T) {
	marker := fmt.Sprintf("%d.%d", os.Getpid(), time.Now().UnixNano()%1000)
	p, err := newProbe(CheckConfig{Exec: []string{"sh", "-c", "sleep 3" + marker + " | cat"}}, nil)
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

	chatty, _ := newProbe(CheckConfig{Exec: []string{"sh", "-c", "yes | head -c 100000; exit 1"}}, nil)
	err = chatty(context.Background())
	if err == nil || len(err.Error()) > execOutputLimit+100 {
		t.Fatalf("chatty failing check: %d bytes of error, want it capped", len(err.Error()))
	}
}

// An exec check whose script cannot run here says why, not "no such
// file": the interpreter it names is missing (a script in the distroless
// image), or the program is.
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
	err := RunCommand(context.Background(), []string{bash}, nil)
	if err == nil || !strings.Contains(err.Error(), "-checks variant") {
		t.Errorf("running a script without its interpreter: %v, want the reason and the fix", err)
	}
}
