package registry

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// tableResource builds the whole table (so its own checks run) and returns
// the entry served at gv with that plural name.
func tableResource(t *testing.T, gv schema.GroupVersion, name string) *Resource {
	t.Helper()
	tbl, err := NewTable()
	if err != nil {
		t.Fatalf("NewTable: %v", err)
	}
	r := tbl.Lookup(gv, name)
	if r == nil {
		t.Fatalf("%s %s not in the table", gv, name)
	}
	return r
}

// entryCase describes what `kubectl api-resources` and `kubectl get` show
// of one entry.
type entryCase struct {
	gv           schema.GroupVersion
	name, kind   string
	namespaced   bool
	shortNames   []string
	subresources []string
	columns      []string
}

func checkEntries(t *testing.T, tests []entryCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tableResource(t, tt.gv, tt.name)
			if r.Kind != tt.kind || r.Namespaced != tt.namespaced || r.SingularName != strings.ToLower(tt.kind) {
				t.Errorf("kind %q namespaced %v singular %q", r.Kind, r.Namespaced, r.SingularName)
			}
			if !slices.Equal(r.ShortNames, tt.shortNames) || !slices.Equal(r.Subresources, tt.subresources) {
				t.Errorf("short names %v subresources %v", r.ShortNames, r.Subresources)
			}
			var cols []string
			for _, c := range r.Columns {
				cols = append(cols, c.Name)
				if c.Description == "" {
					t.Errorf("column %q has no description", c.Name)
				}
			}
			if !slices.Equal(cols, tt.columns) {
				t.Errorf("columns %q, want %q", cols, tt.columns)
			}
			// Every printer gives one cell per column, even for an empty
			// object.
			if cells := r.Row(r.New()); len(cells) != len(r.Columns) {
				t.Errorf("empty object: %d cells for %d columns", len(cells), len(r.Columns))
			}
		})
	}
}

func TestNetworkingEntries(t *testing.T) {
	gv := networkingv1.SchemeGroupVersion
	checkEntries(t, []entryCase{
		{gv, "ingresses", "Ingress", true, []string{"ing"}, []string{"status"}, []string{"Name", "Class", "Hosts", "Address", "Ports", "Age"}},
		{gv, "ingressclasses", "IngressClass", false, nil, nil, []string{"Name", "Controller", "Parameters", "Age"}},
		{gv, "networkpolicies", "NetworkPolicy", true, []string{"netpol"}, nil, []string{"Name", "Pod-Selector", "Age"}},
	})
}

func pathType(p networkingv1.PathType) *networkingv1.PathType { return &p }

func validIngress() *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: networkingv1.IngressSpec{
			IngressClassName: ptr.To("traefik"),
			Rules: []networkingv1.IngressRule{{
				Host: "example.com",
				IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{{
						Path:     "/",
						PathType: pathType(networkingv1.PathTypePrefix),
						Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
							Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80},
						}},
					}},
				}},
			}},
		},
	}
}

