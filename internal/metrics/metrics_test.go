package metrics

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func output(t *testing.T, r *Registry) string {
	t.Helper()
	var b strings.Builder
	if err := r.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestExposition(t *testing.T) {
	tests := []struct {
		name  string
		setup func(r *Registry)
		want  string
	}{
		{
			name: "counter without labels",
			setup: func(r *Registry) {
				c := r.NewCounter("orch_things_total", "Things done.")
				c.Inc()
				c.Add(2.5)
				c.Add(-10) // ignored
			},
			want: "# HELP orch_things_total Things done.\n# TYPE orch_things_total counter\norch_things_total 3.5\n",
		},
		{
			name: "gauge vec sorted by label values, escaped",
			setup: func(r *Registry) {
				g := r.NewGaugeVec("orch_queue_depth", "Depth of a queue.\nSecond line with \\ backslash.", "queue", "node")
				g.With("pods", "b").Set(2)
				g.With("pods", "a").Set(1)
				g.With(`we"ird\`+"\n", "c").Dec()
			},
			want: `# HELP orch_queue_depth Depth of a queue.\nSecond line with \\ backslash.
# TYPE orch_queue_depth gauge
orch_queue_depth{queue="pods",node="a"} 1
orch_queue_depth{queue="pods",node="b"} 2
orch_queue_depth{queue="we\"ird\\\n",node="c"} -1
`,
		},
		{
			name: "histogram buckets are cumulative with le, then sum and count",
			setup: func(r *Registry) {
				h := r.NewHistogramVec("orch_op_seconds", "Op latency.", []float64{0.1, 1, 10}, "op")
				for _, v := range []float64{0.05, 0.1, 0.5, 20} {
					h.With("put").Observe(v)
				}
				r.NewHistogramVec("orch_op_seconds", "Op latency.", []float64{0.1, 1, 10}, "op").With("get").Observe(1)
			},
			want: `# HELP orch_op_seconds Op latency.
# TYPE orch_op_seconds histogram
orch_op_seconds_bucket{op="get",le="0.1"} 0
orch_op_seconds_bucket{op="get",le="1"} 1
orch_op_seconds_bucket{op="get",le="10"} 1
orch_op_seconds_bucket{op="get",le="+Inf"} 1
orch_op_seconds_sum{op="get"} 1
orch_op_seconds_count{op="get"} 1
orch_op_seconds_bucket{op="put",le="0.1"} 2
orch_op_seconds_bucket{op="put",le="1"} 3
orch_op_seconds_bucket{op="put",le="10"} 3
orch_op_seconds_bucket{op="put",le="+Inf"} 4
orch_op_seconds_sum{op="put"} 20.65
orch_op_seconds_count{op="put"} 4
`,
		},
		{
			name: "histogram without labels, explicit +Inf bucket dropped",
			setup: func(r *Registry) {
				r.NewHistogram("orch_fsync_seconds", "Fsync.", []float64{0.001, math.Inf(1)}).Observe(0.0005)
			},
			want: `# HELP orch_fsync_seconds Fsync.
# TYPE orch_fsync_seconds histogram
orch_fsync_seconds_bucket{le="0.001"} 1
orch_fsync_seconds_bucket{le="+Inf"} 1
orch_fsync_seconds_sum 0.0005
orch_fsync_seconds_count 1
`,
		},
		{
			name: "families sorted by name; empty vec has only help and type",
			setup: func(r *Registry) {
				r.NewGauge("b_gauge", "B.").Set(math.Inf(-1))
				r.NewCounterVec("a_total", "A.", "x")
				r.NewGauge("c_gauge", "C.").Set(math.NaN())
				r.NewGauge("d_gauge", "D.").Set(1e21)
			},
			want: `# HELP a_total A.
# TYPE a_total counter
# HELP b_gauge B.
# TYPE b_gauge gauge
b_gauge -Inf
# HELP c_gauge C.
# TYPE c_gauge gauge
c_gauge NaN
# HELP d_gauge D.
# TYPE d_gauge gauge
d_gauge 1e+21
`,
		},
		{
			name: "callbacks run at scrape time; duplicate series dropped",
			setup: func(r *Registry) {
				n := 0
				r.NewGaugeFunc("orch_store_revision", "Revision.", func() float64 { n++; return float64(41 + n) })
				r.NewCallback("orch_store_objects", "Objects.", GaugeType, []string{"resource"}, func(emit func(float64, ...string)) {
					emit(3, "pods")
					emit(1, "configmaps")
					emit(9, "pods")
				})
			},
			want: `# HELP orch_store_objects Objects.
# TYPE orch_store_objects gauge
orch_store_objects{resource="pods"} 3
orch_store_objects{resource="configmaps"} 1
# HELP orch_store_revision Revision.
# TYPE orch_store_revision gauge
orch_store_revision 42
`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRegistry()
			tc.setup(r)
			if got := output(t, r); got != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestRegistrationRules(t *testing.T) {
	r := NewRegistry()
	c1 := r.NewCounterVec("x_total", "X.", "a")
	if c2 := r.NewCounterVec("x_total", "X.", "a"); c1 != c2 {
		t.Error("an identical definition did not return the existing family")
	}
	r.NewHistogram("h_seconds", "H.", nil)

	panics := []struct {
		name string
		fn   func()
	}{
		{"same name, other labels", func() { r.NewCounterVec("x_total", "X.", "b") }},
		{"same name, other type", func() { r.NewGauge("x_total", "X.") }},
		{"invalid metric name", func() { r.NewGauge("1bad", "") }},
		{"invalid label name", func() { r.NewGaugeVec("ok", "", "bad-label") }},
		{"reserved label name", func() { r.NewGaugeVec("ok", "", "__name") }},
		{"repeated label", func() { r.NewGaugeVec("ok", "", "a", "a") }},
		{"histogram with le", func() { r.NewHistogramVec("ok", "", nil, "le") }},
		{"unsorted buckets", func() { r.NewHistogram("ok", "", []float64{1, 1}) }},
		{"collides with histogram series", func() { r.NewCounter("h_seconds_count", "") }},
		{"wrong number of label values", func() { c1.With("a", "b") }},
		{"histogram callback", func() { r.NewCallback("ok", "", HistogramType, nil, nil) }},
	}
	for _, tc := range panics {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("did not panic")
				}
			}()
			tc.fn()
		})
	}
}

func TestSeriesLimit(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounterVec("req_total", "R.", "resource", "code")
	c.v.maxSeries = 3
	for i := range 10 {
		c.With(fmt.Sprintf("r%d", i), "200").Inc()
	}
	c.With("r0", "200").Inc() // existing series still count on their own
	want := `# HELP req_total R.
# TYPE req_total counter
req_total{resource="_overflow",code="_overflow"} 7
req_total{resource="r0",code="200"} 2
req_total{resource="r1",code="200"} 1
req_total{resource="r2",code="200"} 1
`
	if got := output(t, r); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestConcurrentUpdatesAndScrapes(t *testing.T) {
	r := NewRegistry()
	c := r.NewCounterVec("c_total", "", "k")
	h := r.NewHistogramVec("h", "", []float64{1}, "k")
	g := r.NewGauge("g", "")
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				c.With(fmt.Sprint(w % 2)).Inc()
				h.With("x").Observe(float64(i % 2))
				g.Add(1)
				if i%100 == 0 {
					r.Write(io.Discard)
				}
			}
		}()
	}
	wg.Wait()
	if got := c.With("0").Value() + c.With("1").Value(); got != 8000 {
		t.Errorf("counter total = %v, want 8000", got)
	}
	if g.Value() != 8000 {
		t.Errorf("gauge = %v, want 8000", g.Value())
	}
	out := output(t, r)
	for _, line := range []string{`h_bucket{k="x",le="1"} 8000`, `h_count{k="x"} 8000`, `h_sum{k="x"} 4000`} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("output lacks %q:\n%s", line, out)
		}
	}
}

func TestHandler(t *testing.T) {
	r := NewRegistry()
	r.NewCounter("up_total", "Up.").Inc()
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ContentType {
		t.Errorf("GET = %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if want := "# HELP up_total Up.\n# TYPE up_total counter\nup_total 1\n"; string(body) != want {
		t.Errorf("body = %q, want %q", body, want)
	}
	resp, err = http.Post(srv.URL+"/metrics", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST = %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}
