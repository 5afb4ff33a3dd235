package gossip

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
		c    KubeConfig
		want string // "" valid
	}{
		{KubeConfig{}, ""},
		{KubeConfig{Peers: KubePeers{Namespace: "garpd", Selector: "app.kubernetes.io/name=garpd"}}, ""},
		{KubeConfig{Peers: KubePeers{Selector: "app=garpd"}}, "peers.namespace: required"},
		{KubeConfig{Peers: KubePeers{Namespace: "garpd"}}, "peers.selector: required"},
		{KubeConfig{Peers: KubePeers{Namespace: "garpd", Selector: "app=(garpd"}}, `peers.selector: "app=(garpd"`},
		{KubeConfig{Kubeconfig: "/nonexistent/kubeconfig"}, "kubeconfig:"},
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
