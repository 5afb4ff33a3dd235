package gossip

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o600)
		return p
	}
	raw := []byte("0123456789abcdef0123456789abcdef")
	if k, err := LoadKey(write("raw", raw)); err != nil || len(k) != 32 {
		t.Fatalf("raw 32-byte key: %v", err)
	}
	b64 := base64.StdEncoding.EncodeToString(raw[:16]) + "\n"
	if k, err := LoadKey(write("b64", []byte(b64))); err != nil || len(k) != 16 {
		t.Fatalf("base64 16-byte key: %v", err)
	}
	if _, err := LoadKey(write("short", []byte("short"))); err == nil || !strings.Contains(err.Error(), "16, 24 or 32") {
		t.Fatalf("short key: %v", err)
	}
}

// fall failures take a check out, rise passes bring it back; the verdict
// callback fires once per change.
func TestHealthFallRise(t *testing.T) {
	flag := filepath.Join(t.TempDir(), "healthy")
	os.WriteFile(flag, nil, 0o644)
	var mu sync.Mutex
	var verdicts []bool
	h, err := NewHealth(HealthConfig{Checks: []CheckConfig{{Name: "flag", Exec: []string{"test", "-f", flag},
		Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, Fall: 2, Rise: 3}}}, zerolog.Nop(), nil,
		func(healthy bool, failing []string) {
			mu.Lock()
			verdicts = append(verdicts, healthy)
			mu.Unlock()
		})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.Run(ctx)
	wait := func(n int) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for {
			mu.Lock()
			got := len(verdicts)
			mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d verdicts, want %d", got, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	time.Sleep(250 * time.Millisecond)
	if ok, _ := h.Healthy(); !ok {
		t.Fatal("passing check reported unhealthy")
	}
	os.Remove(flag)
	start := time.Now()
	wait(1)
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("went unhealthy after %s: fall 2 at 100ms needs two failures", d)
	}
	if ok, failing := h.Healthy(); ok || len(failing) != 1 || failing[0] != "flag" {
		t.Fatalf("after failures: %v %v", ok, failing)
	}
	os.WriteFile(flag, nil, 0o644)
	wait(2)
	mu.Lock()
	defer mu.Unlock()
	if len(verdicts) != 2 || verdicts[0] || !verdicts[1] {
		t.Fatalf("verdicts %v, want [false true]", verdicts)
	}
}

func TestHealthCheckKinds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	ctx := context.Background()
	tcp, _ := newProbe(CheckConfig{TCP: srv.Listener.Addr().String()})
	if err := tcp(ctx); err != nil {
		t.Fatalf("tcp check against a listener: %v", err)
	}
	httpProbe, _ := newProbe(CheckConfig{HTTP: srv.URL + "/healthz"})
	if err := httpProbe(ctx); err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("http check against a 503: %v", err)
	}
	closed, _ := newProbe(CheckConfig{TCP: "127.0.0.1:1"})
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
