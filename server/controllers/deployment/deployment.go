// Package deployment is the Deployment controller, as Kubernetes'
// pkg/controller/deployment: it rolls a Deployment's pod template out
// through ReplicaSets and leaves the pods to the ReplicaSet controller.
//
// Each template is one ReplicaSet named <deployment>-<pod-template-hash>,
// labelled (and selecting) pod-template-hash=<hash>, where the hash is
// Kubernetes' ComputeHash of the template and the collision count. The
// ReplicaSet matching the current template is the new one; the others
// are old. RollingUpdate grows the new ReplicaSet within maxSurge and
// shrinks old ones within maxUnavailable; Recreate scales old ones to zero
// and waits for their pods to go before creating the new one. Resizes
// during a rollout are spread proportionally. Paused Deployments are only
// resized. Revisions are kept in the deployment.kubernetes.io/revision
// annotation of the ReplicaSets and the Deployment, so that a template
// change back to an old one (kubectl rollout undo) reuses that ReplicaSet
// under a new revision; old ReplicaSets beyond revisionHistoryLimit are
// deleted once scaled to zero. The status and the Progressing, Available
// and ReplicaFailure conditions are computed as Kubernetes does, so that
// kubectl rollout status reads them exactly.
//
// It writes only through the API it is given, never to the store.
package deployment

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
	"github.com/orch-dev/orch/server/events"
)

// API is the part of orch's in-process API (apiserver.Local) the
// controller uses.
type API interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
	Create(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, fieldManager string) (runtime.Object, error)
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
	Delete(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, opts *metav1.DeleteOptions) (bool, error)
}

var (
	deploymentsGVR = appsv1.SchemeGroupVersion.WithResource("deployments")
	replicaSetsGVR = appsv1.SchemeGroupVersion.WithResource("replicasets")
	podsGVR        = corev1.SchemeGroupVersion.WithResource("pods")
	deploymentKind = appsv1.SchemeGroupVersion.WithKind("Deployment")
	replicaSetKind = appsv1.SchemeGroupVersion.WithKind("ReplicaSet")
)

// Options configure the controller.
type Options struct {
	// FieldManager recorded on the controller's writes (default
	// "orch-deployment-controller").
	FieldManager string
	Logger       *slog.Logger
}

// Controller is the Deployment controller.
type Controller struct {
	api         API
	recorder    events.Recorder
	infs        []*informer.Informer
	deployments informer.Lister[*appsv1.Deployment]
	sets        informer.Lister[*appsv1.ReplicaSet]
	pods        informer.Lister[*corev1.Pod]
	queue       *queue.Queue
	opts        Options
	log         *slog.Logger
	now         func() time.Time
}

// New builds the controller and registers its informers with factory.
// recorder should be the "deployment-controller" component's.
func New(api API, factory *informer.Factory, recorder events.Recorder, opts Options) *Controller {
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-deployment-controller"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	dInf := factory.For(deploymentsGVR)
	rsInf := factory.For(replicaSetsGVR)
	podInf := factory.For(podsGVR)
	c := &Controller{
		api:         api,
		recorder:    recorder,
		infs:        []*informer.Informer{dInf, rsInf, podInf},
		deployments: informer.NewLister[*appsv1.Deployment](dInf),
		sets:        informer.NewLister[*appsv1.ReplicaSet](rsInf),
		pods:        informer.NewLister[*corev1.Pod](podInf),
		queue:       queue.New(queue.DefaultRateLimiter()),
		opts:        opts,
		log:         opts.Logger.With("controller", "deployment"),
		now:         time.Now,
	}
	dInf.AddHandler(informer.OnAny(c.enqueue))
	rsInf.AddHandler(informer.HandlerFuncs{
		AddFunc:    c.replicaSetAdded,
		UpdateFunc: c.replicaSetUpdated,
		DeleteFunc: c.replicaSetDeleted,
	})
	podInf.AddHandler(informer.HandlerFuncs{DeleteFunc: c.podDeleted})
	return c
}

