package agent

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestHostUpstreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	content := "search example.org\nnameserver 192.0.2.53\nnameserver 10.43.0.10\nnameserver ::1\nnameserver bogus\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got := hostUpstreams(path, netip.MustParseAddr("10.43.0.10"))
	want := []string{"192.0.2.53:53", "[::1]:53"}
	if !slices.Equal(got, want) {
		t.Errorf("upstreams = %v, want %v (the cluster DNS itself left out)", got, want)
	}
	if got := hostUpstreams(filepath.Join(t.TempDir(), "missing"), netip.Addr{}); got != nil {
		t.Errorf("missing resolv.conf: %v", got)
	}
}

func TestNodeLocalDNSSlice(t *testing.T) {
	sl := nodeLocalDNSSlice("n1", netip.MustParseAddr("10.42.3.1"))
	if sl.Labels[discoveryv1.LabelServiceName] != "kube-dns" || sl.Namespace != "kube-system" {
		t.Errorf("slice is not kube-dns's: %v", sl.ObjectMeta)
	}
	if len(sl.Endpoints) != 1 || sl.Endpoints[0].Addresses[0] != "10.42.3.1" || !*sl.Endpoints[0].Conditions.Ready || *sl.Endpoints[0].NodeName != "n1" {
		t.Errorf("endpoints = %+v", sl.Endpoints)
	}
	ports := map[string]v1.Protocol{}
	for _, p := range sl.Ports {
		if *p.Port != 53 {
			t.Errorf("port %s is %d", *p.Name, *p.Port)
		}
		ports[*p.Name] = *p.Protocol
	}
	if ports["dns"] != v1.ProtocolUDP || ports["dns-tcp"] != v1.ProtocolTCP {
		t.Errorf("ports = %v", ports)
	}
}

// fakeSinks records what serviceState hands on.
type fakeSinks struct {
	proxyCalls [][]*discoveryv1.EndpointSlice
	dnsCalls   [][]*v1.Service
}

func (f *fakeSinks) Replace(_ []*v1.Service, slices []*discoveryv1.EndpointSlice) {
	f.proxyCalls = append(f.proxyCalls, slices)
}

type fakeDNS struct{ f *fakeSinks }

func (d fakeDNS) Replace(services []*v1.Service, _ []*discoveryv1.EndpointSlice) {
	d.f.dnsCalls = append(d.f.dnsCalls, services)
}

// TestServiceStateWaitsForBothLists: a restarting agent must not write
// rules from Services alone, which would refuse every connection.
func TestServiceStateWaitsForBothLists(t *testing.T) {
	f := &fakeSinks{}
	s := newServiceState(nodeLocalDNSSlice("n1", netip.MustParseAddr("10.42.0.1")), f, fakeDNS{f})
	services, endpointSlices := s.serviceSink(), s.sliceSink()
	svc := &v1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"}}
	services.replace([]*v1.Service{svc})
	services.update(svc)
	if len(f.proxyCalls) != 0 || len(f.dnsCalls) != 0 {
		t.Fatal("state handed on before the EndpointSlices were listed")
	}
	web := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-abc"}}
	endpointSlices.replace([]*discoveryv1.EndpointSlice{web})
	if len(f.proxyCalls) != 1 || len(f.dnsCalls) != 1 {
		t.Fatalf("after both lists: %d proxy, %d dns updates; want 1 each", len(f.proxyCalls), len(f.dnsCalls))
	}
	// The proxy also gets the node-local kube-dns endpoint.
	if got := f.proxyCalls[0]; len(got) != 2 || !slices.Contains(got, s.localDNS) {
		t.Errorf("proxy slices = %v", got)
	}
	endpointSlices.remove(web)
	services.remove(svc)
	if last := f.proxyCalls[len(f.proxyCalls)-1]; len(last) != 1 || len(f.dnsCalls[len(f.dnsCalls)-1]) != 0 {
		t.Errorf("after deletes: proxy slices %v, dns services %v", last, f.dnsCalls[len(f.dnsCalls)-1])
	}
}
