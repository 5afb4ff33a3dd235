package main

import (
	"bytes"
	"strings"
	"testing"
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

// What a reload may apply without restarting VRRP or gossip.
func TestSameEngine(t *testing.T) {
	base, err := parseConfig([]byte("interface: eth0\nvips: [192.0.2.101]\ngossip: {insecure: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		yaml string
		same bool
	}{
		{"interface: eth0\nvips: [192.0.2.101]\ngossip: {insecure: true}\nlog: {level: debug, format: console}\nhttp: {listen: 127.0.0.1:9999, pprof: true}\n", true},
		{"interface: eth0\nvips: [192.0.2.101]\ngossip: {insecure: true}\ngarp: {refresh: 30s, count: 1, mode: reply}\n", true},
		{"interface: eth0\nvips: [192.0.2.101]\ngossip: {insecure: true}\nhealth: {checks: [{name: a, exec: [\"true\"]}]}\n", true},
		{"interface: eth0\nvips: [192.0.2.101]\ngossip: {insecure: true, settle: 9s}\n", false},
		{"interface: eth0\nvips: [192.0.2.101]\ngossip: {insecure: true}\nvrrp: {advert_interval: 2s}\n", false},
		{"interface: eth0\nvips: [192.0.2.101, 192.0.2.102]\ngossip: {insecure: true}\n", false},
	} {
		l, err := parseConfig([]byte(c.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if got := sameEngine(base.cfg, l.cfg); got != c.same {
			t.Errorf("%q: sameEngine %v, want %v", c.yaml, got, c.same)
		}
	}
}
