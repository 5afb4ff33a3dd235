package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/garpd/garpd/balancer"
	"github.com/garpd/garpd/vrrp"
)

func newPlanCmd() *cobra.Command {
	var nodesFlag, vipsFlag, rangesFlag []string
	var vridBase, vridMax int
	var fail string
	var downFlag, preferFlag []string
	var asJSON bool
	var configPath string
	cmd := &cobra.Command{
		Use:   "plan --nodes N1,N2,... (--vips A,B,... [--vip-range FIRST-LAST] | -c FILE) [--down X,Y] [--fail NODE] [--json]",
		Short: "Show the balanced ranking of nodes for every VIP, and who holds it while members are down",
		Long: `Compute, without any network, the ranking every garpd node derives from
the same known member set: for each VIP its VRID, owner, backup order and
the VRRP priority of every node, and how many VIPs each node owns.

Members that are down stay in the ranking; VRRP skips them. --down X,Y
marks known members as down: the ranking does not change, and each VIP's
holder is the first node of its ranking that is up (what VRRP elects).

--fail NODE is the readable what-if: which node VRRP hands each of NODE's
VIPs to, and what every node holds then. Nothing else moves.

A VIP may pin its VRID as ADDR@VRID. --prefer ADDR=NODE makes NODE the
VIP's owner (the config's prefer:); the plan then says what the preferences
cost in balance. Exit code 2 on bad input.`,
		Example: `  garpd plan --nodes n1,n2,n3 --vips 192.0.2.101,192.0.2.102,192.0.2.103
  garpd plan --nodes n1,n2,n3 --vip-range 192.0.2.101-192.0.2.200 --fail n2
  garpd plan --nodes n1,n2,n3,n4 --vip-range 192.0.2.101-192.0.2.112 --down n2,n4 --json
  garpd plan --nodes n1,n2 --vips 192.0.2.101@51 --json
  garpd plan --nodes n1,n2,n3 --vips 192.0.2.101,192.0.2.102,192.0.2.103 --prefer 192.0.2.101=n2
  garpd plan --nodes n1,n2,n3 -c /etc/garpd/garpd.yaml --fail n2`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nodes, err := parseNodes(nodesFlag)
			if err != nil {
				return usageError(err)
			}
			alloc, prefers, err := planAllocation(configPath, vipsFlag, rangesFlag, preferFlag, nodes, vridBase, vridMax)
			if err != nil {
				return err
			}
			plan, err := balancer.Rank(nodes, alloc.Groups)
			if err != nil {
				return usageError(err)
			}
			down, err := plan.Down(downFlag)
			if err != nil {
				return usageError(fmt.Errorf("--down: %w", err))
			}
			if fail != "" {
				if _, err := plan.Down([]string{fail}); err != nil {
					return usageError(fmt.Errorf("--fail: %w", err))
				}
				if down[fail] {
					return usageError(fmt.Errorf("--fail %q: it is already --down", fail))
				}
			}
			out := planOutput(plan, alloc, down, fail)
			if prefers {
				with, without, err := balancer.PreferenceCost(nodes, alloc.Groups)
				if err != nil {
					return usageError(err)
				}
				out.Preferences = &planCost{Spread: with, SpreadWithout: without}
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), out)
			}
			return printPlan(cmd.OutOrStdout(), out)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&nodesFlag, "nodes", nil, "member nodes, comma separated (required)")
	f.StringSliceVar(&vipsFlag, "vips", nil, "VIPs: ADDR, ADDR/PREFIX, or ADDR@VRID to pin a VRID")
	f.StringSliceVar(&rangesFlag, "vip-range", nil, "an inclusive range of VIPs, FIRST-LAST (repeatable)")
	f.IntVar(&vridBase, "vrid-base", 10, "first VRID to allocate; VIP i gets vrid-base+i")
	f.IntVar(&vridMax, "vrid-max", 255, "last VRID to allocate; more VIPs than free VRIDs share them as groups")
	f.StringVar(&fail, "fail", "", "show what happens when this node goes down as well")
	f.StringSliceVar(&downFlag, "down", nil, "known members that are down: the ranking stays, holders skip them")
	f.StringSliceVar(&preferFlag, "prefer", nil, "ADDR=NODE: the node that should own a VIP (repeatable)")
	f.StringVarP(&configPath, "config", "c", "", "plan the VIPs of this config (their VRIDs and preferences) over --nodes")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// planAllocation is the VIPs to plan, from the config or from the
