// Command kubectl is kubectl of the release in go.mod, built from the
// module proxy for garpd's deploy checks (server-side dry runs).
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
)

func main() {
	os.Exit(cli.Run(cmd.NewDefaultKubectlCommand()))
}
