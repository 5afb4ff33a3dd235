package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// The deployments of deploy/ run for real here: garpd's image, built from
// the Dockerfile with buildah, in containerd under a real kubelet on a lab
// node, beside agents that run the binary directly.

var (
	imagesOnce sync.Once
	images     lab.Images
	imagesErr  error
)

// imageRef is what deploy/ and the chart run by default: the image of the
// chart's appVersion. The lab's image is tagged so, and the manifests run
// as they are.
func imageRef(t *testing.T) string {
	t.Helper()
	chart, err := os.ReadFile(filepath.Join(chartDir(), "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^appVersion: "?([^"\s]+)"?`).FindSubmatch(chart)
	if m == nil {
		t.Fatal("Chart.yaml has no appVersion")
	}
	return "ghcr.io/garpd/garpd:" + string(m[1])
}

// labImages builds garpd's image and the pause image once per run, or
// skips t when this machine cannot.
func labImages(t *testing.T) lab.Images {
	t.Helper()
	if err := lab.ContainerdAvailable(); err != nil {
		t.Skipf("skipping kubelet test: %v", err)
	}
	ref := imageRef(t)
	imagesOnce.Do(func() {
		dir := filepath.Join(filepath.Dir(garpdBin), "images")
		images, imagesErr = lab.BuildImages(dir, ref)
	})
	if imagesErr != nil {
		t.Fatal(imagesErr)
	}
	return images
}

// startKubelet runs containerd and a kubelet as node n, registered with
// kubeconfig's cluster or standalone when it is empty. On failure the
// test's log gets the node's pod logs.
func startKubelet(t *testing.T, n *lab.Node, kubeconfig string) *lab.Kubelet {
	t.Helper()
	imgs := labImages(t)
	bins := kubeTools(t)
	kl, err := n.StartKubelet(lab.KubeletOptions{Binary: bins.Kubelet, Images: imgs, Kubeconfig: kubeconfig})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("=== %s pod logs\n%s", n.Name, tail(kl.AllPodLogs(), 80))
		}
	})
	return kl
}

// waitLivenessProbed waits until the kubelet's liveness probe of pod's
// garpd container has succeeded, and fails on any failed probe.
func waitLivenessProbed(t *testing.T, kl *lab.Kubelet, pod string) {
	t.Helper()
	waitFor(t, 45*time.Second, "a successful liveness probe of "+pod, func() (bool, string) {
		r, err := kl.ProbeResults(pod, "garpd")
		if err != nil {
			return false, err.Error()
		}
		if r["Liveness/failed"] > 0 || r["Liveness/unknown"] > 0 {
			t.Fatalf("the kubelet's liveness probe of garpd failed: %v", r)
		}
		return r["Liveness/successful"] > 0, fmt.Sprint(r)
	})
}

// Done-when: deploy/kubernetes/static-pod.yaml, run by a standalone kubelet
// on n1 with only its host directory pointed at the lab's, holds n1's share
// of the VIPs beside two agents run directly; the kubelet's liveness probe
// passes; removing the manifest stops the pod, and its VIP is handed over.
func TestStaticPodOnKubelet(t *testing.T) {
	l := newLab(t, 3)
	n1 := l.Node("n1")
	kl := startKubelet(t, n1, "")
	vips := vips6[:3]

	// The host's /etc/garpd of the manifest's comment, with a key of mode 600.
	etc := filepath.Join(l.Dir, "n1-etc-garpd")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(labKey(l))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "gossip.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(dynConfig(l, "n1", vips, ""), labKey(l), "/etc/garpd/gossip.key", 1)
	if err := os.WriteFile(filepath.Join(etc, "garpd.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "kubernetes", "static-pod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	pod := strings.Replace(string(manifest), "path: /etc/garpd,", "path: "+etc+",", 1)
	if pod == string(manifest) {
		t.Fatal("static-pod.yaml has no hostPath /etc/garpd to point at the lab")
	}
	podPath := filepath.Join(kl.ManifestDir, "garpd.yaml")
	if err := os.WriteFile(podPath, []byte(pod), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes[1:] {
		if _, err := n.StartGarpd(garpdBin, dynConfig(l, n.Name, vips, "")); err != nil {
			t.Fatal(err)
		}
	}
	d := waitSpread(t, l, vips, 90*time.Second, map[string]int{"n1": 1, "n2": 1, "n3": 1})
	t.Logf("1/1/1 on the router %s after the agents started, n1's agent in the static pod", d.Round(10*time.Millisecond))
	// The pod's agent is on the manifest's socket, /run/garpd on the host.
	waitSettledSeenBy(t, l, 3, "n2", "n3")
	waitLivenessProbed(t, kl, "garpd-n1")
	controlOnlyInPod(t, kl, n1, l.Node("n2"), "/run/garpd/control.sock")

	// Removing the manifest: the kubelet stops the pod with SIGTERM and
	// garpd hands its VIP to a survivor before it exits.
	var vip netip.Addr
	neigh, err := l.Neighbours()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vips {
		if l.NodeByMAC(neigh[v]) == n1 {
			vip = v
		}
	}
	if names, err := kl.RunningContainers(); err != nil || !slices.Contains(names, "garpd") {
		t.Fatalf("containerd runs %v (%v), want the pod's garpd", names, err)
	}
	assertConfined(t, kl, "garpd")
	removed := time.Now()
	if err := os.Remove(podPath); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the router to move n1's VIP to a survivor", func() (bool, string) {
		got, err := l.Neighbours()
		if err != nil {
			return false, err.Error()
		}
		n := l.NodeByMAC(got[vip])
		return n != nil && n != n1, got[vip]
	})
	t.Logf("router moved %s %s after the manifest was removed (the kubelet looks every 1 s)", vip, time.Since(removed).Round(10*time.Millisecond))
	waitFor(t, 30*time.Second, "the pod's containers to stop", func() (bool, string) {
		names, err := kl.RunningContainers()
		return err == nil && len(names) == 0, fmt.Sprint(names, err)
	})
	if log := kl.PodLog("kube-system", "garpd-n1", "garpd"); !strings.Contains(log, "garpd agent stopped") {
		t.Errorf("the pod's garpd did not log a clean stop:\n%s", tail(log, 20))
	}
	if n1.HasAddress(vip) {
		t.Errorf("n1 still holds %s after its pod stopped", vip)
	}
	if c, all := spread(t, l, vips); !all || c["n1"] != 0 {
		t.Errorf("after the pod stopped the router maps the VIPs %v, want all on n2 and n3", c)
	}
}

// assertConfined checks what the kernel confines the running container
// with, as the manifest asks: the runtime's default seccomp filter
// (seccompProfile RuntimeDefault), a read-only root, no privilege
// escalation, and NET_ADMIN and NET_RAW as its only capabilities.
func assertConfined(t *testing.T, kl *lab.Kubelet, container string) {
	t.Helper()
	pids, err := kl.ContainerPIDs(container)
	if err != nil || len(pids) == 0 {
		t.Fatalf("the %s container's processes: %v %v", container, pids, err)
	}
	for _, pid := range pids {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			t.Fatalf("pid %d of %s: %v", pid, container, err)
		}
		for _, want := range []string{"\nSeccomp:\t2\n", "\nNoNewPrivs:\t1\n", "\nCapEff:\t0000000000003000\n", "\nCapBnd:\t0000000000003000\n"} {
			if !strings.Contains(string(status), want) {
				t.Errorf("pid %d of %s lacks %q:\n%s", pid, container, strings.TrimSpace(want), status)
			}
		}
		mounts, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
		if err != nil {
			t.Fatal(err)
		}
		rootRO := false
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 5 && f[4] == "/" {
				rootRO = slices.Contains(strings.Split(f[5], ","), "ro") // the last mount on / is the one seen
			}
		}
		if !rootRO {
			t.Errorf("pid %d of %s: its root is writable:\n%s", pid, container, mounts)
		}
	}
}

// Done-when: the chart on a real cluster. The kubelet on n1 registers as a
// Node; `helm install` of the chart (the lab's image, pullPolicy Never)
// runs garpd's DaemonSet pod there, which joins gossip with two agents
// run directly; the router shows the VIPs 1/1/1; the Node has a
// VIPAcquired Event; a `helm upgrade` that changes the config rolls the pod
// and no VIP goes without a holder for longer than one failover; the
// announce CronJob's example runs once and exits 0.
func TestChartOnKubelet(t *testing.T) {
	if err := lab.EtcdAvailable(); err != nil {
		t.Skipf("skipping Kubernetes test: %v", err)
	}
	l := newLab(t, 3)
	n1 := l.Node("n1")
	labImages(t) // skips here, before the cluster starts, when it cannot build them
	bins := kubeTools(t)
	k, err := l.StartKube(bins)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.StartControllers(); err != nil {
		t.Fatal(err)
	}
	if err := k.ServiceProxy(n1); err != nil {
		t.Fatal(err)
	}
	kl := startKubelet(t, n1, k.Admin)
	waitFor(t, 90*time.Second, "Node n1 to register and be Ready", func() (bool, string) {
		out, err := k.Kubectl("get", "node", "n1", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		return err == nil && out == "True", out
	})

	home := t.TempDir()
	helmOnline := func(args ...string) {
		t.Helper()
		full := append([]string{"env", "HELM_CACHE_HOME=" + home, "HELM_CONFIG_HOME=" + home, "HELM_DATA_HOME=" + home,
			bins.Helm, "--kubeconfig", k.Admin}, args...)
		if out, err := lab.Exec(l.Router, full...); err != nil {
			t.Fatalf("helm %s: %v %s", strings.Join(args, " "), err, out)
		}
	}
	vips := vips6[:3]
	// advert_interval is the chart's default (1 s): one failover is about 3.6 s.
	helmOnline("install", "garpd", chartDir(), "--namespace", "garpd", "--create-namespace",
		"--set", "image.pullPolicy=Never", "--set", "vips={"+vips[0].String()+","+vips[1].String()+","+vips[2].String()+"}",
		"--set", "gossip.settle=3s", "--set", "logLevel=debug",
		// The members outside the release, on n2 and n3.
		"--set", "gossip.join={"+l.Node("n2").IPv4.String()+":7946,"+l.Node("n3").IPv4.String()+":7946}")
	podReady := func(what string) string {
		t.Helper()
		var name string
		waitFor(t, 120*time.Second, what, func() (bool, string) {
			out, err := k.Kubectl("-n", "garpd", "get", "pods", "-l", "app.kubernetes.io/name=garpd", "-o",
				`jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`)
			if err != nil {
				return false, err.Error()
			}
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				f := strings.Fields(line)
				if len(f) == 2 && f[1] == "True" {
					name = f[0]
					return true, ""
				}
			}
			return false, out
		})
		return name
	}
	first := podReady("the DaemonSet's pod to be Ready")

	// Two agents run directly: the chart's config, with the key the chart
	// made, their own names, and n1 to join.
	key, err := k.Kubectl("-n", "garpd", "get", "secret", "garpd-gossip-key", "-o", "jsonpath={.data.key}")
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(l.Dir, "chart-gossip.key")
	if err := os.WriteFile(keyPath, mustDecode(t, key), 0o600); err != nil {
		t.Fatal(err)
	}
	chartCfg, err := k.Kubectl("-n", "garpd", "get", "configmap", "garpd", "-o", `jsonpath={.data.garpd\.yaml}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes[1:] {
		if _, err := n.StartGarpd(garpdBin, outsideMember(chartCfg, n.Name, keyPath, n1.IPv4.String()+":7946")); err != nil {
			t.Fatal(err)
		}
	}
	d := waitSpread(t, l, vips, 90*time.Second, map[string]int{"n1": 1, "n2": 1, "n3": 1})
	t.Logf("1/1/1 on the router %s after the direct agents started", d.Round(10*time.Millisecond))
	waitSettledSeenBy(t, l, 3, "n2", "n3")
	waitLivenessProbed(t, kl, first)
	assertConfined(t, kl, "garpd")
	controlOnlyInPod(t, kl, n1, l.Node("n2"), "/var/lib/kubelet/pods/*/volumes/kubernetes.io~empty-dir/run/control.sock")
	neigh, err := l.Neighbours()
	if err != nil {
		t.Fatal(err)
	}
	var mine netip.Addr
	for _, v := range vips {
		if l.NodeByMAC(neigh[v]) == n1 {
			mine = v
		}
	}
	waitFor(t, 30*time.Second, "the Node's VIPAcquired Event", func() (bool, string) {
		return hasEvent(kubeEvents(t, k), "n1", "VIPAcquired", mine), ""
	})

	// A config change rolls the pod; the SIGTERM hand-over and the return
	// after settle leave no VIP without a holder longer than one failover.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	holdersOf, err := l.WatchHolders(ctx, l.Nodes, vips)
	if err != nil {
		t.Fatal(err)
	}
	from := time.Now()
	// The new config listens on every address, IPv6 included: the probe
	// must then go to [::1].
	helmOnline("upgrade", "garpd", chartDir(), "--namespace", "garpd", "--reuse-values", "--set", "garp.refresh=30s",
		"--set", "http.listen=[::]:9496")
	var second string
	waitFor(t, 120*time.Second, "a new pod to replace "+first, func() (bool, string) {
		second = podReady("a Ready pod")
		return second != first, second
	})
	waitSpread(t, l, vips, 60*time.Second, map[string]int{"n1": 1, "n2": 1, "n3": 1})
	waitSettledSeenBy(t, l, 3, "n2", "n3")
	to := time.Now()
	waitLivenessProbed(t, kl, second)
	for v, s := range holdersOf.Stats(from, to) {
		t.Logf("%s over the upgrade (%s): longest without a holder %s, with two %s", v, to.Sub(from).Round(time.Second),
			s.MaxNoHolder.Round(time.Millisecond), s.Multi.Round(time.Millisecond))
		// One failover at 1 s adverts: 3 intervals and the skew time.
		if s.MaxNoHolder > 3*time.Second+time.Second {
			t.Errorf("%s had no holder for %s during the rolling update, longer than one failover", v, s.MaxNoHolder)
		}
	}

	// The announce CronJob example, run once on n1 from the lab's image.
	cron, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "kubernetes", "announce-cronjob.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	job := regexp.MustCompile(`(?m)^(\s+)image: .*$`).ReplaceAllString(string(cron), "${1}image: "+imageRef(t)+"\n${1}imagePullPolicy: Never")
	job = strings.Replace(job, "kubernetes.io/hostname: NODE", "kubernetes.io/hostname: n1", 1)
	kubeApply(t, l, k, "announce-cronjob", job)
	if _, err := k.Kubectl("-n", "garpd", "create", "job", "--from=cronjob/garpd-announce", "announce-once"); err != nil {
		t.Fatal(err)
	}
	if out, err := k.Kubectl("-n", "garpd", "wait", "--for=condition=Complete", "job/announce-once", "--timeout=90s"); err != nil {
		logs, _ := k.Kubectl("-n", "garpd", "get", "pods", "-l", "job-name=announce-once", "-o", "yaml")
		t.Fatalf("the announce Job did not complete: %v %s\n%s\n%s", err, out, tail(logs, 40), tail(kl.AllPodLogs(), 30))
	}
	if log := kl.AllPodLogs(); !strings.Contains(log, "announce") {
		t.Logf("pod logs:\n%s", tail(log, 20))
	}
}

// outsideMember turns the chart's agent config into that of a member that
// runs garpd directly: named, with the key at keyPath, joining seed, and
// without the Kubernetes section (it has no service account).
func outsideMember(chartCfg, node, keyPath, seed string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node: %s\n", node)
	skip, inJoin := false, false
	for _, line := range strings.Split(chartCfg, "\n") {
		if line != "" && line[0] != ' ' && line[0] != '#' {
			// The Kubernetes section is the pods', and the pods' control
			// socket path is one for the whole lab host: the lab's own.
			skip = strings.HasPrefix(line, "kubernetes:") || strings.HasPrefix(line, "control:")
		}
		if inJoin && strings.HasPrefix(line, "    - ") {
			continue // the chart's join list, replaced
		}
		inJoin = false
		switch {
		case skip:
			continue
		case strings.Contains(line, "secret_key_file:"):
			line = "  secret_key_file: " + keyPath
		case strings.HasPrefix(line, "  join:"):
			line, inJoin = "  join: ["+seed+"]", true
		}
		b.WriteString(line + "\n")
	}
	return b.String()
}

// controlOnlyInPod checks issue 36's finding 2 in the chart's and the
// manifests' default setup: root on node n reaches the pod's agent through
// its control socket (found at socketGlob, as the node's root sees it), so
// the refusals below are the socket's doing; a process on n that is not
// root (as a host-network pod's is), n's loopback and http.listen, and
// another host reach none of /status, /forget and /announce.
func controlOnlyInPod(t *testing.T, kl *lab.Kubelet, n, other *lab.Node, socketGlob string) {
	t.Helper()
	out, err := kl.HostExec("sh", "-c", "ls "+socketGlob)
	if err != nil {
		t.Fatalf("no control socket at %s on %s: %v", socketGlob, n.Name, err)
	}
	sock := strings.Fields(out)[0]
	if out, err := kl.HostExec(garpdBin, "status", "--agent", "unix:"+sock); err != nil || !strings.Contains(out, "KNOWN MEMBER") {
		t.Fatalf("root on %s cannot read the pod's status through %s: %v\n%s", n.Name, sock, err, out)
	}
	nobody := []string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}
	for _, ep := range []struct{ method, path, body string }{
		{http.MethodGet, "/status", ""},
		{http.MethodPost, "/forget", `{"node":"` + other.Name + `"}`},
		{http.MethodPost, "/announce", "{}"},
	} {
		curl := func(target ...string) []string {
			a := []string{"curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3", "-X", ep.method}
			if ep.body != "" {
				a = append(a, "-H", "Content-Type: application/json", "-d", ep.body)
			}
			return append(a, target...)
		}
		for _, c := range []struct {
			from string
			run  func() (string, error)
		}{
			{"a non-root process on " + n.Name + ", through the socket", func() (string, error) {
				return kl.HostExec(append(nobody, curl("--unix-socket", sock, "http://garpd"+ep.path)...)...)
			}},
			{"a non-root process on " + n.Name + "'s network, on " + lab.LabAgent, func() (string, error) {
				return kl.HostExec(append(nobody, curl("http://"+lab.LabAgent+ep.path)...)...)
			}},
			{"a non-root process on " + n.Name + "'s network, on http.listen", func() (string, error) {
				return kl.HostExec(append(nobody, curl("http://127.0.0.1:9496"+ep.path)...)...)
			}},
			{"another host, " + other.Name, func() (string, error) {
				return lab.Exec(other.NS, curl("http://"+n.IPv4.String()+":9497"+ep.path)...)
			}},
		} {
			code, _ := c.run()
			if code = strings.TrimSpace(code); strings.HasPrefix(code, "2") {
				t.Errorf("%s %s from %s: HTTP %s, want it refused", ep.method, ep.path, c.from, code)
			} else {
				t.Logf("%s %s from %s: refused (HTTP %s)", ep.method, ep.path, c.from, code)
			}
		}
	}
}
