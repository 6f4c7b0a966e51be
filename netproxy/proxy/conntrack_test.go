package proxy

import (
	"net/netip"
	"testing"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

func TestStaleUDPFlows(t *testing.T) {
	cfg := unitConfig()
	dns := svc("dns", "10.43.0.10", udpPort("dns", 53))
	dnsNP := dns.DeepCopy()
	dnsNP.Spec.Type = v1.ServiceTypeNodePort
	dnsNP.Spec.Ports[0].NodePort = 30053
	web := svc("web", "10.43.0.20", tcpPort("http", 80, 0))
	oneEP := sliceProto("dns", "dns-a", "dns", v1.ProtocolUDP, 5353, ep("10.42.0.5", "node-a", true))
	twoEPs := sliceProto("dns", "dns-a", "dns", v1.ProtocolUDP, 5353, ep("10.42.0.5", "node-a", true), ep("10.42.1.6", "node-b", true))
	otherEP := sliceProto("dns", "dns-a", "dns", v1.ProtocolUDP, 5353, ep("10.42.1.6", "node-b", true))
	webEP := slice("web", "web-a", "http", 8080, ep("10.42.0.7", "node-a", true))
	build := func(svcs []*v1.Service, sls ...*discoveryv1.EndpointSlice) *Ruleset { return Build(cfg, svcs, sls) }

	svcIP := netip.MustParseAddr("10.43.0.10")
	nodeIP := netip.MustParseAddr("192.0.2.10")
	at := func(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }
	type flow struct {
		dst      netip.AddrPort
		replySrc netip.Addr
		stale    bool
	}
	unNATed := flow{at(svcIP, 53), svcIP, true}
	natedTo := func(ep string, stale bool) flow { return flow{at(svcIP, 53), netip.MustParseAddr(ep), stale} }

	tests := []struct {
		name     string
		old, cur *Ruleset
		empty    bool
		flows    []flow
	}{
		{
			name: "agent start: flows sent before the rules existed",
			old:  nil, cur: build([]*v1.Service{dns}, oneEP),
			flows: []flow{unNATed, natedTo("10.42.0.5", false)},
		},
		{
			name: "first endpoint: flows refused so far",
			old:  build([]*v1.Service{dns}), cur: build([]*v1.Service{dns}, oneEP),
			flows: []flow{unNATed, natedTo("10.42.0.5", false), {at(svcIP, 54), svcIP, false}},
		},
		{
			name: "an endpoint more: nothing stale",
			old:  build([]*v1.Service{dns}, oneEP), cur: build([]*v1.Service{dns}, twoEPs),
			empty: true,
			flows: []flow{{at(svcIP, 53), svcIP, false}, natedTo("10.42.0.5", false)},
		},
		{
			name: "endpoint replaced: flows to the old one",
			old:  build([]*v1.Service{dns}, oneEP), cur: build([]*v1.Service{dns}, otherEP),
			flows: []flow{natedTo("10.42.0.5", true), natedTo("10.42.1.6", false), {at(svcIP, 54), netip.MustParseAddr("10.42.0.5"), false}},
		},
		{
			name: "service gone: flows to its endpoints",
			old:  build([]*v1.Service{dns}, oneEP), cur: build(nil),
			flows: []flow{natedTo("10.42.0.5", true)},
		},
		{
			name: "node port gets an endpoint: un-NATed flows to any node address",
			old:  build([]*v1.Service{dnsNP}), cur: build([]*v1.Service{dnsNP}, oneEP),
			flows: []flow{{at(nodeIP, 30053), nodeIP, true}, {at(nodeIP, 30053), netip.MustParseAddr("10.42.0.5"), false}, unNATed},
		},
		{
			name: "TCP services are not tracked",
			old:  build([]*v1.Service{web}), cur: build([]*v1.Service{web}, webEP),
			empty: true,
			flows: []flow{{at(netip.MustParseAddr("10.43.0.20"), 80), netip.MustParseAddr("10.43.0.20"), false}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := staleUDPFlows(tt.old, tt.cur)
			if s.Empty() != tt.empty {
				t.Errorf("Empty() = %v, want %v", s.Empty(), tt.empty)
			}
			for _, f := range tt.flows {
				if got := s.Matches(f.dst, f.replySrc); got != f.stale {
					t.Errorf("flow to %s answered by %s: stale = %v, want %v", f.dst, f.replySrc, got, f.stale)
				}
			}
		})
	}
}
