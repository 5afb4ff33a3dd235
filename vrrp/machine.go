package vrrp

import (
	"net/netip"
	"time"
)

// State is a virtual router's RFC 5798 state.
type State int

// The three states of RFC 5798 §6.4.
const (
	Initialize State = iota
	Backup
	Master
)

func (s State) String() string {
	switch s {
	case Initialize:
		return "initialize"
	case Backup:
		return "backup"
	case Master:
		return "master"
	}
	return "unknown"
}

// Action is what the machine asks its driver to do. Keeping the machine free
// of I/O is what lets every transition be tested with plain values.
type Action int

// Actions, performed by the driver in the order returned.
const (
	// ActSendAdvert sends an advert carrying the machine's current priority.
	ActSendAdvert Action = iota
	// ActSendResign sends an advert with priority 0 (shutdown or resign).
	ActSendResign
	// ActTakeover adds the VIPs and starts the gratuitous ARP / NA burst.
	ActTakeover
	// ActRelease stops announcing and removes the VIPs.
	ActRelease
	// ActReassert re-announces the VIPs at once: another master, which
	// loses to this one, was heard (a split brain healing), and the router
	// may have learnt its MAC. The driver rate-limits it.
	ActReassert
)

// MachineConfig is the per-virtual-router configuration the machine needs.
type MachineConfig struct {
	Priority     uint8         // 1..255; 255 means address owner
	Interval     uint16        // Advertisement_Interval, centiseconds
	Preempt      bool          // Preempt_Mode
	PreemptDelay time.Duration // wait this long, after first seeing a lower master, before preempting
	// LocalAddr is this router's primary address, used for the tie break
	// between equal priorities (RFC 5798 §6.4.3).
	LocalAddr netip.Addr
	// Version 2 computes Skew_Time as RFC 3768 does, independent of the
	// interval; 3 (or 0) as RFC 5798 does.
	Version int
}

// Machine is one virtual router's state machine (RFC 5798 §6.4). It holds
// timers as deadlines; the driver calls Tick when NextDeadline has passed.
// It is not safe for concurrent use: one driver goroutine owns it.
type Machine struct {
	cfg   MachineConfig
	state State

	masterAdverInterval uint16 // centiseconds, learned from the master in Backup
	adverTimer          time.Time
	masterDownTimer     time.Time
	downFrom            time.Time // when masterDownTimer was last (re)started
	// preemptAfter is when, in Backup, a lower-priority master may be
	// preempted; zero when no lower master has been seen.
	preemptAfter time.Time
	// MasterAddr is the last master heard from (Backup) or our own address.
	masterAddr     netip.Addr
	masterPriority uint8
	// answersFrom and answers count, as Master, the adverts sent out of
	// turn to answer other speakers in the advert interval that began at
	// answersFrom: to lower-priority adverts at most claimAdverts, so a
	// claiming backup (see claimUntil) gets an answer to each claim, to
	// priority-0 ones at most one. A flood of spoofed adverts makes it
	// send no more than claimAdverts+1 times its rate, and never more
	// adverts than it received.
	answersFrom time.Time
	answers     int
	// preempting: in Backup, the Master_Down_Timer runs because this
	// router discards a lower master's adverts (preemption), not because
	// they stopped. vacated: the master resigned (priority 0).
	preempting, vacated bool
	// claimUntil, while non-zero, is when a Master that found the old
	// master silent takes the VIPs; until then it claims the router with
	// an advert every ClaimWindow/claimAdverts (claimNext). A master that
	// is alive and outranks it (its adverts lost, not stopped) answers a
	// claim at once, and this router steps down before the router has
	// learnt its MAC: packet loss costs no move. claimsLeft counts the
	// claims still to send.
	claimUntil, claimNext time.Time
	claimsLeft            int
}

// claimAdverts is how many adverts a backup that found the master silent
// sends before it takes the VIPs: with 25 % loss each way, one claim and
// its answer both arrive with probability 0.56, one of seven with 0.997.
const claimAdverts = 7

// ClaimWindow is how long a backup that found the master silent claims
// the virtual router before it takes the VIPs (and announces them): a
// quarter of the advert interval, at most 50 ms. Failover after a
// master's crash takes that much longer; a preemption or a master's
// resignation does not wait.
func ClaimWindow(masterAdverInterval uint16) time.Duration {
	return min(cs(int(masterAdverInterval))/4, 50*time.Millisecond)
}

// answerNow reports whether a Master may advertise out of turn at now,
// having answered fewer than limit times in this interval, and if so
// books it and restarts the advert timer.
func (m *Machine) answerNow(now time.Time, limit int) bool {
	interval := cs(int(m.cfg.Interval))
	if m.answersFrom.IsZero() || now.Sub(m.answersFrom) >= interval {
		m.answersFrom, m.answers = now, 0
	}
	if m.answers >= limit {
		return false
	}
	m.answers++
	m.adverTimer = now.Add(interval)
	return true
}

