package vrrp

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's Prometheus collectors. They are created per
// engine and registered on a registry the caller owns, so tests and reloads
// never collide on a global registry.
type Metrics struct {
	// RateLimit is the announcement cap, so a dashboard can draw the
	// rate against it.
	RateLimit     prometheus.Gauge
	State         *SeriesVec
	Transitions   *SeriesVec
	AdvertsSent   *SeriesVec
	AdvertsRecv   *SeriesVec
	Dropped       *prometheus.CounterVec
	Collisions    *SeriesVec
	ReadErrors    *prometheus.CounterVec
	Announcements *SeriesVec
	AnnounceWait  prometheus.Histogram
	AnnounceQueue prometheus.Gauge
	WaveDuration  prometheus.Histogram
	// NetlinkResyncs counts lost netlink subscriptions of the link watch.
	NetlinkResyncs prometheus.Counter
	// OffLink counts adverts accepted below hop limit 255 (from unicast
	// peers; see Engine.mayComeOffLink).
	OffLink *prometheus.CounterVec
	// Unverified is 1 per VIP the router does not send to this node
	// (garp.verify), VerifyProbes the probes by result, VerifyRepairs the
	// re-announcements they caused.
	Unverified    *prometheus.GaugeVec
	VerifyProbes  *prometheus.CounterVec
	VerifyRepairs prometheus.Counter

	// base holds the vectors with their interface label free; the fields
	// above have it set (On).
	base *Metrics
}

// On is m with the per-router and per-socket collectors labelled with
// the interface ifname, so an agent's Stacks on several interfaces (each
// with its own VRIDs) keep their series apart.
func (m *Metrics) On(ifname string) *Metrics {
	b := m.base
	c := *b
	c.base = b
	l := prometheus.Labels{"interface": ifname}
	for _, v := range []**SeriesVec{&c.State, &c.Transitions, &c.AdvertsSent, &c.AdvertsRecv, &c.Collisions} {
		*v = (*v).curry(ifname)
	}
	for _, v := range []**prometheus.CounterVec{&c.Dropped, &c.ReadErrors, &c.OffLink} {
		*v = (*v).MustCurryWith(l)
	}
	return &c
}

// NewMetrics creates the collectors and registers them on reg (if not nil),
// labelled with no interface until On.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	series := func(name, help string, labels ...string) *SeriesVec {
		return newSeriesVec(prometheus.CounterValue, name, help, labels...)
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	histogram := func(name, help string, buckets ...float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets})
	}
	m := &Metrics{
		RateLimit: gauge("garpd_announce_rate_limit", "The announcement budget in packets per second per interface (garp.profile, garp.max_rate); 0: none."),
		State: newSeriesVec(prometheus.GaugeValue, "garpd_vrrp_state",
			"VRRP state per virtual router: 0 initialize, 1 backup, 2 master, 3 fault (a failing check that tracks it).", "interface", "family", "vrid", "vips"),
		Transitions: series("garpd_vrrp_transitions_total", "VRRP state transitions per virtual router, by new state.", "interface", "family", "vrid", "to"),
		AdvertsSent: series("garpd_vrrp_adverts_sent_total", "VRRP adverts sent per virtual router.", "interface", "family", "vrid"),
		AdvertsRecv: series("garpd_vrrp_adverts_received_total", "Valid VRRP adverts received per virtual router.", "interface", "family", "vrid"),
		Dropped:     counter("garpd_vrrp_packets_dropped_total", "Received VRRP packets dropped, by reason.", "interface", "family", "reason"),
		Collisions: series("garpd_vrrp_vrid_collisions_total",
			"Adverts for one of our VRIDs with a different VIP list (another cluster using the same VRID); the sources are logged, once each.", "interface", "family", "vrid"),
		OffLink: counter("garpd_vrrp_adverts_off_link_total",
			"Adverts accepted below hop limit 255: from unicast peers, signed with auth_hmac enforcing, or listed in vrrp.accept_hop_limit_from.", "interface", "family"),
		ReadErrors: counter("garpd_vrrp_read_errors_total",
			"Failed reads of a VRRP socket; the reader backs off, up to a second, while they last.", "interface", "family"),
		Announcements: series("garpd_announcements_sent_total",
			"Gratuitous ARP (kind garp) and unsolicited neighbour advertisements (kind na) sent, per VIP.", "vip", "kind"),
		AnnounceWait: histogram("garpd_announce_queue_wait_seconds", "How long announcements waited for the per-interface rate cap (the queue lag).",
			0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
		AnnounceQueue: gauge("garpd_announce_queue_length", "Announcements waiting for the rate cap."),
		NetlinkResyncs: prometheus.NewCounter(prometheus.CounterOpts{Name: "garpd_netlink_resyncs_total",
			Help: "Times the link and address watch lost netlink events and subscribed again, with a resync."}),
		Unverified: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "garpd_vip_unverified",
			Help: "1 while the router does not send the VIP to this node, its master (garp.verify: 3 probes in a row unanswered); 0 once it does again."}, []string{"vip"}),
		VerifyProbes: counter("garpd_verify_probes_total", "Echoes from held VIPs to the router (garp.verify), by result: answered, unanswered, unjudged (the router did not answer the host either), error.", "result"),
		VerifyRepairs: prometheus.NewCounter(prometheus.CounterOpts{Name: "garpd_verify_repairs_total",
			Help: "Re-announcements of VIPs the router did not send to this node (to the router first, then to all)."}),
		WaveDuration: histogram("garpd_announce_wave_duration_seconds", "Time from the start of an on-demand wave to its last announcement.",
			0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120),
	}
	if reg != nil {
		reg.MustRegister(m.State, m.Transitions, m.AdvertsSent, m.AdvertsRecv, m.Dropped, m.Collisions, m.ReadErrors, m.OffLink,
			m.Announcements, m.AnnounceWait, m.AnnounceQueue, m.WaveDuration, m.RateLimit, m.NetlinkResyncs,
			m.Unverified, m.VerifyProbes, m.VerifyRepairs)
	}
	m.base = m
	return m.On("")
}
