// Package disruption is the PodDisruptionBudget controller: it keeps each
// budget's status current, as Kubernetes' pkg/controller/disruption does,
// so that the API server's pods/eviction subresource can decide whether a
// voluntary disruption (kubectl drain) is allowed.
//
// For each budget it lists the pods its selector matches in its namespace
// and computes:
//
//   - expectedPods: the pods that should exist. For an integer minAvailable
//     it is the number of matching pods; for a percentage or maxUnavailable
//     it is the sum of the scales of the pods' controllers (ReplicaSet,
//     Deployment, ReplicationController, StatefulSet, or any kind with a
//     scale subresource).
//   - desiredHealthy: minAvailable (scaled), or expectedPods minus
//     maxUnavailable (scaled, rounded up).
//   - currentHealthy: Ready pods that are neither being deleted nor
//     recorded in disruptedPods by a recent eviction.
//   - disruptionsAllowed: currentHealthy - desiredHealthy, never negative,
//     and 0 while expectedPods is 0.
//   - disruptedPods: the eviction subresource's entries for pods not yet
//     deleted, dropped two minutes (DeletionTimeout) after the eviction.
//   - the DisruptionAllowed condition (SufficientPods, InsufficientPods, or
//     SyncFailed with the error when the status cannot be computed, in which
//     case disruptionsAllowed is forced to 0).
//
// It also resets DisruptionTarget pod conditions that were set (by an
// eviction or a taint eviction) on pods which then were not deleted within
// two minutes.
//
// The controller reads pods, budgets and workloads from the shared
// informers and writes only budget and pod status, through the API it is
// given; the eviction logic itself lives in the API server.
package disruption

import (
	"context"
	"log/slog"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/clock"

	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
	"github.com/orch-dev/orch/server/events"
	"github.com/orch-dev/orch/server/registry"
)

// ComponentName is the controller's event source.
const ComponentName = "disruption-controller"

// DeletionTimeout is how long an eviction's disruptedPods entry keeps its
// pod out of currentHealthy: the pod is expected to be gone by then, and if
// it is not, the eviction is assumed to have failed. Kubernetes uses 2 min.
const DeletionTimeout = 2 * time.Minute

// StalePodDisruptionTimeout is how long a DisruptionTarget=True condition
// may stay on a pod that is not being deleted before it is reset.
const StalePodDisruptionTimeout = 2 * time.Minute

// API is the part of orch's in-process API (apiserver.Local) the
// controller uses.
type API interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
	Resources() []*registry.Resource
}

var (
	pdbsGVR         = policyv1.SchemeGroupVersion.WithResource("poddisruptionbudgets")
	podsGVR         = corev1.SchemeGroupVersion.WithResource("pods")
	replicaSetsGVR  = appsv1.SchemeGroupVersion.WithResource("replicasets")
	deploymentsGVR  = appsv1.SchemeGroupVersion.WithResource("deployments")
	statefulSetsGVR = appsv1.SchemeGroupVersion.WithResource("statefulsets")
	rcsGVR          = corev1.SchemeGroupVersion.WithResource("replicationcontrollers")
)

// Options configure the controller.
type Options struct {
	// Workers reconciling budgets concurrently (default 2).
	Workers int
	// FieldManager recorded on the controller's writes.
	FieldManager string
	// Clock is the time source (default the real clock).
	Clock  clock.PassiveClock
	Logger *slog.Logger
}

// Controller is the disruption controller.
type Controller struct {
	api      API
	recorder events.Recorder
	opts     Options
	log      *slog.Logger
	clock    clock.PassiveClock

	pdbInformer *informer.Informer
	podInformer *informer.Informer
	// owners are the informers of the workload kinds the server serves;
	// a kind it does not serve has none (its lister stays empty).
	owners []*informer.Informer

	pdbs         informer.Lister[*policyv1.PodDisruptionBudget]
	pods         informer.Lister[*corev1.Pod]
	replicaSets  informer.Lister[*appsv1.ReplicaSet]
	deployments  informer.Lister[*appsv1.Deployment]
	statefulSets informer.Lister[*appsv1.StatefulSet]
	rcs          informer.Lister[*corev1.ReplicationController]

	queue      *queue.Queue // budget keys
	stalePods  *queue.Queue // pod keys with a possibly stale DisruptionTarget
	hasLister  map[schema.GroupVersionResource]bool
	scaleKinds map[schema.GroupKind]*registry.Resource
}