// Holds reports whether the router is Master and has taken its VIPs
// (it is past its claim): only then are they announced or defended.
func (m *Machine) Holds() bool { return m.state == Master && m.claimUntil.IsZero() }

// NewMachine returns a machine in Initialize.
func NewMachine(cfg MachineConfig) *Machine {
	return &Machine{cfg: cfg, state: Initialize, masterAdverInterval: cfg.Interval}
}

// State returns the current state.
func (m *Machine) State() State { return m.state }

// Priority returns the configured priority.
func (m *Machine) Priority() uint8 { return m.cfg.Priority }

// MasterAddr returns the address of the current master as far as this router
// knows (itself when Master), and its priority.
func (m *Machine) MasterAddr() (netip.Addr, uint8) { return m.masterAddr, m.masterPriority }

func cs(n int) time.Duration { return time.Duration(n) * 10 * time.Millisecond }

// SkewTime is ((256-Priority) * Master_Adver_Interval) / 256, in centiseconds
// as RFC 5798 §6.1 defines it.
func SkewTime(priority uint8, masterAdverInterval uint16) time.Duration {
	return cs((256 - int(priority)) * int(masterAdverInterval) / 256)
}

// SkewTimeV2 is (256-Priority)/256 seconds, as RFC 3768 §6.1 defines it
// for VRRPv2, whatever the advert interval.
func SkewTimeV2(priority uint8) time.Duration {
	return time.Duration(256-int(priority)) * time.Second / 256
}

func (m *Machine) skew() time.Duration {
	if m.cfg.Version == 2 {
		return SkewTimeV2(m.cfg.Priority)
	}
	return SkewTime(m.cfg.Priority, m.masterAdverInterval)
}

func (m *Machine) masterDown() time.Duration {
	return cs(3*int(m.masterAdverInterval)) + m.skew()
}

// NextDeadline is when Tick must next be called; zero when no timer runs.
func (m *Machine) NextDeadline() time.Time {
	switch m.state {
	case Master:
		next := earliest(m.adverTimer, m.claimUntil)
		if m.claimsLeft > 0 {
			next = earliest(next, m.claimNext)
		}
		return next
	case Backup:
		return m.masterDownTimer
	}
	return time.Time{}
}

// Startup handles the Startup event in Initialize (§6.4.1).
func (m *Machine) Startup(now time.Time) []Action {
	if m.state != Initialize {
		return nil
	}
	if m.cfg.Priority == 255 {
		return m.becomeMaster(now, false)
	}
	m.masterAdverInterval = m.cfg.Interval
	m.becomeBackup(now)
	return nil
}

// Shutdown handles the Shutdown event (§6.4.2, §6.4.3): a Master sends a
// priority-0 advert so a backup takes over after Skew_Time, and releases the VIPs.
func (m *Machine) Shutdown(now time.Time) []Action {
	prev, held := m.state, m.Holds()
	m.state = Initialize
	m.adverTimer, m.masterDownTimer, m.preemptAfter = time.Time{}, time.Time{}, time.Time{}
	m.claimUntil, m.claimNext, m.claimsLeft = time.Time{}, time.Time{}, 0
	switch {
	case held:
		return []Action{ActSendResign, ActRelease}
	case prev == Master:
		return []Action{ActSendResign} // it claimed, but took nothing
	}
	return nil
}

// sendAdvertOnly is the actions of a master's periodic advert, shared so
// that the hottest path allocates nothing. Callers only read actions.
var sendAdvertOnly = []Action{ActSendAdvert}

// takeoverOnly is the action of a claim that nobody answered.
var takeoverOnly = []Action{ActTakeover}

// Tick fires whichever timer has expired at now.
func (m *Machine) Tick(now time.Time) []Action {
	switch m.state {
	case Master:
		if !m.claimUntil.IsZero() && !now.Before(m.claimUntil) {
			m.claimUntil, m.claimNext, m.claimsLeft = time.Time{}, time.Time{}, 0
			return takeoverOnly
		}
		if m.claimsLeft > 0 && !now.Before(m.claimNext) {
			m.claimsLeft--
			m.claimNext = m.claimNext.Add(ClaimWindow(m.cfg.Interval) / claimAdverts)
			return sendAdvertOnly
		}
		if !m.adverTimer.IsZero() && !now.Before(m.adverTimer) {
			m.adverTimer = now.Add(cs(int(m.cfg.Interval)))
			return sendAdvertOnly
		}
	case Backup:
		if !m.masterDownTimer.IsZero() && !now.Before(m.masterDownTimer) {
			// A master that was preempted or resigned is not there to
			// answer a claim: take over at once.
			return m.becomeMaster(now, !m.preempting && !m.vacated)
		}
	}
	return nil
}

