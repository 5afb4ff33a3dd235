package gossip

import (
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// memberlistLog forwards memberlist's log lines to zerolog, keeping its
// level words.
type memberlistLog struct {
	log zerolog.Logger
	mu  sync.Mutex
	// kinds: per kind of warning, when it was last written and how many
	// were left out since. Strangers' packets (another key, garbage) can
	// come thousands a second; the log says so once per logEvery.
	kinds map[string]*logKind
}

type logKind struct {
	last    time.Time
	dropped int
}

// logKindOf is a memberlist line without what varies between senders:
// the text after "memberlist: " up to the first digit (an address, a
// length).
func logKindOf(s string) string {
	if _, after, ok := strings.Cut(s, "memberlist: "); ok {
		s = after
	}
	if i := strings.IndexAny(s, "0123456789"); i >= 0 {
		s = s[:i]
	}
	return s
}

func (w *memberlistLog) Write(p []byte) (int, error) {
	s := strings.TrimSpace(string(p))
	ev := w.log.Debug()
	switch {
	case strings.Contains(s, "[ERR]"):
		ev = w.log.Warn()
		if strings.Contains(s, "decrypt") || strings.Contains(s, "No installed keys") || strings.Contains(s, "Encryption is configured") {
			s += " (do all nodes use the same gossip.secret_key_file?)"
		}
	case strings.Contains(s, "[WARN]"):
		ev = w.log.Info()
	default:
		ev.Str("component", "memberlist").Msg(s)
		return len(p), nil
	}
	kind, now := logKindOf(s), time.Now()
	w.mu.Lock()
	if w.kinds == nil || (len(w.kinds) >= maxLogKinds && w.kinds[kind] == nil) {
		w.kinds = map[string]*logKind{}
	}
	k := w.kinds[kind]
	if k == nil {
		k = &logKind{}
		w.kinds[kind] = k
	}
	if !k.last.IsZero() && now.Sub(k.last) < logEvery {
		k.dropped++
		w.mu.Unlock()
		return len(p), nil
	}
	dropped := k.dropped
	k.last, k.dropped = now, 0
	w.mu.Unlock()
	if dropped > 0 {
		ev = ev.Int("like_it_since_last", dropped)
	}
	ev.Str("component", "memberlist").Msg(s)
	return len(p), nil
}
