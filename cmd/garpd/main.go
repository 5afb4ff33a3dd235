// Command garpd keeps a pool of virtual IPs balanced over the nodes of one L2
// segment: VRRP decides who holds each VIP, and the holder keeps the
// segment's ARP tables pointing at it.
//
// It is thin: it parses flags and the config file (config.go composes the
// packages' sections), starts the data plane (vrrp.Stacks) and, in the
// dynamic mode, the dynamic mode over it (balancer.Dynamic), handles
// signals and reloads over those two handles (agent.go), serves the HTTP
// API (api.go) and prints. The logic lives in the packages.
//
// Imports: balancer, gossip, gossip/kube, vrrp and vrrp/keepalived; nothing
// imports it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/garpd/garpd/vrrp"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitCode maps an error to the process exit status: 2 for bad input
// (config or flags), 1 for everything else.
func exitCode(err error) int {
	_, bad := errors.AsType[*configError](err)
	_, refused := errors.AsType[*vrrp.ConfigError](err)
	if bad || refused {
		return 2
	}
	return 1
}

// usageError marks a bad flag: the command exits 2 for it, as for a bad
// config.
func usageError(err error) error { return &configError{err} }

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "garpd",
		Short: "Rolling-periodic GARP balancer and VIP distributor",
		Long: `garpd spreads a pool of virtual IPs evenly over the router or ingress
nodes of one L2 segment. VRRP (wire-compatible with keepalived) decides who
holds each VIP; the holder announces it with gratuitous ARP / unsolicited
neighbour advertisements so the upstream router follows.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	root.AddCommand(newAgentCmd(), newPlanCmd(), newAnnounceCmd(), newAuditCmd(), newScanCmd(), newStatusCmd(), newForgetCmd(), newImportCmd(), newRenderCmd(), newVersionCmd())
	return root
}

// printJSON writes v as indented JSON, the --json output of every command.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the garpd version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "garpd %s\n", version)
		},
	}
}

func main() {
	// Failover is measured in milliseconds, so logs carry them.
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	err := newRootCmd().ExecuteContext(context.Background())
	if err != nil {
		fmt.Fprintf(os.Stderr, "garpd: %v\n", err)
		os.Exit(exitCode(err))
	}
}
