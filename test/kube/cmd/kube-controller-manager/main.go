// Command kube-controller-manager is the controller manager of the release
// in go.mod, built for garpd's lab cluster: its DaemonSet, Job and
// CronJob controllers run the chart's workloads.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
)

func main() {
	os.Exit(cli.Run(app.NewControllerManagerCommand()))
}
