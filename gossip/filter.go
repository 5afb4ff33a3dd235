package gossip

import (
	"errors"
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
// gossip.allow_from, nor on gossip.admit_subnet's subnet) is dropped
// before memberlist reads it, so a stranger costs a closed connection,
// not a decrypt, a log line or a 20 MB buffer. Streams from the subnet's
// strangers (new nodes joining through a seed) take slots of their own.
// Its own dials leave from the bound address, so that a multi-homed peer
// sees them come from the address it knows this node by.
type sourceFilter struct {
	*memberlist.NetTransport
	admit   func(netip.Addr) admission
	dialer  net.Dialer
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	stop    sync.Once
	wg      sync.WaitGroup
	refused refusals
	// open holds a token per admitted stream memberlist has not closed
	// yet: at most maxStreams at once, each read up to maxStreamBytes.
	open chan struct{}
	// strangers is open's counterpart for streams from the subnet's
	// strangers: at most maxStrangerStreams, so they never take the
	// members' slots.
	strangers chan struct{}
	busy      atomic.Uint64
}

// Stream bounds. memberlist buffers a stream's whole message (up to
// 20 MB, more compressed) before it decrypts it, so any process on an
// admitted address could make it hold 20 MB per stream, without limit on
// their number. A push-pull of 1,000 members is well under a megabyte.
const (
	maxStreams         = 8
	maxStrangerStreams = 2
	maxStreamBytes     = 2 << 20
)

// cappedConn is an admitted stream: reads past maxStreamBytes fail, and
// closing it frees its token.
type cappedConn struct {
	net.Conn
	left    int64
	release func()
	once    sync.Once
}

func (c *cappedConn) Read(b []byte) (int, error) {
	if c.left <= 0 {
		return 0, errStreamTooLong
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.Conn.Read(b)
	c.left -= int64(n)
	return n, err
}

func (c *cappedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

var errStreamTooLong = errors.New("gossip stream longer than garpd reads (2 MiB): closed")

// bound admits a stream while fewer than maxStreams (a stranger's: than
// maxStrangerStreams) are open, capped; otherwise it is closed unread.
func (f *sourceFilter) bound(c net.Conn, as admission) (net.Conn, bool) {
	slots := f.open
	if as == stranger {
		slots = f.strangers
	}
	select {
	case slots <- struct{}{}:
		return &cappedConn{Conn: c, left: maxStreamBytes, release: func() { <-slots }}, true
	default:
		c.Close()
		f.busy.Add(1)
		return nil, false
	}
}

// newSourceFilter wraps nt; local is the bound address (invalid: any).
func newSourceFilter(nt *memberlist.NetTransport, local netip.Addr, admit func(netip.Addr) admission, log zerolog.Logger) *sourceFilter {
	f := &sourceFilter{NetTransport: nt, admit: admit, packets: make(chan *memberlist.Packet), streams: make(chan net.Conn),
		done: make(chan struct{}), refused: refusals{log: log}, open: make(chan struct{}, maxStreams),
		strangers: make(chan struct{}, maxStrangerStreams)}
	if local.IsValid() && !local.IsUnspecified() {
		f.dialer.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
	}
	f.wg.Add(2)
	go func() {
		defer f.wg.Done()
		forward(f, nt.PacketCh(), f.packets, func(p *memberlist.Packet) net.Addr { return p.From }, func(*memberlist.Packet) {},
			func(p *memberlist.Packet, _ admission) (*memberlist.Packet, bool) { return p, true })
	}()
	go func() {
		defer f.wg.Done()
		forward(f, nt.StreamCh(), f.streams, net.Conn.RemoteAddr, func(c net.Conn) { c.Close() }, f.bound)
	}()
	return f
}

// forward passes what comes from admitted sources on to memberlist, as
// bound lets it, and drops the rest, until the transport shuts down.
func forward[T any](f *sourceFilter, in <-chan T, out chan<- T, from func(T) net.Addr, drop func(T), bound func(T, admission) (T, bool)) {
	for {
		var v T
		select {
		case v = <-in:
		case <-f.done:
			return
		}
		src := addrOf(from(v))
		as := f.admit(src)
		if as == refused {
			drop(v)
			f.refused.add(src)
			continue
		}
		var ok bool
		if v, ok = bound(v, as); !ok {
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

// busyClosed is how many admitted streams were closed unread because
// maxStreams were open.
func (f *sourceFilter) busyClosed() uint64 { return f.busy.Load() }

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
		Msg("gossip from a source that is neither a member nor a seed: dropped unread; if it is a new node, add it to gossip.join or gossip.allow_from (gossip.admit_subnet admits only the node's own subnet)")
}
