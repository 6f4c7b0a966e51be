// Package podautoscaler is the HorizontalPodAutoscaler controller, as
// Kubernetes' pkg/controller/podautoscaler, for autoscaling/v2 Resource
// metrics (cpu and memory, Utilization and AverageValue targets) of
// targets with a scale subresource (Deployments, ReplicaSets,
// StatefulSets, ReplicationControllers).
//
// Every sync period (15 s) it reads the pods' usage from the metrics API
// (server/metricsapi, in-process), proposes a replica count per metric with
// the upstream replica calculator (usage over requests of the ready pods,
// a 10% tolerance, pods without metrics or not yet ready assumed to use
// the target or nothing, whichever damps the change), takes the largest
// proposal, stabilizes it over the behavior's windows, bounds it by the
// scaling policies' rates and min/max replicas, and scales the target. It
// writes the status (current and desired replicas, current metrics, the
// AbleToScale, ScalingActive and ScalingLimited conditions, lastScaleTime)
// and Kubernetes' events (SuccessfulRescale, FailedGetScale,
// FailedGetResourceMetric, FailedComputeMetricsReplicas, FailedRescale).
//
// Simplified against upstream: Pods, Object, External and ContainerResource
// metrics are reported as not supported; autoscalers without a behavior
// use the default behavior (see defaultBehavior); the tolerance is not
// configurable per autoscaler.
//
// It writes only through the API it is given, never to the store.
package podautoscaler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
	"github.com/orch-dev/orch/server/events"
	"github.com/orch-dev/orch/server/metricsapi"
	"github.com/orch-dev/orch/server/registry"
)

// ComponentName is the controller's event source, as Kubernetes'.
const ComponentName = "horizontal-pod-autoscaler"

// API is the part of orch's in-process API (apiserver.Local) the
// controller uses.
type API interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
	Resources() []*registry.Resource
}

// Metrics gives the pods' resource usage (metricsapi.Provider).
type Metrics interface {
	PodUsage(namespace string, res corev1.ResourceName) map[string]metricsapi.PodUsage
}

// Options configure the controller.
type Options struct {
	// SyncPeriod is how often every autoscaler is reconciled (default
	// 15 s, --horizontal-pod-autoscaler-sync-period).
	SyncPeriod time.Duration
	// DownscaleStabilization is the scale-down window of autoscalers that
	// set none (default 5 min).
	DownscaleStabilization time.Duration
	// Tolerance is the ratio change ignored (default 0.1).
	Tolerance    float64
	FieldManager string // default "orch-horizontal-pod-autoscaler"
	Logger       *slog.Logger
}

var (
	hpaGVR  = autoscalingv2.SchemeGroupVersion.WithResource("horizontalpodautoscalers")
	podsGVR = corev1.SchemeGroupVersion.WithResource("pods")
)

// Controller is the HorizontalPodAutoscaler controller.
type Controller struct {
	api      API
	metrics  Metrics
	recorder events.Recorder
	hpaInf   *informer.Informer
	podInf   *informer.Informer
	pods     informer.Lister[*corev1.Pod]
	queue    *queue.Queue
	history  histories
	opts     Options
	log      *slog.Logger
	now      func() time.Time
}

