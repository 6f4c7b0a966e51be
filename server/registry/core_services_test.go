package registry

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

func newTestService(typ corev1.ServiceType) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Type:     typ,
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Port: 80}},
		},
	}
	defaultService(svc)
	return svc
}

func TestServiceDefaults(t *testing.T) {
	r := coreResource(t, "services")
	svc := &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}, {Port: 53, Protocol: "UDP", TargetPort: intstr.FromString("dns")}}}}
	r.Default(svc)
	s := svc.Spec
	if s.Type != corev1.ServiceTypeClusterIP || s.SessionAffinity != corev1.ServiceAffinityNone ||
		s.Ports[0].Protocol != "TCP" || s.Ports[0].TargetPort != intstr.FromInt32(80) || s.Ports[1].TargetPort != intstr.FromString("dns") ||
		*s.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyCluster || s.ExternalTrafficPolicy != "" || s.ClusterIP != "" {
		t.Errorf("ClusterIP defaults: %+v", s)
	}

	np := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.43.0.10",
		SessionAffinity: corev1.ServiceAffinityClientIP}}
	r.Default(np)
	if np.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster || !*np.Spec.AllocateLoadBalancerNodePorts ||
		*np.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds != 10800 || len(np.Spec.ClusterIPs) != 1 || np.Spec.ClusterIPs[0] != "10.43.0.10" {
		t.Errorf("LoadBalancer defaults: %+v", np.Spec)
	}

	ext := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}}
	r.Default(ext)
	if ext.Spec.InternalTrafficPolicy != nil || ext.Spec.ExternalTrafficPolicy != "" {
		t.Errorf("ExternalName defaults: %+v", ext.Spec)
	}
}