// New builds the controller and registers its informers with factory.
func New(api API, factory *informer.Factory, recorder events.Recorder, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-disruption-controller"
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Controller{
		api:        api,
		recorder:   recorder,
		opts:       opts,
		log:        opts.Logger.With("controller", "disruption"),
		clock:      opts.Clock,
		queue:      queue.New(queue.DefaultRateLimiter()),
		stalePods:  queue.New(queue.DefaultRateLimiter()),
		hasLister:  map[schema.GroupVersionResource]bool{},
		scaleKinds: map[schema.GroupKind]*registry.Resource{},
	}
	served := map[schema.GroupVersionResource]bool{}
	for _, r := range api.Resources() {
		served[r.GroupVersionResource()] = true
		if r.HasSubresource("scale") {
			gk := schema.GroupKind{Group: r.GroupVersion.Group, Kind: r.Kind}
			// One entry per kind; the first (preferred) version wins.
			if _, seen := c.scaleKinds[gk]; !seen {
				c.scaleKinds[gk] = r
			}
		}
	}

	c.pdbInformer = factory.For(pdbsGVR)
	c.podInformer = factory.For(podsGVR)
	c.pdbs = informer.NewLister[*policyv1.PodDisruptionBudget](c.pdbInformer)
	c.pods = informer.NewLister[*corev1.Pod](c.podInformer)
	owner := func(gvr schema.GroupVersionResource) *informer.Informer {
		if !served[gvr] {
			return nil
		}
		inf := factory.For(gvr)
		inf.AddHandler(informer.HandlerFuncs{UpdateFunc: c.ownerUpdated})
		c.owners = append(c.owners, inf)
		c.hasLister[gvr] = true
		return inf
	}
	if inf := owner(replicaSetsGVR); inf != nil {
		c.replicaSets = informer.NewLister[*appsv1.ReplicaSet](inf)
	}
	if inf := owner(deploymentsGVR); inf != nil {
		c.deployments = informer.NewLister[*appsv1.Deployment](inf)
	}
	if inf := owner(statefulSetsGVR); inf != nil {
		c.statefulSets = informer.NewLister[*appsv1.StatefulSet](inf)
	}
	if inf := owner(rcsGVR); inf != nil {
		c.rcs = informer.NewLister[*corev1.ReplicationController](inf)
	}

	c.pdbInformer.AddHandler(informer.OnAny(c.enqueuePDB))
	c.podInformer.AddHandler(informer.HandlerFuncs{
		AddFunc: func(obj runtime.Object) {
			c.enqueuePDBsOfPod(obj)
			c.checkStaleDisruption(obj)
		},
		UpdateFunc: func(old, obj runtime.Object) {
			c.enqueuePDBsOfPod(obj)
			if !labels.Equals(labelsOf(old), labelsOf(obj)) {
				c.enqueuePDBsOfPod(old)
			}
			c.checkStaleDisruption(obj)
		},
		DeleteFunc: c.enqueuePDBsOfPod,
	})
	return c
}

func labelsOf(obj runtime.Object) labels.Set {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil
	}
	return m.GetLabels()
}

func (c *Controller) enqueuePDB(obj runtime.Object) {
	if key, err := informer.KeyOf(obj); err == nil {
		c.queue.Add(key)
	}
}

// enqueuePDBsOfPod queues every budget whose selector matches the pod.
// (Kubernetes queues only one of them, chosen arbitrarily; all of them
// count the pod.)
func (c *Controller) enqueuePDBsOfPod(obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	for _, pdb := range c.pdbsForPod(pod) {
		c.enqueuePDB(pdb)
	}
}

// pdbsForPod returns the budgets in the pod's namespace selecting it. An
// empty selector selects every pod (policy/v1); a missing one none.
func (c *Controller) pdbsForPod(pod *corev1.Pod) []*policyv1.PodDisruptionBudget {
	var out []*policyv1.PodDisruptionBudget
	for _, pdb := range c.pdbs.List(pod.Namespace, nil) {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		out = append(out, pdb)
	}
	return out
}

// ownerUpdated requeues the budgets of a workload's namespace when its
// scale changed: budgets with percentages or maxUnavailable count the
// workload's replicas, which can change before any pod does.
func (c *Controller) ownerUpdated(old, obj runtime.Object) {
	if replicasOf(old) == replicasOf(obj) {
		return
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	for _, pdb := range c.pdbs.List(m.GetNamespace(), nil) {
		c.enqueuePDB(pdb)
	}
}

// Run reconciles budgets until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	informers := append([]*informer.Informer{c.pdbInformer, c.podInformer}, c.owners...)
	if !informer.WaitForSync(ctx, informers...) {
		return nil
	}
	c.log.Info("started", "workers", c.opts.Workers)
	done := make(chan struct{})
	go func() {
		defer close(done)
		queue.RunWorkers(ctx, c.stalePods, 1, c.log, c.reconcileStalePod)
	}()
	queue.RunWorkers(ctx, c.queue, c.opts.Workers, c.log, c.reconcile)
	<-done
	return nil
}
