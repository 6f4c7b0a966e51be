package registry

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestDiscoveryEntries(t *testing.T) {
	checkEntries(t, []entryCase{
		{discoveryv1.SchemeGroupVersion, "endpointslices", "EndpointSlice", true, nil, nil,
			[]string{"Name", "AddressType", "Ports", "Endpoints", "Age"}},
	})
}

func validEndpointSlice() *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abcde", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses: []string{"10.42.0.5"},
			Hostname:  ptr.To("web-0"),
			NodeName:  ptr.To("node-1"),
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](80), AppProtocol: ptr.To("http")}},
	}
}

func TestEndpointSliceDefaults(t *testing.T) {
	r := tableResource(t, discoveryv1.SchemeGroupVersion, "endpointslices")
	eps := validEndpointSlice()
	eps.Ports = append(eps.Ports, discoveryv1.EndpointPort{Port: ptr.To[int32](53), Protocol: ptr.To(corev1.ProtocolUDP)})
	r.Default(eps)
	for i, want := range []struct {
		name     string
		protocol corev1.Protocol
	}{{"http", corev1.ProtocolTCP}, {"", corev1.ProtocolUDP}} {
		p := eps.Ports[i]
		if p.Name == nil || *p.Name != want.name || p.Protocol == nil || *p.Protocol != want.protocol {
			t.Errorf("port %d: name %v protocol %v, want %q %s", i, p.Name, p.Protocol, want.name, want.protocol)
		}
	}
}

func TestValidateEndpointSlice(t *testing.T) {
	r := tableResource(t, discoveryv1.SchemeGroupVersion, "endpointslices")
	many := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("10.42.%d.%d", i/250, i%250+1)
		}
		return out
	}
	tests := []struct {
		name   string
		mutate func(*discoveryv1.EndpointSlice)
		want   []string
	}{
		{"valid", func(*discoveryv1.EndpointSlice) {}, nil},
		{"no endpoints and no ports", func(eps *discoveryv1.EndpointSlice) { eps.Endpoints, eps.Ports = nil, nil }, nil},
		{"address type required", func(eps *discoveryv1.EndpointSlice) { eps.AddressType = "" },
			[]string{"addressType: FieldValueRequired"}},
		{"deprecated IP address type", func(eps *discoveryv1.EndpointSlice) { eps.AddressType = "IP" },
			[]string{"addressType: FieldValueNotSupported"}},
		{"IPv6 address in IPv4 slice", func(eps *discoveryv1.EndpointSlice) { eps.Endpoints[0].Addresses = []string{"fd00::1"} },
			[]string{"endpoints[0].addresses[0]: FieldValueInvalid"}},
		{"IPv6 slice", func(eps *discoveryv1.EndpointSlice) {
			eps.AddressType = discoveryv1.AddressTypeIPv6
			eps.Endpoints[0].Addresses = []string{"fd00::1"}
		}, nil},
		{"loopback address", func(eps *discoveryv1.EndpointSlice) { eps.Endpoints[0].Addresses = []string{"127.0.0.1"} },
			[]string{"endpoints[0].addresses[0]: FieldValueInvalid"}},
		{"not an IP", func(eps *discoveryv1.EndpointSlice) { eps.Endpoints[0].Addresses = []string{"web"} },
			[]string{"endpoints[0].addresses[0]: FieldValueInvalid"}},
		{"FQDN slice", func(eps *discoveryv1.EndpointSlice) {
			eps.AddressType = discoveryv1.AddressTypeFQDN
			eps.Endpoints[0].Addresses = []string{"db.example.com"}
		}, nil},
		{"no addresses", func(eps *discoveryv1.EndpointSlice) { eps.Endpoints[0].Addresses = nil },
			[]string{"endpoints[0].addresses: FieldValueRequired"}},
		{"100 addresses", func(eps *discoveryv1.EndpointSlice) { eps.Endpoints[0].Addresses = many(100) }, nil},
		{"101 addresses", func(eps *discoveryv1.EndpointSlice) { eps.Endpoints[0].Addresses = many(101) },
			[]string{"endpoints[0].addresses: FieldValueTooMany"}},
		{"bad hostname", func(eps *discoveryv1.EndpointSlice) { eps.Endpoints[0].Hostname = ptr.To("web.0") },
			[]string{"endpoints[0].hostname: FieldValueInvalid"}},
		{"protocol required", func(eps *discoveryv1.EndpointSlice) { eps.Ports[0].Protocol = nil },
			[]string{"ports[0].protocol: FieldValueRequired"}},
		{"bad protocol", func(eps *discoveryv1.EndpointSlice) { eps.Ports[0].Protocol = ptr.To(corev1.Protocol("ICMP")) },
			[]string{"ports[0].protocol: FieldValueNotSupported"}},
		{"duplicate port names", func(eps *discoveryv1.EndpointSlice) { eps.Ports = append(eps.Ports, eps.Ports[0]) },
			[]string{"ports[1].name: FieldValueDuplicate"}},
		{"bad port name", func(eps *discoveryv1.EndpointSlice) { eps.Ports[0].Name = ptr.To("HTTP") },
			[]string{"ports[0].name: FieldValueInvalid"}},
		{"port out of range", func(eps *discoveryv1.EndpointSlice) { eps.Ports[0].Port = ptr.To[int32](65536) },
			[]string{"ports[0].port: FieldValueInvalid"}},
		{"bad app protocol", func(eps *discoveryv1.EndpointSlice) { eps.Ports[0].AppProtocol = ptr.To("a/b/c") },
			[]string{"ports[0].appProtocol: FieldValueInvalid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := validEndpointSlice()
			r.Default(eps)
			tt.mutate(eps)
			checkErrors(t, r.Validate(eps), tt.want...)
		})
	}

	old := validEndpointSlice()
	upd := validEndpointSlice()
	upd.AddressType = discoveryv1.AddressTypeIPv6
	checkErrors(t, r.ValidateUpdate(upd, old), "addressType: FieldValueInvalid")
}

