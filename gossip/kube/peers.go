// Package kube is garpd's view of the Kubernetes API, kept apart so that
// gossip proper does not link client-go: the peers from the pods of garpd's
// DaemonSet (peers.go), this Node's eligibility, deleted Nodes, pod
// readiness for kubernetes_pod checks and the Events recorder (watch.go).
// Kubernetes feeds facts; it never gates holding a VIP. It speaks to the
// API through Client, a REST client over core/v1 alone, so the agent
// links one of the API's groups, not client-go's whole scheme.
//
// Imports: none of garpd's packages; its types satisfy gossip's seams
// (Discoverer, PodProber) by shape. balancer imports it.
package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
)

// Config is the `kubernetes:` section. Kubernetes feeds garpd facts
// (who the peers are); it never gates holding a VIP: while the API server
// is away, gossip and VRRP go on with the last state the node saw.
type Config struct {
	// Kubeconfig is a kubeconfig file, for a node outside the cluster's
	// pods (a systemd host); empty: the pod's in-cluster config.
	Kubeconfig string `yaml:"kubeconfig" json:"kubeconfig,omitempty"`
	// Peers finds the members from the pods of garpd's DaemonSet, in
	// place of gossip.join: no DNS name or headless Service needed.
	Peers PeersConfig `yaml:"peers" json:"peers"`
	// ExcludeLabels are Node labels that take the node out of the plan
	// while set, whatever their value, as a failing health check does.
	// Drain tooling sets the default; cordon (spec.unschedulable) is not
	// a signal: it does not mean the node is going away, and a
	// DaemonSet's pods are not drained.
	ExcludeLabels []string `yaml:"exclude_labels" json:"exclude_labels"`
}

// ExcludeLabelDefault is the well-known label that drain tooling sets on
// a node leaving load balancers; garpd treats it the same way.
const ExcludeLabelDefault = "node.kubernetes.io/exclude-from-external-load-balancers"

// WithDefaults fills the exclude labels when the config names none.
func (c Config) WithDefaults() Config {
	if c.ExcludeLabels == nil {
		c.ExcludeLabels = []string{ExcludeLabelDefault}
	}
	return c
}

// PeersConfig selects the pods whose nodes are the peers.
type PeersConfig struct {
	Namespace string `yaml:"namespace" json:"namespace,omitempty"`
	// Selector is a label selector, such as app.kubernetes.io/name=garpd.
	Selector string `yaml:"selector" json:"selector,omitempty"`
}

// Enabled reports whether peers come from the API.
func (p PeersConfig) Enabled() bool { return p.Selector != "" }

// Validate checks c; errors start with the key they are about.
func (c Config) Validate() error {
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
	for i, l := range c.ExcludeLabels {
		if msgs := validation.IsQualifiedName(l); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("exclude_labels[%d]: %q is not a label key: %s", i, l, strings.Join(msgs, "; ")))
		}
	}
	if c.Kubeconfig != "" {
		if _, err := clientcmd.LoadFromFile(c.Kubeconfig); err != nil {
			errs = append(errs, fmt.Errorf("kubeconfig: %w (leave it out inside a pod, which uses its service account)", err))
		}
	}
	return errors.Join(errs...)
}

// Client is what garpd asks of the Kubernetes API: lists and watches of
// Nodes and Pods, Events, and the server's version. NewClient's speaks
// REST with a scheme of core/v1 alone, so the agent links and initialises
// none of the API's other groups; tests put a fake behind it.
type Client interface {
	// ListWatch lists and watches resource ("nodes", "pods") in namespace
	// ("" for all), tweak narrowing every request.
	ListWatch(resource, namespace string, tweak func(*metav1.ListOptions)) cache.ListerWatcher
	// Events writes Events.
	Events() record.EventSink
	// Version asks the API server for its version.
	Version(ctx context.Context) error
}

