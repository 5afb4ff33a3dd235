package gossip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/rs/zerolog"
)

// Discoverer finds the addresses (HOST:PORT) to join. Membership asks it
// afresh on every join attempt, so seeds may come and go; a Kubernetes
// discoverer (the pods of the DaemonSet) plugs in here.
type Discoverer interface {
	Seeds(ctx context.Context) ([]string, error)
}

// Discoverers are several sources of seeds at once, e.g. the pods of
// garpd's DaemonSet and the join list, for members outside the release
// (nodes still on systemd while a cluster moves to the DaemonSet).
type Discoverers []Discoverer

// Seeds implements Discoverer: every source's seeds. A source that fails
// does not hide the others'; it is an error only when all fail.
func (ds Discoverers) Seeds(ctx context.Context) ([]string, error) {
	var out []string
	var errs []error
	for _, d := range ds {
		seeds, err := d.Seeds(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, seeds...)
	}
	if len(errs) == len(ds) && len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// SeedList is the config's join list: HOST:PORT entries as they are, and
// dns:NAME:PORT entries resolved to every address NAME has at that moment.
type SeedList struct {
	Join []string
	Log  zerolog.Logger
}

// Seeds implements Discoverer. A name that does not resolve is logged and
// skipped; the other seeds are still returned.
func (s SeedList) Seeds(ctx context.Context) ([]string, error) {
	var out []string
	for _, seed := range s.Join {
		rest, isDNS := strings.CutPrefix(seed, "dns:")
		if !isDNS {
			out = append(out, seed)
			continue
		}
		host, port, err := SplitHostPort(rest)
		if err != nil {
			return nil, fmt.Errorf("seed %q: %w", seed, err)
		}
		addrs, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil {
			s.Log.Warn().Err(err).Str("seed", seed).Msg("cannot resolve gossip seed")
			continue
		}
		for _, a := range addrs {
			out = append(out, net.JoinHostPort(a, fmt.Sprint(port)))
		}
	}
	return out, nil
}
