package vrrp

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Sender puts an announcement of a VIP on the wire (part or all of a
// gratuitous ARP request and reply, or an unsolicited NA) and says how
// many packets that took, so the pacer can count them against the budget.
type Sender interface {
	Send(a netip.Addr, part Part) (packets int, err error)
}

// Announcer is how the engine asks for announcements. Queuing, not
// sending: the engine's loop never waits on the network or the budget.
type Announcer interface {
	// Takeover queues the first announcement of a VIP this node just took
	// over: ahead of everything else, one kind first (see Part), so the
	// router follows within moments of VRRP's decision.
	Takeover(a netip.Addr)
	// Announce queues one announcement; urgent ones (the rest of a
	// takeover burst) go before defence answers and refreshes.
	Announce(a netip.Addr, urgent bool)
	// Defend queues an answer to another speaker (a MAC's announcement of
	// a VIP, a lower-priority master's advert): after the takeovers,
	// before the refreshes, within half the budget, so that answering a
	// flood never delays a takeover nor stops the refreshes.
	Defend(a netip.Addr)
	// Withdraw drops queued announcements of a VIP this node just released,
	// so a backup never announces a VIP it does not hold.
	Withdraw(a netip.Addr)
	// Wave queues one announcement of each VIP as one on-demand wave.
	Wave(addrs []netip.Addr)
}

type pending struct {
	addr   netip.Addr
	part   Part
	queued time.Time
	wave   *wave
	answer bool // from the defend queue: counts against the answers' budget
}

type wave struct {
	start time.Time
	left  int
}

// Pacer is the Announcer of one interface: everything it sends shares one
// Budget. A takeover's first kind of every VIP goes first, then its second
// kind, then the rest of the bursts, the answers and the refreshes; it
// drops nothing: excess waits, and the wait is a metric.
type Pacer struct {
	sender  Sender
	budget  Budget
	clock   Clock
	metrics *Metrics
	log     zerolog.Logger

	mu       sync.Mutex
	takeover []pending
	second   []pending
	urgent   []pending
	repair   []pending
	defend   []pending
	normal   []pending
	queued   map[netip.Addr]bool // in normal, to queue each VIP once
	// taking: in takeover; seconding: in second; pressing: in urgent;
	// defending: in defend. One pending announcement of a VIP serves every
	// request of its kind until it goes out, so each queue holds at most
	// one per VIP, however many foreign claims come.
	taking, seconding, pressing, repairing, defending map[netip.Addr]bool
	wake                                              chan struct{}
	// win holds the sends of the last second, enforced exactly: "at most
	// so many packets in any one-second (and any 100 ms) window".
	win window
}

// window is the packets sent in the last second, oldest first.
type window struct {
	sent []sentPackets
}

type sentPackets struct {
	at     time.Time
	n      int
	answer bool
}

// tick is the budget's short window.
const tick = 100 * time.Millisecond

// expire drops the sends a second old or older.
func (w *window) expire(now time.Time) {
	i := 0
	for i < len(w.sent) && !now.Before(w.sent[i].at.Add(time.Second)) {
		i++
	}
	w.sent = w.sent[i:]
}

func (w *window) add(at time.Time, n int, answer bool) {
	w.sent = append(w.sent, sentPackets{at: at, n: n, answer: answer})
}

// wait says how long until need more packets fit under limit packets in
// any window of span (0: now, or no limit); answers counts the answers
// alone against it. Call expire first.
func (w *window) wait(now time.Time, span time.Duration, limit, need int, answers bool) time.Duration {
	if limit <= 0 {
		return 0
	}
	need = min(need, limit)
	counted := func(s sentPackets) bool { return now.Sub(s.at) < span && (!answers || s.answer) }
	used := 0
	for _, s := range w.sent {
		if counted(s) {
			used += s.n
		}
	}
	if used+need <= limit {
		return 0
	}
	// Wait for enough of the oldest sends to leave the window.
	free := limit - used
	for _, s := range w.sent {
		if !counted(s) {
			continue
		}
		free += s.n
		if free >= need {
			return s.at.Add(span).Sub(now)
		}
	}
	return span
}

// fits says how long until need more packets fit the budget b (0: now).
func (w *window) fits(now time.Time, b Budget, need int) time.Duration {
	return max(w.wait(now, time.Second, b.PerSecond, need, false), w.wait(now, tick, b.PerTick, need, false))
}

// answerBudget is how many packets a second answers may take: half the
// budget, so refreshes go on through a flood of foreign claims.
func (p *Pacer) answerBudget() int { return max(2, p.budget.PerSecond/2) }

// NewPacer creates a pacer; Run sends.
func NewPacer(sender Sender, budget Budget, clock Clock, metrics *Metrics, log zerolog.Logger) *Pacer {
	if clock == nil {
		clock = SystemClock{}
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	metrics.RateLimit.Set(float64(budget.PerSecond))
	return &Pacer{sender: sender, budget: budget, clock: clock, metrics: metrics, log: log,
		queued: map[netip.Addr]bool{}, taking: map[netip.Addr]bool{}, seconding: map[netip.Addr]bool{},
		pressing: map[netip.Addr]bool{}, repairing: map[netip.Addr]bool{}, defending: map[netip.Addr]bool{}, wake: make(chan struct{}, 1)}
}

func (p *Pacer) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *Pacer) queueLen() {
	p.metrics.AnnounceQueue.Set(float64(len(p.takeover) + len(p.second) + len(p.urgent) + len(p.repair) + len(p.defend) + len(p.normal)))
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
	p.enqueue(&p.takeover, p.taking, pending{addr: a, part: PartFirst})
}

// Announce implements Announcer.
func (p *Pacer) Announce(a netip.Addr, urgent bool) {
	if urgent {
		p.enqueue(&p.urgent, p.pressing, pending{addr: a})
	} else {
		p.enqueue(&p.normal, p.queued, pending{addr: a})
	}
}

// Repair queues a re-announcement of a VIP the router does not send to
// this node (garp.verify): to the router first, then to all; behind the
// takeovers and bursts, ahead of the answers and refreshes.
func (p *Pacer) Repair(a netip.Addr) {
	p.enqueue(&p.repair, p.repairing, pending{addr: a, part: PartRepair})
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
	p.second = drop(p.second)
	p.urgent = drop(p.urgent)
	p.repair = drop(p.repair)
	p.defend = drop(p.defend)
	p.normal = drop(p.normal)
	delete(p.queued, a)
	delete(p.taking, a)
	delete(p.seconding, a)
	delete(p.pressing, a)
	delete(p.repairing, a)
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

// pop takes the next announcement if the budget allows one now;
// otherwise it says how long to wait (0: the queues are empty).
func (p *Pacer) pop() (pending, bool, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	p.win.expire(now)
	var it pending
	var from *[]pending
	var in map[netip.Addr]bool
	switch {
	case len(p.takeover) > 0:
		from, in = &p.takeover, p.taking
	case len(p.second) > 0:
		from, in = &p.second, p.seconding
	case len(p.urgent) > 0:
		from, in = &p.urgent, p.pressing
	case len(p.repair) > 0:
		from, in = &p.repair, p.repairing
	case len(p.defend) > 0 && (len(p.normal) == 0 || p.win.wait(now, time.Second, p.answerBudget(), PartAll.packets(), true) == 0):
		from, in = &p.defend, p.defending
	case len(p.normal) > 0:
		from, in = &p.normal, p.queued
	default:
		return pending{}, false, 0
	}
	it = (*from)[0]
	need := it.part.packets()
	wait := p.win.fits(now, p.budget, need)
	if from == &p.defend {
		wait = max(wait, p.win.wait(now, time.Second, p.answerBudget(), need, true))
		it.answer = true
	}
	if wait > 0 {
		return pending{}, false, wait
	}
	*from = (*from)[1:]
	delete(in, it.addr)
	p.queueLen()
	return it, true, 0
}

// SetBudget changes the budget from now on.
func (p *Pacer) SetBudget(b Budget) {
	p.mu.Lock()
	p.budget = b
	p.mu.Unlock()
	p.metrics.RateLimit.Set(float64(b.PerSecond))
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
// the budget; a takeover's first kind queues its second.
func (p *Pacer) send(it pending) {
	now := p.clock.Now()
	n, err := p.sender.Send(it.addr, it.part)
	kind := "garp"
	if it.addr.Is6() {
		kind = "na"
	}
	if err != nil {
		p.log.Warn().Err(err).Str("vip", it.addr.String()).Msg("cannot announce VIP")
	} else if n > 0 {
		p.metrics.Announcements.WithLabelValues(it.addr.String(), kind).Inc()
	}
	if it.part != PartSecond {
		p.metrics.AnnounceWait.Observe(now.Sub(it.queued).Seconds())
	}
	p.mu.Lock()
	if n > 0 {
		p.win.add(now, n, it.answer)
	}
	if it.wave != nil {
		p.waveStep(it.wave)
	}
	p.mu.Unlock()
	switch {
	case it.part == PartFirst && it.addr.Is4():
		p.enqueue(&p.second, p.seconding, pending{addr: it.addr, part: PartSecond})
	case it.part == PartRepair:
		p.Announce(it.addr, true) // then to all
	}
}
