package gossip

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Known is what the cluster remembers of one member. The ranking is over
// the known members, not the live ones: a member that crashes, fails its
// checks or leaves stays known (as down), so its VIPs wait on their rank-1
// backups and nothing else moves. It is forgotten only after forget_after,
// or when an operator says so.
type Known struct {
	// Gen orders what was said about the member: a join after a forget,
	// or a forget after a join, carries a higher generation.
	Gen       uint64 `json:"g"`
	Forgotten bool   `json:"f,omitempty"`
	// At is when it was forgotten (Unix seconds), so every node drops the
	// tombstone after tombstoneHorizon.
	At int64 `json:"t,omitempty"`
	// Digest is the config digest the member joined with. Each node ranks
	// the members of its own config only, so a node running another config
	// (a typo, or a rolling config change) never re-plans the others.
	Digest string `json:"d,omitempty"`
}

// KnownSet is the known members by name, cluster state that every node
// holds a copy of. Copies converge because Merge is commutative,
// associative and idempotent: per name, the higher generation wins, and at
// equal generations forgotten wins.
type KnownSet map[string]Known

// maxGenStep is how far a merged generation may run ahead of ours: a
// generation grows by one per join or forget, so a far larger one is
// forged or broken. Without the bound, one push-pull carrying 2^64-1 from
// any key holder would erase a member for good (its rejoin wraps to 0).
const maxGenStep = 1 << 16

// tombstoneHorizon is how long a forgotten member's entry stays, so a
// late node hears of the forget; then every node drops it.
const tombstoneHorizon = 7 * 24 * time.Hour

// Bounds on what a peer's set may add: a member's name is a host name
// (at most 253 characters), and the set holds at most maxKnown names, far
// above any cluster, so a broken or hostile key holder cannot grow every
// node's memory without end.
const (
	maxNameLen = 253
	maxKnown   = 4096
)

// Merge folds other into k and reports whether k changed.
func (k KnownSet) Merge(other KnownSet) bool {
	changed := false
	for name, o := range other {
		if name == "" || len(name) > maxNameLen {
			continue
		}
		cur, ok := k[name]
		if !ok && len(k) >= maxKnown {
			continue
		}
		if o.Gen > cur.Gen && o.Gen-cur.Gen > maxGenStep {
			continue
		}
		if !ok || newer(o, cur) {
			k[name] = o
			changed = true
		}
	}
	return changed
}

// Prune drops the entries forgotten longer than tombstoneHorizon before
// now, and reports whether anything changed. A tombstone that came without
// its time (an older release's, or a broken peer's) is stamped now, so it
// goes after the horizon too; the stamps converge as the latest wins.
func (k KnownSet) Prune(now time.Time) bool {
	changed := false
	for name, e := range k {
		switch {
		case !e.Forgotten:
		case e.At == 0:
			e.At = now.Unix()
			k[name] = e
			changed = true
		case now.Sub(time.Unix(e.At, 0)) > tombstoneHorizon:
			delete(k, name)
			changed = true
		}
	}
	return changed
}

func newer(a, b Known) bool {
	if a.Gen != b.Gen {
		return a.Gen > b.Gen
	}
	if a.Forgotten != b.Forgotten {
		return a.Forgotten
	}
	if a.At != b.At {
		return a.At > b.At
	}
	return a.Digest > b.Digest // any fixed order will do, so merges commute
}

// Join records that name is a member running the config digest: new,
// back after being forgotten, or with another config now. It reports
// whether anything changed.
func (k KnownSet) Join(name, digest string) bool {
	cur, ok := k[name]
	if ok && !cur.Forgotten && cur.Digest == digest {
		return false
	}
	k[name] = Known{Gen: cur.Gen + 1, Digest: digest}
	return true
}

// Forget records that name is no longer a member. It reports whether
// anything changed.
func (k KnownSet) Forget(name string) bool {
	cur, ok := k[name]
	if !ok || cur.Forgotten {
		return false
	}
	k[name] = Known{Gen: cur.Gen + 1, Forgotten: true, Digest: cur.Digest, At: time.Now().Unix()}
	return true
}

// Names returns the members of config digest that are not forgotten,
// sorted.
func (k KnownSet) Names(digest string) []string {
	var out []string
	for name, e := range k {
		if !e.Forgotten && e.Digest == digest {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// Clone returns a copy.
func (k KnownSet) Clone() KnownSet { return maps.Clone(k) }

// knownFile is where a node keeps the known set in its state_dir, so the
// cluster comes back to the same layout after every node restarted.
const knownFile = "known-members.json"

// LoadKnown reads the known set saved in dir; a missing file is an empty
// set. A file that does not parse (a disk that filled, an edit) is moved
// aside, named in moved, and the set starts empty: gossip refills it, and
// every start would fail otherwise.
func LoadKnown(dir string) (k KnownSet, moved string, err error) {
	k = KnownSet{}
	path := filepath.Join(dir, knownFile)
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return k, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read known members: %w", err)
	}
	if err := json.Unmarshal(b, &k); err != nil {
		moved = fmt.Sprintf("%s.corrupt-%d", path, time.Now().Unix())
		if err := os.Rename(path, moved); err != nil {
			return nil, "", fmt.Errorf("move aside the unreadable %s: %w", path, err)
		}
		return KnownSet{}, moved, nil
	}
	return k, "", nil
}

// CheckKnown reads dir's known members without changing anything: what
// LoadKnown would say of the file, for garpd agent --check.
func CheckKnown(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, knownFile))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read known members: %w", err)
	}
	var k KnownSet
	if err := json.Unmarshal(b, &k); err != nil {
		return fmt.Errorf("%s does not parse (%v): the agent will move it aside and start from this node alone; gossip refills it", filepath.Join(dir, knownFile), err)
	}
	return nil
}

// SaveKnown writes k to dir atomically and durably: a temporary file,
// synced, renamed over the old one, and the directory synced, so neither
// a crash nor a power cut leaves half a file.
func SaveKnown(dir string, k KnownSet) error {
	b, err := json.Marshal(k)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, knownFile+".*")
	if err != nil {
		return fmt.Errorf("save known members: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, knownFile))
	}
	if err == nil {
		var d *os.File
		if d, err = os.Open(dir); err == nil {
			err = d.Sync()
			d.Close()
		}
	}
	if err != nil {
		return fmt.Errorf("save known members: %w", err)
	}
	return nil
}
