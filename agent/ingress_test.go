package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/agent/apiclient"
	"github.com/orch-dev/orch/internal/ingressclass"
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

	var configured atomic.Int32 // the node advertises its proxy from the first Config on
	st := &ingressState{proxy: p, log: quiet, kick: make(chan struct{}, 1), fetch: make(chan struct{}, 1),
		configured: func() { configured.Add(1) }}
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
	if _, ok := st.snapshot(); ok || served() != 0 || configured.Load() != 0 {
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
	if n := configured.Load(); n != 1 {
		t.Errorf("told %d times that the proxy is configured, want once, at its first Config", n)
	}

	// A removed Ingress is no longer served.
	ingresses.remove(ing)
	waitFor(t, 10*time.Second, "the Ingress gone", func() (bool, error) { return served() == 0, nil })
}

// nodePatchServer is the server's side of the writes ingressAdvert makes:
// merge patches of one Node's annotations, recorded as the value written
// ("serving", or "-" for a removal); while down it fails them, as a cut
// link does.
type nodePatchServer struct {
	mu      sync.Mutex
	node    *v1.Node
	written []string
	down    bool
}

func (f *nodePatchServer) Patch(_ context.Context, res apiclient.Resource, ns, name, sub string, pt types.PatchType, data []byte, out any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return apierrors.NewServiceUnavailable("link down")
	}
	if res != apiclient.Nodes || ns != "" || name != f.node.Name || sub != "" || pt != types.MergePatchType {
		return fmt.Errorf("unexpected patch of %s %s/%s/%s (%s)", res.Name, ns, name, sub, pt)
	}
	var patch struct {
		Metadata struct {
			Annotations map[string]*string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(data, &patch); err != nil {
		return apierrors.NewBadRequest(err.Error())
	}
	for k, v := range patch.Metadata.Annotations {
		if v == nil {
			delete(f.node.Annotations, k)
			f.written = append(f.written, "-")
			continue
		}
		metav1.SetMetaDataAnnotation(&f.node.ObjectMeta, k, *v)
		f.written = append(f.written, *v)
	}
	*out.(*v1.Node) = *f.node.DeepCopy()
	return nil
}

// stored returns the Node as the server has it.
func (f *nodePatchServer) stored() *v1.Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.node.DeepCopy()
}

func (f *nodePatchServer) writes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.written)
}

// TestIngressAdvert follows a node's advertisement of its ingress proxy
// through an agent's run: it is written once the proxy serves, only when
// the server's Node differs, withdrawn when the proxy stops or the agent
// does, and a stale one is removed from a node that runs no proxy.
func TestIngressAdvert(t *testing.T) {
	advertised := map[string]string{ingressclass.ProxyAnnotation: ingressclass.ProxyServing}
	tests := []struct {
		name string
		// annotations of the Node as registration found it.
		annotations map[string]string
		// before runs before the advertiser's loop starts, as withIngress
		// runs before it in the agent; during, with the loop running.
		before, during func(t *testing.T, ad *ingressAdvert, f *nodePatchServer)
		// wantRunning is what has been written while the agent runs (in
		// order, waited for); wantStopped after it stopped.
		wantRunning, wantStopped []string
	}{{
		name: "no ingress proxy, nothing advertised: nothing written",
	}, {
		name:        "no ingress proxy (--disable ingress), advertised by an earlier run: removed",
		annotations: advertised,
		wantRunning: []string{"-"}, wantStopped: []string{"-"},
	}, {
		name:        "ports taken: removed",
		annotations: advertised,
		before:      func(_ *testing.T, ad *ingressAdvert, _ *nodePatchServer) { ad.set(proxyOff) },
		wantRunning: []string{"-"}, wantStopped: []string{"-"},
	}, {
		name:   "serving once configured, withdrawn as the agent stops",
		before: func(_ *testing.T, ad *ingressAdvert, _ *nodePatchServer) { ad.set(proxyStarting) },
		during: func(t *testing.T, ad *ingressAdvert, f *nodePatchServer) {
			if got := f.writes(); len(got) != 0 {
				t.Errorf("written while the proxy was starting: %v", got)
			}
			ad.set(proxyServing)
		},
		wantRunning: []string{"serving"}, wantStopped: []string{"serving", "-"},
	}, {
		name:        "restarted after a crash: keeps the advertisement it had",
		annotations: advertised,
		before: func(_ *testing.T, ad *ingressAdvert, _ *nodePatchServer) {
			ad.set(proxyStarting)
			ad.set(proxyServing)
		},
		wantStopped: []string{"-"},
	}, {
		name:   "the proxy stops: withdrawn, and for good",
		before: func(_ *testing.T, ad *ingressAdvert, _ *nodePatchServer) { ad.set(proxyServing) },
		during: func(t *testing.T, ad *ingressAdvert, f *nodePatchServer) {
			waitFor(t, 10*time.Second, "the advertisement", func() (bool, error) { return len(f.writes()) == 1, nil })
			ad.set(proxyOff)
			ad.set(proxyServing)
		},
		wantRunning: []string{"serving", "-"}, wantStopped: []string{"serving", "-"},
	}, {
		name:   "the Node re-created without it: written again",
		before: func(_ *testing.T, ad *ingressAdvert, _ *nodePatchServer) { ad.set(proxyServing) },
		during: func(t *testing.T, ad *ingressAdvert, f *nodePatchServer) {
			waitFor(t, 10*time.Second, "the advertisement", func() (bool, error) { return len(f.writes()) == 1, nil })
			f.mu.Lock()
			f.node.Annotations = nil
			f.mu.Unlock()
			ad.observe(f.stored()) // the nodes mirror's event
		},
		wantRunning: []string{"serving", "serving"}, wantStopped: []string{"serving", "serving", "-"},
	}, {
		name: "the server unreachable: retried",
		before: func(_ *testing.T, ad *ingressAdvert, f *nodePatchServer) {
			f.down = true
			ad.set(proxyServing)
		},
		during: func(t *testing.T, ad *ingressAdvert, f *nodePatchServer) {
			f.mu.Lock()
			f.down = false
			f.mu.Unlock()
		},
		wantRunning: []string{"serving"}, wantStopped: []string{"serving", "-"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &nodePatchServer{node: &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Annotations: maps.Clone(tc.annotations)}}}
			ad := newIngressAdvert(f, "n1", slog.New(slog.DiscardHandler))
			ad.retryBase = 10 * time.Millisecond
			if tc.before != nil {
				tc.before(t, ad, f)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() { ad.run(ctx, f.stored()); close(done) }()
			if tc.during != nil {
				tc.during(t, ad, f)
			}
			waitFor(t, 10*time.Second, fmt.Sprintf("writes %v", tc.wantRunning), func() (bool, error) {
				return slices.Equal(f.writes(), tc.wantRunning), nil
			})
			cancel()
			<-done
			if got := f.writes(); !slices.Equal(got, tc.wantStopped) {
				t.Errorf("written %v, want %v", got, tc.wantStopped)
			}
			if ingressclass.NodeServes(f.stored()) {
				t.Errorf("a stopped agent's node still advertises its ingress proxy")
			}
		})
	}
}
