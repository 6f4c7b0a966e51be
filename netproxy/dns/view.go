package dns

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
	"time"

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
	serial uint32 // SOA serial: when the view was built
	names  map[string]*records
	// exists holds every name that has records plus all their parents
	// below the domain, so that "ns.svc.cluster.local" answers NODATA
	// rather than NXDOMAIN (resolvers treat NXDOMAIN as "nothing below").
	exists map[string]bool
	ptr    map[string][]string // reverse name → targets
	// namespaces are the cluster's namespaces once they are known
	// (namespacesKnown); until then every namespace is taken to exist,
	// as CoreDNS did before it watched namespaces.
	namespaces      map[string]bool
	namespacesKnown bool
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
		v.markExists(name)
	}
	return r
}

// markExists records name and its parents below the domain as existing.
func (v *view) markExists(name string) {
	for n := name; n != v.domain && n != "." && n != ""; {
		v.exists[n] = true
		_, rest, _ := strings.Cut(n, ".")
		n = rest
	}
}

func (v *view) addA(name string, a netip.Addr) {
	r := v.rec(name)
	if !slices.Contains(r.a, a) {
		r.a = append(r.a, a)
	}
}

func (v *view) addSRV(name string, ttl uint32, port int32, target string) {
	r := v.rec(name)
	for _, s := range r.srv {
		if s.Port == uint16(port) && s.Target == target {
			return // the same port under a name and as unnamed, or in two slices
		}
	}
	r.srv = append(r.srv, &mdns.SRV{
		Hdr:      mdns.RR_Header{Name: name, Rrtype: mdns.TypeSRV, Class: mdns.ClassINET, Ttl: ttl},
		Priority: 0, Weight: 100, Port: uint16(port), Target: target,
	})
}

func reverseName(a netip.Addr) string {
	rev, err := mdns.ReverseAddr(a.String())
	if err != nil {
		return ""
	}
	return rev
}

// namespaceExists reports whether ns is a namespace of the cluster, as
// far as the view knows.
func (v *view) namespaceExists(ns string) bool {
	return !v.namespacesKnown || v.namespaces[ns]
}

// dashed turns 10.42.0.5 into "10-42-0-5", the form Kubernetes DNS uses
// for pod and unnamed endpoint names.
func dashed(a netip.Addr) string {
	return strings.NewReplacer(".", "-", ":", "-").Replace(a.String())
}

// undashed reads a pod name label back into an address the way CoreDNS
// does: three dashes and no "--" is IPv4, anything else IPv6.
func undashed(label string) (netip.Addr, bool) {
	var s string
	if strings.Count(label, "-") == 3 && !strings.Contains(label, "--") {
		s = strings.ReplaceAll(label, "-", ".")
	} else {
		s = strings.ReplaceAll(label, "-", ":")
	}
	a, err := netip.ParseAddr(s)
	return a, err == nil && a.Zone() == ""
}

func protoLabel(p v1.Protocol) string {
	if p == "" {
		p = v1.ProtocolTCP
	}
	return "_" + strings.ToLower(string(p))
}

