package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/garpd/garpd/balancer"
)

func newPlanCmd() *cobra.Command {
	var nodesFlag, weightsFlag, vipsFlag, rangesFlag []string
	var vridBase, vridMax int
	var fail string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "plan --nodes N1,N2,... --vips A,B,... [--vip-range FIRST-LAST] [--fail NODE] [--json]",
		Short: "Show the balanced ranking of nodes for every VIP, and what a failure does",
		Long: `Compute, without any network, the ranking every garpd node derives from
the same member list: for each VIP its VRID, owner, backup order and the
VRRP priority of every node, and how many VIPs each node owns.

--fail NODE shows what happens when NODE dies: which node VRRP hands each
of its VIPs to at once (rank 1), which node owns it after the survivors
re-rank, and how many VIPs move.

A VIP may pin its VRID as ADDR@VRID. Exit code 2 on bad input.`,
		Example: `  garpd plan --nodes n1,n2,n3 --vips 192.0.2.101,192.0.2.102,192.0.2.103
  garpd plan --nodes n1,n2,n3 --weights n1=2 --vip-range 192.0.2.101-192.0.2.200 --fail n2
  garpd plan --nodes n1,n2 --vips 192.0.2.101@51 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			nodes, err := parseNodes(nodesFlag, weightsFlag)
			if err != nil {
				return usageError(err)
			}
			vips, err := parsePlanVIPs(vipsFlag, rangesFlag)
			if err != nil {
				return usageError(err)
			}
			alloc, err := balancer.AssignVRIDs(vips, vridBase, vridMax)
			if err != nil {
				return usageError(err)
			}
			plan, err := balancer.Rank(nodes, alloc.Groups)
			if err != nil {
				return usageError(err)
			}
			var rep *balancer.FailureReport
			if fail != "" {
				r, _, err := balancer.Fail(plan, fail)
				if err != nil {
					return usageError(fmt.Errorf("--fail: %w", err))
				}
				rep = &r
			}
			out := planOutput(plan, alloc, rep)
			if asJSON {
				return printJSON(cmd.OutOrStdout(), out)
			}
			return printPlan(cmd.OutOrStdout(), out)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&nodesFlag, "nodes", nil, "member nodes, comma separated (required)")
	f.StringSliceVar(&weightsFlag, "weights", nil, "NODE=WEIGHT pairs (default weight 1); a node's share of VIPs is proportional to its weight")
	f.StringSliceVar(&vipsFlag, "vips", nil, "VIPs: ADDR, ADDR/PREFIX, or ADDR@VRID to pin a VRID")
	f.StringSliceVar(&rangesFlag, "vip-range", nil, "an inclusive range of VIPs, FIRST-LAST (repeatable)")
	f.IntVar(&vridBase, "vrid-base", 10, "first VRID to allocate; VIP i gets vrid-base+i")
	f.IntVar(&vridMax, "vrid-max", 255, "last VRID to allocate; more VIPs than free VRIDs share them as groups")
	f.StringVar(&fail, "fail", "", "show what happens when this node dies")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func parseNodes(names, weights []string) ([]balancer.Node, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("--nodes is empty: name at least one node, e.g. --nodes n1,n2,n3")
	}
	w := map[string]int{}
	for _, kv := range weights {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("--weights %q: want NODE=WEIGHT", kv)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("--weights %q: the weight must be a whole number above 0", kv)
		}
		if !slices.Contains(names, k) {
			return nil, fmt.Errorf("--weights %q: %q is not in --nodes", kv, k)
		}
		w[k] = n
	}
	nodes := make([]balancer.Node, len(names))
	for i, n := range names {
		n = strings.TrimSpace(n)
		wt := w[n]
		if wt == 0 {
			wt = 1
		}
		nodes[i] = balancer.Node{Name: n, Weight: wt}
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
		p, err := balancer.ParseVIP(addr)
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
}

type planMove struct {
	Address  string `json:"address"`
	VRID     int    `json:"vrid"`
	VRRP     string `json:"vrrp"`     // who VRRP hands it to at once (rank 1)
	Reranked string `json:"reranked"` // who owns it after re-ranking
}

type planFail struct {
	Node               string         `json:"node"`
	Moves              []planMove     `json:"moves"`
	VIPsMoved          int            `json:"vips_moved"`
	MovedTwice         int            `json:"moved_twice"`
	OthersMoved        int            `json:"others_moved"`
	OwnedAfterFailover map[string]int `json:"owned_after_failover"`
	OwnedAfterRerank   map[string]int `json:"owned_after_rerank"`
}

type planJSON struct {
	VIPs    []planVIP      `json:"vips"`
	Owned   map[string]int `json:"owned"`
	Nodes   []string       `json:"nodes"`
	Grouped []string       `json:"grouped,omitempty"`
	Fail    *planFail      `json:"fail,omitempty"`
}

func planOutput(p balancer.Plan, alloc balancer.Allocation, rep *balancer.FailureReport) planJSON {
	out := planJSON{Owned: p.Owned(), Grouped: alloc.Grouped}
	for _, n := range p.Nodes {
		out.Nodes = append(out.Nodes, n.Name)
	}
	for _, r := range p.Groups {
		ranking, prios := r.Ranking(), r.Priorities()
		for _, v := range r.Group.VIPs {
			out.VIPs = append(out.VIPs, planVIP{Address: v.Addr().String(), VRID: r.Group.VRID, Ranking: ranking, Priorities: prios})
		}
	}
	if rep != nil {
		f := &planFail{Node: rep.Node, OwnedAfterFailover: rep.OwnedAfterFailover, OwnedAfterRerank: rep.OwnedAfterRerank}
		for _, m := range rep.Moves {
			for _, v := range m.Group.VIPs {
				f.Moves = append(f.Moves, planMove{Address: v.Addr().String(), VRID: m.Group.VRID, VRRP: m.Immediate, Reranked: m.Reranked})
				f.VIPsMoved++
				if m.Immediate != m.Reranked {
					f.MovedTwice++
				}
			}
		}
		f.OthersMoved = rep.OthersMoved
		f.VIPsMoved += rep.OthersMoved
		out.Fail = f
	}
	return out
}

func printPlan(w io.Writer, out planJSON) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VIP\tVRID\tOWNER\tRANKING\tPRIORITIES")
	for _, v := range out.VIPs {
		pr := make([]string, len(v.Ranking))
		for i, n := range v.Ranking {
			pr[i] = fmt.Sprintf("%s=%d", n, v.Priorities[n])
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", v.Address, v.VRID, v.Ranking[0], strings.Join(v.Ranking, " > "), strings.Join(pr, " "))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nVIPs owned per node:")
	for _, n := range out.Nodes {
		fmt.Fprintf(w, "  %-12s %d\n", n, out.Owned[n])
	}
	for _, g := range out.Grouped {
		fmt.Fprintf(w, "note: %s\n", g)
	}
	if f := out.Fail; f != nil {
		fmt.Fprintf(w, "\nIf %s dies:\n", f.Node)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  VIP\tVRID\tVRRP MOVES IT TO\tOWNER AFTER RE-RANKING")
		for _, m := range f.Moves {
			again := ""
			if m.VRRP != m.Reranked {
				again = "  (moves again)"
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s%s\n", m.Address, m.VRID, m.VRRP, m.Reranked, again)
		}
		tw.Flush()
		fmt.Fprintf(w, "  %d VIPs move in all: %d of %s's by VRRP (%d of them once more after re-ranking), %d of other nodes' after re-ranking.\n",
			f.VIPsMoved, len(f.Moves), f.Node, f.MovedTwice, f.OthersMoved)
		fmt.Fprintln(w, "  Owned right after failover / after re-ranking:")
		for _, n := range out.Nodes {
			if n == f.Node {
				continue
			}
			fmt.Fprintf(w, "    %-12s %d / %d\n", n, f.OwnedAfterFailover[n], f.OwnedAfterRerank[n])
		}
	}
	return nil
}
