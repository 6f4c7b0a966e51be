package dns

import (
	"net/netip"

	mdns "github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
)

// nsLabel prefixes a zone's name server name: "ns.dns.cluster.local.",
// the name CoreDNS writes as the SOA's MNAME and gives its own address.
const nsLabel = "ns.dns."

// The Service in front of the cluster DNS (kubeadm's and k3s' name):
// its cluster IPs are the name servers' addresses, as CoreDNS' kubernetes
// plugin finds the Service that fronts it for NS answers.
const (
	dnsServiceNamespace = "kube-system"
	dnsServiceName      = "kube-dns"
)

// zone is a zone the server is authoritative for.
type zone struct {
	apex string // "cluster.local.", "in-addr.arpa."
	ns   string // nsLabel + apex
}

// zoneRecords answers for a zone itself rather than for cluster objects,
// as CoreDNS' kubernetes plugin does: SOA and NS at the apex (the NS
// record names ns.dns.<zone>, the SOA's MNAME, with its addresses as
// glue), and the name server's addresses at ns.dns.<zone>. Other types
// are NODATA with the zone's SOA.
func (s *Server) zoneRecords(v *view, r *mdns.Msg, q mdns.Question, name string, z zone) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	switch {
	case name == z.apex && q.Qtype == mdns.TypeSOA:
		m.Answer = append(m.Answer, s.soaOf(v, z.apex))
	case name == z.apex && q.Qtype == mdns.TypeNS:
		m.Answer = append(m.Answer, &mdns.NS{Hdr: s.hdr(q.Name, mdns.TypeNS), Ns: z.ns})
		m.Extra = s.addressRecords(z.ns, s.nameServers(v), mdns.TypeANY)
	case name == z.ns && (q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeAAAA):
		m.Answer = s.addressRecords(q.Name, s.nameServers(v), q.Qtype)
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, s.soaOf(v, z.apex)) // NODATA
	}
	return finish(r, m)
}

// nameServers are the addresses that answer for the zones: the kube-dns
// Service's cluster IPs, else the address the server listens on, as
// CoreDNS falls back to its own addresses when it finds no Service.
func (s *Server) nameServers(v *view) []netip.Addr {
	var out []netip.Addr
	if f := v.frags[dnsServiceName+"."+dnsServiceNamespace]; f != nil && f.svc.Spec.ClusterIP != v1.ClusterIPNone {
		for _, ip := range f.svc.Spec.ClusterIPs {
			if a, err := netip.ParseAddr(ip); err == nil {
				out = append(out, a)
			}
		}
	}
	if len(out) == 0 {
		if a := s.listenAddr.Load(); a != nil {
			out = append(out, *a)
		}
	}
	return out
}

// addressRecords are A and AAAA records of name for addrs, only those of
// qtype unless it is TypeANY.
func (s *Server) addressRecords(name string, addrs []netip.Addr, qtype uint16) []mdns.RR {
	var out []mdns.RR
	for _, a := range addrs {
		switch {
		case a.Is4() && qtype != mdns.TypeAAAA:
			out = append(out, &mdns.A{Hdr: s.hdr(name, mdns.TypeA), A: a.AsSlice()})
		case a.Is6() && qtype != mdns.TypeA:
			out = append(out, &mdns.AAAA{Hdr: s.hdr(name, mdns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	return out
}
