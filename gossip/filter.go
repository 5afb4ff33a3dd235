package gossip

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/rs/zerolog"
)

// sourceFilter is memberlist's network transport with a doorman: a packet
// or stream whose source is neither a member nor a seed (nor in
// gossip.allow_from) is dropped before memberlist reads it, so a stranger
// costs a closed connection, not a decrypt, a log line or a 20 MB buffer.
// Its own dials leave from the bound address, so that a multi-homed peer
// sees them come from the address it knows this node by.
type sourceFilter struct {
	*memberlist.NetTransport
	admit   func(netip.Addr) bool
	dialer  net.Dialer
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	stop    sync.Once
	wg      sync.WaitGroup
	refused refusals
}

// newSourceFilter wraps nt; local is the bound address (invalid: any).
func newSourceFilter(nt *memberlist.NetTransport, local netip.Addr, admit func(netip.Addr) bool, log zerolog.Logger) *sourceFilter {
	f := &sourceFilter{NetTransport: nt, admit: admit, packets: make(chan *memberlist.Packet), streams: make(chan net.Conn),
		done: make(chan struct{}), refused: refusals{log: log}}
	if local.IsValid() && !local.IsUnspecified() {
		f.dialer.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
	}
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		forward(f, nt.PacketCh(), f.packets, func(p *memberlist.Packet) net.Addr { return p.From }, func(*memberlist.Packet) {})
	}()
	go func() {
		defer f.wg.Done()
		forward(f, nt.StreamCh(), f.streams, net.Conn.RemoteAddr, func(c net.Conn) { c.Close() })
	}()
	return f
}

// forward passes what comes from admitted sources on to memberlist and
// drops the rest, until the transport shuts down.
func forward[T any](f *sourceFilter, in <-chan T, out chan<- T, from func(T) net.Addr, drop func(T)) {
	for {
		var v T
		select {
		case v = <-in:
		case <-f.done:
			return
		}
		if src := addrOf(from(v)); !f.admit(src) {
			drop(v)
			f.refused.add(src)
			continue
		}
		select {
		case out <- v:
		case <-f.done:
			drop(v)
			return
		}
	}
}

// addrOf is the IP of a UDP or TCP address; invalid for anything else.
func addrOf(a net.Addr) netip.Addr {
	var ip net.IP
	switch a := a.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	}
	addr, _ := netip.AddrFromSlice(ip)
	return addr.Unmap()
}

// PacketCh implements memberlist.Transport: the admitted packets.
func (f *sourceFilter) PacketCh() <-chan *memberlist.Packet { return f.packets }

// StreamCh implements memberlist.Transport: the admitted streams.
func (f *sourceFilter) StreamCh() <-chan net.Conn { return f.streams }

// DialTimeout implements memberlist.Transport from the bound address.
func (f *sourceFilter) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	d := f.dialer
	d.Timeout = timeout
	return d.Dial("tcp", addr)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (f *sourceFilter) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return f.DialTimeout(a.Addr, timeout)
}

// Shutdown implements memberlist.Transport: it closes the sockets, then
// ends the forwarders.
func (f *sourceFilter) Shutdown() error {
	err := f.NetTransport.Shutdown()
	f.stop.Do(func() { close(f.done) })
	f.wg.Wait()
	return err
}

// Refused is how many packets and streams were dropped for their source.
func (f *sourceFilter) Refused() uint64 { return f.refused.total.Load() }

// refusals counts dropped sources and says so at most once per logEvery.
type refusals struct {
	log   zerolog.Logger
	total atomic.Uint64
	mu    sync.Mutex
	last  time.Time
	since int
}

func (r *refusals) add(src netip.Addr) {
	r.total.Add(1)
	r.mu.Lock()
	r.since++
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < logEvery {
		r.mu.Unlock()
		return
	}
	n := r.since
	r.last, r.since = now, 0
	r.mu.Unlock()
	r.log.Warn().Stringer("source", src).Int("refused_since_last", n).
		Msg("gossip from a source that is neither a member nor a seed: dropped unread; if it is a new node, add it to gossip.join or gossip.allow_from")
}
