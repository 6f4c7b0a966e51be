package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/orch-dev/orch/agent/apiclient"
	"github.com/orch-dev/orch/netproxy/ingress"
)

// fakeRules records what the service proxy would be given.
type fakeRules struct{ calls int }

func (f *fakeRules) Replace([]*v1.Service, []*discoveryv1.EndpointSlice) { f.calls++ }

// secretServer is an API server with Secrets of namespace web, answering
// GETs by name and nothing else (what authz.IngressTLS allows), counting
// what it is asked.
type secretServer struct {
	mu      sync.Mutex
	secrets map[string]*v1.Secret
	asked   []string
}

func (f *secretServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, r.Method+" "+r.URL.Path)
	name, ok := strings.CutPrefix(r.URL.Path, "/api/v1/namespaces/web/secrets/")
	sec := f.secrets[name]
	if r.Method != http.MethodGet || !ok || sec == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(apierrors.NewNotFound(v1.Resource("secrets"), name).Status())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(sec)
}

func (f *secretServer) set(sec *v1.Secret) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.secrets[sec.Name] = sec
}

// TestIngressState: the proxy gets a Config only once Services, Ingresses,
// classes and the TLS Secrets they name have all been read, then follows
// changes; Secrets are fetched by name, only those an Ingress names and
// only with a certificate and key.
func TestIngressState(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	p, err := ingress.New(ingress.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	tlsSecret := &v1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "cert", ResourceVersion: "1"},
		Data: map[string][]byte{v1.TLSCertKey: []byte("crt"), v1.TLSPrivateKeyKey: []byte("key")}}
	api := &secretServer{secrets: map[string]*v1.Secret{"cert": tlsSecret,
		"password": {ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "password"}, Data: map[string][]byte{"password": []byte("x")}}}}
	ts := httptest.NewServer(api)
	t.Cleanup(ts.Close)
	client, err := apiclient.New(ts.URL, ts.Client(), "test")
	if err != nil {
		t.Fatal(err)
	}

	st := &ingressState{proxy: p, log: quiet, kick: make(chan struct{}, 1), fetch: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { st.run(ctx) })
	wg.Go(func() { st.fetchSecrets(ctx, client) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	ingresses := keyedSink(st.lockedIngresses, &st.ingresses)
	classes := keyedSink(st.locked, &st.classes)
	rules := &fakeRules{}
	fanout := ingressFanout{rules, st}
	held := func() []string {
		st.mu.Lock()
		defer st.mu.Unlock()
		var out []string
		for _, s := range st.secrets.Values(0) {
			out = append(out, s.Name+"@"+s.ResourceVersion)
		}
		slices.Sort(out)
		return out
	}

	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "site"},
		Spec: networkingv1.IngressSpec{
			DefaultBackend: &networkingv1.IngressBackend{
				Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}},
			TLS: []networkingv1.IngressTLS{{Hosts: []string{"a.example"}, SecretName: "cert"}, {Hosts: []string{"b.example"}, SecretName: "password"}, {Hosts: []string{"c.example"}, SecretName: "missing"}},
		}}
	served := func() int { return len(p.Config().Served) }

	classes.replace(nil)
	fanout.Replace(nil, nil)
	// Ingresses not listed yet: nothing may be served from a partial picture.
	if _, ok := st.snapshot(); ok || served() != 0 {
		t.Fatalf("a Config was built before every kind was listed")
	}
	ingresses.replace([]*networkingv1.Ingress{ing})
	waitFor(t, 10*time.Second, "the Ingress served", func() (bool, error) { return served() == 1, nil })
	if rules.calls != 1 {
		t.Errorf("the service proxy got %d pictures, want 1", rules.calls)
	}
	if got := held(); !slices.Equal(got, []string{"cert@1"}) {
		t.Errorf("Secrets held %v, want only the TLS one an Ingress names", got)
	}
	api.mu.Lock()
	asked := slices.Clone(api.asked)
	api.mu.Unlock()
	slices.Sort(asked)
	if want := []string{"GET /api/v1/namespaces/web/secrets/cert", "GET /api/v1/namespaces/web/secrets/missing", "GET /api/v1/namespaces/web/secrets/password"}; !slices.Equal(asked, want) {
		t.Errorf("asked the API %q, want %q", asked, want)
	}

	// A renewed certificate is fetched again after an Ingress change (and
	// every secretRefresh); a Secret that loses its key is forgotten.
	renewed := tlsSecret.DeepCopy()
	renewed.ResourceVersion = "2"
	api.set(renewed)
	ingresses.update(ing.DeepCopy())
	waitFor(t, 10*time.Second, "the renewed certificate", func() (bool, error) { return slices.Equal(held(), []string{"cert@2"}), nil })
	stripped := renewed.DeepCopy()
	stripped.ResourceVersion = "3"
	delete(stripped.Data, v1.TLSPrivateKeyKey)
	api.set(stripped)
	ingresses.update(ing.DeepCopy())
	waitFor(t, 10*time.Second, "the keyless Secret dropped", func() (bool, error) { return len(held()) == 0, nil })

	// A removed Ingress is no longer served.
	ingresses.remove(ing)
	waitFor(t, 10*time.Second, "the Ingress gone", func() (bool, error) { return served() == 0, nil })
}
