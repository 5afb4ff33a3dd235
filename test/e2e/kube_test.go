package e2e

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// The Kubernetes tools are built once per test binary (and cached on the
// machine across runs, see lab.BuildKube).
var (
	kubeOnce sync.Once
	kubeBins lab.KubeBinaries
	kubeErr  error
)

// startKube starts a real kube-apiserver (with Debian's etcd) in the lab's
// router namespace and applies the RBAC of garpd's Helm chart (what the
// plain manifest holds too), so the agents run with exactly the rights an
// operator grants them: a verb missing there fails a test.
func startKube(t *testing.T, l *lab.Lab) *lab.Kube {
	t.Helper()
	if err := lab.EtcdAvailable(); err != nil {
		t.Skipf("skipping Kubernetes test: %v", err)
	}
	bins := kubeTools(t)
	k, err := l.StartKube(bins)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Kubectl("create", "namespace", "garpd"); err != nil {
		t.Fatal(err)
	}
	rbac := helmChart(t, bins, "template", "garpd", chartDir(), "--namespace", "garpd",
		"--show-only", "templates/serviceaccount.yaml", "--show-only", "templates/rbac.yaml")
	kubeApply(t, l, k, "rbac", rbac)
	return k
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// kubeApply applies a manifest as the administrator.
func kubeApply(t *testing.T, l *lab.Lab, k *lab.Kube, name, manifest string) {
	t.Helper()
	path := filepath.Join(l.Dir, name+".yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Kubectl("apply", "-f", path); err != nil {
		t.Fatal(err)
	}
}

// addKubeNode creates what the DaemonSet and the kubelet would have made
// for node n (there is no kubelet in the lab): its Node, and a running
// garpd pod on it whose status carries the node's address.
func addKubeNode(t *testing.T, l *lab.Lab, k *lab.Kube, n *lab.Node) {
	t.Helper()
	kubeApply(t, l, k, "node-"+n.Name, fmt.Sprintf(`apiVersion: v1
kind: Node
metadata:
  name: %[1]s
---
apiVersion: v1
kind: Pod
metadata:
  name: garpd-%[1]s
  namespace: garpd
  labels: {app.kubernetes.io/name: garpd}
spec:
  nodeName: %[1]s
  serviceAccountName: garpd
  automountServiceAccountToken: false
  hostNetwork: true
  containers:
    - {name: garpd, image: garpd}
`, n.Name))
	status := fmt.Sprintf(`{"status":{"phase":"Running","hostIP":"%[1]s","podIP":"%[1]s","conditions":[{"type":"Ready","status":"True"}]}}`, n.IPv4)
	if _, err := k.Kubectl("-n", "garpd", "patch", "pod", "garpd-"+n.Name, "--subresource=status", "--type=merge", "-p", status); err != nil {
		t.Fatal(err)
	}
}

var joinLine = regexp.MustCompile(`(?m)^  join: \[.*\]\n`)

// kubeConfig is a node's dynamic-mode config that finds its peers through
// the API (no join list), as garpd's service account; extra goes in
// before the kubernetes section.
func kubeConfig(l *lab.Lab, k *lab.Kube, node, extra string) string {
	cfg := joinLine.ReplaceAllString(dynConfig(l, node, vips6, extra), "")
	return cfg + fmt.Sprintf("kubernetes:\n  kubeconfig: %s\n  peers:\n    namespace: garpd\n    selector: app.kubernetes.io/name=garpd\n", k.Agents[node])
}

// Done-when 1: with no join list, the nodes find each other through the
// API and the router shows 2/2/2.
func TestKubernetesPeers(t *testing.T) {
	l := newLab(t, 3)
	k := startKube(t, l)
	for _, n := range l.Nodes {
		addKubeNode(t, l, k, n)
	}
	for _, n := range l.Nodes {
		if _, err := n.StartGarpd(garpdBin, kubeConfig(l, k, n.Name, "")); err != nil {
			t.Fatal(err)
		}
	}
	// settle (3 s) after each node has seen the others.
	d := waitSpread(t, l, vips6, 30*time.Second, even)
	t.Logf("2/2/2 on the router %s after the agents started, peers from the API alone", d.Round(10*time.Millisecond))
	waitSettled(t, l, "n1", "n2", "n3")
}

// addRouterPod creates the stand-in router pod on node n (what an ingress
// controller's Deployment would run there), Ready.
func addRouterPod(t *testing.T, l *lab.Lab, k *lab.Kube, n *lab.Node) {
	t.Helper()
	kubeApply(t, l, k, "router-"+n.Name, fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: router-%[1]s
  namespace: garpd
  labels: {app: router}
spec:
  nodeName: %[1]s
  serviceAccountName: garpd # no controller manager makes "default"
  automountServiceAccountToken: false
  containers:
    - {name: router, image: router}
`, n.Name))
	setPodReady(t, k, "router-"+n.Name, true)
}

// setPodReady sets a pod's Ready condition through the status
// subresource, as the kubelet would.
func setPodReady(t *testing.T, k *lab.Kube, pod string, ready bool) {
	t.Helper()
	st := "False"
	if ready {
		st = "True"
	}
	patch := fmt.Sprintf(`{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"%s"}]}}`, st)
	if _, err := k.Kubectl("-n", "garpd", "patch", "pod", pod, "--subresource=status", "--type=merge", "-p", patch); err != nil {
		t.Fatal(err)
	}
}

// kubeEvent is the part of an Event the tests read back.
type kubeEvent struct {
	InvolvedObject struct{ Kind, Name string } `json:"involvedObject"`
	Reason         string                      `json:"reason"`
	Message        string                      `json:"message"`
	Type           string                      `json:"type"`
	Count          int                         `json:"count"`
	Source         struct{ Component, Host string }
}

func kubeEvents(t *testing.T, k *lab.Kube) []kubeEvent {
	t.Helper()
	out, err := k.Kubectl("get", "events", "-A", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Items []kubeEvent }
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// hasEvent reports whether node's Node has an Event of reason naming vip.
func hasEvent(events []kubeEvent, node, reason string, vip netip.Addr) bool {
	for _, e := range events {
		if e.InvolvedObject.Kind == "Node" && e.InvolvedObject.Name == node && e.Reason == reason &&
			e.Source.Component == "garpd" && slices.Contains(strings.FieldsFunc(e.Message, func(r rune) bool { return r == ' ' || r == ',' || r == ':' }), vip.String()) {
			return true
		}
	}
	return false
}

// kubeStatus is the Kubernetes part of garpd status --json.
func kubeStatus(t *testing.T, n *lab.Node) (api string, eligible bool, why string) {
	t.Helper()
	var st struct {
		Dynamic struct {
			Kubernetes *struct {
				API      string `json:"api"`
				Eligible bool   `json:"eligible"`
				Why      string `json:"why"`
			} `json:"kubernetes"`
		} `json:"dynamic"`
	}
	readStatus(t, n, &st)
	if st.Dynamic.Kubernetes == nil {
		t.Fatalf("%s: status has no kubernetes section", n.Name)
	}
	return st.Dynamic.Kubernetes.API, st.Dynamic.Kubernetes.Eligible, st.Dynamic.Kubernetes.Why
}

// waitAPI waits until n's status says the API is reachable or unreachable.
func waitAPI(t *testing.T, n *lab.Node, want string, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, n.Name+" to report the API "+want, func() (bool, string) {
		api, _, _ := kubeStatus(t, n)
		return strings.HasPrefix(api, want), api
	})
}

// noMoves fails t if the router moved a VIP within d (counted from the
// last Reset of moves).
func noMoves(t *testing.T, moves moveRecorder, d time.Duration, after string) {
	t.Helper()
	time.Sleep(d)
	if m := moves.Snapshot(); len(m) > 0 {
		t.Fatalf("%s moved VIPs: %v", after, m)
	}
}

// Done-when 2 to 6: eligibility from the Node (exclude label, not
// cordon), the kubernetes_pod check, the API server stopping and coming
// back, forget on Node delete, and an Event for every VIP move, read back
// through the API. The agents run under deploy/'s RBAC.
func TestKubernetesNodeLifecycle(t *testing.T) {
	l := newLab(t, 3)
	k := startKube(t, l)
	const check = `health:
  checks:
    - name: router
      kubernetes_pod: {namespace: garpd, selector: app=router}
      interval: 500ms
      timeout: 500ms
      fall: 2
      rise: 2