// New builds the controller and registers its informers with factory.
func New(api API, factory *informer.Factory, recorder events.Recorder, metrics Metrics, opts Options) *Controller {
	if opts.SyncPeriod <= 0 {
		opts.SyncPeriod = 15 * time.Second
	}
	if opts.DownscaleStabilization <= 0 {
		opts.DownscaleStabilization = 5 * time.Minute
	}
	if opts.Tolerance <= 0 {
		opts.Tolerance = defaultTolerance
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-horizontal-pod-autoscaler"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	hpaInf, podInf := factory.For(hpaGVR), factory.For(podsGVR)
	c := &Controller{
		api: api, metrics: metrics, recorder: recorder,
		hpaInf: hpaInf, podInf: podInf, pods: informer.NewLister[*corev1.Pod](podInf),
		queue: queue.New(queue.DefaultRateLimiter()),
		opts:  opts, log: opts.Logger, now: time.Now,
	}
	hpaInf.AddHandler(informer.HandlerFuncs{
		AddFunc: c.enqueue,
		// A spec change is acted on at once; status writes (ours) are not.
		UpdateFunc: func(old, obj runtime.Object) {
			if o, n := old.(*autoscalingv2.HorizontalPodAutoscaler), obj.(*autoscalingv2.HorizontalPodAutoscaler); o.Generation != n.Generation {
				c.enqueue(obj)
			}
		},
		DeleteFunc: func(obj runtime.Object) {
			if key, err := informer.KeyOf(obj); err == nil {
				c.history.forget(key)
			}
		},
	})
	return c
}

// Run reconciles with workers goroutines until ctx ends; each autoscaler
// is reconciled again every sync period.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !informer.WaitForSync(ctx, c.hpaInf, c.podInf) {
		return nil
	}
	c.log.Info("started", "workers", workers, "syncPeriod", c.opts.SyncPeriod)
	queue.RunWorkers(ctx, c.queue, workers, c.log, c.reconcile)
	return nil
}

func (c *Controller) enqueue(obj runtime.Object) {
	if key, err := informer.KeyOf(obj); err == nil {
		c.queue.Add(key)
	}
}

func (c *Controller) reconcile(ctx context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	obj, ok := c.hpaInf.GetByName(ns, name)
	if !ok {
		c.history.forget(key)
		return nil
	}
	hpa, ok := obj.(*autoscalingv2.HorizontalPodAutoscaler)
	if !ok {
		return fmt.Errorf("unexpected %T in the autoscaler cache", obj)
	}
	if err := c.reconcileAutoscaler(ctx, key, hpa.DeepCopy()); err != nil {
		return err
	}
	return queue.RequeueAfter(c.opts.SyncPeriod)
}

// target is the scale of an autoscaler's target, as the scale subresource
// shows it.
type target struct {
	gvr      schema.GroupVersionResource
	obj      runtime.Object
	replicas int32 // spec
	current  int32 // status
	selector labels.Selector
}

// getTarget reads the target named by ref in ns.
func (c *Controller) getTarget(ctx context.Context, ns string, ref autoscalingv2.CrossVersionObjectReference) (*target, error) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return nil, err
	}
	var res *registry.Resource
	for _, r := range c.api.Resources() {
		if r.GroupVersion.Group == gv.Group && r.Kind == ref.Kind && r.HasSubresource("scale") && (res == nil || r.GroupVersion == gv) {
			res = r
		}
	}
	if res == nil {
		return nil, fmt.Errorf("no matches for kind %q in group %q", ref.Kind, gv.Group)
	}
	obj, err := c.api.Get(ctx, res.GroupVersionResource(), ns, ref.Name)
	if err != nil {
		return nil, err
	}
	t := &target{gvr: res.GroupVersionResource(), obj: obj}
	var ls *metav1.LabelSelector
	switch o := obj.(type) {
	case *appsv1.Deployment:
		t.replicas, t.current, ls = derefReplicas(o.Spec.Replicas), o.Status.Replicas, o.Spec.Selector
	case *appsv1.ReplicaSet:
		t.replicas, t.current, ls = derefReplicas(o.Spec.Replicas), o.Status.Replicas, o.Spec.Selector
	case *appsv1.StatefulSet:
		t.replicas, t.current, ls = derefReplicas(o.Spec.Replicas), o.Status.Replicas, o.Spec.Selector
	case *corev1.ReplicationController:
		t.replicas, t.current = derefReplicas(o.Spec.Replicas), o.Status.Replicas
		t.selector = labels.SelectorFromSet(o.Spec.Selector)
	default:
		return nil, fmt.Errorf("scaling %s is not supported", ref.Kind)
	}
	if ls != nil {
		if t.selector, err = metav1.LabelSelectorAsSelector(ls); err != nil {
			return nil, fmt.Errorf("invalid selector: %w", err)
		}
	}
	if t.selector == nil || t.selector.Empty() {
		return nil, errors.New("selector is required")
	}
	return t, nil
}

func derefReplicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

// scaleTo sets the target's spec.replicas, as a write to its scale
// subresource does. A conflict with another writer (the target's own
// controller updating its status) is retried on a fresh copy: only the
// replica count is ours to set.
func (c *Controller) scaleTo(ctx context.Context, t *target, replicas int32) error {
	obj := t.obj
	for attempt := 0; ; attempt++ {
		obj = obj.DeepCopyObject()
		switch o := obj.(type) {
		case *appsv1.Deployment:
			o.Spec.Replicas = &replicas
		case *appsv1.ReplicaSet:
			o.Spec.Replicas = &replicas
		case *appsv1.StatefulSet:
			o.Spec.Replicas = &replicas
		case *corev1.ReplicationController:
			o.Spec.Replicas = &replicas
		}
		_, err := c.api.Update(ctx, t.gvr, obj, "", c.opts.FieldManager)
		if !apierrors.IsConflict(err) || attempt == maxConflictRetries {
			return err
		}
		m, merr := meta.Accessor(obj)
		if merr != nil {
			return err
		}
		if obj, err = c.api.Get(ctx, t.gvr, m.GetNamespace(), m.GetName()); err != nil {
			return err
		}
	}
}

// maxConflictRetries bounds the retries of a conflicting scale write.
const maxConflictRetries = 3

// reconcileAutoscaler is one sync of one autoscaler (upstream's
// reconcileAutoscaler).
func (c *Controller) reconcileAutoscaler(ctx context.Context, key string, hpa *autoscalingv2.HorizontalPodAutoscaler) error {
	now := c.now()
	old := hpa.Status.DeepCopy()
	ref := hpa.Spec.ScaleTargetRef
	reference := fmt.Sprintf("%s/%s/%s", ref.Kind, hpa.Namespace, ref.Name)

	t, err := c.getTarget(ctx, hpa.Namespace, ref)
	if err != nil {
		c.recorder.Eventf(hpa, corev1.EventTypeWarning, "FailedGetScale", "%v", err)
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionFalse, "FailedGetScale", "the HPA controller was unable to get the target's current scale: %v", err)
		c.writeStatus(ctx, hpa, old)
		if apierrors.IsNotFound(err) {
			return nil // the target may appear later; the sync period retries
		}
		return fmt.Errorf("get scale of %s: %w", reference, err)
	}
	setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededGetScale", "the HPA controller was able to get the target's current scale")

	current := t.replicas
	// A new autoscaler starts with the current size as its first
	// recommendation, so it does not scale down before a full window.
	c.history.recordInitial(key, current, now)
	minReplicas := int32(1)
	if hpa.Spec.MinReplicas != nil {
		minReplicas = *hpa.Spec.MinReplicas
	}
	var desired int32
	var rescaleReason string
	var metricStatuses []autoscalingv2.MetricStatus
	switch {
	case current == 0 && minReplicas != 0:
		// Scaled to zero by hand: autoscaling is off until scaled up.
		desired = 0
		setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero")
	case current > hpa.Spec.MaxReplicas:
		rescaleReason = "Current number of replicas above Spec.MaxReplicas"
		desired = hpa.Spec.MaxReplicas
	case current < minReplicas:
		rescaleReason = "Current number of replicas below Spec.MinReplicas"
		desired = minReplicas
	default:
		proposal, metricName, statuses, err := c.computeReplicas(hpa, t, current, now)
		metricStatuses = statuses
		if err != nil {
			c.recorder.Eventf(hpa, corev1.EventTypeWarning, "FailedComputeMetricsReplicas", "%v", err)
			c.setStatus(hpa, t.current, current, metricStatuses, false, now)
			c.writeStatus(ctx, hpa, old)
			return nil
		}
		up, down := defaultBehavior(hpa.Spec.Behavior, c.opts.DownscaleStabilization)
		h := c.history.get(key)
		n := normalize(h, now, up, down, minReplicas, hpa.Spec.MaxReplicas, current, proposal)
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, n.stabilizedReason, "%s", n.stabilizedMessage)
		limited := corev1.ConditionFalse
		if n.limited {
			limited = corev1.ConditionTrue
		}
		setCondition(hpa, autoscalingv2.ScalingLimited, limited, n.limitedReason, "%s", n.limitedMessage)
		desired = n.replicas
		switch {
		case desired > current:
			rescaleReason = metricName + " above target"
		case desired < current:
			rescaleReason = "All metrics below target"
		}
	}

	rescale := desired != current
	if rescale {
		if err := c.scaleTo(ctx, t, desired); err != nil {
			c.recorder.Eventf(hpa, corev1.EventTypeWarning, "FailedRescale", "New size: %d; reason: %s; error: %v", desired, rescaleReason, err)
			setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionFalse, "FailedUpdateScale", "the HPA controller was unable to update the target scale: %v", err)
			c.setStatus(hpa, t.current, current, metricStatuses, false, now)
			c.writeStatus(ctx, hpa, old)
			return fmt.Errorf("rescale %s: %w", reference, err)
		}
		up, down := defaultBehavior(hpa.Spec.Behavior, c.opts.DownscaleStabilization)
		recordScale(c.history.get(key), now, up, down, current, desired)
		setCondition(hpa, autoscalingv2.AbleToScale, corev1.ConditionTrue, "SucceededRescale", "the HPA controller was able to update the target scale to %d", desired)
		c.recorder.Eventf(hpa, corev1.EventTypeNormal, "SuccessfulRescale", "New size: %d; reason: %s", desired, rescaleReason)
		c.log.Info("rescaled", "hpa", key, "target", reference, "from", current, "to", desired, "reason", rescaleReason)
	}
	c.setStatus(hpa, t.current, desired, metricStatuses, rescale, now)
	c.writeStatus(ctx, hpa, old)
	return nil
}