func TestValidateService(t *testing.T) {
	r := coreResource(t, "services")
	cases := []struct {
		name   string
		typ    corev1.ServiceType
		mutate func(*corev1.Service)
		want   []string
	}{
		{name: "cluster IP to allocate", typ: corev1.ServiceTypeClusterIP, mutate: func(*corev1.Service) {}},
		{name: "cluster IP given", typ: corev1.ServiceTypeClusterIP, mutate: func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.43.0.10", []string{"10.43.0.10"}
		}},
		{name: "bad cluster IP", typ: corev1.ServiceTypeClusterIP, mutate: func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.43.0.300", []string{"10.43.0.300"}
		}, want: []string{"spec.clusterIPs[0]: FieldValueInvalid"}},
		{name: "headless without ports", typ: corev1.ServiceTypeClusterIP, mutate: func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.Ports = "None", []string{"None"}, nil
		}},
		{name: "headless node port", typ: corev1.ServiceTypeNodePort, mutate: func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "None", []string{"None"}
		}, want: []string{"spec.clusterIPs[0]: FieldValueInvalid"}},
		{name: "ports required", typ: corev1.ServiceTypeClusterIP, mutate: func(s *corev1.Service) { s.Spec.Ports = nil },
			want: []string{"spec.ports: FieldValueRequired"}},
		{name: "ports", typ: corev1.ServiceTypeNodePort, mutate: func(s *corev1.Service) {
			s.Spec.Ports = []corev1.ServicePort{
				{Name: "http", Port: 80, Protocol: "TCP", TargetPort: intstr.FromInt32(8080), NodePort: 30080},
				{Name: "http", Port: 80, Protocol: "TCP", TargetPort: intstr.FromString("web"), NodePort: 30080},
				{Port: 70000, Protocol: "ICMP", TargetPort: intstr.FromInt32(0)},
			}
		}, want: []string{
			"spec.ports[1].name: FieldValueDuplicate",
			"spec.ports[1]: FieldValueDuplicate",
			"spec.ports[1].nodePort: FieldValueDuplicate",
			"spec.ports[2].name: FieldValueRequired",
			"spec.ports[2].port: FieldValueInvalid",
			"spec.ports[2].protocol: FieldValueNotSupported",
			"spec.ports[2].targetPort: FieldValueInvalid",
		}},
		{name: "node port on ClusterIP", typ: corev1.ServiceTypeClusterIP, mutate: func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30080 },
			want: []string{"spec.ports[0].nodePort: FieldValueForbidden"}},
		{name: "type", typ: "Magic", mutate: func(*corev1.Service) {},
			want: []string{"spec.type: FieldValueNotSupported"}},
		{name: "external name", typ: corev1.ServiceTypeExternalName, mutate: func(s *corev1.Service) {
			s.Spec.ExternalName, s.Spec.Ports = "db.example.com.", nil
		}},
		{name: "external name invalid", typ: corev1.ServiceTypeExternalName, mutate: func(s *corev1.Service) {
			s.Spec.ExternalName = "not a name"
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.43.0.10", []string{"10.43.0.10"}
		}, want: []string{"spec.externalName: FieldValueInvalid", "spec.clusterIPs: FieldValueForbidden"}},
		{name: "external name missing", typ: corev1.ServiceTypeExternalName, mutate: func(*corev1.Service) {},
			want: []string{"spec.externalName: FieldValueRequired"}},
		{name: "session affinity", typ: corev1.ServiceTypeClusterIP, mutate: func(s *corev1.Service) {
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To(int32(90000))}}
		}, want: []string{"spec.sessionAffinityConfig.clientIP.timeoutSeconds: FieldValueInvalid"}},
		{name: "external IPs and traffic policy", typ: corev1.ServiceTypeClusterIP, mutate: func(s *corev1.Service) {
			s.Spec.ExternalIPs = []string{"198.18.0.10", "127.0.0.1", "nope"}
			s.Spec.ExternalTrafficPolicy = "Cluster"
		}, want: []string{"spec.externalIPs[1]: FieldValueInvalid", "spec.externalIPs[2]: FieldValueInvalid"}},
		{name: "traffic policy without external access", typ: corev1.ServiceTypeClusterIP, mutate: func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = "Local"
		}, want: []string{"spec.externalTrafficPolicy: FieldValueInvalid"}},
		{name: "selector", typ: corev1.ServiceTypeClusterIP, mutate: func(s *corev1.Service) { s.Spec.Selector["bad key!"] = "x" },
			want: []string{"spec.selector: FieldValueInvalid"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc := newTestService(tc.typ)
			tc.mutate(svc)
			checkErrors(t, r.Validate(svc), tc.want...)
		})
	}
	if errs := r.NameValidation("1web", false); len(errs) == 0 {
		t.Errorf("service names are DNS-1035 labels")
	}
}

