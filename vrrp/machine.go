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
	// lastAnswer is when, as Master, it last advertised out of turn to
	// answer another speaker: at most once per advert interval, so a
	// flood of spoofed adverts makes it send no more than twice its rate.
	lastAnswer time.Time
}

// answerNow reports whether a Master may advertise out of turn at now,
// and if so books it and restarts the advert timer.
func (m *Machine) answerNow(now time.Time) bool {
	interval := cs(int(m.cfg.Interval))
	if !m.lastAnswer.IsZero() && now.Sub(m.lastAnswer) < interval {
		return false
	}
	m.lastAnswer = now
	m.adverTimer = now.Add(interval)
	return true
}

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

// MasterAdverInterval returns the interval in use, learned from the master in Backup.
func (m *Machine) MasterAdverInterval() uint16 { return m.masterAdverInterval }

func cs(n int) time.Duration { return time.Duration(n) * 10 * time.Millisecond }

// SkewTime is ((256-Priority) * Master_Adver_Interval) / 256, in centiseconds
// as RFC 5798 §6.1 defines it.
func SkewTime(priority uint8, masterAdverInterval uint16) time.Duration {
	return cs((256 - int(priority)) * int(masterAdverInterval) / 256)
}

// MasterDownInterval is 3 * Master_Adver_Interval + Skew_Time.
func MasterDownInterval(priority uint8, masterAdverInterval uint16) time.Duration {
	return cs(3*int(masterAdverInterval)) + SkewTime(priority, masterAdverInterval)
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
		return m.adverTimer
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
		return m.becomeMaster(now)
	}
	m.masterAdverInterval = m.cfg.Interval
	m.becomeBackup(now)
	return nil
}

// Shutdown handles the Shutdown event (§6.4.2, §6.4.3): a Master sends a
// priority-0 advert so a backup takes over after Skew_Time, and releases the VIPs.
func (m *Machine) Shutdown(now time.Time) []Action {
	prev := m.state
	m.state = Initialize
	m.adverTimer, m.masterDownTimer, m.preemptAfter = time.Time{}, time.Time{}, time.Time{}
	if prev == Master {
		return []Action{ActSendResign, ActRelease}
	}
	return nil
}

// sendAdvertOnly is the actions of a master's periodic advert, shared so
// that the hottest path allocates nothing. Callers only read actions.
var sendAdvertOnly = []Action{ActSendAdvert}

// Tick fires whichever timer has expired at now.
func (m *Machine) Tick(now time.Time) []Action {
	switch m.state {
	case Master:
		if !m.adverTimer.IsZero() && !now.Before(m.adverTimer) {
			m.adverTimer = now.Add(cs(int(m.cfg.Interval)))
			return sendAdvertOnly
		}
	case Backup:
		if !m.masterDownTimer.IsZero() && !now.Before(m.masterDownTimer) {
			return m.becomeMaster(now)
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
			return nil
		}
		if !m.cfg.Preempt || adv.Priority >= m.cfg.Priority || m.preemptHeldOff(now) {
			m.masterAddr, m.masterPriority = src, adv.Priority
			m.masterAdverInterval = adv.Interval
			m.masterDownTimer, m.downFrom = now.Add(m.masterDown()), now
			if adv.Priority >= m.cfg.Priority {
				m.preemptAfter = time.Time{}
			}
		}
		// Otherwise discard: the master-down timer runs out and we preempt.
		return nil
	case Master:
		if adv.Priority == 0 {
			if !m.answerNow(now) {
				return nil // our next advert answers it
			}
			return []Action{ActSendAdvert}
		}
		if adv.Priority > m.cfg.Priority ||
			(adv.Priority == m.cfg.Priority && src.Compare(m.cfg.LocalAddr) > 0) {
			m.masterAddr, m.masterPriority = src, adv.Priority
			m.masterAdverInterval = adv.Interval
			m.becomeBackup(now)
			m.preemptAfter = time.Time{}
			// One last advert at our priority tells the winner that there
			// were two masters, so it re-announces (ActReassert): the
			// router may hold this node's MAC. Backups treat it like any
			// advert, and the winner's answer follows at once.
			return []Action{ActRelease, ActSendAdvert}
		}
		// Another master that loses to this one: answer at once, so it
		// steps down now rather than at our next advert, and re-announce,
		// as keepalived does by default (the engine rate-limits that).
		if !m.answerNow(now) {
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
	m.adverTimer = time.Time{}
	m.masterDownTimer, m.downFrom = now.Add(m.masterDown()), now
}

func (m *Machine) becomeMaster(now time.Time) []Action {
	m.state = Master
	m.masterDownTimer, m.preemptAfter = time.Time{}, time.Time{}
	m.masterAddr, m.masterPriority = m.cfg.LocalAddr, m.cfg.Priority
	m.masterAdverInterval = m.cfg.Interval
	m.adverTimer = now.Add(cs(int(m.cfg.Interval)))
	return []Action{ActSendAdvert, ActTakeover}
}
