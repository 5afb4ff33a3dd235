package gossip

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
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

// NotifyMsg takes a known-set change another member broadcast (see
// broadcastKnown) and, when it is news here, passes it on.
func (d delegate) NotifyMsg(buf []byte) {
	if len(buf) < 2 || buf[0] != msgKnown {
		return
	}
	var other KnownSet
	if err := json.Unmarshal(buf[1:], &other); err != nil || len(other) > maxBroadcastEntries {
		d.m.log.Warn().Err(err).Int("entries", len(other)).Msg("a member broadcast a known-member change that is not garpd's; ignoring it")
		return
	}
	if d.m.mergeKnown(other) {
		d.m.broadcastKnown(slices.Collect(maps.Keys(other))...)
		d.m.knownChanged()
	}
}

// GetBroadcasts hands memberlist the queued known-set changes.
func (d delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.m.broadcasts.GetBroadcasts(overhead, limit)
}

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
	if d.m.mergeKnown(other) {
		d.m.knownChanged()
	}
}

// mergeKnown folds another member's known set (all of it, from push-pull,
// or the entries of a broadcast) into this node's, and reports whether
// that changed it.
func (m *Membership) mergeKnown(other KnownSet) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	other.Prune(now)
	changed := m.known.Merge(other)
	if m.known.Prune(now) {
		changed = true
	}
	// Forgotten while alive (an operator's mistake, or a race with a
	// restart): say so again with a newer generation.
	if m.known.Join(m.local, m.meta.Digest) {
		m.log.Warn().Msg("the cluster had forgotten this node; rejoining")
		changed = true
	}
	for _, name := range m.known.Names(m.meta.Digest) {
		if _, alive := m.nodes[name]; !alive && name != m.local {
			if _, ok := m.downSince[name]; !ok {
				m.downSince[name] = time.Now()
			}
		}
	}
	return changed
}

// msgKnown marks a user message that carries known-set entries.
const msgKnown byte = 1

// maxBroadcastEntries bounds the entries of one broadcast: garpd sends
// one per message.
const maxBroadcastEntries = 8

// knownBroadcast is one member's known-set entry in memberlist's gossip:
// a forget reaches every node in a few gossip rounds instead of waiting
// for push-pull (every 10 s, between two nodes at a time). A newer entry
// for the same member replaces one still queued.
type knownBroadcast struct {
	name string
	msg  []byte
}

func (b knownBroadcast) Invalidates(o memberlist.Broadcast) bool {
	other, ok := o.(knownBroadcast)
	return ok && other.name == b.name
}
func (b knownBroadcast) Name() string    { return "known/" + b.name }
func (b knownBroadcast) Message() []byte { return b.msg }
func (b knownBroadcast) Finished()       {}

// broadcastKnown queues this node's entries for names to every member.
// A receiver that learns from one passes it on, so it spreads as
// memberlist's own alive and dead messages do, and stops where it is no
// longer news.
func (m *Membership) broadcastKnown(names ...string) {
	var queue []knownBroadcast
	m.mu.Lock()
	for _, name := range names {
		if k, ok := m.known[name]; ok {
			if b, err := json.Marshal(KnownSet{name: k}); err == nil {
				queue = append(queue, knownBroadcast{name: name, msg: append([]byte{msgKnown}, b...)})
			}
		}
	}
	m.mu.Unlock()
	// Not under m.mu: the queue asks NumNodes, which takes it, under its
	// own lock.
	for _, b := range queue {
		m.broadcasts.QueueBroadcast(b)
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
