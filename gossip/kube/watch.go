package kube

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// Handlers is what the Kubernetes watch tells the rest of the agent.
// Both are called from informer goroutines, one call at a time.
type Handlers struct {
	// Eligibility reports the local Node's verdict on every change: not
	// eligible resigns like a failing health check, and why says so.
	// why is empty when the Node is eligible.
	Excluded func(why string)
	// NodeDeleted reports another Node deleted from the API (or absent
	// from it) while its member is down: the member of that name is gone
	// for good, so it is forgotten at once.
	NodeDeleted func(name string)
	// Down lists the known members that are down: only their Nodes are
	// watched, each by name, so the agent never reads the cluster's other
	// Nodes.
	Down func() []string
}

// API is the agent's view of the Kubernetes API. Informers answer every
// question from memory, so an API server that is down or slow only
// freezes what garpd knows: VRRP and gossip go on with the last state.
type API struct {
	client Client
	cfg    Config
	node   string
	log    zerolog.Logger
	ctx    context.Context

	events      record.EventRecorder
	broadcaster record.EventBroadcaster

	mu        sync.Mutex
	podWatch  map[string]*podWatch          // by namespace and selector
	downWatch map[string]context.CancelFunc // the Nodes of down members, by name
	nodeSeen  bool
	eligible  bool
	why       string
	apiErr    string    // the last watch error, until a watch works again
	apiErrAt  time.Time // when it was first seen
}

// eventBurst lets every VIP move of a whole failover through the
// recorder's spam filter (255 VRIDs per family); repeats of one move
// still fold into one Event with a count.
const eventBurst = 2 * 255

// Start starts watching the Nodes and recording Events until ctx
// ends. node is this node's Kubernetes name, which is also its member
// name (so a deleted Node names the member to forget).
func Start(ctx context.Context, client Client, cfg Config, node string, log zerolog.Logger, h Handlers) *API {
	cfg = cfg.WithDefaults()
	k := &API{client: client, cfg: cfg, node: node, log: log.With().Str("component", "kubernetes").Logger(), ctx: ctx,
		podWatch: map[string]*podWatch{}, downWatch: map[string]context.CancelFunc{}, eligible: true}
	k.broadcaster = record.NewBroadcaster(record.WithContext(ctx), record.WithCorrelatorOptions(record.CorrelatorOptions{
		BurstSize: eventBurst, QPS: 1,
	}))
	k.broadcaster.StartRecordingToSink(retrySink{client.Events()})
	// Events name their Node by an ObjectReference, which the recorder
	// takes as it is: its scheme is never asked.
	k.events = k.broadcaster.NewRecorder(runtime.NewScheme(), corev1.EventSource{Component: "garpd", Host: node})
	go func() {
		<-ctx.Done()
		k.broadcaster.Shutdown()
	}()

	inf := k.nodeInformer(node)
	k.watchErrors(inf, "nodes")
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.nodeChanged(obj, h) },
		UpdateFunc: func(_, obj any) { k.nodeChanged(obj, h) },
	})
	go inf.Run(ctx.Done())
	if h.Down != nil && h.NodeDeleted != nil {
		go k.followDown(ctx, h)
	}
	return k
}

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

// retrySink passes the recorder's writes to the API server, and turns its
// "not now" answers into errors the recorder retries (up to 12 times, 10 s
// apart) where it would drop the Event: 5xx and 429, and 401/403 from an
// API server that is starting and whose authorizer has not caught up. So
// the Event of a VIP that moved while the API server restarted still
// arrives.
type retrySink struct{ sink record.EventSink }

func (s retrySink) Create(e *corev1.Event) (*corev1.Event, error) {
	ev, err := s.sink.Create(e)
	return ev, retryable(err)
}

func (s retrySink) Update(e *corev1.Event) (*corev1.Event, error) {
	ev, err := s.sink.Update(e)
	return ev, retryable(err)
}

func (s retrySink) Patch(e *corev1.Event, data []byte) (*corev1.Event, error) {
	ev, err := s.sink.Patch(e, data)
	return ev, retryable(err)
}

// retryable hides a transient API status from the recorder, which drops
// an Event on any API status error.
func retryable(err error) error {
	var st apierrors.APIStatus
	if err == nil || !errors.As(err, &st) {
		return err
	}
	switch code := st.Status().Code; {
	case code >= 500, code == http.StatusTooManyRequests, code == http.StatusUnauthorized, code == http.StatusForbidden:
		return transientError{err}
	}
	return err
}

// transientError is an API error the recorder retries: it is not an
// *errors.StatusError.
type transientError struct{ err error }

func (e transientError) Error() string { return "API server not ready: " + e.err.Error() }

// watchErrors logs a lost watch once, not on every retry, and keeps it
// for status until the informer lists or watches again.
func (k *API) watchErrors(inf cache.SharedIndexInformer, what string) {
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		k.mu.Lock()
		first := k.apiErr == ""
		k.apiErr = fmt.Sprintf("watch %s: %v", what, err)
		if first {
			k.apiErrAt = time.Now()
		}
		k.mu.Unlock()
		if first {
			k.log.Warn().Err(err).Str("watch", what).Msg("lost the Kubernetes API: going on with the last state seen (VIPs stay where they are); retrying")
		}
	})
}

// apiWorks clears a watch error once an informer hears from the API.
func (k *API) apiWorks() {
	k.mu.Lock()
	was := k.apiErr
	k.apiErr, k.apiErrAt = "", time.Time{}
	k.mu.Unlock()
	if was != "" {
		k.log.Info().Msg("Kubernetes API reachable again")
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

// Event records an Event on this node's Node object: Normal for VIPs
// acquired and released, Warning for what an operator must look at. The
// recorder aggregates repeats into one Event with a count, rate-limits,
// and retries while the API server is away, without blocking the caller.
func (k *API) Event(warning bool, reason, message string) {
	t := corev1.EventTypeNormal
	if warning {
		t = corev1.EventTypeWarning
	}
	ref := &corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: k.node, UID: types.UID(k.node)}
	k.events.Event(ref, t, reason, message)
}

// Status is the Kubernetes part of `garpd status`.
type Status struct {
	Node string `json:"node"`
	// API is "reachable", or what went wrong reaching it.
	API      string `json:"api"`
	APIError string `json:"api_error,omitempty"`
	// Since when the API has been unreachable.
	APIErrorSince time.Time `json:"api_error_since,omitzero"`
	NodeSeen      bool      `json:"node_seen"`
	Eligible      bool      `json:"eligible"`
	Why           string    `json:"why,omitempty"`
}

// Status asks the API server for its version (bounded by ctx) and reports
// it with the node's eligibility.
func (k *API) Status(ctx context.Context) Status {
	k.mu.Lock()
	st := Status{Node: k.node, NodeSeen: k.nodeSeen, Eligible: k.eligible, Why: k.why, APIError: k.apiErr, APIErrorSince: k.apiErrAt}
	k.mu.Unlock()
	st.API = "reachable"
	if err := k.client.Version(ctx); err != nil {
		st.API = "unreachable: " + err.Error()
	}
	if !st.NodeSeen {
		st.Why = "Node " + k.node + " not seen in the API yet (eligible until it is)"
	}
	return st
}
