// Package metrics is a small Prometheus registry: counters, gauges and
// histograms with labels, callback collectors, and the text exposition
// format 0.0.4 served by Registry.Handler.
//
// It is hand-written instead of using github.com/prometheus/client_golang
// for binary size and memory: client_golang pulls in protobuf (the
// client_model types and google.golang.org/protobuf reflection), expfmt,
// procfs and several more modules — megabytes in a binary whose whole
// budget is 30 MB, for features orch does not use (protobuf exposition,
// exemplars, native histograms, process collectors). The text format is
// small and stable; this package implements exactly it.
//
// There is no default registry and nothing registers itself: the server
// and the agent each make one Registry and hand it to what they run.
//
// Defining the same metric twice with identical name, type, help and labels
// returns the existing one, so helpers may be called more than once; a
// conflicting definition or an invalid name panics, as these are
// programming errors found at start.
package metrics

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Type is a metric family's type as written on its # TYPE line.
type Type string

// The types of the text format that this package writes.
const (
	CounterType   Type = "counter"
	GaugeType     Type = "gauge"
	HistogramType Type = "histogram"
)

// DefaultMaxSeries bounds the label combinations of one vector. Labels
// derived from requests (a resource name in a URL) are chosen by clients;
// past the bound, new combinations are counted in one series whose labels
// are all OverflowValue, so memory stays bounded and the total stays right.
const DefaultMaxSeries = 2000

// OverflowValue is every label's value in a vector's overflow series.
const OverflowValue = "_overflow"

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// family is one metric name with its # HELP and # TYPE lines.
type family interface {
	desc() *desc
	// collect appends the family's samples.
	collect(*[]sample)
}

type desc struct {
	name   string
	help   string
	typ    Type
	labels []string
	// buckets are a histogram's upper bounds, without +Inf.
	buckets []float64
}

func (d *desc) same(o *desc) bool {
	return d.name == o.name && d.help == o.help && d.typ == o.typ &&
		slices.Equal(d.labels, o.labels) && slices.Equal(d.buckets, o.buckets)
}

// sample is one line of output.
type sample struct {
	suffix string // "", "_bucket", "_sum", "_count"
	labels []string
	values []string
	value  float64
}

// Registry holds metric families and writes them in the text format.
// It is safe for concurrent use.
type Registry struct {
	mu       sync.Mutex
	families map[string]family
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{families: map[string]family{}}
}

