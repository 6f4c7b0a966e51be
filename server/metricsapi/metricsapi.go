// Package metricsapi is orch's metrics-server: it scrapes every Ready
// node's resource metrics (the kubelet's /metrics/resource, see
// internal/resourcemetrics) through the API server's node transport at a
// fixed resolution, keeps the last two readings of every node and
// container to turn CPU counters into rates, and serves them as
// metrics.k8s.io/v1beta1 NodeMetrics and PodMetrics, read-only resources of
// the API server, so that `kubectl top` and the HorizontalPodAutoscaler
// work. It also gives the autoscaler pods' usage in-process.
//
// It keeps nothing on disk and writes nothing to the store.
package metricsapi

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/orch-dev/orch/internal/resourcemetrics"
	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/controllers/informer"
)

const (
	// DefaultResolution is how often nodes are scraped while the metrics
	// are used: the --metric-resolution that metrics-server's own
	// manifests (and its Helm chart) run with.
	DefaultResolution = 15 * time.Second
	// DefaultIdleResolution is how often they are scraped while nobody
	// reads them, so that a first read finds metrics (over a longer
	// window) rather than none: an idle edge node's uplink carries one
	// compressed scrape every 5 minutes. The read wakes a scrape at once,
	// so the next read has a fresh reading.
	DefaultIdleResolution = 5 * time.Minute
	// idleAfter is how long after the last read of the metrics (the
	// metrics API, the autoscaler) scraping slows to the idle resolution.
	idleAfter = 5 * time.Minute
	// defaultConcurrency bounds the scrapes in flight.
	defaultConcurrency = 16
	// maxScrapeBytes bounds a node's answer: about 100 bytes per series,
	// so room for thousands of containers.
	maxScrapeBytes = 16 << 20
)

// NodeTransport reaches a node's agent (apiserver.Config.NodeTransport).
type NodeTransport func(node string) (http.RoundTripper, error)

// Options configure the Provider.
type Options struct {
	// Resolution is how often every node is scraped while the metrics
	// are read (default 15 s); IdleResolution while they are not (default
	// 5 min, and never below Resolution).
	Resolution     time.Duration
	IdleResolution time.Duration
	// Timeout bounds one node's scrape (default 10 s, and at most the
	// resolution).
	Timeout time.Duration
	// Concurrency bounds the scrapes in flight (default 16).
	Concurrency int
	Logger      *slog.Logger
}

// Provider scrapes the nodes and serves the metrics API.
type Provider struct {
	transport NodeTransport
	nodeInf   *informer.Informer
	podInf    *informer.Informer
	nodes     informer.Lister[*corev1.Node]
	pods      informer.Lister[*corev1.Pod]
	store     *storage
	// failing are the nodes whose last scrape failed: a failure is logged
	// as a warning once, not every round.
	failingMu sync.Mutex
	failing   map[string]bool
	opts      Options
	log       *slog.Logger
	now       func() time.Time
	// lastRead is when the metrics were last read (UnixNano; 0: never);
	// wake asks an idle scraper to scrape at once.
	lastRead atomic.Int64
	wake     chan struct{}
}

var (
	nodesGVR = corev1.SchemeGroupVersion.WithResource("nodes")
	podsGVR  = corev1.SchemeGroupVersion.WithResource("pods")

	nodeMetricsResource = GroupVersion.WithResource("nodes").GroupResource()
	podMetricsResource  = GroupVersion.WithResource("pods").GroupResource()
)