func TestServiceUpdate(t *testing.T) {
	r := coreResource(t, "services")
	old := newTestService(corev1.ServiceTypeNodePort)
	old.Spec.ClusterIP, old.Spec.ClusterIPs = "10.43.0.10", []string{"10.43.0.10"}
	old.Spec.Ports[0].NodePort = 30080
	old.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.18.0.1"}}

	// A replace of the original manifest keeps what was allocated.
	replaced := newTestService(corev1.ServiceTypeNodePort)
	r.PrepareForUpdate(replaced, old)
	if replaced.Spec.ClusterIP != "10.43.0.10" || len(replaced.Spec.ClusterIPs) != 1 || replaced.Spec.Ports[0].NodePort != 30080 {
		t.Errorf("allocated values not kept: %+v", replaced.Spec)
	}
	checkErrors(t, r.ValidateUpdate(replaced, old))

	changed := old.DeepCopy()
	changed.Spec.ClusterIP, changed.Spec.ClusterIPs = "10.43.0.11", []string{"10.43.0.11"}
	r.PrepareForUpdate(changed, old)
	errs := r.ValidateUpdate(changed, old)
	checkErrors(t, errs, "spec.clusterIP: FieldValueInvalid", "spec.clusterIPs[0]: FieldValueInvalid")
	if len(errs) == 0 || errs[0].Detail != "field is immutable" {
		t.Errorf("detail = %v", errs)
	}

	// Back to ClusterIP: node ports and the traffic policy go.
	toClusterIP := old.DeepCopy()
	toClusterIP.Spec.Type = corev1.ServiceTypeClusterIP
	r.PrepareForUpdate(toClusterIP, old)
	if toClusterIP.Spec.Ports[0].NodePort != 0 || toClusterIP.Spec.ExternalTrafficPolicy != "" || len(toClusterIP.Status.LoadBalancer.Ingress) != 0 {
		t.Errorf("type change kept: %+v", toClusterIP.Spec)
	}
	checkErrors(t, r.Validate(toClusterIP))

	// To ExternalName: the cluster IP goes.
	toExt := old.DeepCopy()
	toExt.Spec.Type, toExt.Spec.ExternalName = corev1.ServiceTypeExternalName, "db.example.com"
	r.PrepareForUpdate(toExt, old)
	if toExt.Spec.ClusterIP != "" || toExt.Spec.ClusterIPs != nil {
		t.Errorf("cluster IP kept: %+v", toExt.Spec)
	}
	checkErrors(t, append(r.Validate(toExt), r.ValidateUpdate(toExt, old)...))

	// Status updates change only the status.
	st := old.DeepCopy()
	st.Spec.Type = corev1.ServiceTypeClusterIP
	st.Status.LoadBalancer.Ingress = nil
	r.PrepareForStatusUpdate(st, old)
	if st.Spec.Type != corev1.ServiceTypeNodePort || st.Status.LoadBalancer.Ingress != nil {
		t.Errorf("status update: %+v", st)
	}
}

func TestServiceRow(t *testing.T) {
	created := metav1.NewTime(time.Now().Add(-48 * time.Hour))
	cases := []struct {
		name   string
		typ    corev1.ServiceType
		mutate func(*corev1.Service)
		want   []interface{}
	}{
		{name: "cluster IP", typ: corev1.ServiceTypeClusterIP, mutate: func(s *corev1.Service) {
			s.Spec.ClusterIPs = []string{"10.43.0.10"}
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Port: 53, Protocol: "UDP"})
		}, want: []interface{}{"web", "ClusterIP", "10.43.0.10", "<none>", "80/TCP,53/UDP", "2d", "app=web"}},
		{name: "node port", typ: corev1.ServiceTypeNodePort, mutate: func(s *corev1.Service) {
			s.Spec.ClusterIPs = []string{"10.43.0.11"}
			s.Spec.Ports[0].NodePort = 30080
			s.Spec.ExternalIPs = []string{"198.18.0.5"}
		}, want: []interface{}{"web", "NodePort", "10.43.0.11", "198.18.0.5", "80:30080/TCP", "2d", "app=web"}},
		{name: "load balancer pending", typ: corev1.ServiceTypeLoadBalancer, mutate: func(s *corev1.Service) {
			s.Spec.ClusterIPs = []string{"10.43.0.12"}
			s.Spec.Ports[0].NodePort = 31000
		}, want: []interface{}{"web", "LoadBalancer", "10.43.0.12", "<pending>", "80:31000/TCP", "2d", "app=web"}},
		{name: "load balancer ready", typ: corev1.ServiceTypeLoadBalancer, mutate: func(s *corev1.Service) {
			s.Spec.ClusterIPs = []string{"10.43.0.12"}
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.18.0.9"}, {Hostname: "lb.example.com"}}
		}, want: []interface{}{"web", "LoadBalancer", "10.43.0.12", "198.18.0.9,lb.example.com", "80/TCP", "2d", "app=web"}},
		{name: "headless", typ: corev1.ServiceTypeClusterIP, mutate: func(s *corev1.Service) {
			s.Spec.ClusterIPs, s.Spec.Ports, s.Spec.Selector = []string{"None"}, nil, nil
		}, want: []interface{}{"web", "ClusterIP", "None", "<none>", "<none>", "2d", "<none>"}},
		{name: "external name", typ: corev1.ServiceTypeExternalName, mutate: func(s *corev1.Service) {
			s.Spec.ExternalName = "db.example.com"
		}, want: []interface{}{"web", "ExternalName", "<none>", "db.example.com", "80/TCP", "2d", "app=web"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestService(tc.typ)
			s.CreationTimestamp = created
			tc.mutate(s)
			if got := serviceRow(s); len(got) != len(serviceColumns()) || sprint(got) != sprint(tc.want) {
				t.Errorf("row\n got  %v\n want %v", got, tc.want)
			}
		})
	}
	s := newTestService(corev1.ServiceTypeNodePort)
	s.Spec.ClusterIP = "10.43.0.1"
	if f := coreResource(t, "services").Fields(s); f["spec.type"] != "NodePort" || f["spec.clusterIP"] != "10.43.0.1" {
		t.Errorf("fields = %v", f)
	}
}

