// Package kube is garpd's view of the Kubernetes API, kept apart so that
// gossip proper does not link client-go. One file per thing it watches:
// the peers from the pods of garpd's DaemonSet and pod readiness for
// kubernetes_pod checks (pods.go), this Node's eligibility and deleted
// Nodes (nodes.go), the Events recorder (events.go), the API client
// (client.go), the `kubernetes:` section (config.go), and the watch that
// starts them and reports their status (watch.go).
// Kubernetes feeds facts; it never gates holding a VIP. It speaks to the
// API through Client, a REST client over core/v1 alone, so the agent
// links one of the API's groups, not client-go's whole scheme.
//
// Imports: none of garpd's packages; its types satisfy gossip's seams
// (Discoverer, PodProber) by shape. balancer imports it.
package kube
