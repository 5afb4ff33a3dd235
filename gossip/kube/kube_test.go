package kube

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/rs/zerolog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
)

// Seeds are the other nodes' pods with a host IP, not those being deleted
// or on this node, each once, in order.
func TestPodSeeds(t *testing.T) {
	pod := func(node, hostIP string, deleting bool) *corev1.Pod {
		p := &corev1.Pod{Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{HostIP: hostIP}}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{}
		}
		return p
	}
	pods := []*corev1.Pod{
		pod("n3", "192.0.2.13", false),
		pod("n1", "192.0.2.11", false), // this node
		pod("n2", "192.0.2.12", false),
		pod("n4", "", false),             // not scheduled to a host yet
		pod("n5", "192.0.2.15", true),    // being deleted
		pod("n2", "192.0.2.12", false),   // a second pod on n2 (an update in flight)
		pod("n6", "2001:db8::16", false), // IPv6 host
	}
	got := podSeeds(pods, "n1", "7946")
	want := []string{"192.0.2.12:7946", "192.0.2.13:7946", "[2001:db8::16]:7946"}
	if !slices.Equal(got, want) {
		t.Fatalf("seeds %v, want %v", got, want)
	}
}

func TestKubeConfigValidate(t *testing.T) {
	cases := []struct {
		c    Config
		want string // "" valid
	}{
		{Config{}, ""},
		{Config{Peers: PeersConfig{Namespace: "garpd", Selector: "app.kubernetes.io/name=garpd"}}, ""},
		{Config{Peers: PeersConfig{Selector: "app=garpd"}}, "peers.namespace: required"},
		{Config{Peers: PeersConfig{Namespace: "garpd"}}, "peers.selector: required"},
		{Config{Peers: PeersConfig{Namespace: "garpd", Selector: "app=(garpd"}}, `peers.selector: "app=(garpd"`},
		{Config{Kubeconfig: "/nonexistent/kubeconfig"}, "kubeconfig:"},
	}
	for _, c := range cases {
		err := c.c.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v, want valid", c.c, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want %q", c.c, err, c.want)
		}
	}
}

// A Node is eligible unless an exclude label is set (any value) or its
// network is unavailable; cordon is not a signal.
func TestNodeEligibility(t *testing.T) {
	node := func(labels map[string]string, unschedulable bool, conds ...corev1.NodeCondition) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2", Labels: labels},
			Spec: corev1.NodeSpec{Unschedulable: unschedulable}, Status: corev1.NodeStatus{Conditions: conds}}
	}
	excl := Config{}.WithDefaults().ExcludeLabels
	for _, tc := range []struct {
		name string
		node *corev1.Node
		ok   bool
		why  string
	}{
		{"plain", node(nil, false), true, ""},
		{"cordoned", node(nil, true), true, ""},
		{"exclude label, empty value", node(map[string]string{ExcludeLabelDefault: ""}, false), false, "label " + ExcludeLabelDefault + " is set on Node n2"},
		{"exclude label, false", node(map[string]string{ExcludeLabelDefault: "false"}, false), false, "label " + ExcludeLabelDefault + " is set on Node n2"},
		{"other label", node(map[string]string{"node-role.kubernetes.io/ingress": ""}, false), true, ""},
		{"network unavailable", node(nil, false, corev1.NodeCondition{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue, Message: "CNI not ready"}),
			false, "condition NetworkUnavailable=True on Node n2: CNI not ready"},
		{"network available", node(nil, false, corev1.NodeCondition{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse}), true, ""},
		{"not ready kubelet", node(nil, false, corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionFalse}), true, ""},
	} {
		ok, why := NodeEligibility(tc.node, excl)
		if ok != tc.ok || why != tc.why {
			t.Errorf("%s: eligible %v (%q), want %v (%q)", tc.name, ok, why, tc.ok, tc.why)
		}
	}
	if ok, _ := NodeEligibility(node(map[string]string{"example.com/drain": ""}, false), []string{"example.com/drain"}); ok {
		t.Error("a configured exclude label does not exclude")
	}
}

// The kubernetes_pod check passes while one matching pod is Ready and not
// terminating, and otherwise says what it saw.
func TestPodsReady(t *testing.T) {
	pod := func(name string, ready, deleting bool) *corev1.Pod {
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
			Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}}}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{}
		}
		return p
	}
	for _, tc := range []struct {
		pods []*corev1.Pod
		want string // "" passes
	}{
		{nil, "no pod app=router in ingress on node n1"},
		{[]*corev1.Pod{pod("r1", true, false)}, ""},
		{[]*corev1.Pod{pod("r1", false, false)}, "no Ready pod app=router in ingress on node n1: r1 not Ready"},
		{[]*corev1.Pod{pod("r1", true, true), pod("r2", false, false)}, "no Ready pod app=router in ingress on node n1: r1 terminating, r2 not Ready"},
		{[]*corev1.Pod{pod("r1", true, true), pod("r2", true, false)}, ""},
	} {
		err := PodsReady(tc.pods, "app=router", "ingress", "n1")
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%d pods: %q, want %q", len(tc.pods), got, tc.want)
		}
	}
}

