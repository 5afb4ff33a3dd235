package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

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

func parseAddrs(ss []string) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(ss))
	for _, s := range ss {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP address", s)
		}
		out = append(out, a)
	}
	return out, nil
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

func (a *agent) serveHTTP(listen string) (*http.Server, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("http.listen %s: %w", listen, err)
	}
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return srv, nil
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

// handler serves the agent's HTTP API.
func (a *agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		stack := a.stack
		a.mu.Unlock()
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if stack == nil || !stack.Responsive(ctx) {
			http.Error(w, "VRRP engine is not running or does not answer within 1s", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
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
		only, err := parseAddrs(req.VIPs)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		stack := a.stack
		a.mu.Unlock()
		queued, notHeld, err := stack.Wave(r.Context(), only)
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
		a.mu.Lock()
		dyn := a.dyn
		a.mu.Unlock()
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
		a.mu.Lock()
		cur, stack, dyn := a.cur, a.stack, a.dyn
		a.mu.Unlock()
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
	return mux
}
