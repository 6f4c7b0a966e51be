package agent

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/netproxy/ingress"
)

// fakeRules records what the service proxy would be given.
type fakeRules struct{ calls int }

func (f *fakeRules) Replace([]*v1.Service, []*discoveryv1.EndpointSlice) { f.calls++ }

// TestIngressState: the proxy gets a Config only once Services, Ingresses,
// classes and Secrets have all been listed, then follows changes; only
// Secrets with a certificate and key are held.
func TestIngressState(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	p, err := ingress.New(ingress.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	st := &ingressState{proxy: p, log: quiet, kick: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { st.run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	ingresses := keyedSink(st.locked, &st.ingresses, nil)
	classes := keyedSink(st.locked, &st.classes, nil)
	secrets := keyedSink(st.locked, &st.secrets, isTLSSecret)
	rules := &fakeRules{}
	fanout := ingressFanout{rules, st}

	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "site"},
		Spec: networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{
			Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}
	served := func() int { return len(p.Config().Served) }

	ingresses.replace([]*networkingv1.Ingress{ing})
	classes.replace(nil)
	fanout.Replace(nil, nil)
	// Secrets not listed yet: nothing may be served from a partial picture.
	if _, ok := st.snapshot(); ok || served() != 0 {
		t.Fatalf("a Config was built before every kind was listed")
	}
	tlsSecret := &v1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "cert"},
		Data: map[string][]byte{v1.TLSCertKey: []byte("crt"), v1.TLSPrivateKeyKey: []byte("key")}}
	other := &v1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "password"}, Data: map[string][]byte{"password": []byte("x")}}
	secrets.replace([]*v1.Secret{tlsSecret, other})
	waitFor(t, 10*time.Second, "the Ingress served", func() (bool, error) { return served() == 1, nil })
	if rules.calls != 1 {
		t.Errorf("the service proxy got %d pictures, want 1", rules.calls)
	}
	st.mu.Lock()
	n := st.secrets.Len()
	st.mu.Unlock()
	if n != 1 {
		t.Errorf("%d Secrets held, want only the TLS one", n)
	}

	// A Secret that loses its key is forgotten; a removed Ingress is no
	// longer served.
	stripped := tlsSecret.DeepCopy()
	delete(stripped.Data, v1.TLSPrivateKeyKey)
	secrets.update(stripped)
	ingresses.remove(ing)
	waitFor(t, 10*time.Second, "the Ingress gone", func() (bool, error) { return served() == 0, nil })
	st.mu.Lock()
	n = st.secrets.Len()
	st.mu.Unlock()
	if n != 0 {
		t.Errorf("%d Secrets held after the certificate's key went, want 0", n)
	}
}
