// Package endpoints is the Endpoints controller: for every Service with a
// selector it keeps an Endpoints object of the same name listing the pods
// the selector matches, as Kubernetes' pkg/controller/endpoint does.
//
// Ready pods (condition Ready True) are addresses, the others
// notReadyAddresses (all are addresses with publishNotReadyAddresses).
// Pods without an IP, finished pods and, unless publishNotReadyAddresses,
// terminating pods are left out. Named target ports are resolved per pod.
// Addresses carry nodeName and a targetRef to the pod, and hostname for
// pods whose subdomain names the service. Subsets are packed and sorted
// canonically so that an unchanged set of pods writes nothing; past 1,000
// addresses the object is truncated and annotated, as in Kubernetes.
//
// Objects it writes carry the label endpoints.kubernetes.io/managed-by:
// endpoint-controller; only those are deleted when their service goes.
// Pod changes are batched per service (Options.BatchPeriod) so that a
// rollout rewrites each Endpoints a few times, not once per pod.
//
// It writes only through the API it is given.
package endpoints

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/endpoints/backends"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
)

// API is the part of orch's in-process API (apiserver.Local) the
// controller uses.
type API interface {
	Create(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, fieldManager string) (runtime.Object, error)
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
	Delete(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, opts *metav1.DeleteOptions) (bool, error)
}

// Recorder records events about objects (events.Recorder).
type Recorder interface {
	Eventf(obj runtime.Object, eventType, reason, messageFmt string, args ...interface{})
}

var (
	servicesGVR  = corev1.SchemeGroupVersion.WithResource("services")
	podsGVR      = corev1.SchemeGroupVersion.WithResource("pods")
	endpointsGVR = corev1.SchemeGroupVersion.WithResource("endpoints")
)

const (
	// LabelManagedBy marks Endpoints written by this controller.
	LabelManagedBy = "endpoints.kubernetes.io/managed-by"
	// ControllerName is LabelManagedBy's value.
	ControllerName = "endpoint-controller"
	// MaxCapacity is the most addresses one Endpoints object holds.
	MaxCapacity = 1000
	// annotationOverCapacity marks a truncated Endpoints object.
	annotationOverCapacity = "endpoints.kubernetes.io/over-capacity"
	// conflictRetryDelay is how long a sync that lost a write race waits
	// for the cache to catch up.
	conflictRetryDelay = 50 * time.Millisecond
)

// Options configure the controller.
type Options struct {
	// Workers syncing services concurrently (default 5, Kubernetes'
	// --concurrent-endpoint-syncs).
	Workers int
	// BatchPeriod delays the sync a pod change triggers, so that the changes
	// of many pods are written at once (default 100 ms; negative: none).
	BatchPeriod time.Duration
	// FieldManager recorded on the controller's writes.
	FieldManager string
	Logger       *slog.Logger
}

// Controller is the Endpoints controller.
type Controller struct {
	api       API
	recorder  Recorder
	services  informer.Lister[*corev1.Service]
	pods      informer.Lister[*corev1.Pod]
	endpoints informer.Lister[*corev1.Endpoints]
	informers []*informer.Informer
	queue     *queue.Queue
	opts      Options
	log       *slog.Logger
}

// New builds the controller and registers its informers with factory.
func New(api API, factory *informer.Factory, recorder Recorder, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = 5
	}
	switch {
	case opts.BatchPeriod == 0:
		opts.BatchPeriod = 100 * time.Millisecond
	case opts.BatchPeriod < 0:
		opts.BatchPeriod = 0
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-endpoint-controller"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	svcInf, podInf, epInf := factory.For(servicesGVR), factory.For(podsGVR), factory.For(endpointsGVR)
	c := &Controller{
		api:       api,
		recorder:  recorder,
		services:  informer.NewLister[*corev1.Service](svcInf),
		pods:      informer.NewLister[*corev1.Pod](podInf),
		endpoints: informer.NewLister[*corev1.Endpoints](epInf),
		informers: []*informer.Informer{svcInf, podInf, epInf},
		queue:     queue.New(queue.NewExponentialRateLimiter(5*time.Millisecond, 1000*time.Second)),
		opts:      opts,
		log:       opts.Logger.With("controller", "endpoints"),
	}
	enqueue := func(obj runtime.Object) {
		if key, err := informer.KeyOf(obj); err == nil {
			c.queue.Add(key)
		}
	}
	svcInf.AddHandler(informer.OnAny(enqueue))
	podInf.AddHandler(informer.HandlerFuncs{
		AddFunc:    c.podAdded,
		UpdateFunc: c.podUpdated,
		DeleteFunc: c.podAdded,
	})
	epInf.AddHandler(informer.HandlerFuncs{
		// Leftovers of services deleted while we were down, at start.
		AddFunc: func(obj runtime.Object) {
			if ep, ok := obj.(*corev1.Endpoints); ok && ep.Labels[LabelManagedBy] == ControllerName {
				enqueue(obj)
			}
		},
		// Someone deleted an Endpoints object the service still needs.
		DeleteFunc: enqueue,
	})
	return c
}

