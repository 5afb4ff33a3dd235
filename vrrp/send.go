package vrrp

import (
	"net/netip"
	"time"
)

func (e *Engine) sendAdvert(k routerKey, r *router, prio uint8) {
	adv := Advert{
		Version:   e.cfg.Version,
		VRID:      k.vrid,
		Priority:  prio,
		Interval:  e.cfg.IntervalCS(),
		Addresses: r.advAddrs,
	}
	if k.v6 {
		adv.Version = 3
	}
	if pass := e.cfg.Password(); adv.Version == 2 && pass != "" {
		adv.AuthType = AuthPassword
		adv.AuthData = PasswordData(pass)
	}
	if e.auth != nil && e.auth.keys.Signs() {
		// The HMAC covers neither destination nor checksum: one trailer
		// serves every copy of the advert.
		src := e.deps.Transport.Source(k.v6).WithZone("")
		pdu, err := Encode(adv, src, src)
		if err != nil {
			e.sendFailed(k, err)
			return
		}
		adv.Signed, adv.Trailer = true, e.auth.sign(e.deps.Clock.Now(), pdu, k.v6, src)
	}
	var to []netip.Addr
	if e.deps.Clock.Now().Before(r.membersOnlyUntil) {
		if to = e.memberPeers(k.v6); to == nil {
			to = []netip.Addr{} // no member to send to: nothing goes out
		}
	}
	// The socket is the one of this moment: a new master's first advert
	// leaves from the interface before its virtual MAC is up, so that a
	// node still master with that virtual MAC hears it (Linux hands a
	// multicast frame from a local macvlan's MAC to that macvlan alone).
	e.outbox = append(e.outbox, pendingAdvert{k: k, r: r, via: r.via, adv: adv, to: to})
	if !e.batching {
		e.flushAdverts()
	}
}

// pendingAdvert is an advert waiting for flushAdverts, and where its
// payloads sit in the batch.
type pendingAdvert struct {
	k   routerKey
	r   *router
	via Via // the socket to leave from, as it was when queued
	adv Advert
	to  []netip.Addr // nil: the transport's destinations
	// from and end delimit its payloads in the batch; from is -1 when
	// it could not be encoded.
	from, end int
}

// flushAdverts sends the queued adverts: one batch per family and socket,
// so a tick's adverts cost one system call per socket.
func (e *Engine) flushAdverts() {
	out := e.outbox
	for len(out) > 0 {
		n := 1
		for n < len(out) && out[n].k.v6 == out[0].k.v6 && out[n].via == out[0].via {
			n++
		}
		e.sendBatch(out[:n])
		out = out[n:]
	}
	clear(e.outbox) // holds no router or payload past the flush
	e.outbox = e.outbox[:0]
}

// sendBatch encodes adverts of one family and socket for each of their
// destinations into the engine's reused buffers and sends them together.
func (e *Engine) sendBatch(group []pendingAdvert) {
	v6, via := group[0].k.v6, group[0].via
	src := e.deps.Transport.Source(v6).WithZone("")
	e.wire, e.batch, e.offsets = e.wire[:0], e.batch[:0], e.offsets[:0]
	for i := range group {
		p := &group[i]
		dsts := p.to
		if dsts == nil {
			dsts = e.deps.Transport.Destinations(v6)
		}
		p.from = len(e.batch)
		wireLen := len(e.wire)
		for _, dst := range dsts {
			w, err := AppendAdvert(e.wire, p.adv, src, dst)
			if err != nil {
				e.sendFailed(p.k, err)
				// None of its copies goes out.
				e.wire, e.batch, e.offsets = e.wire[:wireLen], e.batch[:p.from], e.offsets[:p.from]
				p.from = -1
				break
			}
			e.offsets = append(e.offsets, len(e.wire))
			e.wire = w
			e.batch = append(e.batch, Outgoing{Dst: dst})
		}
		p.end = len(e.batch)
	}
	// Appending may have moved the buffer: slice the payloads at the end.
	for i := range e.batch {
		end := len(e.wire)
		if i+1 < len(e.offsets) {
			end = e.offsets[i+1]
		}
		e.batch[i].Payload = e.wire[e.offsets[i]:end]
	}
	var err error
	if len(e.batch) > 0 {
		err = e.deps.Transport.SendBatch(v6, via, e.batch)
	}
	for i := range group {
		p := &group[i]
		if p.from < 0 {
			continue // its encoding failed, logged above
		}
		sendErr := err
		for j := p.from; j < p.end && sendErr == nil; j++ {
			sendErr = e.batch[j].Err
		}
		if sendErr != nil {
			e.sendFailed(p.k, sendErr)
			continue
		}
		p.r.sent.Inc()
	}
	clear(e.batch) // keeps no payload or error alive
}

// sendFailEvery is how often at most one cause of failed sends is logged:
// a cause that lasts (an IPv6 link-local address still tentative while DAD
// runs, a link without carrier) fails every advert of every router.
const sendFailEvery = 10 * time.Second

// sendFailed logs a failed advert once per cause per sendFailEvery, with
// how many were left out meanwhile.
func (e *Engine) sendFailed(k routerKey, err error) {
	cause := err.Error()
	now := e.deps.Clock.Now()
	if e.sendFails == nil {
		e.sendFails = map[string]*sendFail{}
	}
	f := e.sendFails[cause]
	if f != nil && now.Sub(f.logged) < sendFailEvery {
		f.suppressed++
		return
	}
	if f == nil {
		if len(e.sendFails) >= maxLoggedSources {
			clear(e.sendFails)
		}
		f = &sendFail{}
		e.sendFails[cause] = f
	}
	e.deps.Log.Warn().Err(err).Str("vrid", k.String()).Int("like_it_since_last", f.suppressed).
		Msg("cannot send advert (an IPv6 source still tentative waits for DAD; this cause is logged once per 10 s)")
	f.logged, f.suppressed = now, 0
}

// sendFail is one cause of failed sends, as last logged.
type sendFail struct {
	logged     time.Time
	suppressed int
}