// flags, and whether any has a preferred owner.
func planAllocation(configPath string, vipsFlag, rangesFlag, preferFlag []string, nodes []string, vridBase, vridMax int) (balancer.Allocation, bool, error) {
	if configPath == "" {
		vips, err := parsePlanVIPs(vipsFlag, rangesFlag)
		if err != nil {
			return balancer.Allocation{}, false, usageError(err)
		}
		if err := applyPreferences(vips, preferFlag, nodes); err != nil {
			return balancer.Allocation{}, false, usageError(err)
		}
		alloc, err := balancer.AssignVRIDs(vips, vridBase, vridMax)
		if err != nil {
			return balancer.Allocation{}, false, usageError(err)
		}
		return alloc, len(preferFlag) > 0, nil
	}
	if len(vipsFlag)+len(rangesFlag)+len(preferFlag) > 0 {
		return balancer.Allocation{}, false, usageError(errors.New("--config plans the config's VIPs (with their vrid and prefer): leave --vips, --vip-range and --prefer out"))
	}
	l, err := loadConfig(configPath)
	if err != nil {
		return balancer.Allocation{}, false, err
	}
	if !l.dynamic() {
		return balancer.Allocation{}, false, usageError(fmt.Errorf("--config %s: a static config (priorities:) keeps its own priorities, which no plan changes: garpd agent --check -c %s prints them", configPath, configPath))
	}
	prefers := slices.ContainsFunc(l.alloc.Groups, func(g balancer.Group) bool { return g.Prefer != "" })
	return l.alloc, prefers, nil
}

// applyPreferences sets each --prefer ADDR=NODE on its VIP.
func applyPreferences(vips []balancer.VIP, prefer []string, nodes []string) error {
	for _, kv := range prefer {
		addr, node, ok := strings.Cut(kv, "=")
		a, err := netip.ParseAddr(strings.TrimSpace(addr))
		if !ok || err != nil {
			return fmt.Errorf("--prefer %q: want ADDR=NODE", kv)
		}
		if !slices.Contains(nodes, node) {
			return fmt.Errorf("--prefer %q: %q is not in --nodes", kv, node)
		}
		i := slices.IndexFunc(vips, func(v balancer.VIP) bool { return v.Prefix.Addr() == a })
		if i < 0 {
			return fmt.Errorf("--prefer %q: %s is not one of the VIPs", kv, a)
		}
		vips[i].Prefer = node
	}
	return nil
}

// planCost is what the preferences cost: the spread of VIPs owned with
// them and without.
type planCost struct {
	Spread        int `json:"spread"`
	SpreadWithout int `json:"spread_without"`
}

func parseNodes(names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("--nodes is empty: name at least one node, e.g. --nodes n1,n2,n3")
	}
	nodes := make([]string, len(names))
	for i, n := range names {
		nodes[i] = strings.TrimSpace(n)
	}
	if err := balancer.CheckNodes(nodes); err != nil {
		return nil, fmt.Errorf("--nodes: %w", err)
	}
	return nodes, nil
}

func parsePlanVIPs(list, ranges []string) ([]balancer.VIP, error) {
	var vips []balancer.VIP
	for _, s := range list {
		addr, vrid, pinned := strings.Cut(s, "@")
		p, err := vrrp.ParseVIP(addr)
		if err != nil {
			return nil, fmt.Errorf("--vips: %w", err)
		}
		v := balancer.VIP{Prefix: p}
		if pinned {
			n, err := strconv.Atoi(vrid)
			if err != nil || n < 1 || n > 255 {
				return nil, fmt.Errorf("--vips %q: the VRID after @ must be 1..255", s)
			}
			v.VRID = n
		}
		vips = append(vips, v)
	}
	for _, r := range ranges {
		ps, err := balancer.ParseRange(r)
		if err != nil {
			return nil, fmt.Errorf("--vip-range: %w", err)
		}
		for _, p := range ps {
			vips = append(vips, balancer.VIP{Prefix: p})
		}
	}
	if len(vips) == 0 {
		return nil, fmt.Errorf("no VIPs: give --vips or --vip-range")
	}
	return vips, nil
}

type planVIP struct {
	Address    string         `json:"address"`
	VRID       int            `json:"vrid"`
	Ranking    []string       `json:"ranking"`
	Priorities map[string]int `json:"priorities"`
	Holder     string         `json:"holder"` // first of the ranking not down: what VRRP elects
}

type planMove struct {
	Address string `json:"address"`
	VRID    int    `json:"vrid"`
	VRRP    string `json:"vrrp"` // who VRRP hands it to: the next of its ranking that is up
}

type planFail struct {
	Node      string         `json:"node"`
	Moves     []planMove     `json:"moves"`
	HeldAfter map[string]int `json:"held_after"`
}

