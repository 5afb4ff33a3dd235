package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func runCLI(args ...string) (string, error) {
	var out bytes.Buffer
	root := newRootCmd()
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestPlanJSONShape(t *testing.T) {
	out, err := runCLI("plan", "--nodes", "n1,n2,n3", "--vips", "192.0.2.101,192.0.2.102", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		VIPs []struct {
			Address    string         `json:"address"`
			VRID       int            `json:"vrid"`
			Ranking    []string       `json:"ranking"`
			Priorities map[string]int `json:"priorities"`
		} `json:"vips"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(got.VIPs) != 2 || got.VIPs[0].Address != "192.0.2.101" || got.VIPs[0].VRID != 10 || got.VIPs[1].VRID != 11 {
		t.Fatalf("unexpected plan: %s", out)
	}
	for _, v := range got.VIPs {
		if len(v.Ranking) != 3 || v.Priorities[v.Ranking[0]] != 250 || v.Priorities[v.Ranking[1]] != 200 || v.Priorities[v.Ranking[2]] != 150 {
			t.Fatalf("ranking/priorities wrong: %+v", v)
		}
	}
	if got.VIPs[0].Ranking[0] == got.VIPs[1].Ranking[0] {
		t.Fatalf("2 VIPs over 3 nodes share an owner: %s", out)
	}
}

func TestPlanFail(t *testing.T) {
	out, err := runCLI("plan", "--nodes", "a,b,c,d", "--vip-range", "198.51.100.1-198.51.100.40", "--fail", "b", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var got planJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if got.Owned["b"] != 10 || got.Fail == nil || len(got.Fail.Moves) != 10 {
		t.Fatalf("want b owning 10 VIPs, all moved on failure: %s", out)
	}
	for _, m := range got.Fail.Moves {
		if m.VRRP == "b" || m.Reranked == "b" {
			t.Fatalf("a VIP moved to the dead node: %+v", m)
		}
	}
	text, err := runCLI("plan", "--nodes", "a,b,c,d", "--vip-range", "198.51.100.1-198.51.100.40", "--fail", "b")
	if err != nil || !strings.Contains(text, "If b dies") || !strings.Contains(text, "VIPs move in all") {
		t.Fatalf("text --fail output: %v\n%s", err, text)
	}
}

// Bad input exits 2 with a message naming the offending value.
func TestPlanBadInput(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--vips", "192.0.2.1"}, "--nodes"},
		{[]string{"--nodes", "a,a", "--vips", "192.0.2.1"}, `"a"`},
		{[]string{"--nodes", "a", "--vips", "192.0.2.300"}, "192.0.2.300"},
		{[]string{"--nodes", "a", "--vip-range", "192.0.2.9-192.0.2.1"}, "192.0.2.9-192.0.2.1"},
		{[]string{"--nodes", "a", "--vip-range", "192.0.2.1-2001:db8::1"}, "mixes"},
		{[]string{"--nodes", "a", "--vip-range", "bogus"}, "bogus"},
		{[]string{"--nodes", "a", "--vips", "192.0.2.1@7,2001:db8::1@7"}, "VRID 7"},
		{[]string{"--nodes", "a,b", "--weights", "a=0", "--vips", "192.0.2.1"}, "a=0"},
		{[]string{"--nodes", "a,b", "--weights", "a=-2", "--vips", "192.0.2.1"}, "a=-2"},
		{[]string{"--nodes", "a,b", "--weights", "c=2", "--vips", "192.0.2.1"}, `"c"`},
		{[]string{"--nodes", "a,b", "--vips", "192.0.2.1", "--fail", "z"}, `"z"`},
		{[]string{"--nodes", "a"}, "no VIPs"},
		{[]string{"--nodes", "a", "--vips", "192.0.2.1", "--vrid-base", "0"}, "0"},
	}
	for _, c := range cases {
		_, err := runCLI(append([]string{"plan"}, c.args...)...)
		if err == nil {
			t.Errorf("plan %v succeeded", c.args)
			continue
		}
		if exitCode(err) != 2 || !strings.Contains(err.Error(), c.want) {
			t.Errorf("plan %v: %v (exit %d), want exit 2 naming %s", c.args, err, exitCode(err), c.want)
		}
	}
}
