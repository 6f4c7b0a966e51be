// Package nodelifecycle is the node lifecycle controller, as Kubernetes'
// pkg/controller/nodelifecycle: it watches every node's heartbeats and
// turns the silence of a node into conditions and taints that the
// scheduler and the taint eviction controller (package tainteviction) act
// on.
//
//   - Heartbeats are the node's Lease in kube-node-lease (spec.renewTime)
//     and, as a fallback, its Ready condition's lastHeartbeatTime. The
//     controller times them with its own clock when it sees them change,
//     so a node's clock skew does not matter. A node silent for longer
//     than the grace period (Options.GracePeriod; StartupGracePeriod for a
//     node that never posted a status) gets Ready, MemoryPressure,
//     DiskPressure and PIDPressure set to Unknown ("NodeStatusUnknown",
//     "Kubelet stopped posting node status."), a NodeNotReady event, and
//     its pods' Ready condition set to False so that endpoints drop them.
//   - NoSchedule taints follow the conditions (TaintNodesByCondition):
//     node.kubernetes.io/not-ready or unreachable for Ready False or
//     Unknown, memory-pressure, disk-pressure, pid-pressure and
//     network-unavailable for those conditions True, and
//     node.kubernetes.io/unschedulable for a cordoned node.
//   - NoExecute taints (not-ready, unreachable) are what evicts pods. They
//     are added through one rate-limited queue per zone (labels
//     topology.kubernetes.io/region and zone), Options.EvictionRate nodes
//     per second; a zone where at least UnhealthyZoneThreshold of the nodes
//     (and more than two) are not ready slows down to SecondaryEvictionRate
//     if it has more than LargeClusterThreshold nodes, or stops otherwise.
//     When every node of the cluster is not ready the controller assumes
//     that the problem is its own network, not the nodes': it removes the
//     NoExecute taints and evicts nothing until a node is ready again.
//     Taints are removed as soon as a node is ready again.
//
// The controller writes only through the API it is given, never to the
// store. It evicts no pod itself: that is the taint eviction controller's
// job.
package nodelifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/clock"

	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/nodelifecycle/internal/podindex"
	"github.com/orch-dev/orch/server/controllers/queue"
	"github.com/orch-dev/orch/server/events"
)

// API is the part of orch's in-process API (apiserver.Local) the
// controller uses.
type API interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
}

var (
	nodesGVR  = corev1.SchemeGroupVersion.WithResource("nodes")
	podsGVR   = corev1.SchemeGroupVersion.WithResource("pods")
	leasesGVR = coordinationv1.SchemeGroupVersion.WithResource("leases")

	nodeKind = corev1.SchemeGroupVersion.WithKind("Node")
	podKind  = corev1.SchemeGroupVersion.WithKind("Pod")
)

// ComponentName is the event source of the controller (Kubernetes'
// node-controller).
const ComponentName = "node-controller"

// Upstream defaults (kube-controller-manager flags).
const (
	// DefaultGracePeriod is --node-monitor-grace-period as orch documents
	// it (Kubernetes 1.32 raised its own to 50 s).
	DefaultGracePeriod = 40 * time.Second
	// DefaultStartupGracePeriod is --node-startup-grace-period.
	DefaultStartupGracePeriod = 60 * time.Second
	// DefaultMonitorPeriod is --node-monitor-period.
	DefaultMonitorPeriod = 5 * time.Second
	// DefaultEvictionRate is --node-eviction-rate (nodes per second and
	// zone).
	DefaultEvictionRate = 0.1
	// DefaultSecondaryEvictionRate is --secondary-node-eviction-rate.
	DefaultSecondaryEvictionRate = 0.01
	// DefaultLargeClusterThreshold is --large-cluster-size-threshold.
	DefaultLargeClusterThreshold = 50
	// DefaultUnhealthyZoneThreshold is --unhealthy-zone-threshold.
	DefaultUnhealthyZoneThreshold = 0.55
)

// taintPassPeriod is how often the NoExecute taint queues are tried
// (Kubernetes: 100 ms). The queues' rate limits, not this period, decide
// the pace; a coarser tick keeps an idle server idle.
const taintPassPeriod = time.Second

// maxUpdateRetries bounds the re-reads after write conflicts.
const maxUpdateRetries = 5

