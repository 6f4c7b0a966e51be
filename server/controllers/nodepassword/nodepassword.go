// Package nodepassword removes a node's password when its Node is
// deleted, as k3s' node controller does: the Secret
// kube-system/<name>.node-password.orch that server/join keeps, by which it
// refuses a second machine under a name already joined. Once an admin
// deletes the Node (`kubectl delete node`), the name is free to be joined
// again from another machine.
//
// A Node deleted while the server was down leaves no event behind; such
// orphaned passwords are removed once they are older than a grace period
// (a machine joins first and registers its Node right after, so a young
// password without a Node is one being joined, not an orphan).
package nodepassword

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
	"github.com/orch-dev/orch/server/join"
)

// ComponentName names the controller in logs.
const ComponentName = "node-password-controller"

// DefaultOrphanGrace is how old a password without a Node must be before
// it counts as orphaned.
const DefaultOrphanGrace = time.Hour

var (
	nodesGVR   = corev1.SchemeGroupVersion.WithResource("nodes")
	secretsGVR = corev1.SchemeGroupVersion.WithResource("secrets")
)

// API is the part of the in-process API the controller writes through.
type API interface {
	Delete(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, opts *metav1.DeleteOptions) (bool, error)
}

// Options configure the controller.
type Options struct {
	OrphanGrace time.Duration    // default DefaultOrphanGrace
	Now         func() time.Time // default time.Now
	Logger      *slog.Logger
}

// Controller deletes the passwords of deleted Nodes.
type Controller struct {
	api     API
	nodes   *informer.Informer
	secrets *informer.Informer
	queue   *queue.Queue
	opts    Options
	log     *slog.Logger

	mu sync.Mutex
	// deleted holds when Nodes were seen deleted whose passwords are
	// still to be removed: a password made before then goes at once,
	// whatever its age; a later one is a new machine's join.
	deleted map[string]time.Time
}

// New returns a controller reading from factory's informers.
func New(api API, factory *informer.Factory, opts Options) *Controller {
	if opts.OrphanGrace <= 0 {
		opts.OrphanGrace = DefaultOrphanGrace
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Controller{
		api:     api,
		nodes:   factory.For(nodesGVR),
		secrets: factory.For(secretsGVR),
		queue:   queue.New(queue.DefaultRateLimiter()),
		opts:    opts,
		log:     opts.Logger.With("controller", ComponentName),
		deleted: map[string]time.Time{},
	}
	c.nodes.AddHandler(informer.HandlerFuncs{DeleteFunc: c.nodeDeleted})
	c.secrets.AddHandler(informer.OnAddOrUpdate(c.enqueueSecret))
	return c
}

func (c *Controller) nodeDeleted(obj runtime.Object) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	c.mu.Lock()
	c.deleted[n.Name] = c.opts.Now()
	c.mu.Unlock()
	c.queue.Add(n.Name)
}

func (c *Controller) enqueueSecret(obj runtime.Object) {
	if s, ok := obj.(*corev1.Secret); ok {
		if node, ok := join.PasswordSecretNode(s); ok {
			c.queue.Add(node)
		}
	}
}

// Run works until ctx ends.
func (c *Controller) Run(ctx context.Context) error {
	if !informer.WaitForSync(ctx, c.nodes, c.secrets) {
		return nil
	}
	c.log.Info("started")
	queue.RunWorkers(ctx, c.queue, 1, c.log, c.sync)
	return nil
}

// sync removes node's password if the Node is gone, and was seen deleted
// or the password is an orphan past its grace.
func (c *Controller) sync(ctx context.Context, node string) error {
	if _, ok := c.nodes.GetByName("", node); ok {
		// It exists (again): a machine joined under the name after the
		// deletion, and the password is its.
		c.forget(node)
		return nil
	}
	obj, ok := c.secrets.GetByName(metav1.NamespaceSystem, join.PasswordSecretName(node))
	if !ok {
		c.forget(node)
		return nil
	}
	s := obj.(*corev1.Secret)
	c.mu.Lock()
	deletedAt, seen := c.deleted[node]
	c.mu.Unlock()
	seenDeleted := seen && !s.CreationTimestamp.After(deletedAt)
	if !seenDeleted {
		if wait := s.CreationTimestamp.Add(c.opts.OrphanGrace).Sub(c.opts.Now()); wait > 0 {
			return queue.RequeueAfter(wait)
		}
	}
	uid := s.UID
	_, err := c.api.Delete(ctx, secretsGVR, s.Namespace, s.Name, &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	switch {
	case err == nil:
		c.log.Info("deleted the password of a deleted node", "node", node, "secret", s.Namespace+"/"+s.Name, "orphan", !seenDeleted)
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		// Gone already, or replaced by a new join: its own event decides.
	default:
		return fmt.Errorf("delete the password of node %s: %w", node, err)
	}
	c.forget(node)
	return nil
}

func (c *Controller) forget(node string) {
	c.mu.Lock()
	delete(c.deleted, node)
	c.mu.Unlock()
}
