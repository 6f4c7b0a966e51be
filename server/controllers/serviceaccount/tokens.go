package serviceaccount

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/queue"
)

var secretsGVR = corev1.SchemeGroupVersion.WithResource("secrets")

// TokensAPI is the part of the in-process API the token controller uses.
type TokensAPI interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
	Update(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, subresource, fieldManager string) (runtime.Object, error)
	Delete(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, opts *metav1.DeleteOptions) (bool, error)
}

// LegacyTokenFunc signs the never-expiring token of a service account
// token secret (server/serviceaccount.LegacyToken with the cluster key).
type LegacyTokenFunc func(sa *corev1.ServiceAccount, secret *corev1.Secret) (string, error)

// TokensOptions configure the token controller.
type TokensOptions struct {
	// RootCA is the cluster CA bundle (PEM) put in secrets as ca.crt.
	RootCA       []byte
	Workers      int    // default 1
	FieldManager string // default "orch-tokens-controller"
	Logger       *slog.Logger
}

// Tokens is the token controller (Kubernetes' TokensController, as it is
// since 1.24): a secret of type kubernetes.io/service-account-token that
// names a service account in its kubernetes.io/service-account.name
// annotation gets a signed token, the CA bundle and the namespace in its
// data, and the account's uid in the kubernetes.io/service-account.uid
// annotation. Such a secret whose account does not exist (or is another
// account of the same name) is deleted, and so are an account's token
// secrets when the account is deleted. Accounts do not get secrets of
// their own any more: clients use TokenRequest.
type Tokens struct {
	api      TokensAPI
	sign     LegacyTokenFunc
	secrets  *informer.Informer
	accounts *informer.Informer
	queue    *queue.Queue
	opts     TokensOptions
	log      *slog.Logger
}

// NewTokens builds the token controller and registers its informers.
func NewTokens(api TokensAPI, factory *informer.Factory, sign LegacyTokenFunc, opts TokensOptions) *Tokens {
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	if opts.FieldManager == "" {
		opts.FieldManager = "orch-tokens-controller"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Tokens{
		api:      api,
		sign:     sign,
		secrets:  factory.For(secretsGVR),
		accounts: factory.Metadata(serviceAccountsGVR),
		queue:    queue.New(queue.NewExponentialRateLimiter(5*time.Millisecond, 60*time.Second)),
		opts:     opts,
		log:      opts.Logger.With("controller", "tokens"),
	}
	c.secrets.AddHandler(informer.OnAddOrUpdate(c.enqueueSecret))
	// An account's arrival or departure decides the fate of its secrets.
	c.accounts.AddHandler(informer.HandlerFuncs{
		AddFunc:    c.enqueueAccountSecrets,
		DeleteFunc: c.enqueueAccountSecrets,
	})
	return c
}

func isTokenSecret(s *corev1.Secret) bool {
	return s.Type == corev1.SecretTypeServiceAccountToken && s.Annotations[corev1.ServiceAccountNameKey] != ""
}

func (c *Tokens) enqueueSecret(obj runtime.Object) {
	if s, ok := obj.(*corev1.Secret); ok && isTokenSecret(s) {
		c.queue.Add(informer.Key(s.Namespace, s.Name))
	}
}

func (c *Tokens) enqueueAccountSecrets(obj runtime.Object) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	for _, o := range c.secrets.List(m.GetNamespace(), labels.Everything()) {
		if s := o.(*corev1.Secret); isTokenSecret(s) && s.Annotations[corev1.ServiceAccountNameKey] == m.GetName() {
			c.queue.Add(informer.Key(s.Namespace, s.Name))
		}
	}
}

// Run syncs token secrets until ctx ends.
func (c *Tokens) Run(ctx context.Context) error {
	if !informer.WaitForSync(ctx, c.secrets, c.accounts) {
		return nil
	}
	c.log.Info("started", "workers", c.opts.Workers)
	queue.RunWorkers(ctx, c.queue, c.opts.Workers, c.log, c.sync)
	return nil
}

func (c *Tokens) sync(ctx context.Context, key string) error {
	obj, ok := c.secrets.Get(key)
	if !ok {
		return nil
	}
	secret := obj.(*corev1.Secret)
	if !isTokenSecret(secret) || secret.DeletionTimestamp != nil {
		return nil
	}
	ns, saName := secret.Namespace, secret.Annotations[corev1.ServiceAccountNameKey]
	// The account is read live: the cache may not have an account created
	// a moment before its secret, and deleting a secret is not undone.
	saObj, err := c.api.Get(ctx, serviceAccountsGVR, ns, saName)
	switch {
	case apierrors.IsNotFound(err):
		return c.deleteSecret(ctx, secret, "its service account does not exist")
	case err != nil:
		return fmt.Errorf("get service account %s/%s: %w", ns, saName, err)
	}
	sa := saObj.(*corev1.ServiceAccount)
	if uid := secret.Annotations[corev1.ServiceAccountUIDKey]; uid != "" && uid != string(sa.UID) {
		return c.deleteSecret(ctx, secret, "it belongs to an earlier service account of that name")
	}
	if sa.DeletionTimestamp != nil {
		return nil
	}
	if secret.Annotations[corev1.ServiceAccountUIDKey] == string(sa.UID) && len(secret.Data[corev1.ServiceAccountTokenKey]) > 0 &&
		bytes.Equal(secret.Data[corev1.ServiceAccountRootCAKey], c.opts.RootCA) && string(secret.Data[corev1.ServiceAccountNamespaceKey]) == ns {
		return nil
	}

	upd := secret.DeepCopy()
	if upd.Data == nil {
		upd.Data = map[string][]byte{}
	}
	upd.Annotations[corev1.ServiceAccountUIDKey] = string(sa.UID)
	if len(upd.Data[corev1.ServiceAccountTokenKey]) == 0 {
		token, err := c.sign(sa, upd)
		if err != nil {
			return fmt.Errorf("sign token for secret %s/%s: %w", ns, secret.Name, err)
		}
		upd.Data[corev1.ServiceAccountTokenKey] = []byte(token)
	}
	upd.Data[corev1.ServiceAccountRootCAKey] = c.opts.RootCA
	upd.Data[corev1.ServiceAccountNamespaceKey] = []byte(ns)
	if _, err := c.api.Update(ctx, secretsGVR, upd, "", c.opts.FieldManager); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		// A conflict: the informer brings the newer secret, sync again.
		return fmt.Errorf("fill token secret %s/%s: %w", ns, secret.Name, err)
	}
	c.log.Debug("filled token secret", "namespace", ns, "name", secret.Name, "serviceaccount", saName)
	return nil
}

func (c *Tokens) deleteSecret(ctx context.Context, secret *corev1.Secret, why string) error {
	// The uid precondition keeps a secret recreated meanwhile.
	_, err := c.api.Delete(ctx, secretsGVR, secret.Namespace, secret.Name, &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &secret.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete token secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	c.log.Info("deleted token secret", "namespace", secret.Namespace, "name", secret.Name, "reason", why)
	return nil
}