// Options configure the controller. Zero values mean the defaults above.
type Options struct {
	// GracePeriod is how long a node may be silent before it is marked
	// Unknown. The server picks it (shorter for its "edge" profile).
	GracePeriod time.Duration
	// StartupGracePeriod replaces GracePeriod for a node that never
	// posted a Ready condition.
	StartupGracePeriod time.Duration
	// MonitorPeriod is how often node health is checked.
	MonitorPeriod time.Duration
	// EvictionRate is how many nodes per second and zone may get NoExecute
	// taints; SecondaryEvictionRate replaces it in an unhealthy zone of a
	// cluster larger than LargeClusterThreshold nodes (smaller ones stop).
	EvictionRate          float64
	SecondaryEvictionRate float64
	LargeClusterThreshold int
	// UnhealthyZoneThreshold is the fraction of not-ready nodes (more than
	// two) from which a zone counts as unhealthy.
	UnhealthyZoneThreshold float64
	// Workers reconciling NoSchedule taints and pods (default 2 each).
	Workers int
	// Clock is the time source (default the real clock); tests inject a
	// fake one.
	Clock clock.WithTicker
	// FieldManager recorded on the controller's writes.
	FieldManager string
	Logger       *slog.Logger
}

func (o *Options) setDefaults() {
	if o.GracePeriod <= 0 {
		o.GracePeriod = DefaultGracePeriod
	}
	if o.StartupGracePeriod <= 0 {
		o.StartupGracePeriod = DefaultStartupGracePeriod
	}
	if o.MonitorPeriod <= 0 {
		o.MonitorPeriod = DefaultMonitorPeriod
	}
	if o.EvictionRate <= 0 {
		o.EvictionRate = DefaultEvictionRate
	}
	if o.SecondaryEvictionRate <= 0 {
		o.SecondaryEvictionRate = DefaultSecondaryEvictionRate
	}
	if o.LargeClusterThreshold <= 0 {
		o.LargeClusterThreshold = DefaultLargeClusterThreshold
	}
	if o.UnhealthyZoneThreshold <= 0 {
		o.UnhealthyZoneThreshold = DefaultUnhealthyZoneThreshold
	}
	if o.Workers <= 0 {
		o.Workers = 2
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.FieldManager == "" {
		o.FieldManager = "orch-node-lifecycle-controller"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Controller is the node lifecycle controller.
type Controller struct {
	api      API
	recorder events.Recorder
	opts     Options
	log      *slog.Logger
	clock    clock.WithTicker

	nodes, pods, leases *informer.Informer
	nodeLister          informer.Lister[*corev1.Node]
	podLister           informer.Lister[*corev1.Pod]
	leaseLister         informer.Lister[*coordinationv1.Lease]
	podsByNode          *podindex.Index

	// noScheduleQueue holds node names whose NoSchedule taints to
	// reconcile; podQueue pod keys newly bound to a node.
	noScheduleQueue *queue.Queue
	podQueue        *queue.Queue

	// health is read by pod workers and written by the monitor loop.
	healthMu sync.RWMutex
	health   map[string]*nodeHealth

	// Owned by the monitor loop (Run's goroutine) alone.
	knownNodes   map[string]*corev1.Node
	zones        map[string]*zone
	nodesToRetry map[string]bool
}

// New builds the controller and registers its informers with factory.
func New(api API, factory *informer.Factory, recorder events.Recorder, opts Options) *Controller {
	opts.setDefaults()
	c := &Controller{
		api:             api,
		recorder:        recorder,
		opts:            opts,
		log:             opts.Logger.With("controller", "node-lifecycle"),
		clock:           opts.Clock,
		nodes:           factory.For(nodesGVR),
		pods:            factory.For(podsGVR),
		leases:          factory.For(leasesGVR),
		podsByNode:      podindex.New(),
		noScheduleQueue: queue.New(nil),
		podQueue:        queue.New(nil),
		health:          map[string]*nodeHealth{},
		knownNodes:      map[string]*corev1.Node{},
		zones:           map[string]*zone{},
		nodesToRetry:    map[string]bool{},
	}
	c.nodeLister = informer.NewLister[*corev1.Node](c.nodes)
	c.podLister = informer.NewLister[*corev1.Pod](c.pods)
	c.leaseLister = informer.NewLister[*coordinationv1.Lease](c.leases)

	c.nodes.AddHandler(informer.HandlerFuncs{
		AddFunc:    c.enqueueNode,
		UpdateFunc: c.nodeUpdated,
	})
	c.pods.AddHandler(c.podsByNode.Handler())
	c.pods.AddHandler(informer.HandlerFuncs{
		AddFunc:    func(obj runtime.Object) { c.podUpdated(nil, obj) },
		UpdateFunc: c.podUpdated,
	})
	return c
}

func (c *Controller) enqueueNode(obj runtime.Object) {
	if node, ok := obj.(*corev1.Node); ok {
		c.noScheduleQueue.Add(node.Name)
	}
}

// nodeUpdated queues a node whose NoSchedule taints may be due to change;
// heartbeats, which change neither conditions nor taints, are skipped.
func (c *Controller) nodeUpdated(oldObj, obj runtime.Object) {
	old, ok1 := oldObj.(*corev1.Node)
	node, ok2 := obj.(*corev1.Node)
	if ok1 && ok2 && apiequality.Semantic.DeepEqual(old.Spec.Taints, node.Spec.Taints) &&
		apiequality.Semantic.DeepEqual(wantedNoScheduleTaints(old), wantedNoScheduleTaints(node)) {
		return
	}
	c.enqueueNode(obj)
}

// podUpdated queues a pod that was just bound to a node: if that node is
// not ready, the pod must not look ready either.
func (c *Controller) podUpdated(oldObj, obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName == "" {
		return
	}
	if old, ok := oldObj.(*corev1.Pod); ok && old.Spec.NodeName == pod.Spec.NodeName {
		return
	}
	c.podQueue.Add(informer.Key(pod.Namespace, pod.Name))
}

// Run monitors nodes until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !informer.WaitForSync(ctx, c.nodes, c.pods, c.leases) {
		return nil
	}
	c.log.Info("started", "gracePeriod", c.opts.GracePeriod, "evictionRate", c.opts.EvictionRate)

	var wg sync.WaitGroup
	wg.Go(func() {
		queue.RunWorkers(ctx, c.noScheduleQueue, c.opts.Workers, c.log, c.reconcileNoScheduleTaints)
	})
	wg.Go(func() { queue.RunWorkers(ctx, c.podQueue, c.opts.Workers, c.log, c.reconcilePod) })
	defer wg.Wait()

	monitor := c.clock.NewTicker(c.opts.MonitorPeriod)
	defer monitor.Stop()
	// The taint queues fill only in monitorNodeHealth, on this goroutine,
	// so the taint pass ticks only while a queue holds a node: a healthy
	// cluster does not wake up every second for an empty pass.
	var taints clock.Ticker
	defer func() {
		if taints != nil {
			taints.Stop()
		}
	}()
	c.monitorNodeHealth(ctx)
	for {
		var taintTick <-chan time.Time
		switch queued := c.taintsQueued(); {
		case queued && taints == nil:
			taints = c.clock.NewTicker(taintPassPeriod)
			taintTick = taints.C()
		case queued:
			taintTick = taints.C()
		case taints != nil:
			taints.Stop()
			taints = nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-monitor.C():
			c.monitorNodeHealth(ctx)
		case <-taintTick:
			c.doNoExecuteTaintingPass(ctx)
		}
	}
}

// taintsQueued reports whether any zone's taint queue holds a node.
func (c *Controller) taintsQueued() bool {
	for _, z := range c.zones {
		if z.tainter.len() > 0 {
			return true
		}
	}
	return false
}

// now is the controller's clock as an API timestamp. API timestamps have
// one-second precision on the wire; keep the full value in memory.
func (c *Controller) now() metav1.Time { return metav1.NewTime(c.clock.Now()) }

// withKind returns obj with its kind set, as events need it.
func withKind[T runtime.Object](obj T, gvk schema.GroupVersionKind) runtime.Object {
	if obj.GetObjectKind().GroupVersionKind().Kind != "" {
		return obj
	}
	c := obj.DeepCopyObject()
	c.GetObjectKind().SetGroupVersionKind(gvk)
	return c
}

func (c *Controller) getNode(ctx context.Context, name string) (*corev1.Node, error) {
	obj, err := c.api.Get(ctx, nodesGVR, "", name)
	if err != nil {
		return nil, err
	}
	node, ok := obj.(*corev1.Node)
	if !ok {
		return nil, fmt.Errorf("get node %s: unexpected type %T", name, obj)
	}
	return node, nil
}

func (c *Controller) updateNode(ctx context.Context, node *corev1.Node, subresource string) (*corev1.Node, error) {
	obj, err := c.api.Update(ctx, nodesGVR, node, subresource, c.opts.FieldManager)
	if err != nil {
		return nil, err
	}
	out, ok := obj.(*corev1.Node)
	if !ok {
		return nil, fmt.Errorf("update node %s: unexpected type %T", node.Name, obj)
	}
	return out, nil
}
