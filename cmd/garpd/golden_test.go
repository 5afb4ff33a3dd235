package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/garpd/garpd/vrrp"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/surface.golden")

// The names operators and their tooling rely on: every garpd metric with
// its help and labels, every config key by its dotted path, and every
// command's --help. A change that means to keep behaviour (a refactor)
// must leave them as testdata/surface.golden has them; one that changes
// them on purpose rewrites it (go test ./cmd/garpd -run TestSurface
// -update) and says so.
func TestSurfaceUnchanged(t *testing.T) {
	var b strings.Builder
	b.WriteString("# metrics\n")
	l, err := parseConfig([]byte("node: n1\ninterface: eth0\nvips: [192.0.2.101]\npriorities: {192.0.2.101: 100}\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := newAgent(l, io.Discard, vrrp.Kernel{})
	descs := make(chan *prometheus.Desc, 1024)
	a.reg.Describe(descs)
	close(descs)
	var metrics []string
	for d := range descs {
		if s := d.String(); strings.Contains(s, `fqName: "garpd_`) {
			metrics = append(metrics, s)
		}
	}
	slices.Sort(metrics)
	b.WriteString(strings.Join(metrics, "\n") + "\n")

	b.WriteString("\n# config keys\n")
	byType, paths := configKeys(reflect.TypeFor[agentConfig]())
	keys := slices.Clone(byType["main.agentConfig"])
	for _, ps := range paths {
		keys = append(keys, ps...)
	}
	slices.Sort(keys)
	b.WriteString(strings.Join(slices.Compact(keys), "\n") + "\n")

	root := newRootCmd()
	for _, c := range append([]string{""}, commandNames(root.Commands())...) {
		var out bytes.Buffer
		cmd := newRootCmd()
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append(strings.Fields(c), "--help"))
		if err := cmd.Execute(); err != nil {
			t.Fatalf("garpd %s --help: %v", c, err)
		}
		b.WriteString("\n# garpd " + c + " --help\n" + out.String())
	}

	path := filepath.Join("testdata", "surface.golden")
	if *updateGolden {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			g, w := at(gl, i), at(wl, i)
			if g != w {
				t.Fatalf("line %d of %s differs:\n got: %s\nwant: %s\n(a change on purpose: go test ./cmd/garpd -run TestSurface -update)", i+1, path, g, w)
			}
		}
	}
}

func commandNames(cmds []*cobra.Command) []string {
	var out []string
	for _, c := range cmds {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		out = append(out, c.Name())
		for _, sub := range commandNames(c.Commands()) {
			out = append(out, c.Name()+" "+sub)
		}
	}
	return out
}

func at(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "<end>"
}