// New builds the Provider; nodes and pods come from factory's informers.
func New(factory *informer.Factory, transport NodeTransport, opts Options) *Provider {
	if opts.Resolution <= 0 {
		opts.Resolution = DefaultResolution
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.IdleResolution <= 0 {
		opts.IdleResolution = DefaultIdleResolution
	}
	opts.IdleResolution = max(opts.IdleResolution, opts.Resolution)
	opts.Timeout = min(opts.Timeout, opts.Resolution)
	if opts.Concurrency <= 0 {
		opts.Concurrency = defaultConcurrency
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	nodeInf, podInf := factory.For(nodesGVR), factory.For(podsGVR)
	return &Provider{
		transport: transport,
		nodeInf:   nodeInf,
		podInf:    podInf,
		nodes:     informer.NewLister[*corev1.Node](nodeInf),
		pods:      informer.NewLister[*corev1.Pod](podInf),
		store:     newStorage(),
		failing:   map[string]bool{},
		opts:      opts,
		log:       opts.Logger,
		now:       time.Now,
		wake:      make(chan struct{}, 1),
	}
}

// Run scrapes every Ready node once per resolution until ctx ends: the
// idle resolution while nobody reads the metrics, the resolution from the
// first read on (that read's scrape starts at once).
func (p *Provider) Run(ctx context.Context) error {
	if !informer.WaitForSync(ctx, p.nodeInf, p.podInf) {
		return nil
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-p.wake:
			t.Stop()
		}
		p.scrapeAll(ctx)
		t.Reset(p.interval())
	}
}

// interval is the time to the next scrape.
func (p *Provider) interval() time.Duration {
	if p.idle() {
		return p.opts.IdleResolution
	}
	return p.opts.Resolution
}

func (p *Provider) idle() bool {
	last := p.lastRead.Load()
	return last == 0 || p.now().Sub(time.Unix(0, last)) >= idleAfter
}

// read notes a read of the metrics; the first after an idle spell
// wakes the scraper, so that rates over the short resolution follow soon.
func (p *Provider) read() {
	wasIdle := p.idle()
	p.lastRead.Store(p.now().UnixNano())
	if wasIdle {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// scrapeAll scrapes the Ready nodes concurrently, bounded, and returns
// when every scrape has ended.
func (p *Provider) scrapeAll(ctx context.Context) {
	ready := map[string]bool{}
	for _, n := range p.nodes.List("", nil) {
		if nodeReady(n) {
			ready[n.Name] = true
		}
	}
	p.store.forgetNodesExcept(ready)
	p.failingMu.Lock()
	for name := range p.failing {
		if !ready[name] {
			delete(p.failing, name)
		}
	}
	p.failingMu.Unlock()
	slots := make(chan struct{}, p.opts.Concurrency)
	var wg sync.WaitGroup
	for name := range ready {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			snap, err := p.scrape(ctx, name)
			if err != nil {
				if ctx.Err() == nil {
					p.scrapeFailed(name, err)
				}
				p.store.forgetNode(name)
				return
			}
			p.scrapeSucceeded(name)
			p.store.update(name, snap)
		}()
	}
	wg.Wait()
}

func (p *Provider) scrapeFailed(node string, err error) {
	p.failingMu.Lock()
	first := !p.failing[node]
	p.failing[node] = true
	p.failingMu.Unlock()
	level := slog.LevelDebug
	if first {
		level = slog.LevelWarn
	}
	p.log.Log(context.Background(), level, "cannot scrape node resource metrics", "node", node, "err", err)
}

func (p *Provider) scrapeSucceeded(node string) {
	p.failingMu.Lock()
	was := p.failing[node]
	delete(p.failing, node)
	p.failingMu.Unlock()
	if was {
		p.log.Info("scraping node resource metrics again", "node", node)
	}
}

// scrape reads one node's /metrics/resource.
func (p *Provider) scrape(ctx context.Context, node string) (resourcemetrics.Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	rt, err := p.transport(node)
	if err != nil {
		return resourcemetrics.Snapshot{}, err
	}
	if rt == nil {
		return resourcemetrics.Snapshot{}, fmt.Errorf("node %s is not connected", node)
	}
	// The host only names the node; the transport knows where it is.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+url.PathEscape(node)+resourcemetrics.Path, nil)
	if err != nil {
		return resourcemetrics.Snapshot{}, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	// The text format shrinks ~10x (it repeats every label on every
	// line): it crosses an agent's uplink every resolution. The node
	// transport does not decompress by itself.
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return resourcemetrics.Snapshot{}, fmt.Errorf("get %s: %w", resourcemetrics.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resourcemetrics.Snapshot{}, fmt.Errorf("get %s: node answered %s", resourcemetrics.Path, resp.Status)
	}
	var text io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return resourcemetrics.Snapshot{}, fmt.Errorf("read %s: %w", resourcemetrics.Path, err)
		}
		defer zr.Close()
		text = zr
	}
	body := &io.LimitedReader{R: text, N: maxScrapeBytes + 1}
	snap, err := resourcemetrics.Parse(body, p.now())
	if err == nil && body.N <= 0 {
		err = fmt.Errorf("answer larger than %d bytes", maxScrapeBytes)
	}
	if err != nil {
		return resourcemetrics.Snapshot{}, fmt.Errorf("read %s: %w", resourcemetrics.Path, err)
	}
	return snap, nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Resources are the metrics.k8s.io resources, for apiserver.AddComputed.
func (p *Provider) Resources() []apiserver.ComputedResource {
	return []apiserver.ComputedResource{
		{GroupVersion: GroupVersion, Name: "nodes", Kind: "NodeMetrics",
			Get: p.getNode, List: p.listNodes, Columns: usageColumns,
			Row: func(obj runtime.Object) []interface{} {
				m := obj.(*NodeMetrics)
				return usageRow(m.Name, m.Usage, m.Window)
			}},
		{GroupVersion: GroupVersion, Name: "pods", Kind: "PodMetrics", Namespaced: true,
			Get: p.getPod, List: p.listPods, Columns: usageColumns,
			Row: func(obj runtime.Object) []interface{} {
				m := obj.(*PodMetrics)
				sum := corev1.ResourceList{}
				for _, c := range m.Containers {
					for name, q := range c.Usage {
						total := sum[name]
						total.Add(q)
						sum[name] = total
					}
				}
				return usageRow(m.Name, sum, m.Window)
			}},
	}
}

// usageColumns are metrics-server's table columns.
var usageColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "Name of the resource"},
	{Name: "CPU", Type: "string", Format: "quantity", Description: "CPU usage"},
	{Name: "Memory", Type: "string", Format: "quantity", Description: "Memory usage"},
	{Name: "Window", Type: "string", Format: "duration", Description: "Window over which the usage was measured"},
}