// SetPriority changes the priority at run time. A Master advertises the new
// value at once, so a higher backup with preemption can take over without
// waiting for the next interval. A Backup's running Master_Down_Timer is
// recomputed with the new Skew_Time from when it was last started: backups
// that all started at one priority and were then ranked apart must not
// keep expiring in the same instant.
func (m *Machine) SetPriority(now time.Time, p uint8) []Action {
	if p == 0 || p == m.cfg.Priority {
		return nil
	}
	m.cfg.Priority = p
	switch m.state {
	case Master:
		m.masterPriority = p
		m.adverTimer = now.Add(cs(int(m.cfg.Interval)))
		return []Action{ActSendAdvert}
	case Backup:
		if !m.masterDownTimer.IsZero() {
			m.masterDownTimer = m.downFrom.Add(m.masterDown())
			if m.masterDownTimer.Before(now) {
				m.masterDownTimer = now
			}
		}
	}
	return nil
}

// HandleAdvert processes an advert that passed validation (§6.4.2, §6.4.3).
func (m *Machine) HandleAdvert(now time.Time, src netip.Addr, adv Advert) []Action {
	switch m.state {
	case Backup:
		if adv.Priority == 0 {
			// Only the master resigns: a priority-0 advert from anyone
			// else (a forged one) must not start an election.
			if m.masterAddr.IsValid() && src != m.masterAddr {
				return nil
			}
			m.masterDownTimer = now.Add(m.skew())
			// As if started Master_Down_Interval before it expires, so a
			// priority change recomputes it consistently.
			m.downFrom = now.Add(m.skew() - m.masterDown())
			m.vacated = true
			return nil
		}
		if !m.cfg.Preempt || adv.Priority >= m.cfg.Priority || m.preemptHeldOff(now) {
			m.masterAddr, m.masterPriority = src, adv.Priority
			m.masterAdverInterval = adv.Interval
			m.masterDownTimer, m.downFrom = now.Add(m.masterDown()), now
			m.preempting, m.vacated = false, false
			if adv.Priority >= m.cfg.Priority {
				m.preemptAfter = time.Time{}
			}
			return nil
		}
		// Otherwise discard: the master-down timer runs out and we preempt.
		m.preempting = true
		return nil
	case Master:
		if adv.Priority == 0 {
			if !m.answerNow(now, 1) {
				return nil // our next advert answers it
			}
			return []Action{ActSendAdvert}
		}
		if adv.Priority > m.cfg.Priority ||
			(adv.Priority == m.cfg.Priority && src.Compare(m.cfg.LocalAddr) > 0) {
			held := m.Holds()
			m.masterAddr, m.masterPriority = src, adv.Priority
			m.masterAdverInterval = adv.Interval
			m.becomeBackup(now)
			m.preemptAfter = time.Time{}
			if !held {
				return nil // a claim answered: nothing was taken or announced
			}
			// One last advert at our priority tells the winner that there
			// were two masters, so it re-announces (ActReassert): the
			// router may hold this node's MAC. Backups treat it like any
			// advert, and the winner's answer follows at once.
			return []Action{ActRelease, ActSendAdvert}
		}
		// Another master that loses to this one: answer at once, so it
		// steps down now rather than at our next advert, and re-announce,
		// as keepalived does by default (the engine rate-limits that).
		// While claiming, there is nothing to re-announce yet.
		switch answer := m.answerNow(now, claimAdverts); {
		case !m.Holds() && answer:
			return sendAdvertOnly
		case !m.Holds():
			return nil
		case !answer:
			return []Action{ActReassert}
		}
		return []Action{ActSendAdvert, ActReassert}
	}
	return nil
}

// preemptHeldOff reports whether a lower-priority master must still be
// accepted because preempt_delay has not run out since it was first seen.
func (m *Machine) preemptHeldOff(now time.Time) bool {
	if m.cfg.PreemptDelay <= 0 {
		return false
	}
	if m.preemptAfter.IsZero() {
		m.preemptAfter = now.Add(m.cfg.PreemptDelay)
	}
	return now.Before(m.preemptAfter)
}

func (m *Machine) becomeBackup(now time.Time) {
	m.state = Backup
	m.adverTimer, m.claimUntil, m.claimNext, m.claimsLeft = time.Time{}, time.Time{}, time.Time{}, 0
	m.preempting, m.vacated = false, false
	m.masterDownTimer, m.downFrom = now.Add(m.masterDown()), now
}

// becomeMaster advertises and takes the VIPs, or with claim advertises
// and takes them after ClaimWindow unless a better master answers.
func (m *Machine) becomeMaster(now time.Time, claim bool) []Action {
	m.state = Master
	m.masterDownTimer, m.preemptAfter = time.Time{}, time.Time{}
	m.preempting, m.vacated = false, false
	m.masterAddr, m.masterPriority = m.cfg.LocalAddr, m.cfg.Priority
	m.masterAdverInterval = m.cfg.Interval
	m.adverTimer = now.Add(cs(int(m.cfg.Interval)))
	if claim {
		window := ClaimWindow(m.cfg.Interval)
		m.claimUntil, m.claimNext, m.claimsLeft = now.Add(window), now.Add(window/claimAdverts), claimAdverts-1
		return sendAdvertOnly
	}
	return []Action{ActSendAdvert, ActTakeover}
}