type snapshot struct {
	services   *keyed.Map[*v1.Service]
	slices     *keyed.Map[*discoveryv1.EndpointSlice]
	namespaces *keyed.Map[*v1.Namespace]
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

// buildView indexes the objects of generation gen the way CoreDNS'
// kubernetes plugin answers for them (with "pods insecure", k3s'
// setting; pod names are answered from the name itself, see
// Server.podName). ttl is the TTL of positive answers.
func buildView(domain string, ttl uint32, gen uint64, s snapshot) *view {
	v := &view{domain: domain, gen: gen, serial: uint32(time.Now().Unix()),
		names: map[string]*records{}, exists: map[string]bool{}, ptr: map[string][]string{},
		namespaces: map[string]bool{}}
	// The two subtrees exist even in an empty cluster: NODATA, not
	// NXDOMAIN, for "svc.cluster.local".
	v.markExists("svc." + domain)
	v.markExists("pod." + domain)
	if s.namespaces != nil && s.namespaces.Listed() {
		v.namespacesKnown = true
		for _, ns := range s.namespaces.Values(0) {
			n := strings.ToLower(ns.Name)
			v.namespaces[n] = true
			v.markExists(n + ".svc." + domain)
			v.markExists(n + ".pod." + domain)
		}
	}
	slicesBySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, sl := range sorted(s.slices) {
		if n := sl.Labels[discoveryv1.LabelServiceName]; n != "" {
			k := sl.Namespace + "/" + n
			slicesBySvc[k] = append(slicesBySvc[k], sl)
		}
	}
	// Endpoint PTRs are collected over all services first: a cluster IP
	// wins over them, and hostnamed endpoint names over dashed ones.
	epPTR := map[string]*endpointPTR{}
	// Sorted for stable answers.
	for _, svc := range sorted(s.services) {
		name := strings.ToLower(svc.Name + "." + svc.Namespace + ".svc." + domain)
		switch {
		case svc.Spec.Type == v1.ServiceTypeExternalName:
			if svc.Spec.ExternalName != "" {
				v.rec(name).cname = mdns.Fqdn(strings.ToLower(svc.Spec.ExternalName))
			}
			continue
		case svc.Spec.ClusterIP == v1.ClusterIPNone:
			v.rec(name)
		default:
			v.rec(name)
			for _, ip := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
				if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
					v.addA(name, a)
					if rev := reverseName(a); rev != "" && len(v.ptr[rev]) == 0 {
						v.ptr[rev] = []string{name}
					}
				}
			}
			// SRV of a ClusterIP service points at the service name.
			for _, p := range svc.Spec.Ports {
				v.addSRV(name, ttl, p.Port, name) // bare-name SRV: every port
				if p.Name != "" {
					v.addSRV(srvName(p.Name, p.Protocol, name), ttl, p.Port, name)
				}
			}
		}
		v.endpoints(name, ttl, svc, slicesBySvc[svc.Namespace+"/"+svc.Name], epPTR)
	}
	for rev, p := range epPTR {
		if len(v.ptr[rev]) > 0 {
			continue // a service IP
		}
		if len(p.named) > 0 {
			v.ptr[rev] = p.named
		} else {
			v.ptr[rev] = p.dashed
		}
	}
	return v
}

// endpointPTR collects the endpoint names of one address; CoreDNS never
// mixes names from hostnames with dashed-address names in one answer.
type endpointPTR struct{ named, dashed []string }

func srvName(port string, proto v1.Protocol, svcName string) string {
	return "_" + strings.ToLower(port) + "." + protoLabel(proto) + "." + svcName
}

// endpoints adds the per-endpoint names of a Service: every ready
// endpoint is host.svc.ns.svc.domain, where host is its hostname (a
// StatefulSet pod's name, or a pod's spec.hostname when its
// spec.subdomain names the service: the EndpointSlice controller fills
// it in) or else its dashed address. CoreDNS answers these for ClusterIP
// services too. A headless service's own name resolves to every such
// address and its SRV records point at the endpoint names.
func (v *view) endpoints(name string, ttl uint32, svc *v1.Service, sls []*discoveryv1.EndpointSlice, epPTR map[string]*endpointPTR) {
	headless := svc.Spec.ClusterIP == v1.ClusterIPNone
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
			hostname := ""
			if ep.Hostname != nil {
				hostname = strings.ToLower(*ep.Hostname)
			}
			for _, s := range ep.Addresses {
				a, err := netip.ParseAddr(s)
				if err != nil || !a.Is4() {
					continue
				}
				host := hostname
				if host == "" {
					host = dashed(a)
				}
				epName := host + "." + name
				v.addA(epName, a)
				if rev := reverseName(a); rev != "" {
					p := epPTR[rev]
					if p == nil {
						p = &endpointPTR{}
						epPTR[rev] = p
					}
					if hostname != "" {
						p.named = appendNew(p.named, epName)
					} else {
						p.dashed = appendNew(p.dashed, epName)
					}
				}
				if !headless {
					continue
				}
				v.addA(name, a)
				for _, p := range sl.Ports {
					if p.Port == nil {
						continue
					}
					proto := v1.ProtocolTCP
					if p.Protocol != nil {
						proto = *p.Protocol
					}
					v.addSRV(name, ttl, *p.Port, epName)
					if p.Name != nil && *p.Name != "" {
						v.addSRV(srvName(*p.Name, proto, name), ttl, *p.Port, epName)
					}
				}
			}
		}
	}
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}
