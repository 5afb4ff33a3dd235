package kube

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"
)

// nodeInformer watches one Node, by name (a field selector), once run.
func (k *API) nodeInformer(name string) cache.SharedIndexInformer {
	return informer(k.client, "nodes", "", &corev1.Node{}, func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
	})
}

// downFollow is how often the watched Nodes are matched to the members
// that are down (an in-memory look at gossip's known set). Short: a member
// whose Node was deleted while it was alive is forgotten once it goes down,
// and every node must do that at nearly the same moment, or for a moment
// their plans differ.
const downFollow = 100 * time.Millisecond

// followDown keeps a Node watch for each member that is down, until ctx
// ends: when its Node is deleted, or found absent, the member is gone for
// good and h.NodeDeleted forgets it. A Node deleted while its member was
// alive is found absent the moment the member goes down.
func (k *API) followDown(ctx context.Context, h Handlers) {
	t := time.NewTicker(downFollow)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		down := map[string]bool{}
		for _, name := range h.Down() {
			if name != k.node {
				down[name] = true
			}
		}
		k.mu.Lock()
		for name, stop := range k.downWatch {
			if !down[name] {
				stop()
				delete(k.downWatch, name)
			}
		}
		for name := range down {
			if _, ok := k.downWatch[name]; !ok {
				wctx, stop := context.WithCancel(ctx)
				k.downWatch[name] = stop
				go k.watchGone(wctx, name, h.NodeDeleted)
			}
		}
		k.mu.Unlock()
	}
}

// watchGone reports, once, that the Node name is deleted or absent.
func (k *API) watchGone(ctx context.Context, name string, gone func(string)) {
	inf := k.nodeInformer(name)
	var once sync.Once
	report := func(how string) {
		once.Do(func() {
			k.log.Warn().Str("node", name).Msg("Node " + how + " the API while its member is down: forgetting the member of that name")
			gone(name)
		})
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(any) { report("deleted from") }})
	go inf.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		return
	}
	if _, exists, err := inf.GetStore().GetByKey(name); err == nil && !exists {
		report("absent from")
	}
}

func (k *API) nodeChanged(obj any, h Handlers) {
	n, ok := obj.(*corev1.Node)
	if !ok || n.Name != k.node {
		return
	}
	k.apiWorks()
	eligible, why := NodeEligibility(n, k.cfg.ExcludeLabels)
	k.mu.Lock()
	changed := !k.nodeSeen || eligible != k.eligible || why != k.why
	k.nodeSeen, k.eligible, k.why = true, eligible, why
	k.mu.Unlock()
	if !changed {
		return
	}
	if eligible {
		k.log.Info().Str("node", n.Name).Msg("Node eligible for VIPs")
	} else {
		k.log.Warn().Str("node", n.Name).Str("why", why).Msg("Node not eligible for VIPs: resigning them, as on a failing health check")
	}
	if h.Excluded != nil {
		h.Excluded(why)
	}
}

// NodeEligibility is whether a Node may hold VIPs, and if not, why: one
// of the exclude labels is set, or its network is unavailable. Cordon
// (spec.unschedulable) moves nothing.
func NodeEligibility(n *corev1.Node, excludeLabels []string) (bool, string) {
	for _, l := range excludeLabels {
		if _, set := n.Labels[l]; set {
			return false, "label " + l + " is set on Node " + n.Name
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionTrue {
			why := "condition NetworkUnavailable=True on Node " + n.Name
			if c.Message != "" {
				why += ": " + c.Message
			}
			return false, why
		}
	}
	return true, ""
}