func TestEndpoints(t *testing.T) {
	r := coreResource(t, "endpoints")
	addrs := func(ips ...string) []corev1.EndpointAddress {
		var out []corev1.EndpointAddress
		for _, ip := range ips {
			out = append(out, corev1.EndpointAddress{IP: ip})
		}
		return out
	}
	ep := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", CreationTimestamp: metav1.NewTime(time.Now().Add(-time.Minute))},
		Subsets: []corev1.EndpointSubset{{
			Addresses: addrs("10.42.0.5", "10.42.0.6"),
			Ports:     []corev1.EndpointPort{{Port: 80}},
		}},
	}
	r.Default(ep)
	if ep.Subsets[0].Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("protocol not defaulted")
	}
	checkErrors(t, r.Validate(ep))

	for _, tc := range []struct {
		name    string
		subsets []corev1.EndpointSubset
		want    string
	}{
		{"none", nil, "<none>"},
		{"two", ep.Subsets, "10.42.0.5:80,10.42.0.6:80"},
		{"more", []corev1.EndpointSubset{{Addresses: addrs("10.42.0.5", "10.42.0.6", "10.42.0.7", "10.42.0.8"), Ports: []corev1.EndpointPort{{Port: 80}}}},
			"10.42.0.5:80,10.42.0.6:80,10.42.0.7:80 + 1 more..."},
		{"headless", []corev1.EndpointSubset{{Addresses: addrs("10.42.0.5", "fd00::5")}}, "10.42.0.5,fd00::5"},
		{"ipv6 ports", []corev1.EndpointSubset{{Addresses: addrs("fd00::5"), Ports: []corev1.EndpointPort{{Port: 80}}}}, "[fd00::5]:80"},
	} {
		e := ep.DeepCopy()
		e.Subsets = tc.subsets
		if got := r.Row(e); sprint(got) != sprint([]interface{}{"web", tc.want, "60s"}) {
			t.Errorf("%s: row = %v", tc.name, got)
		}
	}

	bad := &corev1.Endpoints{Subsets: []corev1.EndpointSubset{
		{},
		{Addresses: []corev1.EndpointAddress{{IP: "nope"}, {IP: "127.0.0.1"}, {IP: "10.42.0.5", Hostname: "A_b", NodeName: ptr.To("node_1")}},
			NotReadyAddresses: []corev1.EndpointAddress{{IP: "169.254.1.1"}},
			Ports:             []corev1.EndpointPort{{Name: "http", Port: 0, Protocol: "TCP"}, {Port: 81, Protocol: "ICMP"}}},
	}}
	checkErrors(t, r.Validate(bad),
		"subsets[0]: FieldValueRequired",
		"subsets[1].addresses[0].ip: FieldValueInvalid",
		"subsets[1].addresses[1].ip: FieldValueInvalid",
		"subsets[1].addresses[2].hostname: FieldValueInvalid",
		"subsets[1].addresses[2].nodeName: FieldValueInvalid",
		"subsets[1].notReadyAddresses[0].ip: FieldValueInvalid",
		"subsets[1].ports[0].port: FieldValueInvalid",
		"subsets[1].ports[1].name: FieldValueRequired",
		"subsets[1].ports[1].protocol: FieldValueNotSupported",
	)
}