func TestEndpointSliceGeneration(t *testing.T) {
	r := tableResource(t, discoveryv1.SchemeGroupVersion, "endpointslices")
	old := validEndpointSlice()
	r.PrepareForCreate(old)
	if old.Generation != 1 {
		t.Fatalf("create: generation %d", old.Generation)
	}
	upd := old.DeepCopy()
	upd.Annotations = map[string]string{"a": "b"}
	r.PrepareForUpdate(upd, old)
	if upd.Generation != 1 {
		t.Errorf("metadata update bumped generation to %d", upd.Generation)
	}
	upd.Endpoints[0].Conditions.Ready = ptr.To(true)
	r.PrepareForUpdate(upd, old)
	if upd.Generation != 2 {
		t.Errorf("endpoints update: generation %d, want 2", upd.Generation)
	}
}

func TestEndpointSliceRow(t *testing.T) {
	r := tableResource(t, discoveryv1.SchemeGroupVersion, "endpointslices")
	created := metav1.NewTime(time.Now().Add(-10 * time.Second))
	tests := []struct {
		name string
		eps  *discoveryv1.EndpointSlice
		want string
	}{
		{"empty", &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "e", CreationTimestamp: created},
			AddressType: discoveryv1.AddressTypeIPv4}, "[e IPv4 <unset> <unset> 10s]"},
		{"ports and endpoints", &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: "web-x", CreationTimestamp: created},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports: []discoveryv1.EndpointPort{{Port: ptr.To[int32](80)}, {Name: ptr.To("dns")}, {},
				{Port: ptr.To[int32](443)}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.42.0.1", "10.42.0.2"}},
				{Addresses: []string{"10.42.0.3"}}, {Addresses: []string{"10.42.0.4"}}},
		}, "[web-x IPv4 80,dns,* + 1 more... 10.42.0.1,10.42.0.2,10.42.0.3 + 1 more... 10s]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sprint(r.Row(tt.eps)); got != tt.want {
				t.Errorf("row %s, want %s", got, tt.want)
			}
		})
	}
}
