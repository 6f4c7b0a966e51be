package nodepassword

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/join"
)

// password is the Secret server/join keeps for node.
func password(node string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: join.PasswordSecretName(node)},
		Type:       "orch.dev/node-password",
		Data:       map[string][]byte{"hash": []byte("sha256$00$00")},
	}
}

func node(name string) *corev1.Node { return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}} }

func start(t *testing.T, api *fakeapi.API, opts Options) {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	opts.Logger = quiet
	factory := informer.NewFactory(api, quiet)
	c := New(api, factory, opts)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = c.Run(ctx) })
	wg.Go(func() { _ = factory.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func TestPasswordRemovedWithNode(t *testing.T) {
	api := fakeapi.New()
	now := time.Now()
	// Joined two hours ago: n1 and n2 are nodes, "gone" lost its Node
	// while the server was down.
	api.Now = func() time.Time { return now.Add(-2 * time.Hour) }
	for _, n := range []string{"n1", "n2", "gone"} {
		api.MustCreate(fakeapi.Secrets, password(n))
	}
	api.Now = nil
	api.MustCreate(fakeapi.Nodes, node("n1"))
	api.MustCreate(fakeapi.Nodes, node("n2"))
	// Joining right now: its Node is not registered yet.
	api.MustCreate(fakeapi.Secrets, password("joining"))
	// Not passwords, whatever their names say.
	api.MustCreate(fakeapi.Secrets, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: join.PasswordSecretName("lookalike")}})
	other := password("elsewhere")
	other.Namespace = "default"
	api.MustCreate(fakeapi.Secrets, other)

	start(t, api, Options{OrphanGrace: time.Hour})
	exists := func(ns, n string) bool { return api.Exists(fakeapi.Secrets, ns, join.PasswordSecretName(n)) }

	controllertest.Eventually(t, 20*time.Second, "the orphaned password removed", func() bool { return !exists("kube-system", "gone") })
	for _, n := range []string{"n1", "n2", "joining", "lookalike"} {
		if !exists("kube-system", n) {
			t.Errorf("password of %s removed", n)
		}
	}
	if !exists("default", "elsewhere") {
		t.Error("a Secret outside kube-system removed")
	}

	// kubectl delete node n1: its password goes at once, though young
	// passwords without a Node are otherwise kept.
	if _, err := api.Delete(context.Background(), fakeapi.Nodes, "", "n1", nil); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 20*time.Second, "the password of the deleted node removed", func() bool { return !exists("kube-system", "n1") })
	if !exists("kube-system", "n2") || !exists("kube-system", "joining") {
		t.Error("other passwords removed with n1's")
	}

	// Another machine joins as n1 now: its new password is kept until
	// its Node registers, and then for good.
	api.MustCreate(fakeapi.Secrets, password("n1"))
	api.MustCreate(fakeapi.Nodes, node("n1"))
	// A later deletion of n2 is processed after anything queued for n1.
	if _, err := api.Delete(context.Background(), fakeapi.Nodes, "", "n2", nil); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 20*time.Second, "n2's password removed", func() bool { return !exists("kube-system", "n2") })
	if !exists("kube-system", "n1") {
		t.Error("the new machine's password for n1 was removed")
	}
}
