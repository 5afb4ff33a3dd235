package gossip

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// delegate hands memberlist our metadata and tells us about changes.
type delegate struct{ m *Membership }

func (d delegate) NodeMeta(limit int) []byte {
	d.m.mu.Lock()
	m := d.m.meta
	d.m.mu.Unlock()
	b, _ := json.Marshal(m)
	if len(b) > limit {
		// Drop the failing-check names first; the rest always fits.
		m.Failing = nil
		b, _ = json.Marshal(m)
	}
	return b
}

func (d delegate) NotifyMsg([]byte) {}

func (d delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState and MergeRemoteState carry the known set in memberlist's
// push-pull: on every join and every PushPullInterval, each pair of nodes
// that syncs ends with the merge of both sets.
func (d delegate) LocalState(bool) []byte {
	d.m.mu.Lock()
	defer d.m.mu.Unlock()
	b, _ := json.Marshal(d.m.known)
	return b
}

func (d delegate) MergeRemoteState(buf []byte, _ bool) {
	var other KnownSet
	if err := json.Unmarshal(buf, &other); err != nil {
		d.m.log.Warn().Err(err).Msg("a member sent a known-member set that is not garpd's; ignoring it")
		return
	}
	d.m.mu.Lock()
	now := time.Now()
	other.Prune(now)
	changed := d.m.known.Merge(other)
	if d.m.known.Prune(now) {
		changed = true
	}
	// Forgotten while alive (an operator's mistake, or a race with a
	// restart): say so again with a newer generation.
	if d.m.known.Join(d.m.local, d.m.meta.Digest) {
		d.m.log.Warn().Msg("the cluster had forgotten this node; rejoining")
		changed = true
	}
	for _, name := range d.m.known.Names(d.m.meta.Digest) {
		if _, alive := d.m.nodes[name]; !alive && name != d.m.local {
			if _, ok := d.m.downSince[name]; !ok {
				d.m.downSince[name] = time.Now()
			}
		}
	}
	d.m.mu.Unlock()
	if changed {
		d.m.knownChanged()
	}
}

// memberlist calls the event hooks with pointers into its own state while
// holding its lock: each hook copies what it needs there, and Members
// reads only the copies.
func (d delegate) NotifyJoin(n *memberlist.Node) {
	d.m.log.Info().Str("member", n.Name).Str("addr", n.Address()).Msg("member joined")
	d.m.mu.Lock()
	delete(d.m.deleted, n.Name) // back: its Node is too, or it runs outside Kubernetes
	d.m.mu.Unlock()
	d.m.store(n)
}

func (d delegate) NotifyLeave(n *memberlist.Node) {
	d.m.mu.Lock()
	delete(d.m.nodes, n.Name)
	d.m.downSince[n.Name] = time.Now()
	forget := d.m.deleted[n.Name]
	if forget {
		delete(d.m.deleted, n.Name)
		forget = d.m.known.Forget(n.Name)
		delete(d.m.downSince, n.Name)
	}
	d.m.mu.Unlock()
	if forget {
		d.m.log.Warn().Str("member", n.Name).Str("addr", n.Address()).Msg("member failed after its Node was deleted: forgotten, re-planning without it")
		d.m.knownChanged()
		return
	}
	d.m.log.Warn().Str("member", n.Name).Str("addr", n.Address()).Msg("member left or failed: it stays known, as down; its VIPs wait on their backups")
	d.m.notify()
}

func (d delegate) NotifyUpdate(n *memberlist.Node) { d.m.store(n) }

// conflictDelegate hears memberlist's name conflicts: a node that joins
// under a name another node holds at another address.
type conflictDelegate struct {
	m      *Membership
	notify func(why string)
}

// NotifyConflict implements memberlist.ConflictDelegate. Only a conflict
// over this node's own name concerns it; of the two, the one that started
// later resigns, so the first keeps its VIPs.
func (c conflictDelegate) NotifyConflict(existing, other *memberlist.Node) {
	if existing.Name != c.m.local {
		c.m.log.Warn().Str("name", other.Name).Str("holder", existing.Address()).Str("claimant", other.Address()).
			Msg("two nodes run under one name: the second is refused; give each node its own name")
		return
	}
	var theirs Meta
	_ = json.Unmarshal(other.Meta, &theirs)
	c.m.mu.Lock()
	ours := c.m.meta.Started
	c.m.mu.Unlock()
	if theirs.Started != 0 && theirs.Started < ours && c.notify != nil {
		why := fmt.Sprintf("duplicate name: %s runs as %s since %s, before this node", other.Address(), other.Name,
			time.Unix(0, theirs.Started).UTC().Format(time.RFC3339))
		c.m.log.Error().Str("name", other.Name).Str("other", other.Address()).
			Msg("another node runs under this node's name, and started first: resigning every VIP; give each node its own name (node: in the config)")
		c.notify(why)
		return
	}
	c.m.log.Error().Str("name", other.Name).Str("other", other.Address()).
		Msg("another node claims this node's name; it started later and must resign: give each node its own name (node: in the config)")
}
