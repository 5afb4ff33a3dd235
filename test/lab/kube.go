package lab

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// KubeBinaries are the Kubernetes programs built from test/kube: the
// control plane, the kubelet, kubectl and helm.
type KubeBinaries struct {
	APIServer, ControllerManager, Scheduler, Kubelet, Kubectl, Helm string
}

// all lists the binaries with the package each is built from.
func (b KubeBinaries) all() map[string]string {
	return map[string]string{
		b.APIServer: "./cmd/kube-apiserver", b.ControllerManager: "./cmd/kube-controller-manager",
		b.Scheduler: "./cmd/kube-scheduler", b.Kubelet: "./cmd/kubelet", b.Kubectl: "./cmd/kubectl",
		// helm is a tool of the module (go.mod's tool line), pinned there.
		b.Helm: "helm.sh/helm/v3/cmd/helm",
	}
}

// kubeModule is test/kube, the Go module that builds the Kubernetes tools.
func kubeModule() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "kube")
}

// BuildKube builds the Kubernetes programs from test/kube, or reuses an
// earlier build: binaries are cached under the user's cache directory,
// keyed by test/kube's go.sum, so only the first build on a machine (about
// 9 minutes on 2 cores) pays. progress gets a line before a long build.
func BuildKube(progress func(string)) (KubeBinaries, error) {
	sum, err := os.ReadFile(filepath.Join(kubeModule(), "go.sum"))
	if err != nil {
		return KubeBinaries{}, fmt.Errorf("read test/kube/go.sum: %w", err)
	}
	h := sha256.Sum256(sum)
	cache, err := os.UserCacheDir()
	if err != nil {
		return KubeBinaries{}, fmt.Errorf("find a cache directory for the Kubernetes tools: %w", err)
	}
	dir := filepath.Join(cache, "garpd-test", "kube-"+hex.EncodeToString(h[:6]))
	in := func(name string) string { return filepath.Join(dir, name) }
	bins := KubeBinaries{APIServer: in("kube-apiserver"), ControllerManager: in("kube-controller-manager"),
		Scheduler: in("kube-scheduler"), Kubelet: in("kubelet"), Kubectl: in("kubectl"), Helm: in("helm")}
	missing := false
	for b := range bins.all() {
		if _, err := os.Stat(b); err != nil {
			missing = true
		}
	}
	if !missing {
		return bins, nil
	}
	progress(fmt.Sprintf("building the Kubernetes control plane, kubelet, kubectl and helm into %s (the first time on this machine takes several minutes)", dir))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return KubeBinaries{}, err
	}
	// Into a temporary directory first: an interrupted build leaves no
	// half-written binary that a later run would take for a cached one.
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return KubeBinaries{}, err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	start := time.Now()
	args := []string{"build", "-trimpath", "-o", tmp + "/"}
	for _, pkg := range bins.all() {
		args = append(args, pkg)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = kubeModule()
	if out, err := cmd.CombinedOutput(); err != nil {
		return KubeBinaries{}, fmt.Errorf("build the Kubernetes tools in test/kube: %w: %s", err, out)
	}
	for b := range bins.all() {
		if err := os.Rename(filepath.Join(tmp, filepath.Base(b)), b); err != nil {
			return KubeBinaries{}, err
		}
	}
	progress(fmt.Sprintf("built the Kubernetes tools in %s", time.Since(start).Round(time.Second)))
	return bins, nil
}

// EtcdAvailable reports why etcd cannot run, or nil.
func EtcdAvailable() error {
	if _, err := exec.LookPath("etcd"); err != nil {
		return errors.New("etcd is not installed (apt-get install etcd-server)")
	}
	return nil
}

// Kube is a Kubernetes API server for the lab: Debian's etcd and the
// kube-apiserver, both in the router namespace, serving on the router's
// address so that the nodes reach it over the bridge. Clients
// authenticate with static tokens; authorization is RBAC.
type Kube struct {
	lab       *Lab
	bins      KubeBinaries
	dir       string
	URL       string
	Etcd      *Proc
	APIServer *Proc
	// ControllerManager and Scheduler run after StartControllers.
	ControllerManager, Scheduler *Proc
	// Admin is a kubeconfig for a cluster administrator (system:masters).
	Admin string
	// Agents holds a kubeconfig per lab node for garpd's ServiceAccount
	// (garpd/garpd), each with its own token as each DaemonSet pod has
	// its own: what it may do is what deploy/'s RBAC grants that account.
	Agents map[string]string
}

// Kubernetes users of the lab's API server.
const (
	kubeAdminUser = "lab-admin"
	kubeAgentUser = "system:serviceaccount:garpd:garpd"
)