// The recorder drops an Event on any API status error: the API server's
// "not now" answers reach it as other errors, so it retries them.
func TestEventSinkRetriesTransientErrors(t *testing.T) {
	gr := schema.GroupResource{Resource: "events"}
	for _, tc := range []struct {
		err   error
		retry bool
	}{
		{apierrors.NewServiceUnavailable("starting"), true},
		{apierrors.NewInternalError(errors.New("etcd")), true},
		{apierrors.NewTooManyRequests("slow down", 1), true},
		{apierrors.NewForbidden(gr, "e", errors.New("RBAC not synced")), true},
		{apierrors.NewUnauthorized("not yet"), true},
		{apierrors.NewNotFound(gr, "e"), false},
		{apierrors.NewBadRequest("bad"), false},
		{apierrors.NewAlreadyExists(gr, "e"), false},
	} {
		got := retryable(tc.err)
		_, isStatus := got.(*apierrors.StatusError)
		if isStatus == tc.retry {
			t.Errorf("%v: passed on as %T; want retried %v", tc.err, got, tc.retry)
		}
		if !tc.retry && got != tc.err {
			t.Errorf("%v: changed to %v", tc.err, got)
		}
	}
	if retryable(nil) != nil {
		t.Error("nil became an error")
	}
}

// The agent reads its own Node and the Nodes of down members only, each by
// name; a down member whose Node is absent, or deleted later, is reported
// gone, once; an alive member's Node is never read.
func TestWatchesOnlyNamedNodes(t *testing.T) {
	node := func(name string) *corev1.Node { return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}} }
	client := fake.NewSimpleClientset(node("n1"), node("n2"), node("n4"))
	var mu sync.Mutex
	gone := map[string]int{}
	down := []string{"n2", "n3"} // n3 has no Node; n4 is alive
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	Start(ctx, fakeClient{client}, Config{}, "n1", zerolog.Nop(), Handlers{
		Down:        func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(down) },
		NodeDeleted: func(name string) { mu.Lock(); gone[name]++; mu.Unlock() },
	})
	wait := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			done := ok()
			mu.Unlock()
			if done {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: gone %v", what, gone)
			}
		}
	}
	wait("n3, down without a Node, reported gone", func() bool { return gone["n3"] == 1 })
	if err := client.CoreV1().Nodes().Delete(ctx, "n2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("n2 reported gone when its Node is deleted", func() bool { return gone["n2"] == 1 })
	time.Sleep(2 * downFollow)
	mu.Lock()
	if gone["n3"] != 1 || gone["n2"] != 1 || gone["n4"] != 0 {
		t.Errorf("gone %v, want n2 and n3 once each", gone)
	}
	mu.Unlock()
	named := map[string]bool{}
	for _, a := range client.Actions() {
		if a.GetResource().Resource != "nodes" || (a.GetVerb() != "list" && a.GetVerb() != "watch") {
			continue
		}
		var sel fields.Selector
		switch a := a.(type) {
		case k8stesting.ListAction:
			sel = a.GetListRestrictions().Fields
		case k8stesting.WatchAction:
			sel = a.GetWatchRestrictions().Fields
		}
		name, ok := sel.RequiresExactMatch("metadata.name")
		if !ok {
			t.Fatalf("%s nodes without a name: %v", a.GetVerb(), sel)
		}
		named[name] = true
	}
	if named["n4"] || !named["n1"] || !named["n2"] || !named["n3"] {
		t.Errorf("Nodes read: %v, want n1 (this node), n2 and n3 (down) only", named)
	}
}

// fakeClient is Client over client-go's fake clientset, which records
// every request.
type fakeClient struct{ cs *fake.Clientset }

func (f fakeClient) ListWatch(resource, namespace string, tweak func(*metav1.ListOptions)) cache.ListerWatcher {
	ctx := context.Background()
	return &cache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			if resource == "nodes" {
				return f.cs.CoreV1().Nodes().List(ctx, o)
			}
			return f.cs.CoreV1().Pods(namespace).List(ctx, o)
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			if resource == "nodes" {
				return f.cs.CoreV1().Nodes().Watch(ctx, o)
			}
			return f.cs.CoreV1().Pods(namespace).Watch(ctx, o)
		},
	}
}

func (f fakeClient) Events() record.EventSink {
	return &typedcorev1.EventSinkImpl{Interface: f.cs.CoreV1().Events("")}
}

func (f fakeClient) Version(context.Context) error { return nil }
