package serviceaccount

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/server/controllers/controllertest"
	"github.com/orch-dev/orch/server/controllers/fakeapi"
	"github.com/orch-dev/orch/server/controllers/informer"
)

const testCA = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

// fakeSign makes a recognisable token naming the account and secret.
func fakeSign(sa *corev1.ServiceAccount, secret *corev1.Secret) (string, error) {
	return "token-for-" + sa.Name + "-" + string(sa.UID) + "-in-" + secret.Name, nil
}

// startTokens runs the token controller and the root CA publisher.
func startTokens(t *testing.T, api *fakeapi.API) {
	t.Helper()
	factory := informer.NewFactory(api, quiet)
	tokens := NewTokens(api, factory, fakeSign, TokensOptions{RootCA: []byte(testCA), Logger: quiet})
	publisher := NewRootCAPublisher(api, factory, []byte(testCA), RootCAOptions{Logger: quiet})
	controllertest.Run(t, tokens.Run, publisher.Run, factory.Run)
}

func getSecret(api *fakeapi.API, ns, name string) (*corev1.Secret, error) {
	obj, err := api.Get(context.Background(), secretsGVR, ns, name)
	if err != nil {
		return nil, err
	}
	return obj.(*corev1.Secret), nil
}

func tokenSecret(name, account string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: name, Annotations: map[string]string{corev1.ServiceAccountNameKey: account}},
		Type:       corev1.SecretTypeServiceAccountToken,
	}
}

func TestTokenSecrets(t *testing.T) {
	api := newAPI()
	ctx := context.Background()
	api.MustCreate(namespacesGVR, namespace("ns1", corev1.NamespaceActive))
	sa := api.MustCreate(serviceAccountsGVR, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "builder"}}).(*corev1.ServiceAccount)
	api.MustCreate(secretsGVR, tokenSecret("builder-token", "builder"))
	api.MustCreate(secretsGVR, tokenSecret("orphan-token", "nobody"))
	opaque := api.MustCreate(secretsGVR, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "plain"},
		Data: map[string][]byte{"k": []byte("v")}}).(*corev1.Secret)
	startTokens(t, api)

	controllertest.Eventually(t, 5*time.Second, "the token secret filled", func() bool {
		s, err := getSecret(api, "ns1", "builder-token")
		return err == nil && len(s.Data["token"]) > 0
	})
	s, _ := getSecret(api, "ns1", "builder-token")
	if got, want := string(s.Data["token"]), "token-for-builder-"+string(sa.UID)+"-in-builder-token"; got != want {
		t.Errorf("token = %q, want %q", got, want)
	}
	if string(s.Data["ca.crt"]) != testCA || string(s.Data["namespace"]) != "ns1" {
		t.Errorf("ca.crt/namespace = %q/%q", s.Data["ca.crt"], s.Data["namespace"])
	}
	if s.Annotations[corev1.ServiceAccountUIDKey] != string(sa.UID) {
		t.Errorf("uid annotation = %q, want %q", s.Annotations[corev1.ServiceAccountUIDKey], sa.UID)
	}
	controllertest.Eventually(t, 5*time.Second, "the secret of a missing account deleted", func() bool {
		_, err := getSecret(api, "ns1", "orphan-token")
		return apierrors.IsNotFound(err)
	})
	if s, err := getSecret(api, "ns1", "plain"); err != nil || s.ResourceVersion != opaque.ResourceVersion {
		t.Errorf("an opaque secret was touched: %v", err)
	}

	// A token that is removed from the secret is made again; one that is
	// there is kept.
	upd := s.DeepCopy()
	delete(upd.Data, "token")
	upd.Data["ca.crt"] = []byte("stale")
	if _, err := api.Update(ctx, secretsGVR, upd, "", "test"); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, "the token secret repaired", func() bool {
		s, err := getSecret(api, "ns1", "builder-token")
		return err == nil && len(s.Data["token"]) > 0 && string(s.Data["ca.crt"]) == testCA
	})

	// Deleting the account deletes its token secrets.
	if _, err := api.Delete(ctx, serviceAccountsGVR, "ns1", "builder", nil); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, "the token secret of a deleted account deleted", func() bool {
		_, err := getSecret(api, "ns1", "builder-token")
		return apierrors.IsNotFound(err)
	})
}

func TestTokenSecretOfRecreatedAccount(t *testing.T) {
	api := newAPI()
	api.MustCreate(namespacesGVR, namespace("ns1", corev1.NamespaceActive))
	api.MustCreate(serviceAccountsGVR, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns1", Name: "builder"}})
	old := tokenSecret("builder-token", "builder")
	old.Annotations[corev1.ServiceAccountUIDKey] = "uid-of-an-earlier-builder"
	api.MustCreate(secretsGVR, old)
	startTokens(t, api)
	controllertest.Eventually(t, 5*time.Second, "the secret of an earlier account deleted", func() bool {
		_, err := getSecret(api, "ns1", "builder-token")
		return apierrors.IsNotFound(err)
	})
}

func getConfigMap(api *fakeapi.API, ns string) (*corev1.ConfigMap, error) {
	obj, err := api.Get(context.Background(), configMapsGVR, ns, RootCAConfigMap)
	if err != nil {
		return nil, err
	}
	return obj.(*corev1.ConfigMap), nil
}

func TestRootCAPublisher(t *testing.T) {
	api := newAPI()
	ctx := context.Background()
	api.MustCreate(namespacesGVR, namespace("ns1", corev1.NamespaceActive))
	api.MustCreate(namespacesGVR, namespace("dying", corev1.NamespaceTerminating))
	startTokens(t, api)

	controllertest.Eventually(t, 5*time.Second, "kube-root-ca.crt in ns1", func() bool {
		cm, err := getConfigMap(api, "ns1")
		return err == nil && cm.Data["ca.crt"] == testCA && cm.Annotations["kubernetes.io/description"] != ""
	})
	api.MustCreate(namespacesGVR, namespace("ns2", corev1.NamespaceActive))
	controllertest.Eventually(t, 5*time.Second, "kube-root-ca.crt in a new namespace", func() bool {
		_, err := getConfigMap(api, "ns2")
		return err == nil
	})
	if _, err := getConfigMap(api, "dying"); !apierrors.IsNotFound(err) {
		t.Errorf("terminating namespace got the ConfigMap: %v", err)
	}

	cm, _ := getConfigMap(api, "ns1")
	cm = cm.DeepCopy()
	cm.Data = map[string]string{"ca.crt": "tampered", "extra": "x"}
	if _, err := api.Update(ctx, configMapsGVR, cm, "", "test"); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, "a changed kube-root-ca.crt restored", func() bool {
		cm, err := getConfigMap(api, "ns1")
		return err == nil && len(cm.Data) == 1 && cm.Data["ca.crt"] == testCA
	})
	if _, err := api.Delete(ctx, configMapsGVR, "ns1", RootCAConfigMap, nil); err != nil {
		t.Fatal(err)
	}
	controllertest.Eventually(t, 5*time.Second, "a deleted kube-root-ca.crt recreated", func() bool {
		_, err := getConfigMap(api, "ns1")
		return err == nil
	})
}
