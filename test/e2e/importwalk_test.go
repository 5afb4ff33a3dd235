package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// importConstruct is one keepalived construct the import maps: the body
// of one node's keepalived.conf, with <self4> this node's IPv4 address,
// <peer4> the peer's, <self6> and <peer6> their IPv6 ones, and <dir> the
// lab directory (scripts, keys).
type importConstruct struct {
	name, conf string
	// keepalived243: only keepalived 2.4 parses it (auth_hmac).
	keepalived243 bool
}

// instance is a vrrp_instance with extra lines.
func instance(name string, vrid int, vip, extra string) string {
	return fmt.Sprintf("vrrp_instance %s {\n  state BACKUP\n  interface eth0\n  virtual_router_id %d\n  priority 150\n  advert_int 1\n%s  virtual_ipaddress {\n    %s\n  }\n}\n",
		name, vrid, extra, vip)
}

// scriptSecurity is what keepalived wants before it runs scripts as root.
const scriptSecurity = "global_defs {\n  enable_script_security\n  script_user root\n}\n"

var importConstructs = []importConstruct{
	{name: "instance", conf: instance("VI_1", 51, "192.0.2.100/24 dev eth0", "")},
	{name: "vip without prefix", conf: instance("VI_1", 51, "192.0.2.100", "")},
	{name: "several instances", conf: instance("VI_1", 51, "192.0.2.100/24", "") + instance("VI_2", 52, "192.0.2.101/24", "")},
	{name: "state MASTER and debug", conf: strings.Replace(instance("VI_1", 51, "192.0.2.100/24", "  debug 2\n"), "state BACKUP", "state MASTER", 1)},
	{name: "vrrp_version 3 and IPv6", conf: "global_defs {\n  vrrp_version 3\n}\n" + instance("VI_6", 61, "2001:db8::100/64", "") + instance("VI_4", 51, "192.0.2.100/24", "")},
	{name: "auth_type PASS", conf: instance("VI_1", 51, "192.0.2.100/24", "  authentication {\n    auth_type PASS\n    auth_pass s3cret\n  }\n")},
	{name: "unicast", conf: instance("VI_1", 51, "192.0.2.100/24", "  unicast_src_ip <self4>\n  unicast_peer {\n    <peer4>\n  }\n")},
	{name: "IPv6 unicast from a global address", conf: "global_defs {\n  vrrp_version 3\n}\n" +
		instance("VI_6", 61, "2001:db8::100/64", "  unicast_src_ip <self6>\n  unicast_peer {\n    <peer6>\n  }\n")},
	{name: "nopreempt", conf: instance("VI_1", 51, "192.0.2.100/24", "  nopreempt\n")},
	{name: "preempt_delay", conf: instance("VI_1", 51, "192.0.2.100/24", "  preempt_delay 5\n")},
	{name: "use_vmac", conf: instance("VI_1", 51, "192.0.2.100/24", "  use_vmac\n  vmac_xmit_base\n")},
	{name: "garp settings", conf: "global_defs {\n  vrrp_garp_master_refresh 60\n  vrrp_garp_interval 0.5\n}\n" +
		instance("VI_1", 51, "192.0.2.100/24", "  garp_master_repeat 3\n  garp_master_refresh 30\n")},
	{name: "curl check", conf: scriptSecurity + "vrrp_script chk_http {\n  script \"/usr/bin/curl -sf http://127.0.0.1:10254/healthz\"\n  interval 2\n  fall 2\n  rise 2\n}\n" +
		instance("VI_1", 51, "192.0.2.100/24", "  track_script {\n    chk_http\n  }\n")},
	{name: "bash /dev/tcp check", conf: scriptSecurity + "vrrp_script chk_tcp {\n  script \"</dev/tcp/127.0.0.1/6443\"\n  interval 1\n  weight -40\n}\n" +
		instance("VI_1", 51, "192.0.2.100/24", "  track_script {\n    chk_tcp\n  }\n")},
	{name: "script check with a weight", conf: scriptSecurity + "vrrp_script chk_api {\n  script \"<dir>/check_api.sh\"\n  interval 3\n  timeout 2\n  fall 10\n  rise 2\n  weight -2\n}\n" +
		instance("VI_1", 51, "192.0.2.100/24", "  track_script {\n    chk_api\n  }\n")},
	{name: "a check some instances track", conf: scriptSecurity + "vrrp_script chk_api {\n  script \"<dir>/check_api.sh\"\n  interval 1\n}\n" +
		instance("VI_1", 51, "192.0.2.100/24", "  track_script {\n    chk_api weight -30\n  }\n") + instance("VI_2", 52, "192.0.2.101/24", "")},
	{name: "shell check", conf: scriptSecurity + "vrrp_script chk_sh {\n  script \"test -e /etc/hostname && true\"\n  interval 1\n}\n" +
		instance("VI_1", 51, "192.0.2.100/24", "  track_script {\n    chk_sh\n  }\n")},
	{name: "track_interface", conf: instance("VI_1", 51, "192.0.2.100/24", "  track_interface {\n    trk0 weight -20\n    trk1\n  }\n")},
	{name: "notify scripts", conf: scriptSecurity + instance("VI_1", 51, "192.0.2.100/24", "  notify \"<dir>/notify.sh\"\n  notify_master \"<dir>/notify.sh master\"\n")},
	// keepalived 2.2.7's -t ends itself by SIGTERM with a script_user.
	{name: "script_user and script security", keepalived243: true, conf: "global_defs {\n  script_user nobody\n  enable_script_security\n}\n" +
		"vrrp_script chk_api {\n  script \"<dir>/check_api.sh\"\n  interval 1\n}\n" +
		instance("VI_1", 51, "192.0.2.100/24", "  track_script {\n    chk_api\n  }\n  notify \"<dir>/notify.sh\"\n")},
	{name: "auth_hmac", keepalived243: true, conf: "global_defs {\n  vrrp_version 3\n}\n" +
		instance("VI_1", 51, "192.0.2.100/24", "  auth_hmac {\n    key 1 file:<dir>/vrrp.key\n    active_key 1\n    mode enforce\n  }\n")},
}

