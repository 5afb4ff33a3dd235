// Command kubelet is the kubelet of the release in go.mod, built from the
// module proxy for garpd's lab tests that run its image for real: a
// standalone kubelet for the static pod, a registered Node for the chart.
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	os.Exit(cli.Run(app.NewKubeletCommand(context.Background())))
}
