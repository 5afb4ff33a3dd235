package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/garpd/garpd/vrrp"
)

func newScanCmd() *cobra.Command {
	var iface string
	var duration time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "scan --interface IF [--duration 3s] [--json]",
		Short: "List every VRRP router heard on the segment, to pick free VRIDs",
		Long: `Listen for VRRP adverts (multicast 224.0.0.18 and ff02::12) on the
interface and list every virtual router heard: family, VRID, version,
source, priority, interval and VIPs. Use it before choosing vrid_base, or
when the agent logs a VRID collision. Unicast VRRP between other hosts is
not visible from here.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if iface == "" {
				return usageError(fmt.Errorf("--interface is required"))
			}
			if duration <= 0 || duration > 10*time.Minute {
				return usageError(fmt.Errorf("--duration %s: use more than 0 and at most 10m", duration))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "listening on %s for %s (Ctrl-C ends it early)...\n", iface, duration)
			// Ctrl-C or SIGTERM ends the scan early; what was heard is listed.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			heard, err := vrrp.Scan(ctx, iface, duration)
			if err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, map[string]any{"routers": heard})
			}
			if len(heard) == 0 {
				fmt.Fprintln(out, "no VRRP adverts heard")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FAMILY\tVRID\tVERSION\tSOURCE\tPRIORITY\tINTERVAL\tADVERTS\tVIPS")
			for _, h := range heard {
				fmt.Fprintf(tw, "%s\t%d\tv%d\t%s\t%d\t%s\t%d\t%s\n", h.Family, h.VRID, h.Version, h.Source,
					h.Priority, h.Interval, h.Adverts, strings.Join(h.VIPs, ","))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&iface, "interface", "i", "", "interface on the segment")
	cmd.Flags().DurationVar(&duration, "duration", 3*time.Second, "how long to listen")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
