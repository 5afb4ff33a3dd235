package keepalived

import (
	"fmt"
	"slices"
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
	stmts, err := Parse(files, "/k/main.conf", "")
	if err != nil {
		t.Fatal(err)
	}
	want := `global_defs {router_id lb 1}; vrrp_script chk {script curl -s http://x/#frag}; vrrp_instance VI_1 {virtual_ipaddress {192.0.2.1/24 dev eth0}}; vrrp_instance VI_2 {priority 50}`
	if got := dump(stmts); got != want {
		t.Fatalf("parsed\n%s\nwant\n%s", got, want)
	}
	if w := stmts[3].Block[0].Where(); w != "sub/a.conf:2" {
		t.Errorf("included statement at %s, want sub/a.conf:2 (with its directory)", w)
	}
	if _, err := Parse(MapFiles{"/a": "include /a\n"}, "/a", ""); err == nil || !strings.Contains(err.Error(), "include loop") {
		t.Errorf("an include loop: %v", err)
	}
	if _, err := Parse(MapFiles{"/a": "include /missing.conf\n"}, "/a", ""); err == nil || !strings.Contains(err.Error(), "a:1: include /missing.conf") {
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
		stmts, err := Parse(MapFiles{"/k.conf": text}, "/k.conf", "n1")
		if err != nil {
			return
		}
		Load(stmts)
	})
}

// keepalived's own substitutions: $NAME=value defines, $NAME and ${NAME}
// use, @ID and @^ID lines count on the node whose config id is (is not)
// ID; definitions carry into included files.
func TestExpand(t *testing.T) {
	files := MapFiles{
		"/k/main.conf": "$VRID=51\n$PRIO=200\n@^n1 $PRIO=100\ninclude /k/inst.conf\n",
		"/k/inst.conf": "vrrp_instance VI_1 {\n  virtual_router_id ${VRID}\n  @n2 priority 50\n  @^n2 priority $PRIO\n}\n",
	}
	for id, want := range map[string]string{"n1": "200", "n2": "50", "n3": "100"} {
		stmts, err := Parse(files, "/k/main.conf", id)
		if err != nil {
			t.Fatal(err)
		}
		in := stmts[0]
		got := map[string]string{}
		for _, s := range in.Block {
			got[s.Key] = strings.Join(s.Args, " ")
		}
		if got["virtual_router_id"] != "51" || got["priority"] != want {
			t.Errorf("config id %s: %v, want VRID 51 and priority %s", id, got, want)
		}
	}
	if _, err := Parse(files, "/k/main.conf", ""); err == nil || !strings.Contains(err.Error(), "--node") {
		t.Errorf("an @ID line without a config id: %v", err)
	}
	// Every placeholder at once, each with its line.
	var b strings.Builder
	for i := range 11 {
		fmt.Fprintf(&b, "key%d {{P%d}}\n", i, i)
	}
	b.WriteString("other $UNDEFINED\n")
	_, err := Parse(MapFiles{"/t.conf": b.String()}, "/t.conf", "n1")
	if err == nil || !strings.Contains(err.Error(), "12 template placeholders") || !strings.Contains(err.Error(), "line 11: {{P10}}") ||
		!strings.Contains(err.Error(), "line 12: $UNDEFINED (undefined)") {
		t.Fatalf("placeholders: %v", err)
	}
}

// FuzzExpand: keepalived's substitutions never panic; what they leave is
// either an error or text without a definition or a conditional line.
func FuzzExpand(f *testing.F) {
	f.Add("$A=1\nkey $A ${A}\n@n1 x\n@^n1 y\n", "n1")
	f.Add("${", "")
	f.Add("@", "n2")
	f.Fuzz(func(t *testing.T, text, id string) {
		ex := &expander{id: id, vars: map[string]string{}}
		out, err := ex.expand("/f.conf", text)
		if err != nil {
			return
		}
		for _, line := range strings.Split(out, "\n") {
			if varDef.MatchString(line) {
				t.Fatalf("a definition survived: %q", line)
			}
		}
	})
}

// A VIP's options garpd has no counterpart for are kept for the import's
// note, dev is the VIP's interface.
func TestParseVIPOptions(t *testing.T) {
	v, err := parseVIP(&Stmt{Key: "192.0.2.10/24", Args: []string{"dev", "eth1", "label", "eth1:vip", "no_track"}})
	if err != nil {
		t.Fatal(err)
	}
	if v.Dev != "eth1" || !slices.Equal(v.Dropped, []string{"label eth1:vip", "no_track"}) {
		t.Fatalf("dev %q, dropped %q", v.Dev, v.Dropped)
	}
}
