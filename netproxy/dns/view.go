package dns

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/orch-dev/orch/netproxy/keyed"
)

// view is an immutable index of every cluster name, rebuilt from the
// objects after they change. Queries only read it, without locks.
type view struct {
	domain string // "cluster.local." (fully qualified, lower case)
	gen    uint64 // the Server's change count it was built from
	names  map[string]*records
	// exists holds every name that has records plus all their parents
	// below the domain, so that "ns.svc.cluster.local" answers NODATA
	// rather than NXDOMAIN (resolvers treat NXDOMAIN as "nothing below").
	exists map[string]bool
	ptr    map[string]string // reverse name → target
}

type records struct {
	a     []netip.Addr
	srv   []*mdns.SRV
	cname string
}

func (v *view) rec(name string) *records {
	r := v.names[name]
	if r == nil {
		r = &records{}
		v.names[name] = r
		for n := name; n != v.domain && n != "." && n != ""; {
			v.exists[n] = true
			_, rest, _ := strings.Cut(n, ".")
			n = rest
		}
	}
	return r
}

func (v *view) addA(name string, a netip.Addr) {
	r := v.rec(name)
	if !slices.Contains(r.a, a) {
		r.a = append(r.a, a)
	}
}

func (v *view) addPTR(a netip.Addr, target string) {
	rev, err := mdns.ReverseAddr(a.String())
	if err != nil {
		return
	}
	// The first name wins: hostnames of headless endpoints and cluster
	// IPs are added before generic pod names.
	if _, ok := v.ptr[rev]; !ok {
		v.ptr[rev] = target
	}
}

// dashed turns 10.42.0.5 into "10-42-0-5", the form Kubernetes DNS uses
// for pod and unnamed endpoint names.
func dashed(a netip.Addr) string {
	return strings.NewReplacer(".", "-", ":", "-").Replace(a.String())
}

func protoLabel(p v1.Protocol) string {
	if p == "" {
		p = v1.ProtocolTCP
	}
	return "_" + strings.ToLower(string(p))
}

type snapshot struct {
	services *keyed.Map[*v1.Service]
	slices   *keyed.Map[*discoveryv1.EndpointSlice]
	pods     *keyed.Map[*v1.Pod]
}

// sorted returns m's objects by namespace and name.
func sorted[T keyed.Object](m *keyed.Map[T]) []T {
	if m == nil {
		return nil
	}
	out := m.Values(0)
	slices.SortFunc(out, func(a, b T) int {
		return cmp.Or(cmp.Compare(a.GetNamespace(), b.GetNamespace()), cmp.Compare(a.GetName(), b.GetName()))
	})
	return out
}

// buildView indexes the objects of generation gen. ttl is the TTL of
// positive answers.
func buildView(domain string, ttl uint32, gen uint64, s snapshot) *view {
	v := &view{domain: domain, gen: gen, names: map[string]*records{}, exists: map[string]bool{}, ptr: map[string]string{}}
	slicesBySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, sl := range sorted(s.slices) {
		if n := sl.Labels[discoveryv1.LabelServiceName]; n != "" {
			k := sl.Namespace + "/" + n
			slicesBySvc[k] = append(slicesBySvc[k], sl)
		}
	}
	// Sort for stable answers and a stable "first name wins" for PTR.
	headless := map[string]bool{}
	for _, svc := range sorted(s.services) {
		k := svc.Namespace + "/" + svc.Name
		name := strings.ToLower(svc.Name + "." + svc.Namespace + ".svc." + domain)
		switch {
		case svc.Spec.Type == v1.ServiceTypeExternalName:
			if svc.Spec.ExternalName != "" {
				v.rec(name).cname = mdns.Fqdn(strings.ToLower(svc.Spec.ExternalName))
			}
		case svc.Spec.ClusterIP == v1.ClusterIPNone:
			headless[k] = true
			v.rec(name)
			v.headless(name, ttl, svc, slicesBySvc[k])
		default:
			v.rec(name)
			for _, ip := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
				if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
					v.addA(name, a)
					v.addPTR(a, name)
				}
			}
			for _, p := range svc.Spec.Ports {
				if p.Name == "" {
					continue
				}
				srvName := "_" + strings.ToLower(p.Name) + "." + protoLabel(p.Protocol) + "." + name
				v.rec(srvName).srv = append(v.rec(srvName).srv, &mdns.SRV{
					Hdr:      mdns.RR_Header{Name: srvName, Rrtype: mdns.TypeSRV, Class: mdns.ClassINET, Ttl: ttl},
					Priority: 0, Weight: 100, Port: uint16(p.Port), Target: name,
				})
			}
		}
	}
	for _, pod := range sorted(s.pods) {
		for _, ip := range podIPs(pod) {
			// StatefulSet-style name: hostname.subdomain.ns.svc when a
			// headless Service named like the subdomain exists.
			if pod.Spec.Hostname != "" && pod.Spec.Subdomain != "" && headless[pod.Namespace+"/"+pod.Spec.Subdomain] {
				n := strings.ToLower(pod.Spec.Hostname + "." + pod.Spec.Subdomain + "." + pod.Namespace + ".svc." + domain)
				v.addA(n, ip)
				v.addPTR(ip, n)
			}
			n := strings.ToLower(dashed(ip) + "." + pod.Namespace + ".pod." + domain)
			v.addA(n, ip)
			v.addPTR(ip, n)
		}
	}
	return v
}

// headless adds the records of a headless Service: the service name
// resolves to every ready endpoint, each endpoint gets its own name, and
// SRV records point at those names.
func (v *view) headless(name string, ttl uint32, svc *v1.Service, sls []*discoveryv1.EndpointSlice) {
	slices.SortFunc(sls, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	for _, sl := range sls {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		for _, ep := range sl.Endpoints {
			ready := ep.Conditions.Ready == nil || *ep.Conditions.Ready
			if !ready && !svc.Spec.PublishNotReadyAddresses {
				continue
			}
			for _, s := range ep.Addresses {
				a, err := netip.ParseAddr(s)
				if err != nil || !a.Is4() {
					continue
				}
				v.addA(name, a)
				host := dashed(a)
				if ep.Hostname != nil && *ep.Hostname != "" {
					host = strings.ToLower(*ep.Hostname)
				}
				epName := host + "." + name
				v.addA(epName, a)
				if ep.Hostname != nil && *ep.Hostname != "" {
					v.addPTR(a, epName)
				}
				for _, p := range sl.Ports {
					if p.Name == nil || *p.Name == "" || p.Port == nil {
						continue
					}
					proto := v1.ProtocolTCP
					if p.Protocol != nil {
						proto = *p.Protocol
					}
					srvName := "_" + strings.ToLower(*p.Name) + "." + protoLabel(proto) + "." + name
					v.rec(srvName).srv = append(v.rec(srvName).srv, &mdns.SRV{
						Hdr:      mdns.RR_Header{Name: srvName, Rrtype: mdns.TypeSRV, Class: mdns.ClassINET, Ttl: ttl},
						Priority: 0, Weight: 100, Port: uint16(*p.Port), Target: epName,
					})
				}
			}
		}
	}
}

func podIPs(pod *v1.Pod) []netip.Addr {
	var out []netip.Addr
	for _, s := range append([]string{pod.Status.PodIP}, ipsOf(pod.Status.PodIPs)...) {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func ipsOf(ips []v1.PodIP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.IP
	}
	return out
}
