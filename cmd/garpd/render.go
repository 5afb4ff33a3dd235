package main

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/garpd/garpd/balancer"
	"github.com/garpd/garpd/vrrp"
)

func newRenderCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "render",
		Short: "Express a garpd config in another tool's configuration",
	}
	cmd.AddCommand(newRenderKeepalivedCmd())
	return cmd
}

func newRenderKeepalivedCmd() *cobra.Command {
	var config, nodes, outDir string
	cmd := &cobra.Command{
		Use:   "keepalived --config FILE [--nodes A,B,C] [--out DIR]",
		Short: "Print each node's keepalived.conf for a garpd config",
		Long: `Print the keepalived.conf that runs the same virtual routers as a garpd
config: the same instances (one per VRID), VIPs, priorities, adverts,
version, authentication, peers, preemption and gratuitous ARP settings,
for hosts that keep keepalived beside garpd nodes.

A static-mode config renders its own node. A dynamic-mode config has no
priorities of its own: --nodes fixes the membership, and each node gets the
priorities garpd's plan over those nodes gives it (as garpd plan shows),
so keepalived and garpd nodes of the same plan agree on every master.
Several nodes print one after another (--- between them), or go to
DIR/NODE.conf with --out. keepalived -t -f FILE accepts every file.`,
		Example: `  garpd render keepalived --config /etc/garpd/garpd.yaml
  garpd render keepalived --config garpd.yaml --nodes n1,n2,n3 --out /tmp/keepalived`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if config == "" {
				return usageError(errors.New("--config is required: the garpd config to render"))
			}
			l, err := loadConfig(config)
			if err != nil {
				return err
			}
			var names []string
			if nodes != "" {
				names = strings.Split(nodes, ",")
			}
			out, err := renderKeepalived(l, config, names)
			if err != nil {
				return err
			}
			return writeNodeFiles(cmd.OutOrStdout(), cmd.ErrOrStderr(), outDir, ".conf", out)
		},
	}
	cmd.Flags().StringVarP(&config, "config", "c", "", "the garpd config")
	cmd.Flags().StringVar(&nodes, "nodes", "", "dynamic mode: the members to plan over, comma-separated (the config's node among them)")
	cmd.Flags().StringVar(&outDir, "out", "", "write DIR/NODE.conf per node instead of printing them")
	return cmd
}

