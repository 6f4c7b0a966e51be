package endpoints

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type podOpt func(*corev1.Pod)

func ready(p *corev1.Pod) {
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue})
}

func terminating(p *corev1.Pod) {
	now := metav1.Now()
	p.DeletionTimestamp = &now
}

func phase(ph corev1.PodPhase) podOpt { return func(p *corev1.Pod) { p.Status.Phase = ph } }

func noIP(p *corev1.Pod) { p.Status.PodIP, p.Status.PodIPs = "", nil }

func hostname(h, sub string) podOpt {
	return func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = h, sub }
}

func containerPort(name string, port int32) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{Name: name, ContainerPort: port, Protocol: corev1.ProtocolTCP})
	}
}

func ips(v ...string) podOpt {
	return func(p *corev1.Pod) {
		p.Status.PodIP = v[0]
		p.Status.PodIPs = nil
		for _, ip := range v {
			p.Status.PodIPs = append(p.Status.PodIPs, corev1.PodIP{IP: ip})
		}
	}
}

func testPod(name, ip string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name), Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: "node1", Containers: []corev1.Container{{Name: "c"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func testService(opts ...func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", Labels: map[string]string{"tier": "front"}},
		Spec: corev1.ServiceSpec{
			Selector:   map[string]string{"app": "web"},
			ClusterIP:  "10.43.0.10",
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			Ports:      []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func address(name, ip string) corev1.EndpointAddress {
	return corev1.EndpointAddress{
		IP: ip, NodeName: new("node1"),
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: name, UID: types.UID("uid-" + name)},
	}
}

func httpPort(port int32) corev1.EndpointPort {
	return corev1.EndpointPort{Name: "http", Port: port, Protocol: corev1.ProtocolTCP}
}

func TestSubsets(t *testing.T) {
	headless := func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone }
	publish := func(s *corev1.Service) { s.Spec.PublishNotReadyAddresses = true }
	named := func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("web") }
	ipv6 := func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} }
	withHostname := func(a corev1.EndpointAddress, h string) corev1.EndpointAddress { a.Hostname = h; return a }

	tests := []struct {
		name string
		svc  *corev1.Service
		pods []*corev1.Pod
		want []corev1.EndpointSubset
	}{
		{name: "no pods", svc: testService(), want: nil},
		{
			name: "ready and not ready, sorted numerically",
			svc:  testService(),
			pods: []*corev1.Pod{testPod("c", "10.42.0.10", ready), testPod("a", "10.42.0.9", ready), testPod("b", "10.42.0.2")},
			want: []corev1.EndpointSubset{{
				Addresses:         []corev1.EndpointAddress{address("a", "10.42.0.9"), address("c", "10.42.0.10")},
				NotReadyAddresses: []corev1.EndpointAddress{address("b", "10.42.0.2")},
				Ports:             []corev1.EndpointPort{httpPort(8080)},
			}},
		},
		{
			name: "pods without IP, finished or terminating are left out",
			svc:  testService(),
			pods: []*corev1.Pod{testPod("a", "10.42.0.1", ready), testPod("b", "", ready, noIP), testPod("c", "10.42.0.3", ready, phase(corev1.PodSucceeded)),
				testPod("d", "10.42.0.4", ready, phase(corev1.PodFailed)), testPod("e", "10.42.0.5", ready, terminating)},
			want: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{address("a", "10.42.0.1")}, Ports: []corev1.EndpointPort{httpPort(8080)}}},
		},
		{
			name: "publishNotReadyAddresses: not ready and terminating pods are addresses",
			svc:  testService(publish),
			pods: []*corev1.Pod{testPod("a", "10.42.0.1"), testPod("b", "10.42.0.2", terminating)},
			want: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{address("a", "10.42.0.1"), address("b", "10.42.0.2")}, Ports: []corev1.EndpointPort{httpPort(8080)}}},
		},
		{
			name: "named target port resolved per pod; pods without it are skipped",
			svc:  testService(named),
			pods: []*corev1.Pod{testPod("a", "10.42.0.1", ready, containerPort("web", 8080)), testPod("b", "10.42.0.2", ready, containerPort("web", 9090)), testPod("c", "10.42.0.3", ready)},
			want: []corev1.EndpointSubset{
				{Addresses: []corev1.EndpointAddress{address("a", "10.42.0.1")}, Ports: []corev1.EndpointPort{httpPort(8080)}},
				{Addresses: []corev1.EndpointAddress{address("b", "10.42.0.2")}, Ports: []corev1.EndpointPort{httpPort(9090)}},
			},
		},
		{
			name: "hostname only for pods whose subdomain is the service",
			svc:  testService(headless),
			pods: []*corev1.Pod{testPod("a", "10.42.0.1", ready, hostname("a", "web")), testPod("b", "10.42.0.2", ready, hostname("b", "other"))},
			want: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{withHostname(address("a", "10.42.0.1"), "a"), address("b", "10.42.0.2")}, Ports: []corev1.EndpointPort{httpPort(8080)}}},
		},
		{
			name: "headless without ports",
			svc:  testService(headless, func(s *corev1.Service) { s.Spec.Ports = nil }),
			pods: []*corev1.Pod{testPod("a", "10.42.0.1", ready)},
			want: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{address("a", "10.42.0.1")}}},
		},
		{
			name: "address of the service's family",
			svc:  testService(ipv6),
			pods: []*corev1.Pod{testPod("a", "10.42.0.1", ready, ips("10.42.0.1", "fd00::1")), testPod("b", "10.42.0.2", ready)},
			want: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{address("a", "fd00::1")}, Ports: []corev1.EndpointPort{httpPort(8080)}}},
		},
		{
			name: "several ports share a subset",
			svc: testService(func(s *corev1.Service) {
				s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "admin", Port: 81, TargetPort: intstr.FromInt32(9000), Protocol: corev1.ProtocolTCP})
			}),
			pods: []*corev1.Pod{testPod("a", "10.42.0.1", ready)},
			want: []corev1.EndpointSubset{{
				Addresses: []corev1.EndpointAddress{address("a", "10.42.0.1")},
				Ports:     []corev1.EndpointPort{{Name: "admin", Port: 9000, Protocol: corev1.ProtocolTCP}, httpPort(8080)},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Subsets(tt.svc, tt.pods)
			if !apiequality.Semantic.DeepEqual(got, tt.want) {
				t.Errorf("Subsets =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	addrs := func(n int, prefix string) []corev1.EndpointAddress {
		out := make([]corev1.EndpointAddress, n)
		for i := range out {
			out[i] = corev1.EndpointAddress{IP: fmt.Sprintf("%s.%d.%d", prefix, i/250, i%250)}
		}
		return out
	}
	count := func(e *corev1.Endpoints) (ready, notReady int) {
		for _, s := range e.Subsets {
			ready += len(s.Addresses)
			notReady += len(s.NotReadyAddresses)
		}
		return
	}
	tests := []struct {
		name                  string
		subsets               []corev1.EndpointSubset
		wantCut               bool
		wantReady, wantNotRdy int
	}{
		{name: "under capacity", subsets: []corev1.EndpointSubset{{Addresses: addrs(600, "10.0"), NotReadyAddresses: addrs(400, "10.1")}}, wantReady: 600, wantNotRdy: 400},
		{name: "not ready cut first", subsets: []corev1.EndpointSubset{{Addresses: addrs(800, "10.0"), NotReadyAddresses: addrs(400, "10.1")}}, wantCut: true, wantReady: 800, wantNotRdy: 200},
		{name: "ready shared across subsets", subsets: []corev1.EndpointSubset{{Addresses: addrs(900, "10.0"), NotReadyAddresses: addrs(5, "10.2")}, {Addresses: addrs(300, "10.1")}}, wantCut: true, wantReady: 1000, wantNotRdy: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &corev1.Endpoints{Subsets: tt.subsets}
			if got := truncate(e); got != tt.wantCut {
				t.Errorf("truncate = %v, want %v", got, tt.wantCut)
			}
			if r, n := count(e); r != tt.wantReady || n != tt.wantNotRdy {
				t.Errorf("after truncate: %d ready, %d not ready; want %d, %d", r, n, tt.wantReady, tt.wantNotRdy)
			}
		})
	}
}