// register adds f, or returns the family already registered under the same
// definition.
func (r *Registry) register(f family) family {
	d := f.desc()
	if !metricNameRE.MatchString(d.name) {
		panic(fmt.Sprintf("metrics: invalid metric name %q", d.name))
	}
	seen := map[string]bool{}
	for _, l := range d.labels {
		if !labelNameRE.MatchString(l) || strings.HasPrefix(l, "__") || seen[l] {
			panic(fmt.Sprintf("metrics: %s: invalid or repeated label name %q", d.name, l))
		}
		if l == "le" && d.typ == HistogramType {
			panic(fmt.Sprintf("metrics: %s: a histogram cannot have the label \"le\"", d.name))
		}
		seen[l] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.families[d.name]; ok {
		if !old.desc().same(d) {
			panic(fmt.Sprintf("metrics: %s is already registered with another definition", d.name))
		}
		return old
	}
	// A histogram's series names must not collide with another family.
	for _, other := range r.families {
		if collides(d, other.desc()) || collides(other.desc(), d) {
			panic(fmt.Sprintf("metrics: %s collides with %s", d.name, other.desc().name))
		}
	}
	r.families[d.name] = f
	return f
}

func collides(hist, other *desc) bool {
	if hist.typ != HistogramType {
		return false
	}
	for _, s := range []string{"_bucket", "_sum", "_count"} {
		if hist.name+s == other.name {
			return true
		}
	}
	return false
}

// sortedFamilies returns the families by name: stable output is easier to
// read and to test.
func (r *Registry) sortedFamilies() []family {
	r.mu.Lock()
	fs := make([]family, 0, len(r.families))
	for _, f := range r.families {
		fs = append(fs, f)
	}
	r.mu.Unlock()
	sort.Slice(fs, func(i, j int) bool { return fs[i].desc().name < fs[j].desc().name })
	return fs
}

// vec holds the series of one family, by label values.
type vec[T any] struct {
	d         desc
	newSeries func() *T
	maxSeries int

	mu     sync.RWMutex
	series map[string]*entry[T]
}

type entry[T any] struct {
	values []string
	s      *T
}

func newVec[T any](d desc, newSeries func() *T) *vec[T] {
	return &vec[T]{d: d, newSeries: newSeries, maxSeries: DefaultMaxSeries, series: map[string]*entry[T]{}}
}

func (v *vec[T]) desc() *desc { return &v.d }

// with returns the series for the label values, creating it.
func (v *vec[T]) with(values []string) *T {
	if len(values) != len(v.d.labels) {
		panic(fmt.Sprintf("metrics: %s has labels %v, got %d values", v.d.name, v.d.labels, len(values)))
	}
	key := strings.Join(values, "\xff")
	v.mu.RLock()
	e, ok := v.series[key]
	v.mu.RUnlock()
	if ok {
		return e.s
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if e, ok := v.series[key]; ok {
		return e.s
	}
	if len(v.series) >= v.maxSeries {
		values = make([]string, len(values))
		for i := range values {
			values[i] = OverflowValue
		}
		key = strings.Join(values, "\xff")
		if e, ok := v.series[key]; ok {
			return e.s
		}
	}
	e = &entry[T]{values: slices.Clone(values), s: v.newSeries()}
	v.series[key] = e
	return e.s
}

// entries returns the series sorted by label values.
func (v *vec[T]) entries() []*entry[T] {
	v.mu.RLock()
	es := make([]*entry[T], 0, len(v.series))
	for _, e := range v.series {
		es = append(es, e)
	}
	v.mu.RUnlock()
	sort.Slice(es, func(i, j int) bool { return slices.Compare(es[i].values, es[j].values) < 0 })
	return es
}

// atomicFloat is a float64 updated without locks.
type atomicFloat struct{ bits atomic.Uint64 }

func (f *atomicFloat) load() float64 { return math.Float64frombits(f.bits.Load()) }

func (f *atomicFloat) store(v float64) { f.bits.Store(math.Float64bits(v)) }

func (f *atomicFloat) add(d float64) {
	for {
		old := f.bits.Load()
		if f.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

// Counter is a value that only goes up.
type Counter struct{ v atomicFloat }

// Inc adds 1.
func (c *Counter) Inc() { c.v.add(1) }

// Add adds d. A negative d is ignored: a counter never goes down, and a
// metrics mistake must not crash the server.
func (c *Counter) Add(d float64) {
	if d > 0 {
		c.v.add(d)
	}
}

// Value is the current count.
func (c *Counter) Value() float64 { return c.v.load() }

// CounterVec is a counter family with labels.
type CounterVec struct{ v *vec[Counter] }

// NewCounterVec defines a counter family with the given label names.
func (r *Registry) NewCounterVec(name, help string, labels ...string) *CounterVec {
	c := &CounterVec{newVec(desc{name: name, help: help, typ: CounterType, labels: labels}, func() *Counter { return &Counter{} })}
	return r.register(c).(*CounterVec)
}

// NewCounter defines a counter without labels.
func (r *Registry) NewCounter(name, help string) *Counter {
	return r.NewCounterVec(name, help).With()
}

// With returns the counter for these label values, in label order.
func (c *CounterVec) With(values ...string) *Counter { return c.v.with(values) }

func (c *CounterVec) desc() *desc { return c.v.desc() }

func (c *CounterVec) collect(out *[]sample) {
	for _, e := range c.v.entries() {
		*out = append(*out, sample{labels: c.v.d.labels, values: e.values, value: e.s.Value()})
	}
}

// Gauge is a value that goes up and down.
type Gauge struct{ v atomicFloat }

// Set sets the value.
func (g *Gauge) Set(v float64) { g.v.store(v) }

// Add adds d (which may be negative).
func (g *Gauge) Add(d float64) { g.v.add(d) }

// Inc adds 1.
func (g *Gauge) Inc() { g.v.add(1) }

// Dec subtracts 1.
func (g *Gauge) Dec() { g.v.add(-1) }

// Value is the current value.
func (g *Gauge) Value() float64 { return g.v.load() }

// GaugeVec is a gauge family with labels.
type GaugeVec struct{ v *vec[Gauge] }

// NewGaugeVec defines a gauge family with the given label names.
func (r *Registry) NewGaugeVec(name, help string, labels ...string) *GaugeVec {
	g := &GaugeVec{newVec(desc{name: name, help: help, typ: GaugeType, labels: labels}, func() *Gauge { return &Gauge{} })}
	return r.register(g).(*GaugeVec)
}

// NewGauge defines a gauge without labels.
func (r *Registry) NewGauge(name, help string) *Gauge {
	return r.NewGaugeVec(name, help).With()
}

// With returns the gauge for these label values, in label order.
func (g *GaugeVec) With(values ...string) *Gauge { return g.v.with(values) }

func (g *GaugeVec) desc() *desc { return g.v.desc() }

func (g *GaugeVec) collect(out *[]sample) {
	for _, e := range g.v.entries() {
		*out = append(*out, sample{labels: g.v.d.labels, values: e.values, value: e.s.Value()})
	}
}

// DefaultBuckets suit request latencies in seconds, from 5 ms to a minute.
var DefaultBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Histogram counts observations in buckets.
type Histogram struct {
	upper []float64 // shared with the family; read-only

	// A mutex, not atomics: a scrape must see the count, the sum and the
	// buckets of the same set of observations, and observations are rare
	// next to the work they measure.
	mu     sync.Mutex
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	count  uint64
}

// Observe records one value.
func (h *Histogram) Observe(v float64) {
	i := sort.SearchFloat64s(h.upper, v) // first bound >= v: "le" is inclusive
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.count++
	h.mu.Unlock()
}

// snapshot returns cumulative bucket counts, the sum and the count.
func (h *Histogram) snapshot() ([]uint64, float64, uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cum := make([]uint64, len(h.counts))
	var n uint64
	for i, c := range h.counts {
		n += c
		cum[i] = n
	}
	return cum, h.sum, h.count
}

// HistogramVec is a histogram family with labels.
type HistogramVec struct{ v *vec[Histogram] }

// NewHistogramVec defines a histogram family. buckets are upper bounds,
// strictly increasing; +Inf is implied. Nil means DefaultBuckets.
func (r *Registry) NewHistogramVec(name, help string, buckets []float64, labels ...string) *HistogramVec {
	if buckets == nil {
		buckets = DefaultBuckets
	}
	buckets = slices.Clone(buckets)
	if n := len(buckets); n > 0 && math.IsInf(buckets[n-1], 1) {
		buckets = buckets[:n-1]
	}
	for i, b := range buckets {
		if math.IsNaN(b) || (i > 0 && b <= buckets[i-1]) {
			panic(fmt.Sprintf("metrics: %s: buckets must be strictly increasing, got %v", name, buckets))
		}
	}
	h := &HistogramVec{newVec(desc{name: name, help: help, typ: HistogramType, labels: labels, buckets: buckets},
		func() *Histogram { return &Histogram{upper: buckets, counts: make([]uint64, len(buckets)+1)} })}
	return r.register(h).(*HistogramVec)
}

// NewHistogram defines a histogram without labels.
func (r *Registry) NewHistogram(name, help string, buckets []float64) *Histogram {
	return r.NewHistogramVec(name, help, buckets).With()
}

// With returns the histogram for these label values, in label order.
func (h *HistogramVec) With(values ...string) *Histogram { return h.v.with(values) }

func (h *HistogramVec) desc() *desc { return h.v.desc() }

func (h *HistogramVec) collect(out *[]sample) {
	labels := h.v.d.labels
	bucketLabels := append(slices.Clone(labels), "le")
	for _, e := range h.v.entries() {
		cum, sum, count := e.s.snapshot()
		for i, c := range cum {
			le := "+Inf"
			if i < len(e.s.upper) {
				le = formatFloat(e.s.upper[i])
			}
			*out = append(*out, sample{suffix: "_bucket", labels: bucketLabels, values: append(slices.Clone(e.values), le), value: float64(c)})
		}
		*out = append(*out,
			sample{suffix: "_sum", labels: labels, values: e.values, value: sum},
			sample{suffix: "_count", labels: labels, values: e.values, value: float64(count)})
	}
}

// callback is a family whose samples a function produces at scrape time.
type callback struct {
	d  desc
	fn func(emit func(value float64, labelValues ...string))
}

func (c *callback) desc() *desc { return &c.d }

func (c *callback) collect(out *[]sample) {
	seen := map[string]bool{}
	c.fn(func(value float64, values ...string) {
		if len(values) != len(c.d.labels) {
			panic(fmt.Sprintf("metrics: %s has labels %v, its callback gave %d values", c.d.name, c.d.labels, len(values)))
		}
		// Duplicate series would make the whole scrape invalid; keep the first.
		key := strings.Join(values, "\xff")
		if seen[key] {
			return
		}
		seen[key] = true
		*out = append(*out, sample{labels: c.d.labels, values: slices.Clone(values), value: value})
	})
}

// NewCallback defines a counter or gauge family whose samples fn emits at
// each scrape, for values that already live elsewhere (store sizes, queue
// lengths, open watches). fn must be quick and safe for concurrent use; it
// calls emit once per series.
func (r *Registry) NewCallback(name, help string, typ Type, labels []string, fn func(emit func(value float64, labelValues ...string))) {
	if typ != CounterType && typ != GaugeType {
		panic(fmt.Sprintf("metrics: %s: a callback family is a counter or a gauge, not %q", name, typ))
	}
	r.register(&callback{d: desc{name: name, help: help, typ: typ, labels: slices.Clone(labels)}, fn: fn})
}

// NewGaugeFunc defines a gauge without labels whose value fn returns at
// each scrape.
func (r *Registry) NewGaugeFunc(name, help string, fn func() float64) {
	r.NewCallback(name, help, GaugeType, nil, func(emit func(float64, ...string)) { emit(fn()) })
}
