package main

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sys/unix"

	"github.com/garpd/garpd/balancer"
	"github.com/garpd/garpd/vrrp"
)

type forgetRequest struct {
	Node string `json:"node"`
}

type announceRequest struct {
	VIPs []string `json:"vips"`
}

type announceResponse struct {
	Queued  []string `json:"queued"`
	NotHeld []string `json:"not_held"`
}

func addrStrings(as []netip.Addr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

type statusJSON struct {
	Node      string                  `json:"node"`
	Interface string                  `json:"interface"`
	Version   string                  `json:"version"`
	Uptime    string                  `json:"uptime"`
	Mode      string                  `json:"mode"`
	Routers   []vrrp.RouterStatus     `json:"routers"`
	Dynamic   *balancer.DynamicStatus `json:"dynamic,omitempty"`
}

// Server timeouts: a client that trickles its request, or never reads
// the answer, holds nothing for long. A CPU profile takes up to its
// seconds parameter (30 s by default) to answer.
const (
	readTimeout  = 10 * time.Second
	writeTimeout = 60 * time.Second
	idleTimeout  = 60 * time.Second
)

// listenHTTP serves h on addr: HOST:PORT, or unix:PATH for a socket only
// its owner may use (see listenUnix).
func listenHTTP(key, addr string, h http.Handler) (*http.Server, error) {
	var ln net.Listener
	var err error
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		ln, err = listenUnix(path)
	} else {
		ln, err = net.Listen("tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", key, addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: readTimeout,
		WriteTimeout: writeTimeout, IdleTimeout: idleTimeout}
	go srv.Serve(ln)
	return srv, nil
}

// listenUnix listens on a unix socket at path that is mode 0600 from the
// moment it exists (made under umask 0177, not chmodded after). Only a
// stale socket at path is replaced: anything else there, a file or a
// link, is refused and left as it is, and so is a socket another process
// still serves. A missing directory is made (/run/garpd, the default's,
// is a tmpfs's: gone at boot).
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("make the socket's directory: %w", err)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket (%s): remove it, or give another path", path, st.Mode().Type())
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("%s is served by another process (another agent?): stop it, or give another path", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("replace the stale socket %s: %w", path, err)
		}
	}
	old := unix.Umask(0o177)
	defer unix.Umask(old)
	return net.Listen("unix", path)
}

// loopbackHost reports whether a request's Host names this machine's
// loopback: localhost or a loopback address, with or without a port.
func loopbackHost(host string) bool {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = strings.Trim(host, "[]")
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// servers are the agent's two listeners: http.listen, which may face the
// network, and control.listen, the operator's.
type servers struct{ metrics, control *http.Server }

func (a *agent) serve(l *loaded) (*servers, error) {
	m, err := listenHTTP("http.listen", l.cfg.HTTP.Listen, a.metricsHandler())
	if err != nil {
		return nil, err
	}
	_, onSocket := strings.CutPrefix(l.cfg.Control.Listen, "unix:")
	c, err := listenHTTP("control.listen", l.cfg.Control.Listen, a.controlHandler(l.token, !onSocket))
	if err != nil {
		m.Close()
		return nil, err
	}
	return &servers{metrics: m, control: c}, nil
}

func (s *servers) close() {
	s.metrics.Close()
	s.control.Close()
}

func (s *servers) shutdown(ctx context.Context) {
	s.metrics.Shutdown(ctx)
	s.control.Shutdown(ctx)
}

// postOnly answers 405 with hint to anything but a POST.
func postOnly(w http.ResponseWriter, r *http.Request, hint string) bool {
	if r.Method == http.MethodPost {
		return true
	}
	w.Header().Set("Allow", http.MethodPost)
	http.Error(w, hint, http.StatusMethodNotAllowed)
	return false
}

// metricsHandler serves what may face the network, http.listen:
// /metrics and /healthz. The operator's endpoints answer 404 there,
// naming where they are.
func (a *agent) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	a.public(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, r.URL.Path+" is not served on http.listen, which may face the network: /status, /forget, /announce and /debug/pprof/ are on control.listen (default "+defaultControlListen+"; garpd status finds it with -c FILE)", http.StatusNotFound)
	})
	return mux
}

