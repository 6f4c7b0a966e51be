package server

import (
	"context"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestDNSServiceIP(t *testing.T) {
	tests := []struct{ cidr, want string }{
		{"10.43.0.0/16", "10.43.0.10"},
		{"10.96.0.0/12", "10.96.0.10"},
		{"198.19.0.0/28", "198.19.0.10"},
		{"fd00:43::/112", "fd00:43::a"},
		{"198.19.0.0/29", ""},
	}
	for _, tt := range tests {
		got, err := dnsServiceIP(netip.MustParsePrefix(tt.cidr))
		if tt.want == "" {
			if err == nil {
				t.Errorf("dnsServiceIP(%s) = %s, want an error", tt.cidr, got)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("dnsServiceIP(%s) = %v, %v; want %s", tt.cidr, got, err, tt.want)
		}
	}
}

type serviceCreator struct {
	created  []*corev1.Service
	err      error
	existing bool
}

func (c *serviceCreator) Get(_ context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error) {
	if c.existing {
		return &corev1.Service{}, nil
	}
	return nil, apierrors.NewNotFound(gvr.GroupResource(), name)
}

func (c *serviceCreator) Create(_ context.Context, _ schema.GroupVersionResource, obj runtime.Object, _ string) (runtime.Object, error) {
	if c.err != nil {
		return nil, c.err
	}
	c.created = append(c.created, obj.(*corev1.Service))
	return obj, nil
}

func TestEnsureDNSService(t *testing.T) {
	c := &serviceCreator{}
	if err := ensureDNSService(context.Background(), c, netip.MustParsePrefix("10.43.0.0/16")); err != nil {
		t.Fatal(err)
	}
	if len(c.created) != 1 {
		t.Fatalf("created %d services", len(c.created))
	}
	svc := c.created[0]
	if svc.Namespace != "kube-system" || svc.Name != "kube-dns" || svc.Spec.ClusterIP != "10.43.0.10" || svc.Labels["k8s-app"] != "kube-dns" {
		t.Errorf("kube-dns service = %s/%s %s %v", svc.Namespace, svc.Name, svc.Spec.ClusterIP, svc.Labels)
	}
	want := map[string]corev1.Protocol{"dns": corev1.ProtocolUDP, "dns-tcp": corev1.ProtocolTCP}
	for _, p := range svc.Spec.Ports {
		if want[p.Name] != p.Protocol || p.Port != 53 || p.TargetPort.IntValue() != 53 {
			t.Errorf("port %+v", p)
		}
		delete(want, p.Name)
	}
	if len(want) != 0 {
		t.Errorf("missing ports %v", want)
	}

	// At a restart the Service exists and its address is allocated (to
	// it): a create would be refused, so none is tried.
	exists := &serviceCreator{existing: true, err: apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, "kube-dns", nil)}
	if err := ensureDNSService(context.Background(), exists, netip.MustParsePrefix("10.43.0.0/16")); err != nil {
		t.Errorf("existing kube-dns: %v", err)
	}
	race := &serviceCreator{err: apierrors.NewAlreadyExists(schema.GroupResource{Resource: "services"}, "kube-dns")}
	if err := ensureDNSService(context.Background(), race, netip.MustParsePrefix("10.43.0.0/16")); err != nil {
		t.Errorf("kube-dns created meanwhile: %v", err)
	}
	taken := &serviceCreator{err: apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, "kube-dns", nil)}
	if err := ensureDNSService(context.Background(), taken, netip.MustParsePrefix("10.43.0.0/16")); err == nil {
		t.Error("a refused create was not reported")
	}
}
