package keepalived

import (
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// A script that only connects to bash's /dev/tcp (ipfailover's own check)
// is a tcp check, however it is written; /dev/udp stays a command, run
// under bash, with a note; other shell syntax runs under sh; a plain
// command is an exec check of its words.
func TestConvertScriptDevTCP(t *testing.T) {
	for script, want := range map[string]string{
		"</dev/tcp/192.0.2.1/80":                       "tcp: 192.0.2.1:80",
		"bash -c '</dev/tcp/127.0.0.1/6443'":           "tcp: 127.0.0.1:6443",
		"/bin/bash -c \"cat < /dev/tcp/example/8080\"": "tcp: example:8080",
		"echo > /dev/tcp/[2001:db8::1]/443":            `tcp: '[2001:db8::1]:443'`,
		"</dev/udp/192.0.2.1/53":                       "- /bin/bash\n    - -c\n    - </dev/udp/192.0.2.1/53",
		"/usr/bin/check --fast":                        "- /usr/bin/check\n    - --fast",
		"</dev/tcp/192.0.2.1/80 && rm -rf /":           "- /bin/sh\n    - -c\n    - </dev/tcp/192.0.2.1/80 && rm -rf /",
	} {
		sc := &Script{Name: "chk", At: &Stmt{}, Script: &Value{Text: script, At: &Stmt{}}, Interval: time.Second, Rise: 1, Fall: 1}
		m, notes := convertScript(sc)
		out, err := yaml.Marshal(m.n)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), want) {
			t.Errorf("%q:\n%s\nwant %q", script, out, want)
		}
		if strings.Contains(script, "/dev/udp") != (len(notes) == 1) {
			t.Errorf("%q: notes %v", script, notes)
		}
	}
}

// An instance's debug level is log detail: noted as harmless, so --strict
// passes it (issue 37 item 12).
func TestDebugIsHarmless(t *testing.T) {
	stmts, err := Parse(MapFiles{"/k.conf": "vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 51\n  debug 2\n  virtual_ipaddress { 192.0.2.10 }\n}\n"}, "/k.conf", "n1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Load(stmts)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Unsupported) != 1 || !c.Unsupported[0].Harmless {
		t.Fatalf("debug 2: notes %+v, want one harmless", c.Unsupported)
	}
}
