package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"
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
// router namespace and applies garpd's RBAC from deploy/, so the agents
// run with exactly the rights an operator grants them.
func startKube(t *testing.T, l *lab.Lab) *lab.Kube {
	t.Helper()
	if err := lab.EtcdAvailable(); err != nil {
		t.Skipf("skipping Kubernetes test: %v", err)
	}
	kubeOnce.Do(func() {
		kubeBins, kubeErr = lab.BuildKube(func(msg string) { fmt.Fprintln(os.Stderr, "e2e:", msg) })
	})
	if kubeErr != nil {
		t.Fatal(kubeErr)
	}
	k, err := l.StartKube(kubeBins)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Kubectl("create", "namespace", "garpd"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.Kubectl("apply", "-f", filepath.Join(repoRoot(), "deploy", "kubernetes", "rbac.yaml")); err != nil {
		t.Fatal(err)
	}
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
// the API (no join list), as garpd's service account.
func kubeConfig(l *lab.Lab, k *lab.Kube, node string) string {
	cfg := joinLine.ReplaceAllString(dynConfig(l, node, vips6, ""), "")
	return cfg + fmt.Sprintf("kubernetes:\n  kubeconfig: %s\n  peers:\n    namespace: garpd\n    selector: app.kubernetes.io/name=garpd\n", k.Agent)
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
		if _, err := n.StartGarpd(garpdBin, kubeConfig(l, k, n.Name)); err != nil {
			t.Fatal(err)
		}
	}
	// settle (3 s) after each node has seen the others.
	d := waitSpread(t, l, vips6, 30*time.Second, even)
	t.Logf("2/2/2 on the router %s after the agents started, peers from the API alone", d.Round(10*time.Millisecond))
	waitSettled(t, l, "n1", "n2", "n3")
}
