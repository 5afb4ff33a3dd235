package gossip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// KubeConfig is the `kubernetes:` section. Kubernetes feeds garpd facts
// (who the peers are); it never gates holding a VIP: while the API server
// is away, gossip and VRRP go on with the last state the node saw.
type KubeConfig struct {
	// Kubeconfig is a kubeconfig file, for a node outside the cluster's
	// pods (a systemd host); empty: the pod's in-cluster config.
	Kubeconfig string `yaml:"kubeconfig" json:"kubeconfig,omitempty"`
	// Peers finds the members from the pods of garpd's DaemonSet, in
	// place of gossip.join: no DNS name or headless Service needed.
	Peers KubePeers `yaml:"peers" json:"peers"`
}

// KubePeers selects the pods whose nodes are the peers.
type KubePeers struct {
	Namespace string `yaml:"namespace" json:"namespace,omitempty"`
	// Selector is a label selector, such as app.kubernetes.io/name=garpd.
	Selector string `yaml:"selector" json:"selector,omitempty"`
}

// Enabled reports whether peers come from the API.
func (p KubePeers) Enabled() bool { return p.Selector != "" }

// Validate checks c; errors start with the key they are about.
func (c KubeConfig) Validate() error {
	var errs []error
	if c.Peers.Selector != "" {
		if _, err := labels.Parse(c.Peers.Selector); err != nil {
			errs = append(errs, fmt.Errorf("peers.selector: %q: %w (write it as kubectl's -l takes it, such as app.kubernetes.io/name=garpd)", c.Peers.Selector, err))
		}
		if c.Peers.Namespace == "" {
			errs = append(errs, errors.New("peers.namespace: required with peers.selector: the namespace of garpd's DaemonSet"))
		}
	} else if c.Peers.Namespace != "" {
		errs = append(errs, errors.New("peers.selector: required with peers.namespace: the labels of garpd's pods, such as app.kubernetes.io/name=garpd"))
	}
	if c.Kubeconfig != "" {
		if _, err := clientcmd.LoadFromFile(c.Kubeconfig); err != nil {
			errs = append(errs, fmt.Errorf("kubeconfig: %w (leave it out inside a pod, which uses its service account)", err))
		}
	}
	return errors.Join(errs...)
}

// NewKubeClient connects to the API server as c says. It does not contact
// it: an API server that is down must not stop the agent.
func NewKubeClient(c KubeConfig, userAgent string) (kubernetes.Interface, error) {
	var rc *rest.Config
	var err error
	if c.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	rc.UserAgent = userAgent
	return kubernetes.NewForConfig(rc)
}

// kubeSyncWait bounds how long Seeds waits for the first pod list.
const kubeSyncWait = 5 * time.Second

// KubePods is a Discoverer over the pods of garpd's DaemonSet: each pod
// that runs on another node and has a host IP is a seed at that IP and
// the gossip port. An informer keeps the list, so seeds come from memory,
// and the last list stays usable while the API server is away.
type KubePods struct {
	pods   corelisters.PodNamespaceLister
	synced cache.InformerSynced
	sel    labels.Selector
	self   string
	port   string
}

// StartKubePods starts watching the pods until ctx ends. self is this
// node's Kubernetes node name; port is the gossip port of every member.
func StartKubePods(ctx context.Context, client kubernetes.Interface, p KubePeers, self, port string) (*KubePods, error) {
	sel, err := labels.Parse(p.Selector)
	if err != nil {
		return nil, fmt.Errorf("kubernetes.peers.selector: %w", err)
	}
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(p.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = sel.String() }))
	inf := f.Core().V1().Pods()
	d := &KubePods{pods: inf.Lister().Pods(p.Namespace), synced: inf.Informer().HasSynced, sel: sel, self: self, port: port}
	f.Start(ctx.Done())
	return d, nil
}

// Seeds implements Discoverer.
func (d *KubePods) Seeds(ctx context.Context) ([]string, error) {
	if !d.synced() {
		wctx, cancel := context.WithTimeout(ctx, kubeSyncWait)
		defer cancel()
		if !cache.WaitForCacheSync(wctx.Done(), d.synced) {
			return nil, errors.New("the DaemonSet's pods are not listed yet: is the API server reachable, and may this node's service account list pods (deploy/kubernetes/rbac.yaml)?")
		}
	}
	pods, err := d.pods.List(d.sel)
	if err != nil {
		return nil, fmt.Errorf("list the DaemonSet's pods: %w", err)
	}
	return podSeeds(pods, d.self, d.port), nil
}

// podSeeds is the seeds of a pod list: the host IPs of pods that run on
// other nodes and are not being deleted, sorted.
func podSeeds(pods []*corev1.Pod, self, port string) []string {
	var out []string
	for _, p := range pods {
		if p.DeletionTimestamp != nil || p.Spec.NodeName == self || p.Status.HostIP == "" {
			continue
		}
		out = append(out, net.JoinHostPort(p.Status.HostIP, port))
	}
	slices.Sort(out)
	return slices.Compact(out)
}
