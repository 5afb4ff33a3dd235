// Command kube-apiserver is the Kubernetes API server of the release in
// go.mod, built from the module proxy for garpd's Kubernetes lab tests:
// Debian packages etcd but not the API server.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