// NewClient connects to the API server as c says. It does not contact
// it: an API server that is down must not stop the agent.
func NewClient(c Config, userAgent string) (Client, error) {
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
	rc = rest.CopyConfig(rc)
	rc.UserAgent = userAgent
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	rc.GroupVersion, rc.APIPath = &corev1.SchemeGroupVersion, "/api"
	rc.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if rc.QPS == 0 {
		rc.QPS, rc.Burst = 5, 10 // client-go's defaults
	}
	r, err := rest.RESTClientFor(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes: %w", err)
	}
	return restClient{r}, nil
}

// restClient is Client over the core/v1 REST API.
type restClient struct{ rc *rest.RESTClient }

func (c restClient) ListWatch(resource, namespace string, tweak func(*metav1.ListOptions)) cache.ListerWatcher {
	return cache.NewFilteredListWatchFromClient(c.rc, resource, namespace, tweak)
}

func (c restClient) Events() record.EventSink { return eventSink(c) }

func (c restClient) Version(ctx context.Context) error {
	_, err := c.rc.Get().AbsPath("/version").Do(ctx).Raw()
	return err
}

// eventSink writes Events as client-go's typed sink does.
type eventSink restClient

func (s eventSink) Create(e *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	return out, s.rc.Post().Namespace(e.Namespace).Resource("events").Body(e).Do(context.Background()).Into(out)
}

func (s eventSink) Update(e *corev1.Event) (*corev1.Event, error) {
	out := &corev1.Event{}
	return out, s.rc.Put().Namespace(e.Namespace).Resource("events").Name(e.Name).Body(e).Do(context.Background()).Into(out)
}

func (s eventSink) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	out := &corev1.Event{}
	return out, s.rc.Patch(types.StrategicMergePatchType).Namespace(e.Namespace).Resource("events").Name(e.Name).
		Body(data).Do(context.Background()).Into(out)
}

// informer is an informer of resource in namespace, obj its type; the
// caller sets its handlers and runs it.
func informer(client Client, resource, namespace string, obj runtime.Object, tweak func(*metav1.ListOptions)) cache.SharedIndexInformer {
	return cache.NewSharedIndexInformer(client.ListWatch(resource, namespace, tweak), obj, 0,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
}

// syncWait bounds how long Seeds waits for the first pod list.
const syncWait = 5 * time.Second

// Pods is a Discoverer over the pods of garpd's DaemonSet: each pod
// that runs on another node and has a host IP is a seed at that IP and
// the gossip port. An informer keeps the list, so seeds come from memory,
// and the last list stays usable while the API server is away.
type Pods struct {
	pods   corelisters.PodNamespaceLister
	synced cache.InformerSynced
	sel    labels.Selector
	self   string
	port   string
}

// Peers starts watching the pods of garpd's DaemonSet until ctx ends;
// port is the gossip port of every member.
func (k *API) Peers(ctx context.Context, port string) (*Pods, error) {
	return startPods(ctx, k.client, k.cfg.Peers, k.node, port, k.watchErrors)
}

func startPods(ctx context.Context, client Client, p PeersConfig, self, port string, onErr func(cache.SharedIndexInformer, string)) (*Pods, error) {
	sel, err := labels.Parse(p.Selector)
	if err != nil {
		return nil, fmt.Errorf("kubernetes.peers.selector: %w", err)
	}
	inf := informer(client, "pods", p.Namespace, &corev1.Pod{}, func(o *metav1.ListOptions) { o.LabelSelector = sel.String() })
	onErr(inf, "pods "+p.Namespace+"/"+sel.String())
	go inf.Run(ctx.Done())
	return &Pods{pods: corelisters.NewPodLister(inf.GetIndexer()).Pods(p.Namespace), synced: inf.HasSynced, sel: sel, self: self, port: port}, nil
}

// Seeds implements Discoverer.
func (d *Pods) Seeds(ctx context.Context) ([]string, error) {
	if !d.synced() {
		wctx, cancel := context.WithTimeout(ctx, syncWait)
		defer cancel()
		if !cache.WaitForCacheSync(wctx.Done(), d.synced) {
			return nil, errors.New("the DaemonSet's pods are not listed yet: is the API server reachable, and may this node's service account list pods (the chart's RBAC, deploy/helm/garpd)?")
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