// secondsText writes d as keepalived's seconds: 1, 0.1, 1.1.
func secondsText(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// renderKeepalived writes the keepalived.conf of each node: the config's
// own in static mode, each of names in dynamic mode.
func renderKeepalived(l *loaded, path string, names []string) ([]nodeFile, error) {
	c := l.cfg
	peers, _ := c.VRRP.Peers() // validated with the config
	prio := map[string][]int{} // node → priority per router, in l.routers' order
	switch {
	case !l.dynamic():
		if len(names) > 0 {
			return nil, usageError(errors.New("--nodes is for dynamic-mode configs; a static config renders its own node, with its priorities"))
		}
		for _, r := range l.routers {
			prio[c.Node] = append(prio[c.Node], int(r.Priority))
		}
		names = []string{c.Node}
	case len(names) == 0:
		return nil, usageError(errors.New("--nodes: a dynamic-mode config has no priorities until the membership is fixed: name the members, e.g. --nodes n1,n2,n3"))
	default:
		var nodes []balancer.Node
		for _, n := range names {
			if n == "" {
				return nil, usageError(fmt.Errorf("--nodes %q: an empty node name", strings.Join(names, ",")))
			}
			nodes = append(nodes, balancer.Node{Name: n, Weight: 1})
		}
		plan, err := balancer.Rank(nodes, l.alloc.Groups)
		if err != nil {
			return nil, usageError(fmt.Errorf("--nodes: %w", err))
		}
		for _, r := range l.routers {
			var ranked balancer.Ranked
			found := false
			for i, g := range l.alloc.Groups {
				if g.V6 == r.V6() && g.VRID == int(r.VRID) {
					ranked, found = plan.Groups[i], true
				}
			}
			if !found {
				return nil, fmt.Errorf("router %d has no group in the plan (a bug)", r.VRID)
			}
			p := ranked.Priorities()
			for _, n := range names {
				prio[n] = append(prio[n], p[n])
			}
		}
	}
	if c.VRRP.UnicastAuto() {
		return nil, errors.New("vrrp.unicast_peers: auto takes the peers from gossip, which keepalived has not: list the peers' addresses to render")
	}
	var out []nodeFile
	for _, node := range names {
		var b strings.Builder
		mode := "static mode"
		if l.dynamic() {
			mode = "dynamic mode, planned over " + strings.Join(names, ", ")
		}
		fmt.Fprintf(&b, "# keepalived.conf for %s, rendered by garpd render keepalived from %s (%s).\n", node, filepath.Base(path), mode)
		fmt.Fprintf(&b, "# garpd's rolling refresh is rendered as keepalived's periodic one; garp.max_rate has no keepalived counterpart.\n")
		fmt.Fprintf(&b, "global_defs {\n    router_id %s\n    vrrp_version %d\n", node, c.VRRP.Version)
		fmt.Fprintf(&b, "    vrrp_garp_master_repeat %d\n", c.GARP.Count)
		fmt.Fprintf(&b, "    vrrp_garp_interval %s\n", secondsText(c.GARP.Interval))
		if c.GARP.Refresh > 0 && c.GARP.Schedule == "" {
			fmt.Fprintf(&b, "    vrrp_garp_master_refresh %d\n", max(1, int(c.GARP.Refresh.Round(time.Second)/time.Second)))
		}
		b.WriteString("}\n")
		for i, r := range l.routers {
			family := "ipv4"
			if r.V6() {
				family = "ipv6"
			}
			fmt.Fprintf(&b, "\nvrrp_instance garpd_%s_%d {\n    state BACKUP\n    interface %s\n    virtual_router_id %d\n    priority %d\n    advert_int %s\n",
				family, r.VRID, c.Interface, r.VRID, prio[node][i], secondsText(c.VRRP.AdvertInterval))
			if r.V6() && c.VRRP.Version == 2 {
				b.WriteString("    version 3\n")
			}
			if c.VRRP.Preempt != nil && !*c.VRRP.Preempt {
				b.WriteString("    nopreempt\n")
			} else if c.VRRP.PreemptDelay > 0 {
				fmt.Fprintf(&b, "    preempt_delay %s\n", secondsText(c.VRRP.PreemptDelay))
			}
			if c.VRRP.UseVMAC {
				// Named as garpd names it, so the two never differ on a node.
				fmt.Fprintf(&b, "    use_vmac %s\n", vrrp.VMACName(r.VRID, r.V6()))
				if c.VRRP.VMACXmitBase {
					b.WriteString("    vmac_xmit_base\n")
				}
			}
			if c.VRRP.AuthPass != "" && c.VRRP.Version == 2 && !r.V6() {
				fmt.Fprintf(&b, "    authentication {\n        auth_type PASS\n        auth_pass %s\n    }\n", c.VRRP.AuthPass)
			}
			var peerLines []string
			for _, p := range peers {
				if p.Is6() == r.V6() {
					peerLines = append(peerLines, "        "+p.String())
				}
			}
			if len(peerLines) > 0 {
				fmt.Fprintf(&b, "    unicast_peer {\n%s\n    }\n", strings.Join(peerLines, "\n"))
			}
			b.WriteString("    virtual_ipaddress {\n")
			for _, v := range r.VIPs {
				fmt.Fprintf(&b, "        %s dev %s\n", v, c.Interface)
			}
			b.WriteString("    }\n}\n")
		}
		out = append(out, nodeFile{node: node, from: path, data: []byte(b.String())})
	}
	return out, nil
}
