package kube

import (
	"errors"
	"net/http"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
)

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
