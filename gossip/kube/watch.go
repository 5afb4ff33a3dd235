package kube

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
)

// Handlers is what the Kubernetes watch tells the rest of the agent.
// Excluded and NodeDeleted are called from informer goroutines, one call
// at a time.
type Handlers struct {
	// Excluded reports the local Node's verdict on every change: not
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
