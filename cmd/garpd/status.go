package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newStatusCmd() *cobra.Command {
	var target agentTarget
	var asJSON, metrics bool
	cmd := &cobra.Command{
		Use:   "status [--agent ADDR | -c FILE] [--json] [--metrics]",
		Short: "Show a running agent's known members, VIP rankings and virtual routers (or its metrics)",
		Long: `Ask a running garpd agent for its state. In the dynamic mode: every
known member with its state (ranked, settling, down since, unhealthy,
config_mismatch), and per VIP its ranking and the holder VRRP elects from
it. Then every virtual router with its VIPs, VRRP state, priority and the
master it follows. --metrics prints the agent's Prometheus metrics instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/status"
			if metrics {
				path = "/metrics"
			}
			body, err := target.call(cmd.Context(), http.MethodGet, path, "for its "+path[1:], nil)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if metrics || asJSON {
				_, err := out.Write(body)
				return err
			}
			var st statusJSON
			if err := json.Unmarshal(body, &st); err != nil {
				return fmt.Errorf("decode the agent's status: %w", err)
			}
			fmt.Fprintf(out, "node %s on %s, garpd %s, up %s, %s mode\n\n", st.Node, st.Interface, st.Version, st.Uptime, st.Mode)
			if d := st.Dynamic; d != nil {
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KNOWN MEMBER\tADDRESS\tSTATE\tDOWN SINCE\tFAILING CHECKS\tDIGEST")
				for _, m := range d.Members {
					failing := m.Failing
					if m.Excluded != "" {
						failing = append(failing, "excluded ("+m.Excluded+")")
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Addr, m.State, m.DownSince, strings.Join(failing, ","), m.Digest)
				}
				tw.Flush()
				for _, m := range d.Members {
					if m.HoldReason != "" {
						fmt.Fprintf(out, "member %s %s\n", m.Name, m.HoldReason)
					}
				}
				fmt.Fprintln(out)
				tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "VIPS\tVRID\tHOLDER\tRANKING\tOUR PRIORITY")
				for _, v := range d.VIPs {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\n", strings.Join(v.VIPs, ","), v.VRID, v.Holder, strings.Join(v.Ranking, " > "), v.Priority)
				}
				tw.Flush()
				if d.PlanDigest != "" {
					fmt.Fprintf(out, "plan %s (the same on every node that agrees)\n", d.PlanDigest)
				}
				for _, h := range d.Health {
					fmt.Fprintf(out, "check %s: passing=%v %s\n", h.Name, h.Passing, h.LastError)
				}
				if k := d.Kubernetes; k != nil {
					elig := "eligible"
					if !k.Eligible {
						elig = "not eligible: " + k.Why
					} else if k.Why != "" {
						elig += " (" + k.Why + ")"
					}
					fmt.Fprintf(out, "kubernetes: Node %s %s; API %s\n", k.Node, elig, k.API)
					if k.APIError != "" {
						fmt.Fprintf(out, "kubernetes: watches failing since %s: %s\n", k.APIErrorSince.Format(time.RFC3339), k.APIError)
					}
				}
				fmt.Fprintln(out)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "INTERFACE\tFAMILY\tVRID\tVIPS\tSTATE\tPRIORITY\tMASTER\tSINCE")
			for _, r := range st.Routers {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%s (%d)\t%s\n", r.Interface, r.Family, r.VRID, strings.Join(r.VIPs, ","),
					r.State, r.Priority, r.Master, r.MasterPriority, r.Since.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	target.flags(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the agent's JSON status as is")
	cmd.Flags().BoolVar(&metrics, "metrics", false, "print the agent's Prometheus metrics")
	return cmd
}

func newForgetCmd() *cobra.Command {
	var target agentTarget
	cmd := &cobra.Command{
		Use:   "forget NODE [--agent ADDR | -c FILE]",
		Short: "Forget a known member that is down: every node re-plans without it",
		Long: `A member that crashes, fails its checks or leaves stays known, as down:
its VIPs wait on their rank-1 backups and nothing else moves. Once it is gone
for good (decommissioned, renamed), forget it: the cluster re-plans over the
remaining members, which moves some VIPs of live nodes so that all are even
again. The cluster does this by itself after gossip.forget_after.

The agent refuses to forget a member that is alive.`,
		Example: "  garpd forget n4\n  garpd forget n4 -c /etc/garpd/garpd.yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			answer, err := target.call(cmd.Context(), http.MethodPost, "/forget", "to forget "+args[0], forgetRequest{Node: args[0]})
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(answer)
			return err
		},
	}
	target.flags(cmd)
	return cmd
}
