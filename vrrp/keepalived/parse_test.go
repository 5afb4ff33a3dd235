package keepalived

import (
	"strings"
	"testing"
)

// dump writes statements back as "key args {…}" for comparing.
func dump(stmts []*Stmt) string {
	var parts []string
	for _, s := range stmts {
		p := strings.Join(append([]string{s.Key}, s.Args...), " ")
		if len(s.Block) > 0 {
			p += " {" + dump(s.Block) + "}"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

// Both brace styles, braces against words, one-line blocks, # and !
// comments (not inside quotes), quoted arguments and includes relative to
// the including file parse to the same statements, with their lines.
func TestParseSyntax(t *testing.T) {
	files := MapFiles{
		"/k/main.conf": `! header
global_defs {   # K&R style
  router_id "lb 1"
}
vrrp_script chk
{
  script "curl -s http://x/#frag"   ! quoted # is kept
}
vrrp_instance VI_1{
  virtual_ipaddress { 192.0.2.1/24 dev eth0 }
}
include sub/*.conf
`,
		"/k/sub/a.conf": "vrrp_instance VI_2 {\n  priority 50\n}\n",
	}
	stmts, err := Parse(files, "/k/main.conf")
	if err != nil {
		t.Fatal(err)
	}
	want := `global_defs {router_id lb 1}; vrrp_script chk {script curl -s http://x/#frag}; vrrp_instance VI_1 {virtual_ipaddress {192.0.2.1/24 dev eth0}}; vrrp_instance VI_2 {priority 50}`
	if got := dump(stmts); got != want {
		t.Fatalf("parsed\n%s\nwant\n%s", got, want)
	}
	if w := stmts[3].Block[0].Where(); w != "a.conf:2" {
		t.Errorf("included statement at %s, want a.conf:2", w)
	}
	if _, err := Parse(MapFiles{"/a": "include /a\n"}, "/a"); err == nil || !strings.Contains(err.Error(), "include loop") {
		t.Errorf("an include loop: %v", err)
	}
	if _, err := Parse(MapFiles{"/a": "include /missing.conf\n"}, "/a"); err == nil || !strings.Contains(err.Error(), "a:1: include /missing.conf") {
		t.Errorf("a missing include: %v", err)
	}
}

// FuzzParse: the parser never panics; what it accepts loads or fails
// with an error, never a panic.
func FuzzParse(f *testing.F) {
	f.Add("vrrp_instance X {\n virtual_router_id 1\n virtual_ipaddress { 192.0.2.1 }\n}\n")
	f.Add("global_defs\n{\n router_id a # c\n}\n")
	f.Add("vrrp_script s { script \"a b\" }\n")
	f.Fuzz(func(t *testing.T, text string) {
		stmts, err := Parse(MapFiles{"/k.conf": text}, "/k.conf")
		if err != nil {
			return
		}
		Load(stmts)
	})
}
