package tokencleaner

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/orch-dev/orch/server/auth/bootstraptoken"
	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
)

func token(t *testing.T, id string, exp time.Time, edit func(*corev1.Secret)) *corev1.Secret {
	t.Helper()
	s, err := bootstraptoken.NewSecret(bootstraptoken.Info{ID: id, Secret: "0123456789abcdef", Expiration: exp,
		Usages: []string{bootstraptoken.UsageAuthentication}})
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(s)
	}
	return s
}

func TestCleaner(t *testing.T) {
	api := fakeapi.New()
	start := time.Date(2026, 11, 23, 15, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(start)
	const grace = time.Minute

	api.MustCreate(fakeapi.Secrets, token(t, "gone01", start.Add(-grace-time.Second), nil))  // long expired
	api.MustCreate(fakeapi.Secrets, token(t, "recent", start.Add(-time.Second), nil))        // within grace
	api.MustCreate(fakeapi.Secrets, token(t, "later1", start.Add(time.Hour), nil))           // valid
	api.MustCreate(fakeapi.Secrets, token(t, "never1", time.Time{}, nil))                    // never expires
	api.MustCreate(fakeapi.Secrets, token(t, "badexp", time.Time{}, func(s *corev1.Secret) { // unreadable
		s.Data[bootstraptoken.ExpirationKey] = []byte("soon")
	}))
	api.MustCreate(fakeapi.Secrets, token(t, "opaque", start.Add(-time.Hour), func(s *corev1.Secret) { // not a token
		s.Type = corev1.SecretTypeOpaque
	}))
	api.MustCreate(fakeapi.Secrets, token(t, "elsewh", start.Add(-time.Hour), func(s *corev1.Secret) { // other namespace
		s.Namespace = "default"
	}))
	api.MustCreate(fakeapi.Secrets, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "plain"}})

	factory := informer.NewFactory(api, slog.New(slog.DiscardHandler))
	c := New(api, factory, Options{Grace: grace, Now: clk.Now, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	wg.Go(func() { _ = factory.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	exists := func(ns, id string) bool { return api.Exists(fakeapi.Secrets, ns, bootstraptoken.SecretName(id)) }
	controllertest.Eventually(t, 20*time.Second, "the long-expired and the unreadable token deleted", func() bool {
		return !exists("kube-system", "gone01") && !exists("kube-system", "badexp")
	})
	for _, id := range []string{"recent", "later1", "never1", "opaque"} {
		if !exists("kube-system", id) {
			t.Errorf("token %s deleted too early", id)
		}
	}
	if !exists("default", "elsewh") || !api.Exists(fakeapi.Secrets, "kube-system", "plain") {
		t.Error("a Secret that is no bootstrap token was deleted")
	}

	// Once the grace of "recent" is over it is deleted. Only the cleaner's
	// clock moved (its queue's delays are real time), so an update queues
	// the token again at once.
	clk.Step(grace)
	touch(t, api, "recent")
	controllertest.Eventually(t, 20*time.Second, "the recently expired token deleted after its grace", func() bool { return !exists("kube-system", "recent") })
	if !exists("kube-system", "later1") || !exists("kube-system", "never1") {
		t.Error("a valid token was deleted")
	}
}

// touch updates a token's labels so its informer event queues it again.
func touch(t *testing.T, api *fakeapi.API, id string) {
	t.Helper()
	obj, err := api.Get(context.Background(), fakeapi.Secrets, "kube-system", bootstraptoken.SecretName(id))
	if err != nil {
		t.Fatal(err)
	}
	s := obj.(*corev1.Secret)
	s.Labels = map[string]string{"touched": "yes"}
	if _, err := api.Update(context.Background(), fakeapi.Secrets, s, "", "test"); err != nil {
		t.Fatal(err)
	}
}

// With a real clock a token is deleted by its own requeue, without any
// event: the cleaner waits for its expiry plus grace.
func TestCleanerRequeuesAtExpiry(t *testing.T) {
	api := fakeapi.New()
	api.MustCreate(fakeapi.Secrets, token(t, "short1", time.Now().Add(200*time.Millisecond), nil))
	factory := informer.NewFactory(api, slog.New(slog.DiscardHandler))
	c := New(api, factory, Options{Grace: 100 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	wg.Go(func() { _ = factory.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	controllertest.Eventually(t, 20*time.Second, "the token deleted after expiry and grace", func() bool {
		return !api.Exists(fakeapi.Secrets, "kube-system", bootstraptoken.SecretName("short1"))
	})
}
