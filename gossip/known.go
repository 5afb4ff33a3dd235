package gossip

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
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

// Merge folds other into k and reports whether k changed.
func (k KnownSet) Merge(other KnownSet) bool {
	changed := false
	for name, o := range other {
		if cur, ok := k[name]; !ok || newer(o, cur) {
			k[name] = o
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
	k[name] = Known{Gen: cur.Gen + 1, Forgotten: true, Digest: cur.Digest}
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

// LoadKnown reads the known set saved in dir; a missing file is an empty set.
func LoadKnown(dir string) (KnownSet, error) {
	k := KnownSet{}
	b, err := os.ReadFile(filepath.Join(dir, knownFile))
	if os.IsNotExist(err) {
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read known members: %w", err)
	}
	if err := json.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("read known members from %s: %w (remove the file to start over)", filepath.Join(dir, knownFile), err)
	}
	return k, nil
}

// SaveKnown writes k to dir atomically (a temporary file renamed over the
// old one), so a crash never leaves half a file.
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
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save known members: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save known members: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, knownFile)); err != nil {
		return fmt.Errorf("save known members: %w", err)
	}
	return nil
}
