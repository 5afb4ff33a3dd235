package e2e

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCaptureReadByTshark: start, crash and takeover of 255 IPv4 and 16
// IPv6 VIPs between 2 nodes (static mode, 100 ms adverts, all else
// default), captured on the router's bridge and read by an independent
// decoder, tshark, with its ARP storm detection on (30 packets within
// 100 ms) and checksum validation: no checksum is bad and no ARP storm is
// reported. (Duplicate-IP warnings are expected: every move is one.)
func TestCaptureReadByTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark is not installed (apt-get install tshark): the capture is not read")
	}
	l := newLab(t, 2)
	n1, n2 := l.Node("n1"), l.Node("n2")
	vips := vips510[:255+16]
	file := filepath.Join(l.Dir, "takeover.pcap")
	capture, err := l.Start(l.Router, "pcap", "tcpdump", "-i", "br0", "-n", "-U", "-B", "16384", "-w", file)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "tcpdump to listen", func() (bool, string) {
		return strings.Contains(capture.Output(), "listening on"), ""
	})
	m, b := startMasterAndBackup(t, l, vips255, func(node string, prio int) string {
		return scaleConfig(node, prio, vips, 100*time.Millisecond, "")
	})
	n1.LinkDown()
	m.Signal(syscall.SIGKILL)
	waitNeigh(t, l, 60*time.Second, onNode(n2, vips255))
	time.Sleep(2 * time.Second)
	b.Stop()
	capture.Signal(syscall.SIGINT)
	capture.Wait(10 * time.Second)

	out, err := exec.Command(tshark, "-r", file, "-q", "-o", "arp.detect_request_storms:TRUE", "-o", "ip.check_checksum:TRUE",
		"-z", "expert,note").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	text := string(out)
	counts, err := exec.Command(tshark, "-r", file, "-q", "-z", "io,phs").CombinedOutput()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, counts)
	}
	t.Logf("the capture, as tshark reads it:\n%s", tailLines(string(counts), 20))
	for _, bad := range []*regexp.Regexp{regexp.MustCompile(`(?i)storm`), regexp.MustCompile(`(?i)(bad|incorrect)[^\n]*checksum|checksum[^\n]*(bad|incorrect)`)} {
		if m := bad.FindAllString(text, -1); len(m) > 0 {
			t.Errorf("tshark reports %d × %q:\n%s", len(m), m[0], tailLines(text, 40))
		}
	}
	t.Logf("tshark's expert information:\n%s", tailLines(text, 30))
}

// tailLines is the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
