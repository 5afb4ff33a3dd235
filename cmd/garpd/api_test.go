package main

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The control socket is the operator's: made mode 0600 from the start;
// what else sits at its path (a file, a link, a socket another agent
// serves) is refused and left alone; only a stale socket is replaced.
func TestListenUnixReplacesOnlyAStaleSocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("keep\n"), 0o644)
	link := filepath.Join(dir, "link")
	os.Symlink(file, link)
	for _, p := range []string{file, link} {
		if ln, err := listenUnix(p); err == nil {
			ln.Close()
			t.Fatalf("listened on %s over what was there", p)
		}
		if b, _ := os.ReadFile(file); string(b) != "keep\n" {
			t.Fatalf("%s was changed", file)
		}
	}
	sock := filepath.Join(dir, "control.sock")
	ln, err := listenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Lstat(sock); st.Mode().Perm() != 0o600 || st.Mode().Type() != fs.ModeSocket {
		t.Fatalf("socket mode %s, want srw-------", st.Mode())
	}
	if second, err := listenUnix(sock); err == nil {
		second.Close()
		t.Fatal("a second listener took a socket that is served")
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // stale: the file stays, nobody serves it
	ln, err = listenUnix(sock)
	if err != nil {
		t.Fatalf("a stale socket was not replaced: %v", err)
	}
	ln.Close()
}

// A flood of /healthz requests reaches the VRRP engines at most once a
// second: each probe runs on the engines' loop, between adverts.
func TestHealthzProbesOncePerSecond(t *testing.T) {
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := liveness{now: func() time.Time { return clock }}
	var probes atomic.Int32
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			if !l.check(func() bool { probes.Add(1); time.Sleep(10 * time.Millisecond); return true }) {
				t.Error("not alive")
			}
		})
	}
	wg.Wait()
	if n := probes.Load(); n != 1 {
		t.Fatalf("%d probes for 200 requests within a second, want 1", n)
	}
	clock = clock.Add(time.Second)
	l.check(func() bool { probes.Add(1); return true })
	if n := probes.Load(); n != 2 {
		t.Fatalf("no new probe a second later (%d in all)", n)
	}
}

// The default socket's directory (/run/garpd) is made when missing.
func TestListenUnixMakesItsDirectory(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "garpd", "control.sock")
	ln, err := listenUnix(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v, %v; want mode 0600", sock, st, err)
	}
}
