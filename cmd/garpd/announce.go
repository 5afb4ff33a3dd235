package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/garpd/garpd/vrrp"
)

func newAnnounceCmd() *cobra.Command {
	var iface, configPath, agentURL, mode string
	var vips []string
	var count int
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "announce (--interface IF [--vips A,B] | --agent URL [--vips A,B])",
		Short: "Re-announce VIPs with gratuitous ARP / unsolicited NA now",
		Long: `Make the segment's ARP and neighbour tables point at this node for its VIPs.

Alone (no agent): announces the given VIPs, or every VIP of the config file
that is currently configured on the interface, --count times --interval
apart, then exits. It is the drop-in for an "arping -c 4 -A" cron job and
runs from a Kubernetes CronJob on the host network. It exits 1 when a VIP
is not on the interface (the others are still announced).

With --agent: asks the running agent for an announcement wave, which obeys
the agent's garp.max_rate.`,
		Example: `  garpd announce --interface eth0 --vips 192.0.2.101,192.0.2.102
  garpd announce --interface eth0 --config /etc/garpd/garpd.yaml
  garpd announce --agent unix:/run/garpd/control.sock
  garpd announce --agent config -c /etc/garpd/garpd.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			addrs, err := vrrp.ParseAddrs(vips)
			if err != nil {
				return usageError(fmt.Errorf("--vips%w", err))
			}
			out := cmd.OutOrStdout()
			if agentURL != "" {
				target := agentTarget{agent: agentURL}
				if cmd.Flags().Changed("config") || agentURL == "config" {
					target.config = configPath
				}
				return askWave(cmd.Context(), out, target, vips)
			}
			if count < 1 || count > 100 {
				return usageError(fmt.Errorf("--count %d: use 1..100", count))
			}
			if interval < 10*time.Millisecond {
				return usageError(fmt.Errorf("--interval %s: use at least 10ms (more than 1s passes the ARP lock time)", interval))
			}
			m, err := vrrp.ParseAnnounceMode(mode)
			if err != nil {
				return usageError(fmt.Errorf("--mode %w", err))
			}
			ifaces := []string{iface}
			if len(addrs) == 0 || iface == "" {
				l, err := loadConfig(configPath)
				if err != nil {
					return fmt.Errorf("no --vips/--interface given, so reading them from the config: %w", err)
				}
				if iface == "" {
					ifaces = l.interfaces()
				}
				if len(addrs) == 0 {
					for _, v := range l.cfg.VIPs {
						addrs = append(addrs, v.Prefix.Addr())
					}
				}
			}
			return announceAlone(cmd.Context(), out, ifaces, addrs, len(vips) > 0, count, interval, m)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&iface, "interface", "i", "", "interface to announce on (default: the config's, and those its VIPs name)")
	f.StringSliceVar(&vips, "vips", nil, "VIPs to announce (default: the config's VIPs that are on the interface)")
	f.StringVarP(&configPath, "config", "c", "/etc/garpd/garpd.yaml", "config to take the interface and VIPs from")
	f.IntVar(&count, "count", 3, "announcements per VIP")
	f.DurationVar(&interval, "interval", 1100*time.Millisecond, "time between announcements (past the 1s ARP lock time)")
	f.StringVar(&mode, "mode", "both", "gratuitous ARP kind: request, reply or both")
	f.StringVar(&agentURL, "agent", "", "ask the running agent for a wave instead: its control.listen (HOST:PORT, URL or unix:PATH), or \"config\" for the --config's")
	return cmd
}

// vipHolders finds which of vips are configured on ifaces or on one of
// their virtual MAC interfaces, and where.
func vipHolders(ifaces []string, vips []netip.Addr) (map[netip.Addr]string, error) {
	var names []string
	for _, iface := range ifaces {
		vmacs, err := vrrp.VirtualMACInterfaces(iface)
		if err != nil {
			return nil, err
		}
		names = append(append(names, iface), vmacs...)
	}
	out := map[netip.Addr]string{}
	for _, name := range names {
		addrs, err := vrrp.NewNetlinkAddresses(name)
		if err != nil {
			return nil, err
		}
		for _, v := range vips {
			if _, done := out[v]; done {
				continue
			}
			has, err := addrs.HasVIP(v)
			if err != nil {
				return nil, err
			}
			if has {
				out[v] = name
			}
		}
	}
	return out, nil
}

// announceAlone announces the VIPs present on the interfaces, or on one
// of their virtual MAC interfaces (use_vmac), from the interface that
// holds each. explicit says the operator named the VIPs: then a missing one is
// an error; VIPs taken from the config are only skipped, since a backup
// node holds none.
func announceAlone(ctx context.Context, out io.Writer, ifaces []string, vips []netip.Addr, explicit bool, count int, interval time.Duration, mode vrrp.AnnounceMode) error {
	iface := strings.Join(ifaces, ", ")
	holders, err := vipHolders(ifaces, vips)
	if err != nil {
		return err
	}
	var missing []netip.Addr
	present := map[string][]netip.Addr{} // holding interface → VIPs
	var order []string
	for _, v := range vips {
		h, ok := holders[v]
		if !ok {
			missing = append(missing, v)
			continue
		}
		if present[h] == nil {
			order = append(order, h)
		}
		present[h] = append(present[h], v)
	}
	for _, v := range missing {
		fmt.Fprintf(out, "%s: not configured on %s, not announced\n", v, iface)
	}
	senders := map[string]*vrrp.LinuxAnnouncer{}
	defer func() {
		for _, s := range senders {
			s.Close()
		}
	}()
	for _, h := range order {
		s, err := vrrp.NewLinuxAnnouncer(h, mode)
		if err != nil {
			return err
		}
		senders[h] = s
	}
	for i := range count {
		if len(order) == 0 {
			break
		}
		if i > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(interval):
			}
		}
		for _, h := range order {
			for _, v := range present[h] {
				n, err := senders[h].Send(v, vrrp.PartAll)
				if err != nil {
					return err
				}
				kind := "gratuitous ARP"
				if v.Is6() {
					kind = "unsolicited NA"
				}
				fmt.Fprintf(out, "%s: %s %d/%d sent on %s (%d packets)\n", v, kind, i+1, count, h, n)
			}
		}
	}
	if explicit && len(missing) > 0 {
		return fmt.Errorf("%d of %d VIPs are not on %s", len(missing), len(vips), iface)
	}
	if len(present) == 0 {
		fmt.Fprintf(out, "no VIP of the config is on %s: nothing to announce (this node is master for none)\n", iface)
	}
	return nil
}

// askWave asks the agent at target for a wave over vips (all it holds when
// empty) and prints what it queued and what it does not hold.
func askWave(ctx context.Context, out io.Writer, target agentTarget, vips []string) error {
	b, err := target.call(ctx, http.MethodPost, "/announce", "for a wave", announceRequest{VIPs: vips})
	if err != nil {
		return err
	}
	var r announceResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("decode the agent's answer: %w", err)
	}
	fmt.Fprintf(out, "wave started: %d VIPs queued: %s\n", len(r.Queued), strings.Join(r.Queued, ", "))
	if len(r.NotHeld) > 0 {
		fmt.Fprintf(out, "not held by this agent, not announced: %s\n", strings.Join(r.NotHeld, ", "))
		return errors.New("some VIPs are not held by this agent")
	}
	return nil
}