func usageRow(name string, usage corev1.ResourceList, window metav1.Duration) []interface{} {
	cpu, mem := usage[corev1.ResourceCPU], usage[corev1.ResourceMemory]
	return []interface{}{name, cpu.String(), mem.String(), window.Duration.String()}
}

func (p *Provider) nodeMetrics(n *corev1.Node) (*NodeMetrics, bool) {
	u, ok := p.store.nodeUsage(n.Name)
	if !ok {
		return nil, false
	}
	return &NodeMetrics{
		TypeMeta:   metav1.TypeMeta{APIVersion: GroupVersion.String(), Kind: "NodeMetrics"},
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels, CreationTimestamp: metav1.NewTime(p.now())},
		Timestamp:  metav1.NewTime(u.timestamp), Window: metav1.Duration{Duration: u.window},
		Usage: resourceList(u),
	}, true
}

func (p *Provider) podMetrics(pod *corev1.Pod) (*PodMetrics, bool) {
	containers, at, ok := p.store.podUsage(resourcemetrics.PodRef{Namespace: pod.Namespace, Name: pod.Name})
	if !ok {
		return nil, false
	}
	m := &PodMetrics{
		TypeMeta: metav1.TypeMeta{APIVersion: GroupVersion.String(), Kind: "PodMetrics"},
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, Labels: pod.Labels,
			CreationTimestamp: metav1.NewTime(p.now())},
		Timestamp: metav1.NewTime(at.timestamp), Window: metav1.Duration{Duration: at.window},
		Containers: []ContainerMetrics{},
	}
	for _, c := range containers {
		m.Containers = append(m.Containers, ContainerMetrics{Name: c.name, Usage: resourceList(c.usage)})
	}
	return m, true
}