// Run syncs services until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !informer.WaitForSync(ctx, c.informers...) {
		return nil
	}
	c.log.Info("started", "workers", c.opts.Workers)
	queue.RunWorkers(ctx, c.queue, c.opts.Workers, c.log, c.sync)
	return nil
}

// podAdded queues the services selecting a new or deleted pod.
func (c *Controller) podAdded(obj runtime.Object) {
	if pod, ok := obj.(*corev1.Pod); ok {
		c.enqueueServicesOf(pod)
	}
}

func (c *Controller) podUpdated(oldObj, obj runtime.Object) {
	old, ok1 := oldObj.(*corev1.Pod)
	pod, ok2 := obj.(*corev1.Pod)
	if !ok1 || !ok2 || old.ResourceVersion == pod.ResourceVersion {
		return
	}
	changed, labelsChanged := backends.PodChanged(old, pod)
	if !changed {
		return
	}
	c.enqueueServicesOf(pod)
	if labelsChanged {
		c.enqueueServicesOf(old)
	}
}

func (c *Controller) enqueueServicesOf(pod *corev1.Pod) {
	for _, svc := range c.services.List(pod.Namespace, nil) {
		if backends.Selects(svc, pod) {
			c.queue.AddAfter(informer.Key(svc.Namespace, svc.Name), c.opts.BatchPeriod)
		}
	}
}

// sync converges the Endpoints of the service key.
func (c *Controller) sync(ctx context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	current, haveCurrent := c.endpoints.Get(ns, name)
	svc, ok := c.services.Get(ns, name)
	if !ok {
		if !haveCurrent || current.Labels[LabelManagedBy] != ControllerName {
			return nil
		}
		uid := current.UID
		_, err := c.api.Delete(ctx, endpointsGVR, ns, name, &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete endpoints %s of a deleted service: %w", key, err)
		}
		return nil
	}
	if !backends.Managed(svc) {
		// Services without selector receive endpoints written by their
		// users; ExternalName services have none.
		return nil
	}

	pods := c.pods.List(ns, labels.SelectorFromSet(svc.Spec.Selector))
	subsets := Subsets(svc, pods)
	desired := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if haveCurrent {
		desired = current.DeepCopy()
	}
	desired.Subsets = subsets
	desired.Labels = desiredLabels(svc)
	if truncate(desired) {
		if desired.Annotations == nil {
			desired.Annotations = map[string]string{}
		}
		desired.Annotations[annotationOverCapacity] = "truncated"
	} else if _, ok := desired.Annotations[annotationOverCapacity]; ok {
		desired.Annotations = maps.Clone(desired.Annotations)
		delete(desired.Annotations, annotationOverCapacity)
	}

	if haveCurrent && apiequality.Semantic.DeepEqual(current.Subsets, desired.Subsets) &&
		apiequality.Semantic.DeepEqual(current.Labels, desired.Labels) &&
		apiequality.Semantic.DeepEqual(current.Annotations, desired.Annotations) {
		return nil
	}

	var err error
	if haveCurrent {
		_, err = c.api.Update(ctx, endpointsGVR, desired, "", c.opts.FieldManager)
	} else {
		_, err = c.api.Create(ctx, endpointsGVR, desired, c.opts.FieldManager)
	}
	switch {
	case err == nil:
		return nil
	case !haveCurrent && apierrors.IsForbidden(err):
		// The namespace is being deleted: creates keep failing; drop it.
		c.log.Debug("forbidden to create endpoints", "service", key, "err", err)
		return nil
	case apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err):
		// Our cache is behind the write that beat us; try again once it
		// has caught up. Not a failure worth a back-off or a warning.
		return queue.RequeueAfter(conflictRetryDelay)
	}
	if c.recorder != nil {
		if haveCurrent {
			c.recorder.Eventf(desired, corev1.EventTypeWarning, "FailedToUpdateEndpoint", "Failed to update endpoint %s/%s: %v", ns, name, err)
		} else {
			c.recorder.Eventf(desired, corev1.EventTypeWarning, "FailedToCreateEndpoint", "Failed to create endpoint for service %s/%s: %v", ns, name, err)
		}
	}
	return fmt.Errorf("write endpoints %s: %w", key, err)
}

// desiredLabels are the service's labels plus the controller's own, and
// the headless marker for services without a cluster IP.
func desiredLabels(svc *corev1.Service) map[string]string {
	out := make(map[string]string, len(svc.Labels)+2)
	maps.Copy(out, svc.Labels)
	out[LabelManagedBy] = ControllerName
	if backends.IsHeadless(svc) {
		out[corev1.IsHeadlessService] = ""
	} else {
		delete(out, corev1.IsHeadlessService)
	}
	return out
}
