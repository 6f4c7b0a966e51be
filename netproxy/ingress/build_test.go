package ingress

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// service makes a Service with one TCP port per name=port pair, and its
// EndpointSlice with the given ready IPs (target port = port+8000).
func service(ns, name string, ips []string, ports ...string) (*v1.Service, *discoveryv1.EndpointSlice) {
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name + "-abc", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for _, p := range ports {
		pn, num, _ := strings.Cut(p, "=")
		var n int32
		fmt.Sscan(num, &n)
		target := n + 8000
		svc.Spec.Ports = append(svc.Spec.Ports, v1.ServicePort{Name: pn, Port: n, Protocol: v1.ProtocolTCP})
		slice.Ports = append(slice.Ports, discoveryv1.EndpointPort{Name: &pn, Port: &target})
	}
	for _, ip := range ips {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}})
	}
	return svc, slice
}

func pathType(t networkingv1.PathType) *networkingv1.PathType { return &t }

// path is one Ingress path to service svc, port 80.
func path(p string, t networkingv1.PathType, svc string) networkingv1.HTTPIngressPath {
	return networkingv1.HTTPIngressPath{Path: p, PathType: pathType(t), Backend: networkingv1.IngressBackend{
		Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}}}
}

func rule(host string, paths ...networkingv1.HTTPIngressPath) networkingv1.IngressRule {
	return networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: paths}}}
}

func ingress(name string, age time.Duration, rules ...networkingv1.IngressRule) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: name, CreationTimestamp: metav1.NewTime(epoch.Add(age))},
		Spec:       networkingv1.IngressSpec{Rules: rules},
	}
}

// objects has one Service per name in svcs, each with one endpoint
// 10.42.0.N (N its position+1) and port http=80.
func objects(svcs []string, ings ...*networkingv1.Ingress) Objects {
	objs := Objects{Ingresses: ings}
	for i, name := range svcs {
		svc, slice := service("web", name, []string{fmt.Sprintf("10.42.0.%d", i+1)}, "http=80")
		objs.Services = append(objs.Services, svc)
		objs.EndpointSlices = append(objs.EndpointSlices, slice)
	}
	return objs
}

// routed names the Service a request reaches ("" for none).
func routed(cfg *Config, host, p string) string {
	b := cfg.Table.Match(host, p)
	if b == nil {
		return ""
	}
	svc, _, _ := strings.Cut(strings.TrimPrefix(b.Name, "web/"), ":")
	return svc
}

func TestMatch(t *testing.T) {
	pfx, exact, impl := networkingv1.PathTypePrefix, networkingv1.PathTypeExact, networkingv1.PathTypeImplementationSpecific
	svcs := []string{"root", "foo", "foobar", "exact", "deep", "wild", "any", "older", "newer", "def", "impl"}
	main := ingress("main", 0,
		rule("foo.com",
			path("/", pfx, "root"),
			path("/foo", pfx, "foo"),
			path("/foo/bar/", pfx, "deep"),
			path("/foo", exact, "exact"),
			path("/foobar", pfx, "foobar"),
			path("/impl", impl, "impl"),
		),
		rule("*.foo.com", path("/", pfx, "wild")),
		rule("only-api.com", path("/api", pfx, "foo")),
		rule("", path("/any", pfx, "any")),
	)
	main.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "def", Port: networkingv1.ServiceBackendPort{Name: "http"}}}
	// Same host and path in two Ingresses: the older one wins, in
	// whichever order they come.
	newer := ingress("a-newer", time.Hour, rule("tie.com", path("/", pfx, "newer")))
	older := ingress("z-older", time.Minute, rule("tie.com", path("/", pfx, "older")))
	cfg := Build(objects(svcs, newer, main, older))

	for _, tc := range []struct{ host, path, want string }{
		{"foo.com", "/", "root"},
		{"foo.com", "/other", "root"},
		{"foo.com", "/foo", "exact"},      // Exact before Prefix at equal length
		{"foo.com", "/foo/", "foo"},       // Exact "/foo" does not match "/foo/"
		{"foo.com", "/foo/baz", "foo"},    // element-wise prefix
		{"foo.com", "/foobar", "foobar"},  // not "/foo": elements differ
		{"foo.com", "/foobarx", "root"},   // "/foobar" is no element prefix of "/foobarx"
		{"foo.com", "/foo/bar", "deep"},   // trailing slash of the rule ignored
		{"foo.com", "/foo/bar/x", "deep"}, // longest prefix
		{"foo.com", "/foo/barx", "foo"},
		{"foo.com", "/impl/x", "impl"}, // ImplementationSpecific is Prefix
		{"FOO.com:8080", "/foo/x", "foo"},
		{"foo.com.", "/foo/x", "foo"},
		{"a.foo.com", "/foo", "wild"}, // the wildcard host covers one label
		{"a.b.foo.com", "/", "def"},   // not two
		{"only-api.com", "/api/v1", "foo"},
		{"only-api.com", "/any/x", "any"}, // a host's miss falls through to rules without a host
		{"only-api.com", "/else", "def"},  // and then to the default backend
		{"unknown.org", "/any", "any"},
		{"unknown.org", "/", "def"},
		{"tie.com", "/", "older"},
		{"[::1]:80", "/any", "any"},
	} {
		if got := routed(cfg, tc.host, tc.path); got != tc.want {
			t.Errorf("%s%s went to %q, want %q", tc.host, tc.path, got, tc.want)
		}
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings: %v", cfg.Warnings)
	}
}

