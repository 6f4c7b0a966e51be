package serviceaccount

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
)

// RootCAConfigMap is the ConfigMap every namespace gets with the cluster
// CA bundle under RootCAKey; pods mount it in their kube-api-access volume.
const (
	RootCAConfigMap = "kube-root-ca.crt"
	RootCAKey       = "ca.crt"
	// descriptionAnnotation is what Kubernetes' publisher says about it.
	descriptionAnnotation = "kubernetes.io/description"
	rootCADescription     = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."
)

var configMapsGVR = corev1.SchemeGroupVersion.WithResource("configmaps")

// RootCAAPI is the part of the in-process API the publisher uses.
type RootCAAPI interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
	Create(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, fieldManager string) (runtime.Object, error)
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
}

// RootCAOptions configure the publisher.
type RootCAOptions struct {
	Workers      int    // default 1
	FieldManager string // default "orch-root-ca-cert-publisher"
	Logger       *slog.Logger
}

// RootCAPublisher keeps the kube-root-ca.crt ConfigMap, holding the
// cluster CA, in every active namespace, and puts it back when it is
// changed or deleted (Kubernetes' root-ca-cert-publisher). It learns of
// ConfigMap changes from the shared metadata-only informer (the garbage
// collector's) and reads the one ConfigMap it checks from the API: a
// typed cache of every ConfigMap in the cluster, for one name per
// namespace, cost ~2 KB per ConfigMap (21 MB at 10,000).
type RootCAPublisher struct {
	api        RootCAAPI
	ca         string
	namespaces informer.Lister[*corev1.Namespace]
	nsInformer *informer.Informer
	configMaps *informer.Informer
	queue      *queue.Queue
	opts       RootCAOptions
	log        *slog.Logger
}

// NewRootCAPublisher publishes caPEM and registers its informers.
func NewRootCAPublisher(api RootCAAPI, factory *informer.Factory, caPEM []byte, opts RootCAOptions) *RootCAPublisher {
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-root-ca-cert-publisher"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	nsInformer := factory.For(namespacesGVR)
	c := &RootCAPublisher{
		api:        api,
		ca:         string(caPEM),
		nsInformer: nsInformer,
		namespaces: informer.NewLister[*corev1.Namespace](nsInformer),
		configMaps: factory.Metadata(configMapsGVR),
		queue:      queue.New(queue.NewExponentialRateLimiter(5*time.Millisecond, 60*time.Second)),
		opts:       opts,
		log:        opts.Logger.With("controller", "root-ca-cert-publisher"),
	}
	nsInformer.AddHandler(informer.OnAddOrUpdate(c.enqueueNamespace))
	c.configMaps.AddHandler(informer.HandlerFuncs{
		UpdateFunc: func(_, obj runtime.Object) { c.configMapChanged(obj) },
		DeleteFunc: c.configMapChanged,
	})
	return c
}

func (c *RootCAPublisher) enqueueNamespace(obj runtime.Object) {
	if m, err := meta.Accessor(obj); err == nil {
		c.queue.Add(m.GetName())
	}
}

func (c *RootCAPublisher) configMapChanged(obj runtime.Object) {
	if m, err := meta.Accessor(obj); err == nil && m.GetName() == RootCAConfigMap {
		c.queue.Add(m.GetNamespace())
	}
}

// Run publishes until ctx ends.
func (c *RootCAPublisher) Run(ctx context.Context) error {
	if !informer.WaitForSync(ctx, c.nsInformer, c.configMaps) {
		return nil
	}
	c.log.Info("started", "workers", c.opts.Workers)
	queue.RunWorkers(ctx, c.queue, c.opts.Workers, c.log, c.sync)
	return nil
}

func (c *RootCAPublisher) sync(ctx context.Context, ns string) error {
	n, ok := c.namespaces.Get("", ns)
	if !ok || n.DeletionTimestamp != nil || n.Status.Phase == corev1.NamespaceTerminating {
		return nil
	}
	obj, err := c.api.Get(ctx, configMapsGVR, ns, RootCAConfigMap)
	if apierrors.IsNotFound(err) {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: RootCAConfigMap,
				Annotations: map[string]string{descriptionAnnotation: rootCADescription}},
			Data: map[string]string{RootCAKey: c.ca},
		}
		_, err := c.api.Create(ctx, configMapsGVR, cm, c.opts.FieldManager)
		switch {
		case err == nil, apierrors.IsAlreadyExists(err):
			// Made at the same moment by someone else: its event
			// brings it back here if it needs fixing.
			return nil
		case apierrors.IsForbidden(err) || apierrors.IsNotFound(err):
			return nil // the namespace is going away
		}
		return fmt.Errorf("create %s in %s: %w", RootCAConfigMap, ns, err)
	}
	if err != nil {
		return fmt.Errorf("get %s in %s: %w", RootCAConfigMap, ns, err)
	}
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return fmt.Errorf("get %s in %s: unexpected type %T", RootCAConfigMap, ns, obj)
	}
	if len(cm.Data) == 1 && cm.Data[RootCAKey] == c.ca && len(cm.BinaryData) == 0 && cm.Annotations[descriptionAnnotation] == rootCADescription {
		return nil
	}
	upd := cm.DeepCopy()
	upd.Data = map[string]string{RootCAKey: c.ca}
	upd.BinaryData = nil
	if upd.Annotations == nil {
		upd.Annotations = map[string]string{}
	}
	upd.Annotations[descriptionAnnotation] = rootCADescription
	if _, err := c.api.Update(ctx, configMapsGVR, upd, "", c.opts.FieldManager); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("update %s in %s: %w", RootCAConfigMap, ns, err)
	}
	return nil
}
