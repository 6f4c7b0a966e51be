package serviceaccount

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/registry"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func newAPI() *fakeapi.API {
	return fakeapi.New(append(fakeapi.Resources(), &registry.Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"}, Name: "serviceaccounts", Kind: "ServiceAccount", Namespaced: true,
		New: func() runtime.Object { return &corev1.ServiceAccount{} }, NewList: func() runtime.Object { return &corev1.ServiceAccountList{} },
	})...)
}

// start runs the controller and its informers until the test ends.
func start(t *testing.T, api *fakeapi.API) {
	t.Helper()
	factory := informer.NewFactory(api, quiet)
	c := New(api, factory, Options{Logger: quiet})
	controllertest.Run(t, c.Run, factory.Run)
}

func namespace(name string, phase corev1.NamespacePhase) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NamespaceStatus{Phase: phase}}
}

func TestDefaultAccountInEveryActiveNamespace(t *testing.T) {
	api := newAPI()
	api.MustCreate(fakeapi.Namespaces, namespace("before", corev1.NamespaceActive))
	api.MustCreate(fakeapi.Namespaces, namespace("dying", corev1.NamespaceTerminating))
	start(t, api)
	api.MustCreate(fakeapi.Namespaces, namespace("after", corev1.NamespaceActive))

	for _, ns := range []string{"before", "after"} {
		controllertest.Eventually(t, 5*time.Second, "default account in "+ns, func() bool { return api.Exists(serviceAccountsGVR, ns, "default") })
	}
	// Give the controller the time to (wrongly) act on the terminating one.
	time.Sleep(50 * time.Millisecond)
	if api.Exists(serviceAccountsGVR, "dying", "default") {
		t.Error("a default account was created in a terminating namespace")
	}
}

func TestDeletedDefaultAccountIsRecreated(t *testing.T) {
	api := newAPI()
	api.MustCreate(fakeapi.Namespaces, namespace("ns", corev1.NamespaceActive))
	start(t, api)
	controllertest.Eventually(t, 5*time.Second, "default account", func() bool { return api.Exists(serviceAccountsGVR, "ns", "default") })

	first, _ := api.Get(context.Background(), serviceAccountsGVR, "ns", "default")
	if _, err := api.Delete(context.Background(), serviceAccountsGVR, "ns", "default", nil); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, "a new default account", func() bool {
		obj, err := api.Get(context.Background(), serviceAccountsGVR, "ns", "default")
		return err == nil && obj.(*corev1.ServiceAccount).UID != first.(*corev1.ServiceAccount).UID
	})
}

func TestSync(t *testing.T) {
	tests := []struct {
		name      string
		ns        *corev1.Namespace
		existing  bool
		createErr error
		wantErr   bool
		wantSA    bool
	}{
		{name: "missing account is created", ns: namespace("ns", corev1.NamespaceActive), wantSA: true},
		{name: "existing account is kept", ns: namespace("ns", corev1.NamespaceActive), existing: true, wantSA: true},
		{name: "unknown namespace", ns: nil},
		{name: "terminating namespace", ns: namespace("ns", corev1.NamespaceTerminating)},
		{name: "already exists is success", ns: namespace("ns", corev1.NamespaceActive), createErr: apierrors.NewAlreadyExists(serviceAccountsGVR.GroupResource(), "default")},
		{name: "forbidden (namespace terminating) is dropped", ns: namespace("ns", corev1.NamespaceActive), createErr: apierrors.NewForbidden(namespacesGVR.GroupResource(), "ns", errors.New("terminating"))},
		{name: "other errors are retried", ns: namespace("ns", corev1.NamespaceActive), createErr: errors.New("boom"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := newAPI()
			if tt.ns != nil {
				api.MustCreate(fakeapi.Namespaces, tt.ns)
			}
			if tt.existing {
				api.MustCreate(serviceAccountsGVR, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "default"}})
			}
			if tt.createErr != nil {
				api.SetFail(func(verb string, _ schema.GroupVersionResource, _, _ string) error {
					if verb == "create" {
						return tt.createErr
					}
					return nil
				})
			}
			factory := informer.NewFactory(api, quiet)
			c := New(api, factory, Options{Logger: quiet})
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() { _ = factory.Run(ctx) })
			defer func() { cancel(); wg.Wait() }()
			informer.WaitForSync(ctx, c.nsInformer, c.accounts)

			err := c.sync(ctx, "ns")
			if (err != nil) != tt.wantErr {
				t.Fatalf("sync error = %v, want error %v", err, tt.wantErr)
			}
			if got := api.Exists(serviceAccountsGVR, "ns", "default"); got != tt.wantSA {
				t.Errorf("default account exists = %v, want %v", got, tt.wantSA)
			}
			creates := 0
			for _, a := range api.Actions() {
				if a.Verb == "create" && a.Resource == "serviceaccounts" {
					creates++
				}
			}
			if tt.existing && creates > 1 {
				t.Errorf("existing account was created again: %v", api.Actions())
			}
		})
	}
}
