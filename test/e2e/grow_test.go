package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/garpd/garpd/test/lab"
)

// A cluster grows the way memberlist clusters grow (issue 39): three seeds
// list each other, and 29 more nodes start with join: the three seeds and
// nothing else, on the seeds' subnet and with the cluster's key. Every
// node comes to see all 32 as ranked members, the router's table holds
// the 8 VIPs on 8 different nodes, and no seed refused a newcomer's
// gossip. (With gossip.admit_subnet: false the 29 never join: the seeds
// drop them unread.)
func TestClusterGrowsThroughSeeds(t *testing.T) {
	const nodes, seeds = 32, 3
	l := newLab(t, nodes)
	if err := l.PinNeighbours(); err != nil {
		t.Fatal(err)
	}
	var vips []netip.Addr
	for i := 101; i <= 108; i++ {
		vips = append(vips, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}))
	}
	var seedAddrs []string
	for _, n := range l.Nodes[:seeds] {
		seedAddrs = append(seedAddrs, n.IPv4.String()+":7946")
	}
	config := func(n *lab.Node) string {
		var join []string
		for _, s := range seedAddrs {
			if s != n.IPv4.String()+":7946" {
				join = append(join, s)
			}
		}
		// 1 s adverts, as a cluster this size would run.
		cfg := strings.Replace(dynConfig(l, n.Name, vips, ""), "advert_interval: 100ms", "advert_interval: 1s", 1)
		start := strings.Index(cfg, "  join: [")
		end := start + strings.Index(cfg[start:], "]\n") + 2
		return strings.Replace(cfg, cfg[start:end], "  join: ["+strings.Join(join, ", ")+"]\n", 1)
	}
	for _, n := range l.Nodes {
		if _, err := n.StartGarpd(garpdBin, config(n)); err != nil {
			t.Fatal(err)
		}
	}
	started := time.Now()
	var names []string
	for _, n := range l.Nodes {
		names = append(names, n.Name)
	}
	waitFor(t, 180*time.Second, "every node to see all 32 members ranked", func() (bool, string) {
		for _, name := range names {
			st, err := statusMembers(l.Node(name))
			if err != nil {
				return false, err.Error()
			}
			ranked := 0
			for _, state := range st {
				if state == "ranked" {
					ranked++
				}
			}
			if ranked != nodes {
				return false, fmt.Sprintf("%s sees %d of %d ranked (%d known)", name, ranked, nodes, len(st))
			}
		}
		return true, ""
	})
	t.Logf("all %d nodes see %d ranked members %s after the last agent started", nodes, nodes, time.Since(started).Round(100*time.Millisecond))
	// And run one plan: the same plan_digest everywhere.
	waitFor(t, 30*time.Second, "every node to report the same plan digest", func() (bool, string) {
		digests := map[string][]string{}
		for _, n := range l.Nodes {
			out, err := lab.Exec(n.NS, garpdBin, "status", "--json")
			if err != nil {
				return false, err.Error()
			}
			var st struct {
				Dynamic struct {
					PlanDigest string `json:"plan_digest"`
				} `json:"dynamic"`
			}
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				return false, err.Error()
			}
			digests[st.Dynamic.PlanDigest] = append(digests[st.Dynamic.PlanDigest], n.Name)
		}
		_, empty := digests[""]
		return len(digests) == 1 && !empty, fmt.Sprint(digests)
	})
	waitFor(t, 60*time.Second, "the router to hold the 8 VIPs on 8 different nodes", func() (bool, string) {
		c, all := spread(t, l, vips)
		neigh, _ := l.Neighbours()
		var seen []string
		for _, v := range vips {
			seen = append(seen, fmt.Sprintf("%s→%v", v, neigh[v]))
		}
		return all && len(c) == len(vips), fmt.Sprint(c, " router: ", seen)
	})
	for _, n := range l.Nodes[:seeds] {
		b, err := os.ReadFile(l.Dir + "/" + n.Name + "-garpd.log")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "neither a member nor a seed") {
			t.Errorf("seed %s refused a newcomer's gossip:\n%s", n.Name, tail(string(b), 20))
		}
	}
}