// computeReplicas proposes the largest replica count of all metrics, with
// the name of the metric that proposed it and the metrics' statuses.
// Metrics that fail are skipped while at least one works, as upstream.
func (c *Controller) computeReplicas(hpa *autoscalingv2.HorizontalPodAutoscaler, t *target, current int32, now time.Time) (int32, string, []autoscalingv2.MetricStatus, error) {
	pods := c.pods.List(hpa.Namespace, t.selector)
	rc := replicaCalculator{tolerance: c.opts.Tolerance, now: now}
	statuses := make([]autoscalingv2.MetricStatus, len(hpa.Spec.Metrics))
	var proposal int32
	var metricName string
	var invalid int
	var firstErr error
	for i, spec := range hpa.Spec.Metrics {
		replicas, name, status, err := c.resourceMetric(rc, hpa, spec, pods, current)
		if err != nil {
			invalid++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		statuses[i] = status
		if metricName == "" || replicas > proposal {
			proposal, metricName = replicas, name
		}
	}
	if invalid > 0 && (invalid == len(hpa.Spec.Metrics) || proposal < current) {
		// Scaling down on partial information could be wrong.
		return 0, "", statuses, fmt.Errorf("invalid metrics (%d invalid out of %d), first error is: %w", invalid, len(hpa.Spec.Metrics), firstErr)
	}
	setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionTrue, "ValidMetricFound", "the HPA was able to successfully calculate a replica count from %s", metricName)
	return proposal, metricName, statuses, nil
}