// public adds /metrics and /healthz.
func (a *agent) public(mux *http.ServeMux) {
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !a.alive.check(func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return a.engineAlive(ctx)
		}) {
			http.Error(w, "VRRP engine is not running or does not answer within 1s", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}

// liveness answers /healthz from one probe of the VRRP engines at a time,
// reused for a second: however many requests come, the engines' loop
// answers at most one a second, and adverts never queue behind a flood.
type liveness struct {
	mu  sync.Mutex
	at  time.Time
	ok  bool
	now func() time.Time // nil: time.Now
}

// check returns probe's answer, from the last second if there is one.
func (l *liveness) check(probe func() bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now
	if now == nil {
		now = time.Now
	}
	if l.at.IsZero() || now().Sub(l.at) >= time.Second {
		l.ok = probe()
		l.at = now()
	}
	return l.ok
}

// controlHandler serves the operator, control.listen: everything, behind
// the bearer token when there is one. Every POST must say it is JSON, so
// a browser cannot be made to send one from another site (it would ask
// first, and nobody answers); without a token, on a TCP listener
// (checkHost), a request must name a loopback host, so a web page whose
// name an attacker points at 127.0.0.1 (DNS rebinding) is refused.
func (a *agent) controlHandler(token []byte, checkHost bool) http.Handler {
	mux := http.NewServeMux()
	a.public(mux)
	mux.HandleFunc("/announce", func(w http.ResponseWriter, r *http.Request) {
		if !postOnly(w, r, "POST to start an announcement wave") {
			return
		}
		var req announceRequest
		if r.ContentLength != 0 {
			if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
				http.Error(w, "body: want {\"vips\": [\"ADDR\", ...]}: "+err.Error(), http.StatusBadRequest)
				return
			}
		}
		only, err := vrrp.ParseAddrs(req.VIPs)
		if err != nil {
			http.Error(w, "vips"+err.Error(), http.StatusBadRequest)
			return
		}
		queued, notHeld, err := a.run.Load().stack.Wave(r.Context(), only)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(announceResponse{Queued: addrStrings(queued), NotHeld: addrStrings(notHeld)})
	})
	mux.HandleFunc("/forget", func(w http.ResponseWriter, r *http.Request) {
		if !postOnly(w, r, "POST {\"node\": NAME} to forget a known member that is down") {
			return
		}
		var req forgetRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || req.Node == "" {
			http.Error(w, "body: want {\"node\": NAME}", http.StatusBadRequest)
			return
		}
		dyn := a.run.Load().dyn
		if dyn == nil {
			http.Error(w, "this agent runs the static mode: there are no known members to forget", http.StatusConflict)
			return
		}
		if err := dyn.Forget(req.Node); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		fmt.Fprintf(w, "forgot %s: every node re-plans without it\n", req.Node)
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		run := a.run.Load()
		cur, stack, dyn := run.cur, run.stack, run.dyn
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		st := statusJSON{
			Node: cur.cfg.Node, Interface: cur.cfg.Interface, Version: version, Mode: "static",
			Uptime: time.Since(a.started).Round(time.Second).String(), Routers: stack.Status(ctx),
		}
		if dyn != nil {
			st.Mode, st.Dynamic = "dynamic", dyn.Status(ctx)
		}
		w.Header().Set("Content-Type", "application/json")
		printJSON(w, st)
	})
	profiler := http.NewServeMux()
	profiler.HandleFunc("/debug/pprof/", pprof.Index)
	profiler.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	profiler.HandleFunc("/debug/pprof/profile", pprof.Profile)
	profiler.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	profiler.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/debug/pprof/", func(w http.ResponseWriter, r *http.Request) {
		if !a.pprof.Load() {
			http.Error(w, "profiling is off: set http.pprof: true in the config and reload (SIGHUP)", http.StatusNotFound)
			return
		}
		profiler.ServeHTTP(w, r)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(token) > 0 && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), append([]byte("Bearer "), token...)) != 1 {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "control.token_file is set: send Authorization: Bearer TOKEN (garpd status -c FILE reads it)", http.StatusUnauthorized)
			return
		}
		if len(token) == 0 && checkHost && !loopbackHost(r.Host) {
			http.Error(w, fmt.Sprintf("Host %q is not this machine's loopback: the control endpoints answer requests for 127.0.0.1, [::1] or localhost (or set control.token_file)", r.Host), http.StatusForbidden)
			return
		}
		if r.Method == http.MethodPost {
			if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
				http.Error(w, "POST with Content-Type: application/json (an empty body is fine where the body is optional)", http.StatusUnsupportedMediaType)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}
