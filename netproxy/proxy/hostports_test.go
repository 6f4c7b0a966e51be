package proxy

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func hostPortPod(name string, hostNetwork bool, ports ...v1.ContainerPort) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: name},
		Spec: v1.PodSpec{
			HostNetwork: hostNetwork,
			Containers:  []v1.Container{{Name: "c", Ports: ports}},
		},
	}
}

func TestPodHostPorts(t *testing.T) {
	podIP := netip.MustParseAddr("10.42.0.7")
	web := types.NamespacedName{Namespace: testNS, Name: "web"}
	tests := []struct {
		name string
		pod  *v1.Pod
		ip   netip.Addr
		want []HostPort
	}{
		{
			name: "hostPorts map, other ports do not",
			pod: hostPortPod("web", false,
				v1.ContainerPort{ContainerPort: 80, HostPort: 8081, Protocol: v1.ProtocolTCP},
				v1.ContainerPort{ContainerPort: 53, HostPort: 5353, Protocol: v1.ProtocolUDP},
				v1.ContainerPort{ContainerPort: 9090}),
			ip: podIP,
			want: []HostPort{
				{Pod: web, HostPort: 8081, Protocol: ProtoTCP, PodIP: podIP, ContainerPort: 80},
				{Pod: web, HostPort: 5353, Protocol: ProtoUDP, PodIP: podIP, ContainerPort: 53},
			},
		},
		{
			name: "hostIP limits the mapping; 0.0.0.0 means every address; IPv6 is skipped",
			pod: hostPortPod("web", false,
				v1.ContainerPort{ContainerPort: 80, HostPort: 8081, HostIP: "198.18.0.5"},
				v1.ContainerPort{ContainerPort: 81, HostPort: 8082, HostIP: "0.0.0.0"},
				v1.ContainerPort{ContainerPort: 82, HostPort: 8083, HostIP: "fd00::1"}),
			ip: podIP,
			want: []HostPort{
				{Pod: web, HostIP: netip.MustParseAddr("198.18.0.5"), HostPort: 8081, Protocol: ProtoTCP, PodIP: podIP, ContainerPort: 80},
				{Pod: web, HostPort: 8082, Protocol: ProtoTCP, PodIP: podIP, ContainerPort: 81},
			},
		},
		{
			name: "host-network pods bind the node's ports themselves",
			pod:  hostPortPod("web", true, v1.ContainerPort{ContainerPort: 80, HostPort: 80}),
			ip:   podIP,
		},
		{
			name: "no pod IP, no mapping",
			pod:  hostPortPod("web", false, v1.ContainerPort{ContainerPort: 80, HostPort: 8081}),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := PodHostPorts(tc.pod, tc.ip)
			if d := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestBuildHostPorts(t *testing.T) {
	podIP := netip.MustParseAddr("10.42.0.7")
	other := netip.MustParseAddr("10.42.0.8")
	hps := append(
		PodHostPorts(hostPortPod("web", false,
			v1.ContainerPort{ContainerPort: 80, HostPort: 8081},
			v1.ContainerPort{ContainerPort: 53, HostPort: 5353, Protocol: v1.ProtocolUDP},
			v1.ContainerPort{ContainerPort: 443, HostPort: 8443, HostIP: "192.0.2.10"}), podIP),
		// A second pod claiming a taken port (the scheduler prevents it):
		// one mapping, never a batch the kernel refuses.
		PodHostPorts(hostPortPod("late", false, v1.ContainerPort{ContainerPort: 8080, HostPort: 8081}), other)...)

	rs := NewBuilder(unitConfig()).BuildWithHostPorts(nil, nil, hps)
	const (
		tcpChain = "hp-default/late/tcp/8081"
		webTCP   = "hp-default/web/tcp/8081"
		webUDP   = "hp-default/web/udp/5353"
		webByIP  = "hp-default/web/tcp/192.0.2.10:8443"
	)
	chains := map[string][]string{
		"nat-prerouting": {"jump hostports", "jump services"},
		"nat-output":     {"jump hostports", "jump services"},
		"hostports": {
			"ip daddr . meta l4proto . th dport vmap @hostport-ips",
			"ip daddr @nodeport-ips meta l4proto . th dport vmap @hostport-ports",
		},
		// Pods in name order: "late" keeps the port.
		tcpChain: {
			"ip saddr 10.42.0.8 jump mark-for-masquerade",
			"ip saddr 127.0.0.0/8 jump mark-for-masquerade",
			"meta l4proto tcp dnat to 10.42.0.8:8080",
		},
		webUDP: {
			"ip saddr 10.42.0.7 jump mark-for-masquerade",
			"ip saddr 127.0.0.0/8 jump mark-for-masquerade",
			"meta l4proto udp dnat to 10.42.0.7:53",
		},
		webByIP: {
			"ip saddr 10.42.0.7 jump mark-for-masquerade",
			"ip saddr 127.0.0.0/8 jump mark-for-masquerade",
			"meta l4proto tcp dnat to 10.42.0.7:443",
		},
	}
	for name, want := range chains {
		c := rs.Chain(name)
		if c == nil {
			t.Errorf("chain %s missing; ruleset:\n%s", name, rs)
			continue
		}
		if d := cmp.Diff(want, c.RuleStrings()); d != "" {
			t.Errorf("chain %s (-want +got):\n%s", name, d)
		}
	}
	if rs.Chain(webTCP) != nil {
		t.Errorf("chain %s exists: host port 8081 is taken", webTCP)
	}
	sets := map[string][]string{
		"hostport-ips":   {"192.0.2.10 . tcp . 8443 : goto " + webByIP},
		"hostport-ports": {"tcp . 8081 : goto " + tcpChain, "udp . 5353 : goto " + webUDP},
	}
	for name, want := range sets {
		s := rs.Set(name)
		if s == nil {
			t.Errorf("set %s missing", name)
			continue
		}
		if d := cmp.Diff(want, s.ElementStrings()); d != "" {
			t.Errorf("set %s (-want +got):\n%s", name, d)
		}
	}
	checkReferences(t, rs)

	// The UDP mapping is a frontend whose stale conntrack entries go.
	if got := rs.udpFrontends[Key{Proto: ProtoUDP, Port: 5353}]; len(got) != 1 || got[0] != podIP {
		t.Errorf("UDP frontend of host port 5353: %v, want [%s]", got, podIP)
	}

	// Without pods the chain and maps exist, empty.
	empty := Build(unitConfig(), nil, nil)
	if c := empty.Chain("hostports"); c == nil || len(empty.Set("hostport-ports").Elements) != 0 {
		t.Errorf("ruleset without host ports:\n%s", empty)
	}
}
