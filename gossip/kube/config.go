package kube

import (
	"errors"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/clientcmd"
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