func TestNoDefaultBackend(t *testing.T) {
	cfg := Build(objects([]string{"a"}, ingress("i", 0, rule("a.com", path("/x", networkingv1.PathTypePrefix, "a")))))
	for _, tc := range []struct{ host, path string }{{"a.com", "/"}, {"b.com", "/x"}, {"", "/x"}} {
		if b := cfg.Table.Match(tc.host, tc.path); b != nil {
			t.Errorf("%s%s matched %s, want no match (404)", tc.host, tc.path, b.Name)
		}
	}
}

// TestServedIngresses: the class rule itself is ingressclass's (tested
// there); Build serves what it selects, oldest first.
func TestServedIngresses(t *testing.T) {
	orch, nginx := "orch", "nginx"
	mine := ingress("mine", time.Hour, rule("a.com", path("/", networkingv1.PathTypePrefix, "a")))
	mine.Spec.IngressClassName = &orch
	theirs := ingress("theirs", 0, rule("a.com", path("/", networkingv1.PathTypePrefix, "a")))
	theirs.Spec.IngressClassName = &nginx
	classless := ingress("classless", 0, rule("b.com", path("/", networkingv1.PathTypePrefix, "a")))
	objs := objects([]string{"a"}, mine, theirs, classless)
	objs.IngressClasses = []*networkingv1.IngressClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "orch"}, Spec: networkingv1.IngressClassSpec{Controller: ControllerName}},
		{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}},
	}
	cfg := Build(objs)
	want := []types.NamespacedName{{Namespace: "web", Name: "classless"}, {Namespace: "web", Name: "mine"}}
	if !slices.Equal(cfg.Served, want) {
		t.Errorf("served %v, want %v", cfg.Served, want)
	}
	if routed(cfg, "a.com", "/") != "a" {
		t.Errorf("a.com not routed by the served Ingress")
	}
}

func TestBackends(t *testing.T) {
	notReady := false
	svc, slice := service("web", "multi", []string{"10.42.0.1", "10.42.1.1"}, "http=80", "admin=9000")
	slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.42.2.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &notReady}})
	// A second slice of the same Service, and one repeating an endpoint.
	_, slice2 := service("web", "multi", []string{"10.42.3.1", "10.42.0.1"}, "http=80")
	slice2.Name = "multi-def"
	// Another namespace's slice of a Service with the same name.
	_, foreign := service("other", "multi", []string{"10.42.9.9"}, "http=80")
	udp, udpSlice := service("web", "udp", []string{"10.42.4.1"}, "dns=53")
	udp.Spec.Ports[0].Protocol = v1.ProtocolUDP
	objs := Objects{
		Services:       []*v1.Service{svc, udp},
		EndpointSlices: []*discoveryv1.EndpointSlice{slice, slice2, foreign, udpSlice},
	}
	be := func(svc string, port networkingv1.ServiceBackendPort) networkingv1.IngressBackend {
		return networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: port}}
	}
	apiGroup := "example.com"
	for _, tc := range []struct {
		name    string
		backend networkingv1.IngressBackend
		want    []string
		problem string
	}{
		{"port number", be("multi", networkingv1.ServiceBackendPort{Number: 80}), []string{"10.42.0.1:8080", "10.42.1.1:8080", "10.42.3.1:8080"}, ""},
		{"port name", be("multi", networkingv1.ServiceBackendPort{Name: "admin"}), []string{"10.42.0.1:17000", "10.42.1.1:17000"}, ""},
		{"no such port", be("multi", networkingv1.ServiceBackendPort{Number: 81}), nil, "service web/multi has no TCP port 81"},
		{"no such service", be("gone", networkingv1.ServiceBackendPort{Number: 80}), nil, "service web/gone not found"},
		{"UDP port", be("udp", networkingv1.ServiceBackendPort{Number: 53}), nil, "service web/udp has no TCP port 53"},
		{"resource", networkingv1.IngressBackend{Resource: &v1.TypedLocalObjectReference{APIGroup: &apiGroup, Kind: "Bucket", Name: "b"}}, nil, "only Service backends are supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ing := ingress("i", 0)
			ing.Spec.DefaultBackend = &tc.backend
			o := objs
			o.Ingresses = []*networkingv1.Ingress{ing}
			cfg := Build(o)
			b := cfg.Table.Match("x", "/")
			if !slices.Equal(b.Endpoints, tc.want) || b.Problem != tc.problem {
				t.Errorf("backend %s: endpoints %v problem %q, want %v %q", b.Name, b.Endpoints, b.Problem, tc.want, tc.problem)
			}
			warned := len(cfg.Warnings) == 1 && strings.HasSuffix(cfg.Warnings[0].Err.Error(), ": "+tc.problem)
			if tc.problem == "" && len(cfg.Warnings) != 0 || tc.problem != "" && !warned {
				t.Errorf("warnings %v, want one about %q", cfg.Warnings, tc.problem)
			}
		})
	}
}

