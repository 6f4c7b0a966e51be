package metricsapi

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/internal/resourcemetrics"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
)

func TestSeriesRates(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(s int, cpu float64, mem uint64) point {
		return point{cpu: cpu, mem: mem, memOK: true, t: t0.Add(time.Duration(s) * time.Second)}
	}
	for _, tc := range []struct {
		name   string
		points []point
		want   int64 // nanocores; -1: no usage yet
		window time.Duration
	}{
		{"one reading", []point{at(0, 10, 1)}, -1, 0},
		{"half a core", []point{at(0, 10, 1), at(10, 15, 1)}, 500_000_000, 10 * time.Second},
		{"last two count", []point{at(0, 0, 1), at(10, 100, 1), at(20, 102, 1)}, 200_000_000, 10 * time.Second},
		{"same reading again", []point{at(0, 10, 1), at(15, 25, 1), at(15, 25, 1)}, 1_000_000_000, 15 * time.Second},
		{"counter reset", []point{at(0, 10, 1), at(10, 20, 1), at(20, 1, 1)}, -1, 0},
		{"after a reset", []point{at(0, 10, 1), at(10, 1, 1), at(20, 3, 1)}, 200_000_000, 10 * time.Second},
		{"no memory", []point{at(0, 10, 1), {cpu: 11, t: t0.Add(time.Second)}}, -1, 0},
	} {
		var s series
		for _, p := range tc.points {
			s = s.add(p)
		}
		u, ok := s.usage()
		switch {
		case tc.want < 0 && ok:
			t.Errorf("%s: usage %+v, want none", tc.name, u)
		case tc.want >= 0 && (!ok || u.nanoCores != tc.want || u.window != tc.window || u.memory != 1):
			t.Errorf("%s: usage %+v %v, want %d nanocores over %s", tc.name, u, ok, tc.want, tc.window)
		}
	}
}

// fakeNodes serves scripted scrapes: each node's cumulative counters grow
// at a fixed rate with the fake clock.
type fakeNodes struct {
	mu      sync.Mutex
	now     time.Time
	rates   map[string]map[resourcemetrics.PodRef]float64 // node -> pod -> cores
	failing map[string]bool
	gzipped int // answers sent compressed
}

func (f *fakeNodes) transport(node string) (http.RoundTripper, error) {
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.failing[node] {
			return nil, fmt.Errorf("dial %s: connection refused", node)
		}
		if req.URL.Path != resourcemetrics.Path || req.URL.Host != node {
			return nil, fmt.Errorf("unexpected request %s", req.URL)
		}
		secs := float64(f.now.Unix() - 1_700_000_000)
		snap := resourcemetrics.Snapshot{Node: &resourcemetrics.Usage{CPUSeconds: secs, MemoryBytes: 1 << 30, Time: f.now}}
		for ref, cores := range f.rates[node] {
			u := resourcemetrics.Usage{CPUSeconds: cores * secs, MemoryBytes: 64 << 20, Time: f.now}
			snap.Pods = append(snap.Pods, resourcemetrics.Pod{Pod: ref, Usage: u})
			snap.Containers = append(snap.Containers, resourcemetrics.Container{Pod: ref, Name: "app", Usage: u})
		}
		var buf bytes.Buffer
		header := http.Header{}
		// As a node does: compressed when asked.
		if req.Header.Get("Accept-Encoding") == "gzip" {
			zw := gzip.NewWriter(&buf)
			if err := resourcemetrics.Write(zw, snap); err != nil {
				return nil, err
			}
			if err := zw.Close(); err != nil {
				return nil, err
			}
			header.Set("Content-Encoding", "gzip")
			f.gzipped++
		} else if err := resourcemetrics.Write(&buf, snap); err != nil {
			return nil, err
		}
		return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Header: header, Body: io.NopCloser(&buf), Request: req}, nil
	}), nil
}

func (f *fakeNodes) tick(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func readyNode(name string, ready corev1.ConditionStatus) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"zone": name}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}}}
}

func pod(ns, name, node string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app"}}}}
}

