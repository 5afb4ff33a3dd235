package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// gossipFlood opens 20 streams to a gossip port, each announcing an
// encrypted message of 20 MB and sending it, as fast as the agent reads.
const gossipFlood = `
import socket, sys, threading
host, n, size = sys.argv[1], 20, 20 << 20
chunk = bytes(64 << 10)
def flood():
    try:
        s = socket.create_connection((host, 7946), timeout=30)
        s.sendall(bytes([10]) + size.to_bytes(4, "big"))  # memberlist's encryptMsg and its length
        sent = 0
        while sent < size:
            s.sendall(chunk)
            sent += len(chunk)
    except OSError:
        pass
ts = [threading.Thread(target=flood) for _ in range(n)]
for t in ts: t.start()
for t in ts: t.join()
print("done")
`

// TestGossipStreamsCannotExhaustMemory: from an address gossip admits
// (gossip.allow_from: the router's), 20 streams that each announce and
// send 20 MB leave the agent's RSS under 64 MiB: memberlist would buffer
// each whole (400 MB); garpd reads at most 8 streams at once, 2 MiB each.
func TestGossipStreamsCannotExhaustMemory(t *testing.T) {
	l := newLab(t, 1)
	n1 := l.Node("n1")
	cfg := strings.Replace(dynConfig(l, "n1", vips6[:2], ""), "  settle: 3s\n", "  settle: 3s\n  allow_from: [192.0.2.1]\n", 1)
	p, err := n1.StartGarpd(garpdBin, cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the agent to answer", func() (bool, string) {
		out, err := lab.Exec(n1.NS, garpdBin, "status")
		return err == nil, out
	})
	before := rssOf(t, p)
	flood, err := l.Start(l.Router, "gossip-flood", "python3", "-c", gossipFlood, n1.IPv4.String())
	if err != nil {
		t.Fatal(err)
	}
	peak := before
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(flood.Output(), "done") && time.Now().Before(deadline) {
		peak = max(peak, rssOf(t, p))
		time.Sleep(50 * time.Millisecond)
	}
	flood.Stop()
	t.Logf("agent RSS %d MiB before, at most %d MiB while 20 streams announced 20 MB each", before>>20, peak>>20)
	if peak > 64<<20 {
		t.Errorf("agent RSS reached %d MiB under the flood, want under 64 MiB", peak>>20)
	}
	if out, err := lab.Exec(n1.NS, garpdBin, "status"); err != nil {
		t.Errorf("the agent does not answer after the flood: %v\n%s", err, out)
	}
}