func TestRoundRobin(t *testing.T) {
	b := &Backend{Endpoints: []string{"a", "b", "c"}}
	var firsts []string
	for range 6 {
		order := b.pick()
		if len(order) != 3 {
			t.Fatalf("pick gave %v, want all three endpoints", order)
		}
		firsts = append(firsts, order[0])
	}
	if want := []string{"a", "b", "c", "a", "b", "c"}; !slices.Equal(firsts, want) {
		t.Errorf("first choices %v, want %v", firsts, want)
	}
}

func TestCertificates(t *testing.T) {
	pemA, keyA := testCert(t, "a.com")
	pemW, keyW := testCert(t, "*.w.com")
	secret := func(name string, crt, key []byte) *v1.Secret {
		return &v1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: name}, Type: v1.SecretTypeTLS,
			Data: map[string][]byte{v1.TLSCertKey: crt, v1.TLSPrivateKeyKey: key}}
	}
	ing := ingress("i", 0, rule("a.com", path("/", networkingv1.PathTypePrefix, "a")), rule("b.w.com"))
	ing.Spec.TLS = []networkingv1.IngressTLS{
		{Hosts: []string{"A.com"}, SecretName: "a"},
		{Hosts: []string{"*.w.com"}, SecretName: "w"},
		{Hosts: []string{"missing.com"}, SecretName: "missing"},
		{Hosts: []string{"bad.com"}, SecretName: "bad"},
	}
	// A newer Ingress cannot take a.com's certificate; its spec.tls
	// without hosts covers its own rules' hosts.
	newer := ingress("newer", time.Hour, rule("a.com"), rule("c.com"))
	newer.Spec.TLS = []networkingv1.IngressTLS{{SecretName: "w"}}
	objs := objects([]string{"a"}, ing, newer)
	objs.Secrets = []*v1.Secret{secret("a", pemA, keyA), secret("w", pemW, keyW), secret("bad", []byte("junk"), keyA)}
	cfg := Build(objs)
	for _, tc := range []struct{ sni, wantCN string }{
		{"a.com", "a.com"},
		{"x.w.com", "*.w.com"},
		{"c.com", "*.w.com"},
		{"y.x.w.com", ""},
		{"w.com", ""},
		{"missing.com", ""},
		{"bad.com", ""},
		{"", ""},
	} {
		got := ""
		if c := cfg.Certificate(tc.sni); c != nil {
			got = c.Leaf.Subject.CommonName
		}
		if got != tc.wantCN {
			t.Errorf("SNI %q: certificate %q, want %q", tc.sni, got, tc.wantCN)
		}
	}
	var warned []string
	for _, w := range cfg.Warnings {
		if w.Ingress != (types.NamespacedName{Namespace: "web", Name: "i"}) {
			t.Errorf("warning for %v: %v", w.Ingress, w.Err)
		}
		warned = append(warned, w.Err.Error())
	}
	if len(warned) != 2 || !strings.Contains(warned[0], "web/missing not found") || !strings.Contains(warned[1], "web/bad") {
		t.Errorf("warnings %q, want the missing and the unparsable secret", warned)
	}
}

func TestRelativePathWarned(t *testing.T) {
	cfg := Build(objects([]string{"a"}, ingress("i", 0, rule("a.com", path("rel", networkingv1.PathTypePrefix, "a")))))
	if len(cfg.Warnings) != 1 || cfg.Table.Match("a.com", "/rel") != nil {
		t.Errorf("a relative path: warnings %v, want one and no route", cfg.Warnings)
	}
}