`
	procs := map[string]*lab.Proc{}
	for _, n := range l.Nodes {
		addKubeNode(t, l, k, n)
		addRouterPod(t, l, k, n)
	}
	moves := recordMoves(t, l)
	for _, n := range l.Nodes {
		p, err := n.StartGarpd(garpdBin, kubeConfig(l, k, n.Name, check))
		if err != nil {
			t.Fatal(err)
		}
		procs[n.Name] = p
	}
	waitSpread(t, l, vips6, 30*time.Second, even)
	waitSettled(t, l, "n1", "n2", "n3")
	if api, ok, why := kubeStatus(t, l.Node("n1")); !strings.HasPrefix(api, "reachable") || !ok {
		t.Fatalf("n1 status: API %q, eligible %v (%s); want reachable and eligible", api, ok, why)
	}

	// 2. The exclude label takes n2 out, evenly; removing it brings n2
	// back after settle. Cordon moves nothing.
	const exclude = "node.kubernetes.io/exclude-from-external-load-balancers"
	if _, err := k.Kubectl("label", "node", "n2", exclude+"=true"); err != nil {
		t.Fatal(err)
	}
	d := waitSpread(t, l, vips6, 15*time.Second, map[string]int{"n1": 3, "n2": 0, "n3": 3})
	t.Logf("exclude label on n2: its VIPs on n1 and n3 (3/0/3) %s after kubectl label returned", d.Round(10*time.Millisecond))
	if _, ok, why := kubeStatus(t, l.Node("n2")); ok || !strings.Contains(why, exclude) {
		t.Errorf("n2 status: eligible %v, why %q; want not eligible, naming the label", ok, why)
	}
	if out, err := lab.Exec(l.Node("n2").NS, garpdBin, "status"); err != nil || !strings.Contains(out, "kubernetes: Node n2 not eligible: label "+exclude) ||
		!strings.Contains(out, "API reachable") {
		t.Errorf("garpd status on n2 does not say why it holds nothing: %v\n%s", err, out)
	}
	if _, err := k.Kubectl("label", "node", "n2", exclude+"-"); err != nil {
		t.Fatal(err)
	}
	d = waitSpread(t, l, vips6, 20*time.Second, even)
	t.Logf("label removed: 2/2/2 again %s later (settle 3 s)", d.Round(10*time.Millisecond))
	waitSettled(t, l, "n1", "n2", "n3")
	moves.Reset()
	if _, err := k.Kubectl("cordon", "n3"); err != nil {
		t.Fatal(err)
	}
	noMoves(t, moves, 10*time.Second, "cordoning n3")
	if _, err := k.Kubectl("uncordon", "n3"); err != nil {
		t.Fatal(err)
	}

	// 4. The router pod on n1 goes NotReady: n1 resigns within the
	// check's interval × fall; Ready again, it is back after settle.
	setPodReady(t, k, "router-n1", false)
	d = waitSpread(t, l, vips6, 15*time.Second, map[string]int{"n1": 0, "n2": 3, "n3": 3})
	t.Logf("router pod on n1 NotReady: n1's VIPs moved %s after the status patch (interval 500ms × fall 2)", d.Round(10*time.Millisecond))
	setPodReady(t, k, "router-n1", true)
	d = waitSpread(t, l, vips6, 20*time.Second, even)
	t.Logf("router pod Ready again: 2/2/2 %s later (rise 2, settle 3 s)", d.Round(10*time.Millisecond))
	waitSettled(t, l, "n1", "n2", "n3")

	// 3. With n3 down, deleting its Node makes n1 and n2 forget it at
	// once, and the plan becomes the 2-node plan.
	procs["n3"].Signal(syscall.SIGKILL)
	procs["n3"].Wait(5 * time.Second)
	waitSpread(t, l, vips6, 15*time.Second, map[string]int{"n1": 3, "n2": 3, "n3": 0})
	if _, err := k.Kubectl("delete", "node", "n3"); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	forgotAt := map[string]time.Duration{}
	waitFor(t, 15*time.Second, "n1 and n2 to forget n3", func() (bool, string) {
		for _, name := range []string{"n1", "n2"} {
			if _, ok := forgotAt[name]; ok {
				continue
			}
			known, _, err := planView(l.Node(name))
			if err != nil || slices.Contains(known, "n3") {
				return false, fmt.Sprint(name, known, err)
			}
			forgotAt[name] = time.Since(deleted)
		}
		return true, ""
	})
	t.Logf("Node n3 deleted: forgotten by n1 after %s, by n2 after %s (status polled in turn)", forgotAt["n1"].Round(time.Millisecond), forgotAt["n2"].Round(time.Millisecond))
	if gap := forgotAt["n1"] - forgotAt["n2"]; gap > 2*time.Second || gap < -2*time.Second {
		t.Errorf("n1 and n2 forgot n3 %s apart, want within 2 s", gap)
	}
	waitFor(t, 10*time.Second, "n1 and n2 to agree on the 2-node plan", func() (bool, string) {
		_, v1, _ := planView(l.Node("n1"))
		_, v2, _ := planView(l.Node("n2"))
		return v1 == v2, v1 + " / " + v2
	})
	waitSpread(t, l, vips6, 15*time.Second, map[string]int{"n1": 3, "n2": 3})

	// 5. The API server stops: nothing moves. A node killed now fails
	// over as without Kubernetes; the API server back, nothing moves.
	moves.Reset()
	// Killed: a graceful stop waits on the agents' open watches.
	k.APIServer.Signal(syscall.SIGKILL)
	if _, err := k.APIServer.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	waitAPI(t, l.Node("n1"), "unreachable", 15*time.Second)
	noMoves(t, moves, 5*time.Second, "stopping the API server")
	procs["n2"].Signal(syscall.SIGKILL)
	procs["n2"].Wait(5 * time.Second)
	d = waitSpread(t, l, vips6, 15*time.Second, map[string]int{"n1": 6, "n2": 0})
	t.Logf("n2 killed with the API server down: its VIPs on n1 in %s", d.Round(10*time.Millisecond))
	moves.Reset()
	if err := k.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	waitAPI(t, l.Node("n1"), "reachable", 60*time.Second)
	noMoves(t, moves, 5*time.Second, "the API server coming back")

	// 6. Every VIP move shows as Events: VIPAcquired on the node the
	// router moved to, VIPReleased on the one it left (but those killed).
	// Events recorded while the API server was down are sent after.
	seen := moves.Seen()
	byMAC := func(mac string) string {
		if n := l.NodeByMAC(mac); n != nil {
			return n.Name
		}
		return ""
	}
	var missing []string
	waitFor(t, 30*time.Second, "an Event for every VIP move", func() (bool, string) {
		events := kubeEvents(t, k)
		missing = nil
		for _, vip := range vips6 {
			macs := seen[vip]
			for i, mac := range macs {
				if to := byMAC(mac); to != "" && !hasEvent(events, to, "VIPAcquired", vip) {
					missing = append(missing, fmt.Sprintf("VIPAcquired %s on %s", vip, to))
				}
				if i == 0 {
					continue
				}
				if from := byMAC(macs[i-1]); from != "" && from != "n2" && from != "n3" && !hasEvent(events, from, "VIPReleased", vip) {
					missing = append(missing, fmt.Sprintf("VIPReleased %s on %s", vip, from))
				}
			}
		}
		return len(missing) == 0, strings.Join(missing, "; ")
	})
	var n int
	for _, e := range kubeEvents(t, k) {
		if e.Source.Component == "garpd" {
			n++
			t.Logf("event %s %s/%s ×%d: %s", e.Type, e.InvolvedObject.Name, e.Reason, e.Count, e.Message)
		}
	}
	if n == 0 {
		t.Fatal("no Events from garpd")
	}
}

// The chart's gossip key: made once against a real API server and kept on
// every later render, the pods' checksum following it, so that a changed
// key (a rotation step) rolls them; without the cluster (helm template)
// no key is rendered at all, so a re-applied rendering never splits the
// running nodes from new ones.
func TestChartKeepsTheGossipKey(t *testing.T) {
	l := newLab(t, 1)
	k := startKube(t, l)
	bins := kubeTools(t)
	home := t.TempDir()
	online := func() (secret, checksum string) {
		t.Helper()
		out, err := lab.Exec(l.Router, "env", "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home,
			bins.Helm, "template", "garpd", chartDir(), "-f", docVIPsValues(t), "--namespace", "garpd", "--dry-run=server", "--kubeconfig", k.Admin,
			"--show-only", "templates/secret.yaml", "--show-only", "templates/daemonset.yaml")
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range documents(t, out) {
			switch d["kind"] {
			case "Secret":
				secret, _ = d["data"].(map[string]any)["key"].(string)
			case "DaemonSet":
				ann := d["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["annotations"].(map[string]any)
				checksum, _ = ann["checksum/gossip-key"].(string)
			}
		}
		return secret, checksum
	}
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

	key1, check1 := online()
	// The key file holds the key in base64, as the README makes one.
	if raw, err := base64.StdEncoding.DecodeString(string(mustDecode(t, key1))); err != nil || len(raw) != 32 {
		t.Fatalf("install renders key file %q, want 32 bytes in base64", mustDecode(t, key1))
	}
	if check1 != sum(key1) {
		t.Fatalf("the pods' checksum %q is not the rendered key's (%s)", check1, sum(key1))
	}
	keyFile := filepath.Join(l.Dir, "gossip-key")
	if err := os.WriteFile(keyFile, mustDecode(t, key1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Kubectl("-n", "garpd", "create", "secret", "generic", "garpd-gossip-key", "--from-file=key="+keyFile); err != nil {
		t.Fatal(err)
	}
	if key2, check2 := online(); key2 != key1 || check2 != check1 {
		t.Fatalf("an upgrade renders another key (%q, checksum %s), want the cluster's %q", key2, check2, key1)
	}
	rotated := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("r", 32)))
	if _, err := k.Kubectl("-n", "garpd", "patch", "secret", "garpd-gossip-key", "--type=merge", "-p", `{"data":{"key":"`+rotated+`"}}`); err != nil {
		t.Fatal(err)
	}
	if key3, check3 := online(); key3 != rotated || check3 != sum(rotated) {
		t.Fatalf("after a key change the render holds %q with checksum %s, want the new key and its checksum (pods roll)", key3, check3)
	}

	offline := helmChart(t, bins, "template", "garpd", chartDir(), "--namespace", "garpd")
	for _, d := range documents(t, offline) {
		if d["kind"] == "Secret" {
			t.Fatalf("helm template renders a Secret it cannot know: %v", d["metadata"])
		}
	}
	if again := helmChart(t, bins, "template", "garpd", chartDir(), "--namespace", "garpd"); again != offline {
		t.Fatal("two offline renderings differ")
	}
	if !strings.Contains(offline, "create secret generic garpd-gossip-key") {
		t.Fatal("the offline rendering does not say how to create the key's Secret")
	}
}

// mustDecode is base64 text decoded.
func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