// resourceList renders usage as metrics-server does: CPU in nanocores,
// memory in bytes (kubectl top shows millicores and Mi).
func resourceList(u usage) corev1.ResourceList {
	return corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewScaledQuantity(u.nanoCores, resource.Nano),
		corev1.ResourceMemory: *resource.NewQuantity(u.memory, resource.BinarySI),
	}
}

func (p *Provider) getNode(_ context.Context, _, name string) (runtime.Object, error) {
	p.read()
	n, ok := p.nodes.Get("", name)
	if !ok {
		return nil, apierrors.NewNotFound(nodeMetricsResource, name)
	}
	m, ok := p.nodeMetrics(n)
	if !ok {
		return nil, apierrors.NewNotFound(nodeMetricsResource, name)
	}
	return m, nil
}

func (p *Provider) listNodes(context.Context, string) (runtime.Object, error) {
	p.read()
	list := &NodeMetricsList{TypeMeta: metav1.TypeMeta{APIVersion: GroupVersion.String(), Kind: "NodeMetricsList"}, Items: []NodeMetrics{}}
	for _, n := range p.nodes.List("", nil) {
		if m, ok := p.nodeMetrics(n); ok {
			list.Items = append(list.Items, *m)
		}
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list, nil
}

func (p *Provider) getPod(_ context.Context, namespace, name string) (runtime.Object, error) {
	p.read()
	// metrics-server names the object namespace/name in its NotFound.
	notFound := apierrors.NewNotFound(podMetricsResource, namespace+"/"+name)
	pod, ok := p.pods.Get(namespace, name)
	if !ok {
		return nil, notFound
	}
	m, ok := p.podMetrics(pod)
	if !ok {
		return nil, notFound
	}
	return m, nil
}

func (p *Provider) listPods(_ context.Context, namespace string) (runtime.Object, error) {
	p.read()
	list := &PodMetricsList{TypeMeta: metav1.TypeMeta{APIVersion: GroupVersion.String(), Kind: "PodMetricsList"}, Items: []PodMetrics{}}
	for _, pod := range p.pods.List(namespace, nil) {
		if m, ok := p.podMetrics(pod); ok {
			list.Items = append(list.Items, *m)
		}
	}
	sort.Slice(list.Items, func(i, j int) bool {
		a, b := list.Items[i], list.Items[j]
		return a.Namespace < b.Namespace || (a.Namespace == b.Namespace && a.Name < b.Name)
	})
	return list, nil
}

// PodUsage is a pod's usage of one resource, summed over its containers,
// in milli-units (millicores, milli-bytes), as the autoscaler computes.
type PodUsage struct {
	MilliValue int64
	Timestamp  time.Time
	Window     time.Duration
}

// PodUsage returns the usage of res (cpu or memory) of every pod in
// namespace that has metrics, by pod name.
func (p *Provider) PodUsage(namespace string, res corev1.ResourceName) map[string]PodUsage {
	p.read()
	out := map[string]PodUsage{}
	for _, pod := range p.pods.List(namespace, nil) {
		containers, at, ok := p.store.podUsage(resourcemetrics.PodRef{Namespace: pod.Namespace, Name: pod.Name})
		if !ok {
			continue
		}
		var sum int64
		for _, c := range containers {
			switch res {
			case corev1.ResourceCPU:
				sum += c.nanoCores / 1e6
			case corev1.ResourceMemory:
				sum += c.memory * 1000
			}
		}
		out[pod.Name] = PodUsage{MilliValue: sum, Timestamp: at.timestamp, Window: at.window}
	}
	return out
}

// ensure the compiler checks the runtime.Object implementations.
var (
	_ runtime.Object = (*NodeMetrics)(nil)
	_ runtime.Object = (*NodeMetricsList)(nil)
	_ runtime.Object = (*PodMetrics)(nil)
	_ runtime.Object = (*PodMetricsList)(nil)
)