func TestValidateIngress(t *testing.T) {
	r := tableResource(t, networkingv1.SchemeGroupVersion, "ingresses")
	path0 := "spec.rules[0].http.paths[0]"
	tests := []struct {
		name   string
		mutate func(*networkingv1.Ingress)
		want   []string
	}{
		{"valid", func(*networkingv1.Ingress) {}, nil},
		{"default backend only", func(ing *networkingv1.Ingress) {
			ing.Spec.DefaultBackend = ing.Spec.Rules[0].HTTP.Paths[0].Backend.DeepCopy()
			ing.Spec.Rules = nil
		}, nil},
		{"no rules nor default backend", func(ing *networkingv1.Ingress) { ing.Spec.Rules = nil }, []string{"spec: FieldValueInvalid"}},
		{"pathType required", func(ing *networkingv1.Ingress) { ing.Spec.Rules[0].HTTP.Paths[0].PathType = nil },
			[]string{path0 + ".pathType: FieldValueRequired"}},
		{"unknown pathType", func(ing *networkingv1.Ingress) {
			ing.Spec.Rules[0].HTTP.Paths[0].PathType = pathType("Regex")
		}, []string{path0 + ".pathType: FieldValueNotSupported"}},
		{"prefix path must be absolute", func(ing *networkingv1.Ingress) { ing.Spec.Rules[0].HTTP.Paths[0].Path = "api" },
			[]string{path0 + ".path: FieldValueInvalid"}},
		{"exact path with //", func(ing *networkingv1.Ingress) {
			ing.Spec.Rules[0].HTTP.Paths[0].PathType = pathType(networkingv1.PathTypeExact)
			ing.Spec.Rules[0].HTTP.Paths[0].Path = "/a//b"
		}, []string{path0 + ".path: FieldValueInvalid"}},
		{"implementation specific empty path", func(ing *networkingv1.Ingress) {
			ing.Spec.Rules[0].HTTP.Paths[0].PathType = pathType(networkingv1.PathTypeImplementationSpecific)
			ing.Spec.Rules[0].HTTP.Paths[0].Path = ""
		}, nil},
		{"no paths", func(ing *networkingv1.Ingress) { ing.Spec.Rules[0].HTTP.Paths = nil },
			[]string{"spec.rules[0].http.paths: FieldValueRequired"}},
		{"service name required", func(ing *networkingv1.Ingress) { ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name = "" },
			[]string{path0 + ".backend.service.name: FieldValueRequired"}},
		{"service name is a DNS-1035 label", func(ing *networkingv1.Ingress) {
			ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name = "1web"
		}, []string{path0 + ".backend.service.name: FieldValueInvalid"}},
		{"port by name", func(ing *networkingv1.Ingress) {
			ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port = networkingv1.ServiceBackendPort{Name: "http"}
		}, nil},
		{"port name and number", func(ing *networkingv1.Ingress) {
			ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Name = "http"
		}, []string{path0 + ".backend: FieldValueInvalid"}},
		{"port missing", func(ing *networkingv1.Ingress) {
			ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port = networkingv1.ServiceBackendPort{}
		}, []string{path0 + ".backend: FieldValueRequired"}},
		{"port out of range", func(ing *networkingv1.Ingress) {
			ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port.Number = 70000
		}, []string{path0 + ".backend.service.port.number: FieldValueInvalid"}},
		{"no backend", func(ing *networkingv1.Ingress) {
			ing.Spec.Rules[0].HTTP.Paths[0].Backend = networkingv1.IngressBackend{}
		}, []string{path0 + ".backend: FieldValueInvalid"}},
		{"resource and service backend", func(ing *networkingv1.Ingress) {
			ing.Spec.Rules[0].HTTP.Paths[0].Backend.Resource = &corev1.TypedLocalObjectReference{Kind: "Bucket", Name: "b"}
		}, []string{path0 + ".backend: FieldValueInvalid"}},
		{"resource backend", func(ing *networkingv1.Ingress) {
			ing.Spec.Rules[0].HTTP.Paths[0].Backend = networkingv1.IngressBackend{
				Resource: &corev1.TypedLocalObjectReference{APIGroup: ptr.To("example.com"), Kind: "Bucket", Name: "b"}}
		}, nil},
		{"host is an IP", func(ing *networkingv1.Ingress) { ing.Spec.Rules[0].Host = "10.0.0.1" },
			[]string{"spec.rules[0].host: FieldValueInvalid"}},
		{"wildcard host", func(ing *networkingv1.Ingress) { ing.Spec.Rules[0].Host = "*.example.com" }, nil},
		{"bad wildcard host", func(ing *networkingv1.Ingress) { ing.Spec.Rules[0].Host = "a.*.example.com" },
			[]string{"spec.rules[0].host: FieldValueInvalid"}},
		{"bad class name", func(ing *networkingv1.Ingress) { ing.Spec.IngressClassName = ptr.To("Not_Valid") },
			[]string{"spec.ingressClassName: FieldValueInvalid"}},
		{"tls", func(ing *networkingv1.Ingress) {
			ing.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"example.com", "bad_host"}, SecretName: "tls"}}
		}, []string{"spec.tls[0].hosts[1]: FieldValueInvalid"}},
		{"status hostname is an IP", func(ing *networkingv1.Ingress) {
			ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "198.18.0.1"}, {Hostname: "198.18.0.2"}}
		}, []string{"status.loadBalancer.ingress[1].hostname: FieldValueInvalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ing := validIngress()
			tt.mutate(ing)
			checkErrors(t, r.Validate(ing), tt.want...)
		})
	}
}

