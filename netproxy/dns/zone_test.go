package dns

import (
	"slices"
	"testing"

	mdns "github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
)

// TestZoneRecords checks what the server answers for its zones
// themselves, as CoreDNS' kubernetes plugin does: NS and SOA at the apex
// of the cluster domain and the reverse zones, the name server's
// address at ns.dns.<zone> (the kube-dns Service's cluster IP, or the
// server's own address while that Service is unknown).
func TestZoneRecords(t *testing.T) {
	withService := fixture()
	withService.UpdateService(service(dnsServiceNamespace, dnsServiceName, "10.43.0.10",
		v1.ServicePort{Name: "dns", Protocol: v1.ProtocolUDP, Port: 53}))
	servers := map[string]string{"kube-dns": startServer(t, withService), "no kube-dns": startServer(t, fixture())}
	type want struct {
		answer []string
		extra  []string
		soa    string // zone of the SOA in the authority section (NODATA)
	}
	tests := []struct {
		name  string
		qtype uint16
		want  map[string]want // by server
	}{
		{"cluster.local.", mdns.TypeNS, map[string]want{
			"kube-dns":    {answer: []string{"ns.dns.cluster.local."}, extra: []string{"10.43.0.10"}},
			"no kube-dns": {answer: []string{"ns.dns.cluster.local."}, extra: []string{"127.0.0.1"}}}},
		{"Cluster.Local.", mdns.TypeNS, map[string]want{
			"kube-dns": {answer: []string{"ns.dns.cluster.local."}, extra: []string{"10.43.0.10"}}}},
		{"cluster.local.", mdns.TypeSOA, map[string]want{
			"kube-dns": {answer: []string{"ns.dns.cluster.local. hostmaster.cluster.local. SERIAL 7200 1800 86400 5"}}}},
		{"cluster.local.", mdns.TypeA, map[string]want{"kube-dns": {soa: "cluster.local."}}},
		{"ns.dns.cluster.local.", mdns.TypeA, map[string]want{
			"kube-dns":    {answer: []string{"10.43.0.10"}},
			"no kube-dns": {answer: []string{"127.0.0.1"}}}},
		{"ns.dns.cluster.local.", mdns.TypeAAAA, map[string]want{"kube-dns": {soa: "cluster.local."}}},
		{"ns.dns.cluster.local.", mdns.TypeTXT, map[string]want{"kube-dns": {soa: "cluster.local."}}},
		{"in-addr.arpa.", mdns.TypeNS, map[string]want{
			"kube-dns": {answer: []string{"ns.dns.in-addr.arpa."}, extra: []string{"10.43.0.10"}}}},
		{"in-addr.arpa.", mdns.TypeSOA, map[string]want{
			"kube-dns": {answer: []string{"ns.dns.in-addr.arpa. hostmaster.in-addr.arpa. SERIAL 7200 1800 86400 5"}}}},
		{"ns.dns.in-addr.arpa.", mdns.TypeA, map[string]want{"kube-dns": {answer: []string{"10.43.0.10"}}}},
		{"ip6.arpa.", mdns.TypeNS, map[string]want{
			"kube-dns": {answer: []string{"ns.dns.ip6.arpa."}, extra: []string{"10.43.0.10"}}}},
		{"ip6.arpa.", mdns.TypeMX, map[string]want{"kube-dns": {soa: "ip6.arpa."}}},
	}
	for _, tc := range tests {
		for server, w := range tc.want {
			t.Run(server+"/"+tc.name+"/"+mdns.TypeToString[tc.qtype], func(t *testing.T) {
				r := query(t, servers[server], tc.name, tc.qtype)
				if r.Rcode != mdns.RcodeSuccess || !r.Authoritative {
					t.Fatalf("rcode %s, authoritative %v; want an authoritative NOERROR", mdns.RcodeToString[r.Rcode], r.Authoritative)
				}
				if got := withoutSerial(rrStrings(r.Answer)); !slices.Equal(got, w.answer) {
					t.Errorf("answer %q, want %q", got, w.answer)
				}
				if got := rrStrings(r.Extra); !slices.Equal(got, w.extra) {
					t.Errorf("extra %q, want %q", got, w.extra)
				}
				for _, rr := range r.Extra {
					if rr.Header().Name != "ns.dns."+mdns.CanonicalName(tc.name) {
						t.Errorf("glue %s is not for the NS target", rr)
					}
				}
				switch {
				case w.soa == "" && len(r.Ns) != 0:
					t.Errorf("authority %v, want none", r.Ns)
				case w.soa != "" && (len(r.Ns) != 1 || r.Ns[0].Header().Name != w.soa || r.Ns[0].Header().Rrtype != mdns.TypeSOA):
					t.Errorf("authority %v, want the SOA of %s", r.Ns, w.soa)
				}
			})
		}
	}
}
