// Command kube-scheduler is the scheduler of the release in go.mod, built
// for garpd's lab cluster: it binds the announce CronJob's pods (a
// DaemonSet's pods it binds too, since DaemonSets use the scheduler).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	os.Exit(cli.Run(app.NewSchedulerCommand()))
}