func TestIngressStrategies(t *testing.T) {
	r := tableResource(t, networkingv1.SchemeGroupVersion, "ingresses")
	ing := validIngress()
	ing.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "198.18.0.1"}}
	r.PrepareForCreate(ing)
	if ing.Generation != 1 || len(ing.Status.LoadBalancer.Ingress) != 0 {
		t.Fatalf("create: generation %d status %v", ing.Generation, ing.Status)
	}

	old := ing.DeepCopy()
	old.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{IP: "198.18.0.1"}}
	upd := old.DeepCopy()
	upd.Status = networkingv1.IngressStatus{}
	upd.Labels = map[string]string{"a": "b"}
	r.PrepareForUpdate(upd, old)
	if upd.Generation != 1 || len(upd.Status.LoadBalancer.Ingress) != 1 {
		t.Errorf("metadata update: generation %d status %v", upd.Generation, upd.Status)
	}
	upd.Spec.IngressClassName = ptr.To("nginx")
	r.PrepareForUpdate(upd, old)
	if upd.Generation != 2 {
		t.Errorf("spec update: generation %d, want 2", upd.Generation)
	}

	st := old.DeepCopy()
	st.Spec.IngressClassName = ptr.To("other")
	st.Status.LoadBalancer.Ingress = []networkingv1.IngressLoadBalancerIngress{{Hostname: "lb.example.com"}}
	r.PrepareForStatusUpdate(st, old)
	if *st.Spec.IngressClassName != "traefik" || st.Status.LoadBalancer.Ingress[0].Hostname != "lb.example.com" {
		t.Errorf("status update: spec %v status %v", st.Spec.IngressClassName, st.Status)
	}
}

func TestIngressRow(t *testing.T) {
	r := tableResource(t, networkingv1.SchemeGroupVersion, "ingresses")
	created := metav1.NewTime(time.Now().Add(-5 * time.Hour))
	rule := func(host string) networkingv1.IngressRule { return networkingv1.IngressRule{Host: host} }
	tests := []struct {
		name string
		ing  *networkingv1.Ingress
		want string
	}{
		{"defaults", &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "a", CreationTimestamp: created}},
			"[a <none> *  80 5h]"},
		{"hosts, tls and address", &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Name: "b", CreationTimestamp: created},
			Spec: networkingv1.IngressSpec{
				IngressClassName: ptr.To("traefik"),
				Rules:            []networkingv1.IngressRule{rule("a.com"), rule(""), rule("b.com")},
				TLS:              []networkingv1.IngressTLS{{Hosts: []string{"a.com"}}},
			},
			Status: networkingv1.IngressStatus{LoadBalancer: networkingv1.IngressLoadBalancerStatus{
				Ingress: []networkingv1.IngressLoadBalancerIngress{{IP: "198.18.0.2"}, {IP: "198.18.0.1"}},
			}},
		}, "[b traefik a.com,b.com 198.18.0.1,19... 80, 443 5h]"},
		{"many hosts", &networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Name: "c", CreationTimestamp: created},
			Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{
				rule("a.com"), rule("b.com"), rule("c.com"), rule("d.com"), rule("e.com")}},
			Status: networkingv1.IngressStatus{LoadBalancer: networkingv1.IngressLoadBalancerStatus{
				Ingress: []networkingv1.IngressLoadBalancerIngress{{Hostname: "lb.local"}},
			}},
		}, "[c <none> a.com,b.com,c.com + 2 more... lb.local 80 5h]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sprint(r.Row(tt.ing)); got != tt.want {
				t.Errorf("row %s, want %s", got, tt.want)
			}
		})
	}
}

