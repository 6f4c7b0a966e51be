// Package tokencleaner deletes expired bootstrap tokens: Secrets
// kube-system/bootstrap-token-<id> whose expiration has passed
// (Kubernetes' tokencleaner controller, which kube-controller-manager runs
// for kubeadm's tokens and k3s for `k3s token create`).
//
// Unlike upstream, a token is deleted a grace period after it expired,
// not at once: until then an agent that tries it is told that the token
// expired (server/auth says so to callers holding the secret) rather than
// that it is unknown. An expiration that cannot be read counts as past,
// as upstream. The controller deletes, nothing else.
package tokencleaner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/auth/bootstraptoken"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
)

// ComponentName names the controller in logs.
const ComponentName = "token-cleaner"

// DefaultGrace is how long an expired token is kept by default.
const DefaultGrace = time.Hour

var secretsGVR = corev1.SchemeGroupVersion.WithResource("secrets")

// API is the part of the in-process API the cleaner writes through.
type API interface {
	Delete(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, opts *metav1.DeleteOptions) (bool, error)
}

// Options configure the cleaner.
type Options struct {
	// Grace keeps an expired token this long before deleting it;
	// 0 means DefaultGrace, negative deletes at expiry.
	Grace  time.Duration
	Now    func() time.Time // default time.Now
	Logger *slog.Logger
}

// Cleaner deletes expired bootstrap token Secrets.
type Cleaner struct {
	api     API
	secrets *informer.Informer
	queue   *queue.Queue
	grace   time.Duration
	now     func() time.Time
	log     *slog.Logger
}

// New returns a cleaner reading Secrets from factory's informer.
func New(api API, factory *informer.Factory, opts Options) *Cleaner {
	switch {
	case opts.Grace == 0:
		opts.Grace = DefaultGrace
	case opts.Grace < 0:
		opts.Grace = 0
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Cleaner{
		api:     api,
		secrets: factory.For(secretsGVR),
		queue:   queue.New(queue.DefaultRateLimiter()),
		grace:   opts.Grace,
		now:     opts.Now,
		log:     opts.Logger.With("controller", ComponentName),
	}
	c.secrets.AddHandler(informer.OnAddOrUpdate(c.enqueue))
	return c
}

// enqueue queues bootstrap token Secrets only.
func (c *Cleaner) enqueue(obj runtime.Object) {
	s, ok := obj.(*corev1.Secret)
	if !ok || s.Namespace != bootstraptoken.Namespace || s.Type != corev1.SecretTypeBootstrapToken {
		return
	}
	c.queue.Add(informer.Key(s.Namespace, s.Name))
}

// Run cleans until ctx ends.
func (c *Cleaner) Run(ctx context.Context) error {
	if !informer.WaitForSync(ctx, c.secrets) {
		return nil
	}
	c.log.Info("started", "grace", c.grace)
	queue.RunWorkers(ctx, c.queue, 1, c.log, c.sync)
	return nil
}

func (c *Cleaner) sync(ctx context.Context, key string) error {
	ns, name := informer.SplitKey(key)
	obj, ok := c.secrets.GetByName(ns, name)
	if !ok {
		return nil
	}
	s := obj.(*corev1.Secret)
	if s.DeletionTimestamp != nil {
		return nil
	}
	info, err := bootstraptoken.FromSecret(s)
	switch {
	case errors.Is(err, bootstraptoken.ErrNotBootstrapToken):
		return nil
	case err != nil:
		c.log.Info("deleting a bootstrap token Secret that cannot be read", "secret", key, "err", err)
		return c.delete(ctx, s)
	case info.Expiration.IsZero():
		return nil
	}
	if wait := info.Expiration.Add(c.grace).Sub(c.now()); wait > 0 {
		return queue.RequeueAfter(wait)
	}
	c.log.Info("deleting expired bootstrap token", "secret", key, "expiration", info.Expiration)
	return c.delete(ctx, s)
}

// delete removes exactly the Secret that was judged: a token re-created
// under the same name meanwhile (another UID) is left alone.
func (c *Cleaner) delete(ctx context.Context, s *corev1.Secret) error {
	uid := s.UID
	_, err := c.api.Delete(ctx, secretsGVR, s.Namespace, s.Name, &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete bootstrap token Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}
