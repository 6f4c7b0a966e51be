// Package volume is orch's persistent volume controller: the binder of
// Kubernetes' pkg/controller/volume/persistentvolume, the PVC and PV
// protection controllers, and a built-in "local-path" provisioner that
// hands out hostPath directories on the node a pod was scheduled to.
//
// Claims and volumes are reconciled level-triggered from two queues:
//
//   - a claim (key "namespace/name") gets the default StorageClass if it
//     has none (Kubernetes' retroactive default class), the
//     kubernetes.io/pvc-protection finalizer, and is bound to the smallest
//     Available volume that fits, or provisioned for: at once for
//     Immediate classes, after the scheduler wrote the
//     volume.kubernetes.io/selected-node annotation for WaitForFirstConsumer
//     classes;
//   - a volume (key "name") gets the kubernetes.io/pv-protection finalizer,
//     its phase (Available, Bound, Released, Failed), and is reclaimed when
//     its claim is gone: Retain keeps it Released, Delete deletes the
//     volumes orch provisioned.
//
// The controller writes only through the API it is given. It never
// touches disks: the agent of a node creates a local-path directory when a
// pod mounts it (hostPath type DirectoryOrCreate) and is the one to remove
// directories whose PersistentVolume is gone.
package volume

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	List(ctx context.Context, gvr schema.GroupVersionResource, ns string, opts metav1.ListOptions) ([]runtime.Object, int64, error)
	Create(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, fieldManager string) (runtime.Object, error)
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
	Delete(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, opts *metav1.DeleteOptions) (bool, error)
}

// Resources the controller reads and writes.
var (
	ClaimsGVR         = corev1.SchemeGroupVersion.WithResource("persistentvolumeclaims")
	VolumesGVR        = corev1.SchemeGroupVersion.WithResource("persistentvolumes")
	StorageClassesGVR = storagev1.SchemeGroupVersion.WithResource("storageclasses")
	podsGVR           = corev1.SchemeGroupVersion.WithResource("pods")
	nodesGVR          = corev1.SchemeGroupVersion.WithResource("nodes")
)

// ComponentName is the controller's name in events, as Kubernetes names it.
const ComponentName = "persistentvolume-controller"

// Options configure the controller.
type Options struct {
	// Workers per queue (claims, volumes); default 2.
	Workers int
	// StorageDir is where local-path volumes live on every node; default
	// /var/lib/orch/storage.
	StorageDir string
	// ResyncPeriod is how often every claim and volume is synced again
	// even without a change, as a safety net (Kubernetes: 15 s); default
	// 15 s, negative disables it.
	ResyncPeriod time.Duration
	// FieldManager recorded on the controller's writes.
	FieldManager string
	Logger       *slog.Logger
}

// Controller binds, provisions, protects and reclaims persistent volumes.
type Controller struct {
	api      API
	recorder events.Recorder
	opts     Options
	log      *slog.Logger

	claimInf, volumeInf, classInf, podInf, nodeInf *informer.Informer

	claimLister  informer.Lister[*corev1.PersistentVolumeClaim]
	volumeLister informer.Lister[*corev1.PersistentVolume]
	classLister  informer.Lister[*storagev1.StorageClass]
	podLister    informer.Lister[*corev1.Pod]
	nodeLister   informer.Lister[*corev1.Node]

	claims  *queue.Queue
	volumes *queue.Queue
}

