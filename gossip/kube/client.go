package kube

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
)

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