func TestIngressClass(t *testing.T) {
	r := tableResource(t, networkingv1.SchemeGroupVersion, "ingressclasses")
	valid := func() *networkingv1.IngressClass {
		return &networkingv1.IngressClass{
			ObjectMeta: metav1.ObjectMeta{Name: "traefik"},
			Spec: networkingv1.IngressClassSpec{
				Controller: "traefik.io/ingress-controller",
				Parameters: &networkingv1.IngressClassParametersReference{
					APIGroup: ptr.To("k8s.example.com"), Kind: "IngressParameters", Name: "p"},
			},
		}
	}
	ic := valid()
	r.Default(ic)
	if ic.Spec.Parameters.Scope == nil || *ic.Spec.Parameters.Scope != networkingv1.IngressClassParametersReferenceScopeCluster {
		t.Fatalf("scope not defaulted to Cluster: %v", ic.Spec.Parameters.Scope)
	}
	if got, want := sprint(r.Row(ic)), "[traefik traefik.io/ingress-controller IngressParameters.k8s.example.com/p <unknown>]"; got != want {
		t.Errorf("row %s, want %s", got, want)
	}

	tests := []struct {
		name   string
		mutate func(*networkingv1.IngressClass)
		want   []string
	}{
		{"valid", func(*networkingv1.IngressClass) {}, nil},
		{"controller not domain-prefixed", func(ic *networkingv1.IngressClass) { ic.Spec.Controller = "traefik" },
			[]string{"spec.controller: FieldValueInvalid"}},
		{"controller too long", func(ic *networkingv1.IngressClass) {
			ic.Spec.Controller = "example.com/" + strings.Repeat("a", 250)
		}, []string{"spec.controller: FieldValueTooLong"}},
		{"namespace scope needs namespace", func(ic *networkingv1.IngressClass) {
			ic.Spec.Parameters.Scope = ptr.To(networkingv1.IngressClassParametersReferenceScopeNamespace)
		}, []string{"spec.parameters.namespace: FieldValueRequired"}},
		{"cluster scope forbids namespace", func(ic *networkingv1.IngressClass) { ic.Spec.Parameters.Namespace = ptr.To("default") },
			[]string{"spec.parameters.namespace: FieldValueForbidden"}},
		{"parameters kind and name", func(ic *networkingv1.IngressClass) {
			ic.Spec.Parameters.Kind = ""
			ic.Spec.Parameters.Name = "a/b"
		}, []string{"spec.parameters.kind: FieldValueRequired", "spec.parameters.name: FieldValueInvalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ic := valid()
			r.Default(ic)
			tt.mutate(ic)
			checkErrors(t, r.Validate(ic), tt.want...)
		})
	}

	old := valid()
	upd := valid()
	upd.Spec.Controller = "example.com/other"
	checkErrors(t, r.ValidateUpdate(upd, old), "spec.controller: FieldValueInvalid")
}

func TestNetworkPolicyDefaults(t *testing.T) {
	r := tableResource(t, networkingv1.SchemeGroupVersion, "networkpolicies")
	port := intstr.FromInt32(80)
	tests := []struct {
		name      string
		spec      networkingv1.NetworkPolicySpec
		wantTypes []networkingv1.PolicyType
	}{
		{"ingress only", networkingv1.NetworkPolicySpec{}, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}},
		{"with egress rules", networkingv1.NetworkPolicySpec{
			Egress: []networkingv1.NetworkPolicyEgressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &port}}}},
		}, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}},
		{"explicit types kept", networkingv1.NetworkPolicySpec{
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{Ports: []networkingv1.NetworkPolicyPort{{Port: &port}}}},
		}, []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			np := &networkingv1.NetworkPolicy{Spec: tt.spec}
			r.Default(np)
			if !slices.Equal(np.Spec.PolicyTypes, tt.wantTypes) {
				t.Errorf("policyTypes %v, want %v", np.Spec.PolicyTypes, tt.wantTypes)
			}
			for _, rule := range np.Spec.Ingress {
				for _, p := range rule.Ports {
					if p.Protocol == nil || *p.Protocol != corev1.ProtocolTCP {
						t.Errorf("ingress port protocol %v, want TCP", p.Protocol)
					}
				}
			}
			for _, rule := range np.Spec.Egress {
				for _, p := range rule.Ports {
					if p.Protocol == nil || *p.Protocol != corev1.ProtocolTCP {
						t.Errorf("egress port protocol %v, want TCP", p.Protocol)
					}
				}
			}
		})
	}
}