// Run reconciles with workers goroutines until ctx ends.
func (c *Controller) Run(ctx context.Context, workers int) error {
	if !informer.WaitForSync(ctx, c.infs...) {
		return nil
	}
	c.log.Info("started", "workers", workers)
	queue.RunWorkers(ctx, c.queue, workers, c.log, c.reconcile)
	return nil
}

func (c *Controller) enqueue(obj runtime.Object) {
	if key, err := informer.KeyOf(obj); err == nil {
		c.queue.Add(key)
	}
}

// ownerOf returns the key of the cached Deployment controlling rs.
func (c *Controller) ownerOf(rs *appsv1.ReplicaSet) (string, bool) {
	ref := metav1.GetControllerOfNoCopy(rs)
	if ref == nil || ref.Kind != deploymentKind.Kind || ref.APIVersion != deploymentKind.GroupVersion().String() {
		return "", false
	}
	d, ok := c.deployments.Get(rs.Namespace, ref.Name)
	if !ok || d.UID != ref.UID {
		return "", false
	}
	return informer.Key(d.Namespace, d.Name), true
}

// enqueueMatching queues the Deployments whose selector matches an
// orphan ReplicaSet, so that one adopts it.
func (c *Controller) enqueueMatching(rs *appsv1.ReplicaSet) {
	for _, d := range c.deployments.List(rs.Namespace, nil) {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(rs.Labels)) {
			continue
		}
		c.queue.Add(informer.Key(d.Namespace, d.Name))
	}
}

func (c *Controller) replicaSetAdded(obj runtime.Object) {
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		return
	}
	if metav1.GetControllerOfNoCopy(rs) != nil {
		if key, ok := c.ownerOf(rs); ok {
			c.queue.Add(key)
		}
		return
	}
	if rs.DeletionTimestamp == nil {
		c.enqueueMatching(rs)
	}
}

func (c *Controller) replicaSetUpdated(oldObj, obj runtime.Object) {
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		return
	}
	if old, ok := oldObj.(*appsv1.ReplicaSet); ok {
		if oldKey, owned := c.ownerOf(old); owned {
			if key, _ := c.ownerOf(rs); key != oldKey {
				c.queue.Add(oldKey)
			}
		}
		if metav1.GetControllerOfNoCopy(rs) == nil && !labels.Equals(old.Labels, rs.Labels) {
			c.enqueueMatching(rs)
			return
		}
	}
	c.replicaSetAdded(rs)
}

func (c *Controller) replicaSetDeleted(obj runtime.Object) {
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		return
	}
	if key, ok := c.ownerOf(rs); ok {
		c.queue.Add(key)
	}
}

// podDeleted wakes a Recreate Deployment waiting for its old pods to go.
func (c *Controller) podDeleted(obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil || ref.Kind != replicaSetKind.Kind {
		return
	}
	rs, ok := c.sets.Get(pod.Namespace, ref.Name)
	if !ok || rs.UID != ref.UID {
		return
	}
	key, ok := c.ownerOf(rs)
	if !ok {
		return
	}
	ns, name := informer.SplitKey(key)
	if d, ok := c.deployments.Get(ns, name); ok && d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		c.queue.Add(key)
	}
}

// event records an event about d.
func (c *Controller) event(d *appsv1.Deployment, eventType, reason, format string, args ...any) {
	if c.recorder == nil {
		return
	}
	ref := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
		Name: d.Name, Namespace: d.Namespace, UID: d.UID, ResourceVersion: d.ResourceVersion,
	}}
	ref.SetGroupVersionKind(deploymentKind)
	c.recorder.Eventf(ref, eventType, reason, format, args...)
}

func (c *Controller) updateReplicaSet(ctx context.Context, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
	obj, err := c.api.Update(ctx, replicaSetsGVR, rs, "", c.opts.FieldManager)
	if err != nil {
		return nil, err
	}
	out, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		return nil, fmt.Errorf("update replica set %s/%s: unexpected type %T", rs.Namespace, rs.Name, obj)
	}
	return out, nil
}