// Issue 37's done-when: garpd import, then --check --offline, accepts
// nothing that --check on the host or the agent then refuses. For every
// construct the import maps, in both modes: the keepalived file is one
// keepalived accepts (keepalived -t), on a host where it would run (its
// scripts present and safe, its interfaces up); the import takes it, its
// output passes --check --offline, then --check on that host (the node's
// namespace), and the agent starts on it and answers garpd status.
// Against an import that made bash's /dev/tcp an exec check (item 1), the
// host's --check refuses and the walk fails.
func TestImportThenCheckWalk(t *testing.T) {
	if err := lab.KeepalivedAvailable(); err != nil {
		t.Skip(err)
	}
	ka243 := keepalived243(t)
	l := newLab(t, 2)
	n1, n2 := l.Node("n1"), l.Node("n2")
	// Scripts a script_user reaches: the test's own directories opened to
	// others for reading.
	for _, d := range []string{filepath.Dir(l.Dir), l.Dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, body := range map[string]string{"check_api.sh": "#!/bin/sh\nexit 0\n", "notify.sh": "#!/bin/sh\nexit 0\n"} {
		if err := os.WriteFile(filepath.Join(l.Dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	hmacKey(t, l, "vrrp.key", 0x37)
	// The links track_interface names, up, on n1: a veth pair.
	for _, cmd := range [][]string{{"link", "add", "trk0", "type", "veth", "peer", "name", "trk1"}, {"link", "set", "trk0", "up"}, {"link", "set", "trk1", "up"}} {
		if out, err := lab.Exec(n1.NS, append([]string{"ip"}, cmd...)...); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	}
	for _, c := range importConstructs {
		conf := strings.NewReplacer("<self4>", n1.IPv4.String(), "<peer4>", n2.IPv4.String(), "<self6>", n1.IPv6.String(),
			"<peer6>", n2.IPv6.String(), "<dir>", l.Dir).Replace(c.conf)
		for _, dynamic := range []bool{false, true} {
			mode := "static"
			if dynamic {
				mode = "dynamic"
			}
			t.Run(strings.ReplaceAll(c.name, " ", "_")+"/"+mode, func(t *testing.T) {
				dir := filepath.Join(l.Dir, "walk-"+strings.ReplaceAll(c.name, " ", "-")+"-"+mode)
				if err := os.MkdirAll(filepath.Join(dir, "out"), 0o755); err != nil {
					t.Fatal(err)
				}
				file := filepath.Join(dir, "keepalived.conf")
				if err := os.WriteFile(file, []byte(conf), 0o644); err != nil {
					t.Fatal(err)
				}
				bin := "keepalived"
				if c.keepalived243 {
					bin = ka243
				}
				if out, err := lab.Exec(n1.NS, bin, "-t", "-f", file); err != nil {
					t.Fatalf("the walk's own keepalived file is not one keepalived accepts: %v\n%s\n%s", err, out, conf)
				}
				args := []string{"import", "keepalived", file, "--node", "n1", "--out", filepath.Join(dir, "out")}
				if dynamic {
					args = append(args, "--dynamic", "--join", n2.IPv4.String()+":7946")
				}
				if out, err := exec.Command(garpdBin, args...).CombinedOutput(); err != nil {
					t.Fatalf("the import refuses a construct it maps: %v\n%s", err, out)
				}
				b, err := os.ReadFile(filepath.Join(dir, "out", "n1.yaml"))
				if err != nil {
					t.Fatal(err)
				}
				// The operator makes the gossip key the import names.
				cfg := strings.Replace(string(b), "/etc/garpd/gossip.key", labKey(l), 1)
				path := filepath.Join(dir, "n1.yaml")
				if err := os.WriteFile(path, []byte(lab.WithLoopbackControl(cfg)), 0o644); err != nil {
					t.Fatal(err)
				}
				if out, err := exec.Command(garpdBin, "agent", "--check", "--offline", "--config", path).CombinedOutput(); err != nil {
					t.Fatalf("--check --offline refuses what the import wrote: %v\n%s\n--- config:\n%s", err, out, cfg)
				}
				if out, err := lab.Exec(n1.NS, garpdBin, "agent", "--check", "--config", path); err != nil {
					t.Fatalf("--check --offline passed, --check on the host refuses: %v\n%s\n--- config:\n%s", err, out, cfg)
				}
				p, err := l.Start(n1.NS, "walk-garpd", garpdBin, "agent", "--config", path)
				if err != nil {
					t.Fatal(err)
				}
				defer p.Stop()
				deadline := time.Now().Add(10 * time.Second)
				for {
					if p.Exited() {
						t.Fatalf("--check passed, the agent exited:\n%s\n--- config:\n%s", p.Output(), cfg)
					}
					if _, err := lab.Exec(n1.NS, garpdBin, "status"); err == nil {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("--check passed, the agent never answered status in 10 s:\n%s", p.Output())
					}
					time.Sleep(100 * time.Millisecond)
				}
			})
		}
	}
}