// StartKube starts etcd and the API server and waits until it is ready.
func (l *Lab) StartKube(bins KubeBinaries) (*Kube, error) {
	k := &Kube{lab: l, bins: bins, dir: filepath.Join(l.Dir, "kube"), URL: "https://" + RouterV4.String() + ":6443"}
	if err := os.MkdirAll(k.dir, 0o700); err != nil {
		return nil, err
	}
	adminToken := randomToken()
	tokens := fmt.Sprintf("%s,%s,1,\"system:masters\"\n", adminToken, kubeAdminUser)
	agentTokens := map[string]string{}
	for _, n := range l.Nodes {
		agentTokens[n.Name] = randomToken()
		tokens += fmt.Sprintf("%s,%s,2,\"system:serviceaccounts,system:serviceaccounts:garpd\"\n", agentTokens[n.Name], kubeAgentUser)
	}
	if err := os.WriteFile(filepath.Join(k.dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return nil, err
	}
	if err := writeServiceAccountKey(filepath.Join(k.dir, "sa.key")); err != nil {
		return nil, err
	}
	var err error
	// etcd on the router namespace's own loopback: every lab has its own,
	// so fixed ports never clash.
	k.Etcd, err = l.Start(l.Router, "etcd", "etcd", "--data-dir", filepath.Join(k.dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "default=http://127.0.0.1:2380", "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	k.Admin = filepath.Join(k.dir, "admin.kubeconfig")
	kubeconfigs := map[string]string{k.Admin: adminToken}
	k.Agents = map[string]string{}
	for name, token := range agentTokens {
		k.Agents[name] = filepath.Join(k.dir, "agent-"+name+".kubeconfig")
		kubeconfigs[k.Agents[name]] = token
	}
	for path, token := range kubeconfigs {
		if err := os.WriteFile(path, []byte(k.kubeconfig(token)), 0o600); err != nil {
			return nil, err
		}
	}
	if err := k.StartAPIServer(); err != nil {
		return nil, err
	}
	return k, nil
}

// StartAPIServer (re)starts the API server and waits until it is ready.
func (k *Kube) StartAPIServer() error {
	p, err := k.lab.Start(k.lab.Router, "kube-apiserver", k.bins.APIServer,
		"--etcd-servers", "http://127.0.0.1:2379",
		"--bind-address", RouterV4.String(), "--advertise-address", RouterV4.String(), "--secure-port", "6443",
		"--cert-dir", filepath.Join(k.dir, "certs"),
		"--token-auth-file", filepath.Join(k.dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(k.dir, "sa.key"),
		"--service-account-signing-key-file", filepath.Join(k.dir, "sa.key"),
		// Nothing routes it but ServiceProxy, on the nodes that need it.
		"--service-cluster-ip-range", "198.51.100.240/28",
		"--profiling=false", "--v=1")
	if err != nil {
		return err
	}
	k.APIServer = p
	// Ready once /readyz answers: etcd reached, bootstrap RBAC in place.
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := k.Kubectl("get", "--raw", "/readyz", "--request-timeout", "2s"); err == nil {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("kube-apiserver exited: %s", tail(p.Output(), 2000))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready after 90s: %s", tail(p.Output(), 2000))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// ServiceIP is the API server's ClusterIP (the first of the service range):
// what in-cluster clients dial, through ServiceProxy.
var ServiceIP = netip.MustParseAddr("198.51.100.241")

// StartControllers starts the controller manager and the scheduler beside
// the API server, so that workloads run: DaemonSets, Jobs and CronJobs get
// pods, pods get nodes, service accounts get the cluster's CA.
func (k *Kube) StartControllers() error {
	var err error
	k.ControllerManager, err = k.lab.Start(k.lab.Router, "kube-controller-manager", k.bins.ControllerManager,
		"--kubeconfig", k.Admin, "--leader-elect=false", "--secure-port", "0",
		"--root-ca-file", filepath.Join(k.dir, "certs", "apiserver.crt"),
		"--service-account-private-key-file", filepath.Join(k.dir, "sa.key"),
		"--use-service-account-credentials=false", "--v=1")
	if err != nil {
		return err
	}
	k.Scheduler, err = k.lab.Start(k.lab.Router, "kube-scheduler", k.bins.Scheduler,
		"--kubeconfig", k.Admin, "--leader-elect=false", "--secure-port", "0", "--v=1")
	return err
}

// ServiceProxy does on node n what kube-proxy does for the API server's
// Service: connections from the node to ServiceIP:443 go to the API server.
// In-cluster clients (a pod's service account) dial that address.
func (k *Kube) ServiceProxy(n *Node) error {
	// A route first: the NAT hook runs after the routing decision.
	if _, err := Exec(n.NS, "ip", "route", "add", netip.PrefixFrom(ServiceIP, 32).String(), "via", RouterV4.String(), "dev", "eth0"); err != nil {
		return err
	}
	return n.Firewall(fmt.Sprintf(`table ip garpd-lab-kube-proxy {
	chain output {
		type nat hook output priority -100;
		ip daddr %s tcp dport 443 dnat to %s:6443
	}
}
`, ServiceIP, RouterV4))
}

// Kubectl runs kubectl as the administrator in the router namespace.
func (k *Kube) Kubectl(args ...string) (string, error) {
	return Exec(k.lab.Router, append([]string{k.bins.Kubectl, "--kubeconfig", k.Admin}, args...)...)
}

func (k *Kube) kubeconfig(token string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: lab
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: user
  user:
    token: %s
contexts:
- name: lab
  context: {cluster: lab, user: user}
current-context: lab
`, k.URL, token)
}

func randomToken() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// writeServiceAccountKey writes an RSA key the API server signs and checks
// service account tokens with (it refuses to start without one).
func writeServiceAccountKey(path string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return os.WriteFile(path, b, 0o600)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return strings.TrimSpace(s)
}
