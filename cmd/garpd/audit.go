package main

import (
	"fmt"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/garpd/garpd/vrrp"
)

func newAuditCmd() *cobra.Command {
	var iface string
	var vips, expect []string
	var timeout time.Duration
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "audit --interface IF --vips A,B,... [--expect A=MAC,...] [--timeout 1s] [--json]",
		Short: "Ask the segment who answers for each VIP: ok, none, duplicate or unexpected",
		Long: `Send an ARP request (IPv6: a neighbour solicitation) for each VIP and list
every MAC that answers. Per VIP: ok (one MAC, the expected one if given),
none (nobody answers), duplicate (more than one MAC: split brain) or
unexpected (not the expected MAC). Run it from any host on the segment;
the host it runs on does not answer its own probes.

Exit code 0 only when every VIP is ok; 1 otherwise; 2 on bad input.`,
		Example: `  garpd audit --interface eth0 --vips 192.0.2.101,192.0.2.102
  garpd audit -i eth0 --vips 192.0.2.101 --expect 192.0.2.101=02:00:00:00:00:01 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if iface == "" {
				return usageError(fmt.Errorf("--interface is required"))
			}
			addrs, err := vrrp.ParseAddrs(vips)
			if err != nil {
				return usageError(fmt.Errorf("--vips%w", err))
			}
			if len(addrs) == 0 {
				return usageError(fmt.Errorf("--vips is required"))
			}
			exp := map[netip.Addr]string{}
			for _, kv := range expect {
				k, v, ok := strings.Cut(kv, "=")
				a, err := netip.ParseAddr(k)
				if !ok || err != nil {
					return usageError(fmt.Errorf("--expect %q: want VIP=MAC", kv))
				}
				exp[a] = v
			}
			if timeout <= 0 || timeout > time.Minute {
				return usageError(fmt.Errorf("--timeout %s: use more than 0 and at most 1m", timeout))
			}
			res, err := vrrp.Audit(cmd.Context(), iface, addrs, exp, timeout)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if err := printJSON(out, map[string]any{"results": res}); err != nil {
					return err
				}
			} else {
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "VIP\tSTATUS\tANSWERED BY")
				for _, r := range res {
					by := strings.Join(r.MACs, ", ")
					if r.Expected != "" {
						by += " (expected " + r.Expected + ")"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", r.VIP, r.Status, by)
				}
				tw.Flush()
			}
			bad := 0
			for _, r := range res {
				if r.Status != vrrp.AuditOK {
					bad++
				}
			}
			if bad > 0 {
				return fmt.Errorf("%d of %d VIPs are not ok", bad, len(res))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&iface, "interface", "i", "", "interface on the VIPs' segment")
	f.StringSliceVar(&vips, "vips", nil, "VIPs to check")
	f.StringSliceVar(&expect, "expect", nil, "VIP=MAC pairs: the MAC that should answer")
	f.DurationVar(&timeout, "timeout", time.Second, "how long to collect answers")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
