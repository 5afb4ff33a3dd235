package kube

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// podWatch is an informer over the pods of one selector on this node.
type podWatch struct {
	pods   corelisters.PodNamespaceLister
	synced cache.InformerSynced
	sel    labels.Selector
}

// PodReadyProbe returns a health probe that passes while a pod on this
// node in namespace that matches selector is Ready: the VIP follows, for
// example, the router pod. Checks of the same pods share one informer.
func (k *API) PodReadyProbe(namespace, selector string) (func(context.Context) error, error) {
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, fmt.Errorf("selector %q: %w", selector, err)
	}
	key := namespace + "/" + sel.String()
	k.mu.Lock()
	w, ok := k.podWatch[key]
	if !ok {
		inf := informer(k.client, "pods", namespace, &corev1.Pod{}, func(o *metav1.ListOptions) {
			o.LabelSelector = sel.String()
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", k.node).String()
		})
		k.watchErrors(inf, "pods "+key)
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { k.apiWorks() }, UpdateFunc: func(any, any) { k.apiWorks() }, DeleteFunc: func(any) { k.apiWorks() },
		})
		w = &podWatch{pods: corelisters.NewPodLister(inf.GetIndexer()).Pods(namespace), synced: inf.HasSynced, sel: sel}
		k.podWatch[key] = w
		go inf.Run(k.ctx.Done())
	}
	k.mu.Unlock()
	return func(context.Context) error {
		if !w.synced() {
			return fmt.Errorf("the pods %s in %s are not listed yet: is the API server reachable?", selector, namespace)
		}
		pods, err := w.pods.List(w.sel)
		if err != nil {
			return err
		}
		return PodsReady(pods, selector, namespace, k.node)
	}, nil
}

// PodsReady passes when one of pods is Ready and not being deleted.
func PodsReady(pods []*corev1.Pod, selector, namespace, node string) error {
	var states []string
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			states = append(states, p.Name+" terminating")
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		states = append(states, p.Name+" not Ready")
	}
	if len(states) == 0 {
		return fmt.Errorf("no pod %s in %s on node %s", selector, namespace, node)
	}
	slices.Sort(states)
	return fmt.Errorf("no Ready pod %s in %s on node %s: %s", selector, namespace, node, strings.Join(states, ", "))
}

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
