// Package serviceaccount holds the controllers around service accounts, as
// Kubernetes has them:
//
//   - Controller keeps a "default" ServiceAccount in every active namespace
//     (pkg/controller/serviceaccount's ServiceAccountsController). A
//     namespace gets it when it is created, and again whenever it is
//     deleted.
//   - Tokens fills service account token secrets (TokensController).
//   - RootCAPublisher keeps the kube-root-ca.crt ConfigMap in every
//     namespace (root-ca-cert-publisher).
//
// Signing tokens is server/serviceaccount's business; the TokenRequest
// subresource is served by the API server. The controllers write only
// through the API they are given.
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

// API is the part of orch's in-process API (apiserver.Local) the
// controller uses.
type API interface {
	Create(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, fieldManager string) (runtime.Object, error)
}

var (
	namespacesGVR      = corev1.SchemeGroupVersion.WithResource("namespaces")
	serviceAccountsGVR = corev1.SchemeGroupVersion.WithResource("serviceaccounts")
)

// DefaultServiceAccount is the account every namespace gets.
const DefaultServiceAccount = "default"

// Options configure the controller.
type Options struct {
	// ServiceAccounts ensured in every namespace; default {"default"}.
	ServiceAccounts []string
	// Workers syncing namespaces concurrently (default 1, as Kubernetes).
	Workers int
	// FieldManager recorded on the controller's writes.
	FieldManager string
	Logger       *slog.Logger
}

// Controller is the service account controller.
type Controller struct {
	api        API
	namespaces informer.Lister[*corev1.Namespace]
	accounts   *informer.Informer
	nsInformer *informer.Informer
	queue      *queue.Queue
	opts       Options
	log        *slog.Logger
}

// New builds the controller and registers its informers with factory.
func New(api API, factory *informer.Factory, opts Options) *Controller {
	if len(opts.ServiceAccounts) == 0 {
		opts.ServiceAccounts = []string{DefaultServiceAccount}
	}
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-serviceaccount-controller"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	nsInformer := factory.For(namespacesGVR)
	c := &Controller{
		api:        api,
		nsInformer: nsInformer,
		namespaces: informer.NewLister[*corev1.Namespace](nsInformer),
		// The account informer only answers "does it exist": metadata is
		// enough, and it is shared with the garbage collector's.
		accounts: factory.Metadata(serviceAccountsGVR),
		queue:    queue.New(queue.NewExponentialRateLimiter(5*time.Millisecond, 60*time.Second)),
		opts:     opts,
		log:      opts.Logger.With("controller", "serviceaccount"),
	}
	c.nsInformer.AddHandler(informer.OnAddOrUpdate(c.enqueueNamespace))
	c.accounts.AddHandler(informer.HandlerFuncs{
		// Only a deletion can make an account go missing.
		DeleteFunc: c.accountDeleted,
	})
	return c
}

func (c *Controller) enqueueNamespace(obj runtime.Object) {
	if m, err := meta.Accessor(obj); err == nil {
		c.queue.Add(m.GetName())
	}
}

func (c *Controller) accountDeleted(obj runtime.Object) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	for _, name := range c.opts.ServiceAccounts {
		if m.GetName() == name {
			c.queue.Add(m.GetNamespace())
			return
		}
	}
}

// Run syncs namespaces until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !informer.WaitForSync(ctx, c.nsInformer, c.accounts) {
		return nil
	}
	c.log.Info("started", "workers", c.opts.Workers)
	queue.RunWorkers(ctx, c.queue, c.opts.Workers, c.log, c.sync)
	return nil
}

// sync creates the missing service accounts of the namespace called name
// if it is active.
func (c *Controller) sync(ctx context.Context, name string) error {
	ns, ok := c.namespaces.Get("", name)
	if !ok || ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating {
		return nil
	}
	for _, sa := range c.opts.ServiceAccounts {
		if _, ok := c.accounts.GetByName(name, sa); ok {
			continue
		}
		obj := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: sa}}
		_, err := c.api.Create(ctx, serviceAccountsGVR, obj, c.opts.FieldManager)
		switch {
		case err == nil:
			c.log.Debug("created service account", "namespace", name, "name", sa)
		case apierrors.IsAlreadyExists(err):
			// Our cache is behind; the account is there.
		case apierrors.IsForbidden(err) || apierrors.IsNotFound(err):
			// The namespace is being deleted (or is gone) since we read it:
			// nothing to ensure any more.
			return nil
		default:
			return fmt.Errorf("create service account %s/%s: %w", name, sa, err)
		}
	}
	return nil
}
