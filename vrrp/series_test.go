package vrrp

import (
	"bytes"
	"strconv"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// exposition is what a scrape of reg shows, in the text format.
func exposition(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if err := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain)).Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// A scrape cannot tell a SeriesVec from client_golang's vectors: the same
// updates, curried views and deletions expose the same text.
func TestSeriesVecExposesLikeClientGolang(t *testing.T) {
	ours, theirs := prometheus.NewRegistry(), prometheus.NewRegistry()
	counter := newSeriesVec(prometheus.CounterValue, "test_total", "A counter.", "interface", "vrid")
	gauge := newSeriesVec(prometheus.GaugeValue, "test_state", "A gauge.", "interface", "vrid", "vips")
	ours.MustRegister(counter, gauge)
	cv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "test_total", Help: "A counter."}, []string{"interface", "vrid"})
	gv := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "test_state", Help: "A gauge."}, []string{"interface", "vrid", "vips"})
	theirs.MustRegister(cv, gv)

	eth0, eth1 := counter.curry("eth0"), counter.curry("eth1")
	ceth0, ceth1 := cv.MustCurryWith(prometheus.Labels{"interface": "eth0"}), cv.MustCurryWith(prometheus.Labels{"interface": "eth1"})
	for i := range 5 {
		eth0.WithLabelValues("10").Inc()
		ceth0.WithLabelValues("10").Inc()
		if i%2 == 0 {
			eth1.WithLabelValues("10").Add(2.5)
			ceth1.WithLabelValues("10").Add(2.5)
		}
	}
	eth0.WithLabelValues("11") // a series created at zero shows
	ceth0.WithLabelValues("11")
	gauge.curry("eth0").WithLabelValues("10", "192.0.2.1").Set(2)
	gv.WithLabelValues("eth0", "10", "192.0.2.1").Set(2)
	gauge.WithLabelValues("eth0", "11", "192.0.2.2").Set(1)
	gv.WithLabelValues("eth0", "11", "192.0.2.2").Set(1)
	if !gauge.DeleteLabelValues("eth0", "11", "192.0.2.2") || !gv.DeleteLabelValues("eth0", "11", "192.0.2.2") {
		t.Fatal("a series that exists was not deleted")
	}
	if gauge.DeleteLabelValues("eth0", "11", "192.0.2.2") {
		t.Fatal("a deleted series was deleted again")
	}

	got, want := exposition(t, ours), exposition(t, theirs)
	if got != want {
		t.Fatalf("SeriesVec exposes\n%s\nclient_golang exposes\n%s", got, want)
	}
	if v := eth1.WithLabelValues("10").Value(); v != 7.5 {
		t.Fatalf("eth1's counter is %v, want 7.5", v)
	}
}

// Per router, a SeriesVec's series are a small fraction of client_golang's
// children: the heap of a static master of 255 routers is what it keeps.
func BenchmarkSeriesPerRouter(b *testing.B) {
	b.Run("SeriesVec", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			v := newSeriesVec(prometheus.CounterValue, "x_total", "x", "interface", "family", "vrid")
			for vrid := range 255 {
				v.WithLabelValues("eth0", "ipv4", strconv.Itoa(vrid))
			}
		}
	})
	b.Run("client_golang", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"interface", "family", "vrid"})
			for vrid := range 255 {
				v.WithLabelValues("eth0", "ipv4", strconv.Itoa(vrid))
			}
		}
	})
}

// Series are counted, created and scraped from different goroutines (the
// engine, the pacer, the HTTP server): under -race, nothing races and no
// count is lost.
func TestSeriesVecConcurrentScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	v := newSeriesVec(prometheus.CounterValue, "test_total", "A counter.", "vrid")
	reg.MustRegister(v)
	const workers, each = 4, 20000
	start, done := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			<-start
			for i := range each {
				v.WithLabelValues(strconv.Itoa((w + i) % 255)).Inc()
			}
		})
	}
	scraped := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-done:
				scraped <- n
				return
			default:
			}
			if _, err := reg.Gather(); err != nil {
				t.Error(err)
			}
			n++
		}
	}()
	close(start)
	wg.Wait()
	close(done)
	t.Logf("%d scrapes while counting", <-scraped)
	var sum float64
	for vrid := range 255 {
		sum += v.WithLabelValues(strconv.Itoa(vrid)).Value()
	}
	if sum != workers*each {
		t.Fatalf("the series sum to %v, want %d", sum, workers*each)
	}
}

// A label value that holds the key's separator would come apart at scrape
// time (and panic the registry's collector there): it is refused when the
// series is made, as a wrong label count is.
func TestSeriesVecRefusesTheSeparator(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("a label value with the separator made a series")
		}
	}()
	newSeriesVec(prometheus.CounterValue, "x_total", "x", "interface").WithLabelValues("eth0" + labelSep + "1")
}
