package vrrp

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Sender puts one announcement of a VIP on the wire (a gratuitous ARP
// request and/or reply, or an unsolicited NA) and says how many packets
// that took, so the pacer can count them against the rate cap.
type Sender interface {
	Send(a netip.Addr) (packets int, err error)
}

// Announcer is how the engine asks for announcements. Queuing, not
// sending: the engine's loop never waits on the network or the rate cap.
type Announcer interface {
	// Takeover queues the first announcement of a VIP this node just took
	// over: ahead of everything else, within the takeover rate of its own,
	// so the router follows within moments of VRRP's decision.
	Takeover(a netip.Addr)
	// Announce queues one announcement; urgent ones (the rest of a
	// takeover burst) go before defence answers and refreshes.
	Announce(a netip.Addr, urgent bool)
	// Defend queues an answer to another speaker (a MAC's announcement of
	// a VIP, a lower-priority master's advert): after the takeovers,
	// before the refreshes, within half the rate cap, so that answering a
	// flood never delays a takeover nor stops the refreshes.
	Defend(a netip.Addr)
	// Withdraw drops queued announcements of a VIP this node just released,
	// so a backup never announces a VIP it does not hold.
	Withdraw(a netip.Addr)
	// Wave queues one announcement of each VIP as one on-demand wave.
	Wave(addrs []netip.Addr)
}

type pending struct {
	addr     netip.Addr
	queued   time.Time
	wave     *wave
	answer   bool // from the defend queue: counts against the answers' budget
	takeover bool // from the takeover queue: counts against the takeover rate
}

type wave struct {
	start time.Time
	left  int
}

// Pacer is the Announcer of one interface: it sends the first
// announcement of each VIP taken over within the takeover rate, and every
// other announcement (the rest of the bursts first) within MaxRate packets
// per second; it drops nothing: excess waits, and the wait is a metric.
type Pacer struct {
	sender       Sender
	rate         int // packets per second; 0: unlimited
	takeoverRate int // the takeover queue's; 0: unlimited
	clock        Clock
	metrics      *Metrics
	log          zerolog.Logger

	mu       sync.Mutex
	takeover []pending
	urgent   []pending
	defend   []pending
	normal   []pending
	queued   map[netip.Addr]bool // in normal, to queue each VIP once
	// taking: in takeover; pressing: in urgent; defending: in defend. One
	// pending announcement of a VIP serves every request of its kind until
	// it goes out, so each queue holds at most one per VIP, however many
	// foreign claims come.
	taking, pressing, defending map[netip.Addr]bool
	wake                        chan struct{}
	// win holds the sends of the last second against rate, takeoverWin
	// those against takeoverRate: each cap is "at most so many packets in
	// any one-second window", enforced exactly.
	win, takeoverWin window
}

// window is the packets sent in the last second.
type window struct {
	sent    []sentPackets
	n       int // packets in sent
	answers int // of them, answers
}

type sentPackets struct {
	at     time.Time
	n      int
	answer bool
}

// expire drops the sends a second old or older.
func (w *window) expire(now time.Time) {
	for len(w.sent) > 0 && !now.Before(w.sent[0].at.Add(time.Second)) {
		w.n -= w.sent[0].n
		if w.sent[0].answer {
			w.answers -= w.sent[0].n
		}
		w.sent = w.sent[1:]
	}
}

func (w *window) add(at time.Time, n int, answer bool) {
	w.sent = append(w.sent, sentPackets{at: at, n: n, answer: answer})
	w.n += n
	if answer {
		w.answers += n
	}
}

// wait says how long until one more announcement (up to 2 packets) fits
// under limit packets a second (0: now, or no limit); answers counts the
// answers alone against it. Call expire first.
func (w *window) wait(now time.Time, limit int, answers bool) time.Duration {
	if limit <= 0 {
		return 0
	}
	const maxPackets = 2 // an IPv4 announcement in mode both
	need, used := min(maxPackets, limit), w.n
	if answers {
		used = w.answers
	}
	if used+need <= limit {
		return 0
	}
	// Wait for enough of the oldest sends to leave the window.
	free := limit - used
	for _, s := range w.sent {
		if answers && !s.answer {
			continue
		}
		free += s.n
		if free >= need {
			return s.at.Add(time.Second).Sub(now)
		}
	}
	return time.Second
}

// answerBudget is how many packets a second answers may take: half the
// rate cap, so refreshes go on through a flood of foreign claims.
func (p *Pacer) answerBudget() int { return max(2, p.rate/2) }

// NewPacer creates a pacer; Run sends.
func NewPacer(sender Sender, maxRate, takeoverRate int, clock Clock, metrics *Metrics, log zerolog.Logger) *Pacer {
	if clock == nil {
		clock = SystemClock{}
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	metrics.RateLimit.Set(float64(maxRate))
	return &Pacer{sender: sender, rate: maxRate, takeoverRate: takeoverRate, clock: clock, metrics: metrics, log: log,
		queued: map[netip.Addr]bool{}, taking: map[netip.Addr]bool{}, pressing: map[netip.Addr]bool{}, defending: map[netip.Addr]bool{}, wake: make(chan struct{}, 1)}
}

func (p *Pacer) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Pacer) queueLen() {
	p.metrics.AnnounceQueue.Set(float64(len(p.takeover) + len(p.urgent) + len(p.defend) + len(p.normal)))
}

// enqueue appends it to q unless q holds its VIP already (in says which
// VIPs q holds), and wakes Run.
func (p *Pacer) enqueue(q *[]pending, in map[netip.Addr]bool, it pending) {
	p.mu.Lock()
	if !in[it.addr] {
		in[it.addr] = true
		it.queued = p.clock.Now()
		*q = append(*q, it)
	}
	p.queueLen()
	p.mu.Unlock()
	p.poke()
}

// Takeover implements Announcer.
func (p *Pacer) Takeover(a netip.Addr) {
	p.enqueue(&p.takeover, p.taking, pending{addr: a, takeover: true})
}

// Announce implements Announcer.
func (p *Pacer) Announce(a netip.Addr, urgent bool) {
	if urgent {
		p.enqueue(&p.urgent, p.pressing, pending{addr: a})
	} else {
		p.enqueue(&p.normal, p.queued, pending{addr: a})
	}
}

// Defend implements Announcer.
func (p *Pacer) Defend(a netip.Addr) { p.enqueue(&p.defend, p.defending, pending{addr: a}) }

// Withdraw implements Announcer.
func (p *Pacer) Withdraw(a netip.Addr) {
	p.mu.Lock()
	drop := func(q []pending) []pending {
		return slices.DeleteFunc(q, func(x pending) bool {
			if x.addr != a {
				return false
			}
			if x.wave != nil {
				p.waveStep(x.wave)
			}
			return true
		})
	}
	p.takeover = drop(p.takeover)
	p.urgent = drop(p.urgent)
	p.defend = drop(p.defend)
	p.normal = drop(p.normal)
	delete(p.queued, a)
	delete(p.taking, a)
	delete(p.pressing, a)
	delete(p.defending, a)
	p.queueLen()
	p.mu.Unlock()
	p.poke()
}

// Wave implements Announcer.
func (p *Pacer) Wave(addrs []netip.Addr) {
	if len(addrs) == 0 {
		return
	}
	p.mu.Lock()
	now := p.clock.Now()
	w := &wave{start: now}
	for _, a := range addrs {
		if p.queued[a] {
			continue // already due: that announcement serves the wave too
		}
		p.queued[a] = true
		w.left++
		p.normal = append(p.normal, pending{addr: a, queued: now, wave: w})
	}
	if w.left == 0 {
		p.metrics.WaveDuration.Observe(0)
	}
	p.queueLen()
	p.mu.Unlock()
	p.poke()
}

// waveStep counts one announcement of a wave done; callers hold mu.
func (p *Pacer) waveStep(w *wave) {
	w.left--
	if w.left == 0 {
		p.metrics.WaveDuration.Observe(p.clock.Now().Sub(w.start).Seconds())
	}
}

// pop takes the next announcement if its rate allows one now; otherwise
// it says how long to wait (0: the queues are empty).
func (p *Pacer) pop() (pending, bool, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	p.win.expire(now)
	p.takeoverWin.expire(now)
	var wait time.Duration
	if len(p.takeover) > 0 {
		if wait = p.takeoverWin.wait(now, p.takeoverRate, false); wait == 0 {
			it := p.takeover[0]
			p.takeover = p.takeover[1:]
			delete(p.taking, it.addr)
			p.queueLen()
			return it, true, 0
		}
	}
	if len(p.urgent) == 0 && len(p.defend) == 0 && len(p.normal) == 0 {
		return pending{}, false, wait
	}
	if w := p.win.wait(now, p.rate, false); w > 0 {
		return pending{}, false, minWait(wait, w)
	}
	answerWait := p.win.wait(now, p.answerBudget(), true)
	var it pending
	switch {
	case len(p.urgent) > 0:
		it, p.urgent = p.urgent[0], p.urgent[1:]
		delete(p.pressing, it.addr)
	case len(p.defend) > 0 && answerWait == 0:
		it, p.defend = p.defend[0], p.defend[1:]
		delete(p.defending, it.addr)
		it.answer = true
	case len(p.normal) > 0:
		it, p.normal = p.normal[0], p.normal[1:]
		delete(p.queued, it.addr)
	default: // only answers, over their budget
		return pending{}, false, minWait(wait, answerWait)
	}
	p.queueLen()
	return it, true, 0
}

// minWait is the sooner of two waits, where 0 is none.
func minWait(a, b time.Duration) time.Duration {
	if a == 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

// SetRate changes the caps (packets per second; 0: unlimited) from now on.
func (p *Pacer) SetRate(rate, takeoverRate int) {
	p.mu.Lock()
	p.rate, p.takeoverRate = rate, takeoverRate
	p.mu.Unlock()
	p.metrics.RateLimit.Set(float64(rate))
	p.poke()
}

// Run sends until ctx ends; what is still queued then is dropped, as the
// VIPs are being released.
func (p *Pacer) Run(ctx context.Context) {
	for {
		var timer <-chan time.Time
		if wait := p.sendDue(); wait > 0 {
			timer = p.clock.After(wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-timer:
		}
	}
}

// sendDue sends every queued announcement the rate cap allows now and says
// how long until the next one may go (0: the queue is empty). Tests call it
// directly on a fake clock, so what goes when is decided by time alone.
func (p *Pacer) sendDue() time.Duration {
	for {
		it, ok, wait := p.pop()
		if !ok {
			return wait
		}
		p.send(it)
	}
}

// send puts one announcement on the wire and books its packets against
// the rate cap.
func (p *Pacer) send(it pending) {
	now := p.clock.Now()
	n, err := p.sender.Send(it.addr)
	kind := "garp"
	if it.addr.Is6() {
		kind = "na"
	}
	if err != nil {
		p.log.Warn().Err(err).Str("vip", it.addr.String()).Msg("cannot announce VIP")
	} else {
		p.metrics.Announcements.WithLabelValues(it.addr.String(), kind).Inc()
	}
	p.metrics.AnnounceWait.Observe(now.Sub(it.queued).Seconds())
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case n == 0:
	case it.takeover && p.takeoverRate > 0:
		p.takeoverWin.add(now, n, false)
	case !it.takeover && p.rate > 0:
		p.win.add(now, n, it.answer)
	}
	if it.wave != nil {
		p.waveStep(it.wave)
	}
}
