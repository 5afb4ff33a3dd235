package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

func newStatusCmd() *cobra.Command {
	var agentURL string
	var asJSON, metrics bool
	cmd := &cobra.Command{
		Use:   "status [--agent URL] [--json] [--metrics]",
		Short: "Show a running agent's virtual routers (or its metrics)",
		Long: `Ask a running garpd agent for its state: every virtual router with its
VIPs, VRRP state, priority and the master it follows. --metrics prints the
agent's Prometheus metrics instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			base := strings.TrimRight(agentURL, "/")
			path := "/status"
			if metrics {
				path = "/metrics"
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
			if err != nil {
				return usageError(fmt.Errorf("--agent %q: %w", agentURL, err))
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("ask the agent at %s (is garpd agent running, and is http.listen this address?): %w", base, err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return fmt.Errorf("read the agent's answer: %w", err)
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("agent at %s answered %s", base, resp.Status)
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
				fmt.Fprintln(tw, "MEMBER\tADDRESS\tSTATE\tFAILING CHECKS\tDIGEST")
				for _, m := range d.Members {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Name, m.Addr, m.State, strings.Join(m.Failing, ","), m.Digest)
				}
				tw.Flush()
				for _, h := range d.Health {
					fmt.Fprintf(out, "check %s: passing=%v %s\n", h.Name, h.Passing, h.LastError)
				}
				fmt.Fprintln(out)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "FAMILY\tVRID\tVIPS\tSTATE\tPRIORITY\tMASTER\tSINCE")
			for _, r := range st.Routers {
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s (%d)\t%s\n", r.Family, r.VRID, strings.Join(r.VIPs, ","),
					r.State, r.Priority, r.Master, r.MasterPriority, r.Since.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&agentURL, "agent", "http://127.0.0.1:9496", "the agent's HTTP address (its http.listen)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the agent's JSON status as is")
	cmd.Flags().BoolVar(&metrics, "metrics", false, "print the agent's Prometheus metrics")
	return cmd
}