type planJSON struct {
	VIPs    []planVIP      `json:"vips"`
	Owned   map[string]int `json:"owned"`
	Held    map[string]int `json:"held"` // VIPs held per node with --down
	Down    []string       `json:"down,omitempty"`
	Nodes   []string       `json:"nodes"`
	Grouped []string       `json:"grouped,omitempty"`
	Fail    *planFail      `json:"fail,omitempty"`
	// Preferences, with --prefer: what they cost in balance.
	Preferences *planCost `json:"preferences,omitempty"`
	// OwnedByFamily counts the VIPs each node owns per family, when the
	// plan has both.
	OwnedByFamily map[string]map[string]int `json:"owned_by_family,omitempty"`
}

func planOutput(p balancer.Plan, alloc balancer.Allocation, down map[string]bool, fail string) planJSON {
	out := planJSON{Owned: p.Owned(), Held: p.Held(down), Grouped: alloc.Grouped}
	byFamily := map[string]map[string]int{}
	for _, r := range p.Groups {
		f := r.Group.Family()
		if byFamily[f] == nil {
			byFamily[f] = map[string]int{}
		}
		byFamily[f][r.Owner()] += len(r.Group.VIPs)
	}
	if len(byFamily) > 1 {
		out.OwnedByFamily = byFamily
	}
	out.Nodes = p.Nodes
	for _, n := range p.Nodes {
		if down[n] {
			out.Down = append(out.Down, n)
		}
	}
	for _, r := range p.Groups {
		ranking, prios, holder := r.Ranking(), r.Priorities(), r.Holder(down)
		for _, v := range r.Group.VIPs {
			out.VIPs = append(out.VIPs, planVIP{Address: v.Addr().String(), VRID: r.Group.VRID, Ranking: ranking, Priorities: prios, Holder: holder})
		}
	}
	if fail != "" {
		after := maps.Clone(down)
		after[fail] = true
		f := &planFail{Node: fail, HeldAfter: p.Held(after)}
		delete(f.HeldAfter, fail)
		for _, r := range p.Groups {
			if r.Holder(down) != fail {
				continue
			}
			for _, v := range r.Group.VIPs {
				f.Moves = append(f.Moves, planMove{Address: v.Addr().String(), VRID: r.Group.VRID, VRRP: r.Holder(after)})
			}
		}
		out.Fail = f
	}
	return out
}

func printPlan(w io.Writer, out planJSON) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VIP\tVRID\tHOLDER\tRANKING\tPRIORITIES")
	for _, v := range out.VIPs {
		pr := make([]string, len(v.Ranking))
		for i, n := range v.Ranking {
			pr[i] = fmt.Sprintf("%s=%d", n, v.Priorities[n])
		}
		holder := cmp.Or(v.Holder, "(none: all down)")
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", v.Address, v.VRID, holder, strings.Join(v.Ranking, " > "), strings.Join(pr, " "))
	}
	tw.Flush()
	if len(out.Down) > 0 {
		fmt.Fprintf(w, "\nDown: %s. VIPs held per node (owned when all are up):\n", strings.Join(out.Down, ", "))
		for _, n := range out.Nodes {
			fmt.Fprintf(w, "  %-12s %d (%d)\n", n, out.Held[n], out.Owned[n])
		}
	} else {
		fmt.Fprintln(w, "\nVIPs owned per node:")
		for _, n := range out.Nodes {
			if f := out.OwnedByFamily; f != nil {
				fmt.Fprintf(w, "  %-12s %d (ipv4 %d, ipv6 %d)\n", n, out.Owned[n], f["ipv4"][n], f["ipv6"][n])
				continue
			}
			fmt.Fprintf(w, "  %-12s %d\n", n, out.Owned[n])
		}
	}
	for _, g := range out.Grouped {
		fmt.Fprintf(w, "note: %s\n", g)
	}
	if c := out.Preferences; c != nil {
		if c.Spread > c.SpreadWithout {
			fmt.Fprintf(w, "preferences cost balance: owners differ by up to %d VIPs with them, %d without\n", c.Spread, c.SpreadWithout)
		} else {
			fmt.Fprintf(w, "preferences cost nothing in balance (owners differ by up to %d VIPs, as without them)\n", c.Spread)
		}
	}
	if f := out.Fail; f != nil {
		fmt.Fprintf(w, "\nIf %s goes down:\n", f.Node)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  VIP\tVRID\tVRRP MOVES IT TO")
		for _, m := range f.Moves {
			fmt.Fprintf(tw, "  %s\t%d\t%s\n", m.Address, m.VRID, m.VRRP)
		}
		tw.Flush()
		fmt.Fprintf(w, "  %d VIPs move, all of them %s's; nothing is re-ranked, so no other VIP moves.\n", len(f.Moves), f.Node)
		fmt.Fprintln(w, "  VIPs held per node then:")
		for _, n := range out.Nodes {
			if h, ok := f.HeldAfter[n]; ok && !slices.Contains(out.Down, n) {
				fmt.Fprintf(w, "    %-12s %d\n", n, h)
			}
		}
	}
	return nil
}