// New builds the controller and registers its informers with factory.
func New(api API, factory *informer.Factory, recorder events.Recorder, opts Options) *Controller {
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	if opts.StorageDir == "" {
		opts.StorageDir = DefaultStorageDir
	}
	if opts.ResyncPeriod == 0 {
		opts.ResyncPeriod = 15 * time.Second
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-persistentvolume-controller"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Controller{
		api:       api,
		recorder:  recorder,
		opts:      opts,
		log:       opts.Logger.With("controller", "persistentvolume"),
		claimInf:  factory.For(ClaimsGVR),
		volumeInf: factory.For(VolumesGVR),
		classInf:  factory.For(StorageClassesGVR),
		podInf:    factory.For(podsGVR),
		nodeInf:   factory.For(nodesGVR),
		claims:    queue.New(queue.DefaultRateLimiter()),
		volumes:   queue.New(queue.DefaultRateLimiter()),
	}
	c.claimLister = informer.NewLister[*corev1.PersistentVolumeClaim](c.claimInf)
	c.volumeLister = informer.NewLister[*corev1.PersistentVolume](c.volumeInf)
	c.classLister = informer.NewLister[*storagev1.StorageClass](c.classInf)
	c.podLister = informer.NewLister[*corev1.Pod](c.podInf)
	c.nodeLister = informer.NewLister[*corev1.Node](c.nodeInf)

	c.claimInf.AddHandler(informer.HandlerFuncs{
		AddFunc:    c.claimChanged,
		UpdateFunc: func(_, obj runtime.Object) { c.claimChanged(obj) },
		DeleteFunc: c.claimDeleted,
	})
	c.volumeInf.AddHandler(informer.HandlerFuncs{
		AddFunc:    func(obj runtime.Object) { c.volumeChanged(nil, obj) },
		UpdateFunc: c.volumeChanged,
		DeleteFunc: c.volumeDeleted,
	})
	c.classInf.AddHandler(informer.HandlerFuncs{
		AddFunc:    func(runtime.Object) { c.enqueueUnboundClaims() },
		UpdateFunc: func(_, _ runtime.Object) { c.enqueueUnboundClaims() },
	})
	c.podInf.AddHandler(informer.HandlerFuncs{
		UpdateFunc: func(_, obj runtime.Object) { c.podChanged(obj) },
		DeleteFunc: c.podChanged,
	})
	return c
}

// Run reconciles claims and volumes until ctx ends. The default
// local-path StorageClass is not made here: it is the built-in manifest
// manifests/local-storage.yaml, applied by server/deploy.
func (c *Controller) Run(ctx context.Context) error {
	if !informer.WaitForSync(ctx, c.claimInf, c.volumeInf, c.classInf, c.podInf, c.nodeInf) {
		return nil
	}
	c.log.Info("started", "workers", c.opts.Workers)
	var wg sync.WaitGroup
	if c.opts.ResyncPeriod > 0 {
		wg.Go(func() { c.resync(ctx) })
	}
	wg.Go(func() { queue.RunWorkers(ctx, c.claims, c.opts.Workers, c.log, c.syncClaim) })
	wg.Go(func() { queue.RunWorkers(ctx, c.volumes, c.opts.Workers, c.log, c.syncVolume) })
	wg.Wait()
	return nil
}

// resync queues every claim and volume each ResyncPeriod until ctx ends.
func (c *Controller) resync(ctx context.Context) {
	ticker := time.NewTicker(c.opts.ResyncPeriod)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		for _, key := range c.claimInf.Keys() {
			c.claims.Add(key)
		}
		for _, key := range c.volumeInf.Keys() {
			c.volumes.Add(key)
		}
	}
}

// Event handlers: they only queue keys.

func (c *Controller) claimChanged(obj runtime.Object) {
	pvc, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return
	}
	c.claims.Add(informer.Key(pvc.Namespace, pvc.Name))
	if pvc.Spec.VolumeName != "" {
		c.volumes.Add(pvc.Spec.VolumeName)
	}
}

// claimDeleted queues the volumes that may now be released: the one the
// claim named and any that names the claim.
func (c *Controller) claimDeleted(obj runtime.Object) {
	pvc, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return
	}
	if pvc.Spec.VolumeName != "" {
		c.volumes.Add(pvc.Spec.VolumeName)
	}
	for _, pv := range c.volumeLister.List("", nil) {
		if ref := pv.Spec.ClaimRef; ref != nil && ref.Namespace == pvc.Namespace && ref.Name == pvc.Name {
			c.volumes.Add(pv.Name)
		}
	}
}

