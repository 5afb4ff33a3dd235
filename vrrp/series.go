package vrrp

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// SeriesVec is a labelled counter or gauge whose series cost a map entry
// and a word each, exported at scrape time. client_golang's vectors keep a
// child of some 700 bytes per series (label pairs, a creation time, an
// exemplar slot); an agent keeps five series per virtual router and up to
// 510 routers per interface, so those children were a third of a static
// master's heap. Only the per-router and per-VIP families use it; the
// rest stay client_golang's.
type SeriesVec struct {
	desc   *prometheus.Desc
	kind   prometheus.ValueType
	labels int      // how many label values a series has
	fixed  []string // the leading label values of a curried view (curry)

	// shared by the vector and its curried views; a scrape reads under
	// the read lock, so counting into an existing series never waits
	mu     *sync.RWMutex
	series map[string]*Series
}

// Series is one series of a SeriesVec: safe to update from any goroutine.
// Its label values are its key in the vector, split at scrape time.
type Series struct {
	bits atomic.Uint64 // the value, as float64 bits
}

func newSeriesVec(kind prometheus.ValueType, name, help string, labels ...string) *SeriesVec {
	return &SeriesVec{
		desc:   prometheus.NewDesc(name, help, labels, nil),
		kind:   kind,
		labels: len(labels),
		mu:     new(sync.RWMutex),
		series: map[string]*Series{},
	}
}

// curry is a view of v whose series all start with the label values
// fixed: what client_golang's MustCurryWith does for the leading labels.
func (v *SeriesVec) curry(fixed ...string) *SeriesVec {
	c := *v
	c.fixed = append(append([]string(nil), v.fixed...), fixed...)
	return &c
}

// labelSep separates a series' label values in its key. No label value
// garpd makes can contain it: Linux refuses '/' in interface names (and so
// in IPv6 zones), and addresses, families, VRIDs, states and kinds have
// none. A value holding it would split into too many at scrape time.
const labelSep = "/"

// key is the key of a series of v: its full label values, checked like
// client_golang checks them (a wrong count is a programming error).
func (v *SeriesVec) key(rest []string) string {
	all := slices.Concat(v.fixed, rest)
	if len(all) != v.labels || slices.ContainsFunc(all, func(s string) bool { return strings.Contains(s, labelSep) }) {
		panic(fmt.Sprintf("vrrp: %s: label values %q, want %d without %q", v.desc, all, v.labels, labelSep))
	}
	return strings.Join(all, labelSep)
}

// WithLabelValues is the series of those label values (after the curried
// ones), created at zero on first use.
func (v *SeriesVec) WithLabelValues(values ...string) *Series {
	key := v.key(values)
	v.mu.RLock()
	s, ok := v.series[key]
	v.mu.RUnlock()
	if ok {
		return s
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := v.series[key]; ok {
		return s
	}
	s = new(Series)
	v.series[key] = s
	return s
}

// DeleteLabelValues removes the series of those label values; it reports
// whether there was one.
func (v *SeriesVec) DeleteLabelValues(values ...string) bool {
	key := v.key(values)
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.series[key]
	delete(v.series, key)
	return ok
}

// Describe implements prometheus.Collector.
func (v *SeriesVec) Describe(ch chan<- *prometheus.Desc) { ch <- v.desc }

// Collect implements prometheus.Collector: every series of the vector,
// whichever view it is called on.
func (v *SeriesVec) Collect(ch chan<- prometheus.Metric) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for key, s := range v.series {
		ch <- prometheus.MustNewConstMetric(v.desc, v.kind, s.Value(), strings.Split(key, labelSep)...)
	}
}

// Add adds d to the series' value.
func (s *Series) Add(d float64) {
	for {
		old := s.bits.Load()
		if s.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// Inc adds one.
func (s *Series) Inc() { s.Add(1) }

// Set sets a gauge's value.
func (s *Series) Set(f float64) { s.bits.Store(math.Float64bits(f)) }

// Value is the series' current value.
func (s *Series) Value() float64 { return math.Float64frombits(s.bits.Load()) }