func TestValidateNetworkPolicy(t *testing.T) {
	r := tableResource(t, networkingv1.SchemeGroupVersion, "networkpolicies")
	port := func(v intstr.IntOrString) *intstr.IntOrString { return &v }
	valid := func() *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: "np", Namespace: "default"},
			Spec: networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					Ports: []networkingv1.NetworkPolicyPort{{Port: port(intstr.FromInt32(80)), EndPort: ptr.To[int32](90)}},
					From: []networkingv1.NetworkPolicyPeer{
						{PodSelector: &metav1.LabelSelector{}, NamespaceSelector: &metav1.LabelSelector{}},
						{IPBlock: &networkingv1.IPBlock{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}}},
					},
				}},
				Egress: []networkingv1.NetworkPolicyEgressRule{{
					Ports: []networkingv1.NetworkPolicyPort{{Port: port(intstr.FromString("dns"))}},
				}},
			},
		}
	}
	in := "spec.ingress[0]"
	tests := []struct {
		name   string
		mutate func(*networkingv1.NetworkPolicy)
		want   []string
	}{
		{"valid", func(*networkingv1.NetworkPolicy) {}, nil},
		{"bad pod selector", func(np *networkingv1.NetworkPolicy) {
			np.Spec.PodSelector.MatchLabels = map[string]string{"a b": "c"}
		}, []string{"spec.podSelector.matchLabels: FieldValueInvalid"}},
		{"bad protocol", func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress[0].Ports[0].Protocol = ptr.To(corev1.Protocol("ICMP"))
		}, []string{in + ".ports[0].protocol: FieldValueNotSupported"}},
		{"endPort below port", func(np *networkingv1.NetworkPolicy) { np.Spec.Ingress[0].Ports[0].EndPort = ptr.To[int32](70) },
			[]string{in + ".ports[0].endPort: FieldValueInvalid"}},
		{"endPort with named port", func(np *networkingv1.NetworkPolicy) {
			np.Spec.Egress[0].Ports[0].EndPort = ptr.To[int32](70)
		}, []string{"spec.egress[0].ports[0].endPort: FieldValueForbidden"}},
		{"endPort without port", func(np *networkingv1.NetworkPolicy) { np.Spec.Ingress[0].Ports[0].Port = nil },
			[]string{in + ".ports[0].port: FieldValueRequired"}},
		{"port out of range", func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress[0].Ports[0] = networkingv1.NetworkPolicyPort{Port: port(intstr.FromInt32(0))}
		}, []string{in + ".ports[0].port: FieldValueInvalid"}},
		{"empty peer", func(np *networkingv1.NetworkPolicy) { np.Spec.Ingress[0].From[0] = networkingv1.NetworkPolicyPeer{} },
			[]string{in + ".from[0]: FieldValueRequired"}},
		{"ipBlock with selector", func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress[0].From[1].PodSelector = &metav1.LabelSelector{}
		}, []string{in + ".from[1]: FieldValueForbidden"}},
		{"bad cidr", func(np *networkingv1.NetworkPolicy) { np.Spec.Ingress[0].From[1].IPBlock.CIDR = "10.0.0.0" },
			[]string{in + ".from[1].ipBlock.cidr: FieldValueInvalid"}},
		{"except outside cidr", func(np *networkingv1.NetworkPolicy) {
			np.Spec.Ingress[0].From[1].IPBlock.Except = []string{"192.168.0.0/16", "10.0.0.0/8"}
		}, []string{in + ".from[1].ipBlock.except[0]: FieldValueInvalid", in + ".from[1].ipBlock.except[1]: FieldValueInvalid"}},
		{"bad policy type", func(np *networkingv1.NetworkPolicy) {
			np.Spec.PolicyTypes = []networkingv1.PolicyType{"Sideways"}
		}, []string{"spec.policyTypes[0]: FieldValueNotSupported"}},
		{"too many policy types", func(np *networkingv1.NetworkPolicy) {
			np.Spec.PolicyTypes = []networkingv1.PolicyType{"Ingress", "Egress", "Ingress"}
		}, []string{"spec.policyTypes: FieldValueInvalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			np := valid()
			tt.mutate(np)
			checkErrors(t, r.Validate(np), tt.want...)
		})
	}

	np := valid()
	np.CreationTimestamp = metav1.NewTime(time.Now().Add(-3 * time.Minute))
	for _, c := range []struct {
		obj  runtime.Object
		want string
	}{
		{np, "[np app=web 3m]"},
		{&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "all"}}, "[all <none> <unknown>]"},
	} {
		if got := sprint(r.Row(c.obj)); got != c.want {
			t.Errorf("row %s, want %s", got, c.want)
		}
	}
}