func TestProviderScrapesAndServes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	api := fakeapi.New()
	nodesGVR, podsGVR := corev1.SchemeGroupVersion.WithResource("nodes"), corev1.SchemeGroupVersion.WithResource("pods")
	api.MustCreate(nodesGVR, readyNode("n1", corev1.ConditionTrue))
	api.MustCreate(nodesGVR, readyNode("n2", corev1.ConditionTrue))
	api.MustCreate(nodesGVR, readyNode("down", corev1.ConditionUnknown))
	api.MustCreate(podsGVR, pod("default", "web", "n1"))
	api.MustCreate(podsGVR, pod("default", "db", "n2"))
	api.MustCreate(podsGVR, pod("other", "job", "n2"))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	factory := informer.NewFactory(api, log)
	nodes := &fakeNodes{now: time.Unix(1_700_000_000, 0), failing: map[string]bool{"down": true},
		rates: map[string]map[resourcemetrics.PodRef]float64{
			"n1": {{Namespace: "default", Name: "web"}: 0.5},
			"n2": {{Namespace: "default", Name: "db"}: 0.25, {Namespace: "other", Name: "job"}: 2},
		}}
	p := New(factory, nodes.transport, Options{Logger: log})
	p.now = func() time.Time { nodes.mu.Lock(); defer nodes.mu.Unlock(); return nodes.now }
	go func() { _ = factory.Run(ctx) }()
	if !informer.WaitForSync(ctx, p.nodeInf, p.podInf) {
		t.Fatal("informers did not sync")
	}

	p.scrapeAll(ctx)
	// One reading: no rates yet, nothing served.
	if list, _ := p.listPods(ctx, ""); len(list.(*PodMetricsList).Items) != 0 {
		t.Fatalf("metrics after one scrape: %+v", list)
	}
	if _, err := p.getNode(ctx, "", "n1"); !apierrors.IsNotFound(err) {
		t.Fatalf("node metrics after one scrape: %v", err)
	}
	nodes.tick(15 * time.Second)
	p.scrapeAll(ctx)

	obj, err := p.getNode(ctx, "", "n1")
	if err != nil {
		t.Fatal(err)
	}
	nm := obj.(*NodeMetrics)
	if cpu := nm.Usage[corev1.ResourceCPU]; cpu.MilliValue() != 1000 || nm.Window.Duration != 15*time.Second || nm.Labels["zone"] != "n1" {
		t.Errorf("node n1 metrics = %+v", nm)
	}
	nl, _ := p.listNodes(ctx, "")
	if items := nl.(*NodeMetricsList).Items; len(items) != 2 || items[0].Name != "n1" || items[1].Name != "n2" {
		t.Errorf("node list = %+v (the NotReady node has none)", items)
	}
	obj, err = p.getPod(ctx, "default", "web")
	if err != nil {
		t.Fatal(err)
	}
	pm := obj.(*PodMetrics)
	if cpu, mem := pm.Containers[0].Usage[corev1.ResourceCPU], pm.Containers[0].Usage[corev1.ResourceMemory]; len(pm.Containers) != 1 || cpu.MilliValue() != 500 || mem.Value() != 64<<20 || pm.Labels["app"] != "web" {
		t.Errorf("pod web metrics = %+v", pm)
	}
	if _, err := p.getPod(ctx, "other", "web"); !apierrors.IsNotFound(err) || err.Error() != `pods.metrics.k8s.io "other/web" not found` {
		t.Errorf("missing pod: %v", err)
	}
	pl, _ := p.listPods(ctx, "default")
	if items := pl.(*PodMetricsList).Items; len(items) != 2 || items[0].Name != "db" || items[1].Name != "web" {
		t.Errorf("pods in default = %+v", items)
	}
	all, _ := p.listPods(ctx, "")
	if items := all.(*PodMetricsList).Items; len(items) != 3 {
		t.Errorf("all pods = %+v", items)
	}
	usage := p.PodUsage("other", corev1.ResourceCPU)
	if u := usage["job"]; len(usage) != 1 || u.MilliValue != 2000 || u.Window != 15*time.Second {
		t.Errorf("PodUsage(other, cpu) = %+v", usage)
	}
	if u := p.PodUsage("default", corev1.ResourceMemory)["db"]; u.MilliValue != 64<<20*1000 {
		t.Errorf("PodUsage(default, memory)[db] = %+v", u)
	}

	// A node that stops answering loses its metrics at the next round.
	nodes.mu.Lock()
	nodes.failing["n2"] = true
	nodes.mu.Unlock()
	nodes.tick(15 * time.Second)
	p.scrapeAll(ctx)
	if _, err := p.getPod(ctx, "default", "db"); !apierrors.IsNotFound(err) {
		t.Errorf("pod on an unreachable node still has metrics: %v", err)
	}
	if _, err := p.getPod(ctx, "default", "web"); err != nil {
		t.Errorf("pod web: %v", err)
	}
	nodes.mu.Lock()
	defer nodes.mu.Unlock()
	if nodes.gzipped == 0 {
		t.Error("no scrape asked for a compressed answer")
	}
}

// TestScrapeInterval: nodes are scraped at the idle resolution until the
// metrics are read; the first read wakes the scraper, and reads keep it at
// the resolution until they stop for idleAfter.
func TestScrapeInterval(t *testing.T) {
	api := fakeapi.New()
	factory := informer.NewFactory(api, slog.New(slog.DiscardHandler))
	now := time.Unix(1_700_000_000, 0)
	p := New(factory, (&fakeNodes{}).transport, Options{Logger: slog.New(slog.DiscardHandler)})
	p.now = func() time.Time { return now }
	woken := func() bool {
		select {
		case <-p.wake:
			return true
		default:
			return false
		}
	}
	steps := []struct {
		name      string
		advance   time.Duration
		read      bool
		wantWake  bool
		wantEvery time.Duration
	}{
		{name: "never read", wantEvery: DefaultIdleResolution},
		{name: "first read", read: true, wantWake: true, wantEvery: DefaultResolution},
		{name: "read again soon", advance: time.Minute, read: true, wantEvery: DefaultResolution},
		{name: "no read for a while", advance: idleAfter - time.Second, wantEvery: DefaultResolution},
		{name: "no read for idleAfter", advance: time.Second, wantEvery: DefaultIdleResolution},
		{name: "read after the idle spell", advance: time.Hour, read: true, wantWake: true, wantEvery: DefaultResolution},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		if st.read {
			_, _ = p.listNodes(t.Context(), "")
		}
		if got := woken(); got != st.wantWake {
			t.Errorf("%s: scraper woken = %v, want %v", st.name, got, st.wantWake)
		}
		if got := p.interval(); got != st.wantEvery {
			t.Errorf("%s: next scrape in %s, want %s", st.name, got, st.wantEvery)
		}
	}
	if q := New(factory, (&fakeNodes{}).transport, Options{Resolution: 10 * time.Minute}); q.opts.IdleResolution != 10*time.Minute {
		t.Errorf("idle resolution %s below a resolution of 10m", q.opts.IdleResolution)
	}
}
