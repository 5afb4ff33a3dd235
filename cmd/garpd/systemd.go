package main

import (
	"context"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/rs/zerolog"
)

// The service manager's side of a Type=notify unit: READY once the VRRP
// routers run and gossip has found the cluster (or its join grace is
// over), and the watchdog fed while the VRRP engines answer, so systemd
// restarts an agent whose engine loop is stuck. Outside systemd
// (NOTIFY_SOCKET unset) nothing is sent.

// readyPoll is how often the agent looks whether gossip has joined before
// it says READY.
const readyPoll = 100 * time.Millisecond

// notifier sends one sd_notify message ("READY=1", "WATCHDOG=1", ...);
// it reports whether a service manager listens.
type notifier func(state string) (bool, error)

// sdNotify is notifier over NOTIFY_SOCKET.
func sdNotify(state string) (bool, error) { return daemon.SdNotify(false, state) }

// superviseSystemd says READY when joined() and then, when the unit sets
// WatchdogSec (watchdog > 0), feeds the watchdog every quarter of it while
// alive answers within that quarter. It returns when ctx ends.
func superviseSystemd(ctx context.Context, notify notifier, joined func() bool, alive func(context.Context) bool, watchdog time.Duration, log zerolog.Logger) {
	t := time.NewTicker(readyPoll)
	defer t.Stop()
	for !joined() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	if sent, err := notify(daemon.SdNotifyReady); err != nil {
		log.Warn().Err(err).Msg("cannot tell systemd the agent is ready")
	} else if sent {
		log.Info().Msg("told systemd the agent is ready")
	}
	if watchdog <= 0 {
		return
	}
	every := watchdog / 4
	t.Reset(every)
	stuck := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		probe, cancel := context.WithTimeout(ctx, every)
		ok := alive(probe)
		cancel()
		switch {
		case !ok && !stuck:
			log.Error().Dur("watchdog", watchdog).Msg("the VRRP engine does not answer: no longer feeding systemd's watchdog, which restarts garpd if it stays so")
		case ok && stuck:
			log.Info().Msg("the VRRP engine answers again: feeding systemd's watchdog")
		}
		if stuck = !ok; ok {
			if _, err := notify(daemon.SdNotifyWatchdog); err != nil {
				log.Warn().Err(err).Msg("cannot feed systemd's watchdog")
			}
		}
	}
}