// volumeChanged queues the volume and, when it has just become Available,
// the claims waiting for one. That is done here rather than in the sync
// that made it Available so that the claims' syncs see it in the cache.
func (c *Controller) volumeChanged(oldObj, obj runtime.Object) {
	pv, ok := obj.(*corev1.PersistentVolume)
	if !ok {
		return
	}
	c.volumes.Add(pv.Name)
	old, _ := oldObj.(*corev1.PersistentVolume)
	if pv.Status.Phase == corev1.VolumeAvailable && (old == nil || old.Status.Phase != corev1.VolumeAvailable) {
		c.enqueueUnboundClaims()
	}
}

// volumeDeleted queues the volume's claim, which is now lost if it was
// bound.
func (c *Controller) volumeDeleted(obj runtime.Object) {
	pv, ok := obj.(*corev1.PersistentVolume)
	if !ok {
		return
	}
	if ref := pv.Spec.ClaimRef; ref != nil {
		c.claims.Add(informer.Key(ref.Namespace, ref.Name))
	}
}

// enqueueUnboundClaims queues every claim still waiting for a volume: a
// new volume or class may be what it waits for.
func (c *Controller) enqueueUnboundClaims() {
	for _, pvc := range c.claimLister.List("", nil) {
		if pvc.Annotations[annBindCompleted] == "" {
			c.claims.Add(informer.Key(pvc.Namespace, pvc.Name))
		}
	}
}

// podChanged queues the deleting claims a pod used, since the pod
// finishing or going away may release them.
func (c *Controller) podChanged(obj runtime.Object) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	for _, name := range podClaimNames(pod) {
		if pvc, ok := c.claimLister.Get(pod.Namespace, name); ok && pvc.DeletionTimestamp != nil {
			c.claims.Add(informer.Key(pod.Namespace, name))
		}
	}
}

// eventRef is what events are recorded about: the recorder needs the kind,
// which objects from caches may lack.
func eventRef(obj metav1.Object, kind string) runtime.Object {
	return &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: kind},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: obj.GetNamespace(), Name: obj.GetName(), UID: obj.GetUID(), ResourceVersion: obj.GetResourceVersion(),
		},
	}
}

func (c *Controller) claimEvent(pvc *corev1.PersistentVolumeClaim, eventType, reason, format string, args ...any) {
	c.recorder.Eventf(eventRef(pvc, "PersistentVolumeClaim"), eventType, reason, format, args...)
}

func (c *Controller) volumeEvent(pv *corev1.PersistentVolume, eventType, reason, format string, args ...any) {
	c.recorder.Eventf(eventRef(pv, "PersistentVolume"), eventType, reason, format, args...)
}

// Typed writes.

func (c *Controller) updateClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim, subresource string) (*corev1.PersistentVolumeClaim, error) {
	obj, err := c.api.Update(ctx, ClaimsGVR, pvc, subresource, c.opts.FieldManager)
	if err != nil {
		return nil, fmt.Errorf("update persistentvolumeclaim %s/%s%s: %w", pvc.Namespace, pvc.Name, subresourceSuffix(subresource), err)
	}
	out, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return nil, fmt.Errorf("update persistentvolumeclaim %s/%s: unexpected type %T", pvc.Namespace, pvc.Name, obj)
	}
	return out, nil
}

func (c *Controller) updateVolume(ctx context.Context, pv *corev1.PersistentVolume, subresource string) (*corev1.PersistentVolume, error) {
	obj, err := c.api.Update(ctx, VolumesGVR, pv, subresource, c.opts.FieldManager)
	if err != nil {
		return nil, fmt.Errorf("update persistentvolume %s%s: %w", pv.Name, subresourceSuffix(subresource), err)
	}
	out, ok := obj.(*corev1.PersistentVolume)
	if !ok {
		return nil, fmt.Errorf("update persistentvolume %s: unexpected type %T", pv.Name, obj)
	}
	return out, nil
}

func subresourceSuffix(subresource string) string {
	if subresource == "" {
		return ""
	}
	return " (" + subresource + ")"
}