// resourceMetric evaluates one metric of the spec.
func (c *Controller) resourceMetric(rc replicaCalculator, hpa *autoscalingv2.HorizontalPodAutoscaler, spec autoscalingv2.MetricSpec,
	pods []*corev1.Pod, current int32) (int32, string, autoscalingv2.MetricStatus, error) {
	fail := func(reason string, err error) (int32, string, autoscalingv2.MetricStatus, error) {
		c.recorder.Eventf(hpa, corev1.EventTypeWarning, reason, "%v", err)
		setCondition(hpa, autoscalingv2.ScalingActive, corev1.ConditionFalse, reason, "the HPA was unable to compute the replica count: %v", err)
		return 0, "", autoscalingv2.MetricStatus{}, err
	}
	if spec.Type != autoscalingv2.ResourceMetricSourceType || spec.Resource == nil {
		return fail("InvalidMetricSourceType", fmt.Errorf("metric source type %q is not supported by orch's autoscaler yet", spec.Type))
	}
	res, target := spec.Resource.Name, spec.Resource.Target
	usage := c.metrics.PodUsage(hpa.Namespace, res)
	switch {
	case target.AverageUtilization != nil:
		p, err := rc.resourceReplicas(current, pods, usage, res, *target.AverageUtilization, 0)
		if err != nil {
			return fail("FailedGetResourceMetric", fmt.Errorf("failed to get %s utilization: %w", res, err))
		}
		return p.replicas, fmt.Sprintf("%s resource utilization (percentage of request)", res), autoscalingv2.MetricStatus{
			Type: autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricStatus{Name: res, Current: autoscalingv2.MetricValueStatus{
				AverageUtilization: &p.utilization, AverageValue: resource.NewMilliQuantity(p.average, resource.DecimalSI)}},
		}, nil
	case target.AverageValue != nil:
		p, err := rc.resourceReplicas(current, pods, usage, res, 0, target.AverageValue.MilliValue())
		if err != nil {
			return fail("FailedGetResourceMetric", fmt.Errorf("failed to get %s usage: %w", res, err))
		}
		return p.replicas, fmt.Sprintf("%s resource", res), autoscalingv2.MetricStatus{
			Type: autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricStatus{Name: res, Current: autoscalingv2.MetricValueStatus{
				AverageValue: resource.NewMilliQuantity(p.average, resource.DecimalSI)}},
		}, nil
	}
	return fail("FailedGetResourceMetric", fmt.Errorf("invalid resource metric source: neither a utilization target nor a value target set"))
}

// setStatus fills the status fields other than conditions.
func (c *Controller) setStatus(hpa *autoscalingv2.HorizontalPodAutoscaler, currentReplicas, desired int32, metrics []autoscalingv2.MetricStatus, rescaled bool, now time.Time) {
	hpa.Status.CurrentReplicas = currentReplicas
	hpa.Status.DesiredReplicas = desired
	hpa.Status.ObservedGeneration = &hpa.Generation
	var kept []autoscalingv2.MetricStatus
	for _, m := range metrics {
		if m.Type != "" {
			kept = append(kept, m)
		}
	}
	hpa.Status.CurrentMetrics = kept
	if rescaled {
		t := metav1.NewTime(now)
		hpa.Status.LastScaleTime = &t
	}
}

// writeStatus writes the status when it changed.
func (c *Controller) writeStatus(ctx context.Context, hpa *autoscalingv2.HorizontalPodAutoscaler, old *autoscalingv2.HorizontalPodAutoscalerStatus) {
	if apiequality.Semantic.DeepEqual(old, &hpa.Status) {
		return
	}
	if _, err := c.api.Update(ctx, hpaGVR, hpa, "status", c.opts.FieldManager); err != nil && !apierrors.IsNotFound(err) {
		// The next sync writes it again.
		c.log.Warn("cannot update autoscaler status", "hpa", hpa.Namespace+"/"+hpa.Name, "err", err)
	}
}

// setCondition sets a condition, keeping its transition time when the
// status does not change.
func setCondition(hpa *autoscalingv2.HorizontalPodAutoscaler, typ autoscalingv2.HorizontalPodAutoscalerConditionType,
	status corev1.ConditionStatus, reason, format string, args ...interface{}) {
	msg := fmt.Sprintf(format, args...)
	for i := range hpa.Status.Conditions {
		cond := &hpa.Status.Conditions[i]
		if cond.Type != typ {
			continue
		}
		if cond.Status != status {
			cond.LastTransitionTime = metav1.Now()
		}
		cond.Status, cond.Reason, cond.Message = status, reason, msg
		return
	}
	hpa.Status.Conditions = append(hpa.Status.Conditions, autoscalingv2.HorizontalPodAutoscalerCondition{
		Type: typ, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.Now(),
	})
}
