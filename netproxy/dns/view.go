package dns

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/netproxy/keyed"
)

// view is an immutable index of every cluster name, built from the
// objects after they change. Queries only read it, without locks. Each
// Service's names live in a fragment of their own that the next view
// reuses while the Service and its EndpointSlices are the same objects,
// so one endpoint change rebuilds one fragment, not the cluster's names.
type view struct {
	domain string // "cluster.local." (fully qualified, lower case)
	gen    uint64 // the Server's change count it was built from
	serial uint32 // SOA serial: when the view was built
	// frags holds each Service's names by "svc.ns", as the name spells it.
	frags map[string]*fragment
	// nsWithServices are the namespaces with at least one Service.
	nsWithServices map[string]bool
	// namespaces are the cluster's namespaces once they are known
	// (namespacesKnown); until then every namespace is taken to exist,
	// as CoreDNS did before it watched namespaces.
	namespaces      map[string]bool
	namespacesKnown bool

	// The reverse index is built on the first PTR query: most views are
	// never asked one before the next change replaces them.
	ptrOnce sync.Once
	ptr     map[string][]string // reverse name → targets
}

// fragment is the names of one Service, relative to the service's own
// name: "" is the service, "web-0" an endpoint, "_http._tcp" an SRV name.
type fragment struct {
	svc    *v1.Service
	slices []*discoveryv1.EndpointSlice // the inputs, to tell whether it is current

	name   string // the service's fully qualified name
	names  map[string]*records
	exists map[string]bool // prefixes with names below them ("_tcp")
	ptrs   []ptrEntry
}

// ptrEntry is an address this fragment has a PTR name for.
type ptrEntry struct {
	rev, target string
	kind        ptrKind
}

// ptrKind orders the PTR names of one address as CoreDNS picks them: a
// service's cluster IP wins; else endpoint names from hostnames, else
// dashed-address endpoint names, never mixed.
type ptrKind int

const (
	ptrService ptrKind = iota
	ptrNamed
	ptrDashed
)

type records struct {
	a     []netip.Addr
	srv   []*mdns.SRV
	cname string
}

// lookup returns the records of a fully qualified, lower-case name.
func (v *view) lookup(name string) *records {
	f, prefix := v.fragmentOf(name)
	if f == nil {
		return nil
	}
	return f.names[prefix]
}

// fragmentOf splits [prefix.]svc.ns.svc.<domain> into the service's
// fragment and the prefix.
func (v *view) fragmentOf(name string) (*fragment, string) {
	rest, ok := strings.CutSuffix(name, ".svc."+v.domain)
	if !ok {
		return nil, ""
	}
	dot := strings.LastIndexByte(rest, '.')
	if dot < 0 {
		return nil, ""
	}
	prefix, svcNS := "", rest
	if dot2 := strings.LastIndexByte(rest[:dot], '.'); dot2 >= 0 {
		prefix, svcNS = rest[:dot2], rest[dot2+1:]
	}
	return v.frags[svcNS], prefix
}

// exists reports whether name has records or names below it, so that
// "ns.svc.cluster.local" answers NODATA rather than NXDOMAIN (resolvers
// treat NXDOMAIN as "nothing below").
func (v *view) exists(name string) bool {
	if name == v.domain || name == "svc."+v.domain || name == "pod."+v.domain {
		return true
	}
	for _, sub := range []string{".svc.", ".pod."} {
		if ns, ok := strings.CutSuffix(name, sub+v.domain); ok && ns != "" && !strings.Contains(ns, ".") {
			return v.namespaceExists(ns) && (v.namespacesKnown || sub == ".pod." || v.nsWithServices[ns])
		}
	}
	f, prefix := v.fragmentOf(name)
	if f == nil {
		return false
	}
	return f.names[prefix] != nil || f.exists[prefix]
}

// ptrs returns the PTR targets of a reverse name.
func (v *view) ptrs(rev string) []string {
	v.ptrOnce.Do(func() {
		best := map[string]ptrKind{}
		v.ptr = map[string][]string{}
		for _, f := range v.frags {
			for _, p := range f.ptrs {
				k, seen := best[p.rev]
				switch {
				case !seen || p.kind < k:
					best[p.rev] = p.kind
					v.ptr[p.rev] = []string{p.target}
				case p.kind != k:
				case p.kind != ptrService && !slices.Contains(v.ptr[p.rev], p.target):
					v.ptr[p.rev] = append(v.ptr[p.rev], p.target)
				case p.kind == ptrService && p.target < v.ptr[p.rev][0]:
					// Two services with one IP cannot be: keep one, stably.
					v.ptr[p.rev][0] = p.target
				}
			}
		}
		for _, t := range v.ptr {
			slices.Sort(t) // frags is a map: a stable order
		}
	})
	return v.ptr[rev]
}

func (f *fragment) rec(prefix string) *records {
	r := f.names[prefix]
	if r == nil {
		r = &records{}
		f.names[prefix] = r
		for p := prefix; p != ""; {
			_, p, _ = strings.Cut(p, ".")
			if p != "" {
				f.exists[p] = true
			}
		}
	}
	return r
}

// fqdn is the fully qualified name of a prefix.
func (f *fragment) fqdn(prefix string) string {
	if prefix == "" {
		return f.name
	}
	return prefix + "." + f.name
}

func (f *fragment) addA(prefix string, a netip.Addr) {
	r := f.rec(prefix)
	if !slices.Contains(r.a, a) {
		r.a = append(r.a, a)
	}
}

func (f *fragment) addSRV(prefix string, ttl uint32, port int32, target string) {
	r := f.rec(prefix)
	for _, s := range r.srv {
		if s.Port == uint16(port) && s.Target == target {
			return // the same port under a name and as unnamed, or in two slices
		}
	}
	r.srv = append(r.srv, &mdns.SRV{
		Hdr:      mdns.RR_Header{Name: f.fqdn(prefix), Rrtype: mdns.TypeSRV, Class: mdns.ClassINET, Ttl: ttl},
		Priority: 0, Weight: 100, Port: uint16(port), Target: target,
	})
}

func (f *fragment) addPTR(a netip.Addr, target string, kind ptrKind) {
	if rev, err := mdns.ReverseAddr(a.String()); err == nil {
		f.ptrs = append(f.ptrs, ptrEntry{rev: rev, target: target, kind: kind})
	}
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

// buildView indexes the objects of generation gen the way CoreDNS'
// kubernetes plugin answers for them (with "pods insecure", k3s'
// setting; pod names are answered from the name itself, see
// Server.podName). ttl is the TTL of positive answers. Fragments of prev
// whose Service and EndpointSlices are unchanged are reused.
func buildView(domain string, ttl uint32, gen uint64, s snapshot, prev *view) *view {
	v := &view{domain: domain, gen: gen, serial: uint32(time.Now().Unix()),
		frags: map[string]*fragment{}, nsWithServices: map[string]bool{}, namespaces: map[string]bool{}}
	if s.namespaces != nil && s.namespaces.Listed() {
		v.namespacesKnown = true
		for _, ns := range s.namespaces.Values(0) {
			v.namespaces[strings.ToLower(ns.Name)] = true
		}
	}
	var services []*v1.Service
	if s.services != nil {
		services = s.services.Values(0)
	}
	slicesBySvc := map[types.NamespacedName][]*discoveryv1.EndpointSlice{}
	if s.slices != nil {
		for _, sl := range s.slices.Values(0) {
			if n := sl.Labels[discoveryv1.LabelServiceName]; n != "" {
				k := types.NamespacedName{Namespace: sl.Namespace, Name: n}
				slicesBySvc[k] = append(slicesBySvc[k], sl)
			}
		}
	}
	for _, svc := range services {
		sls := slicesBySvc[types.NamespacedName{Namespace: svc.Namespace, Name: svc.Name}]
		// By name: stable answers, and comparable with the last view's.
		slices.SortFunc(sls, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
		key := strings.ToLower(svc.Name + "." + svc.Namespace)
		f := prev.reusable(key, svc, sls)
		if f == nil {
			f = newFragment(domain, ttl, svc, sls)
		}
		v.frags[key] = f
		v.nsWithServices[strings.ToLower(svc.Namespace)] = true
	}
	return v
}

// reusable returns the last view's fragment for key if it was built from
// the same Service and EndpointSlice objects (the agent's mirrors hand
// over a new object for every change).
func (v *view) reusable(key string, svc *v1.Service, sls []*discoveryv1.EndpointSlice) *fragment {
	if v == nil {
		return nil
	}
	f := v.frags[key]
	if f == nil || f.svc != svc || !slices.Equal(f.slices, sls) {
		return nil
	}
	return f
}

func newFragment(domain string, ttl uint32, svc *v1.Service, sls []*discoveryv1.EndpointSlice) *fragment {
	f := &fragment{svc: svc, slices: sls, name: strings.ToLower(svc.Name + "." + svc.Namespace + ".svc." + domain),
		names: map[string]*records{}, exists: map[string]bool{}}
	switch {
	case svc.Spec.Type == v1.ServiceTypeExternalName:
		if svc.Spec.ExternalName != "" {
			f.rec("").cname = mdns.Fqdn(strings.ToLower(svc.Spec.ExternalName))
		}
		return f
	case svc.Spec.ClusterIP == v1.ClusterIPNone:
		f.rec("")
	default:
		f.rec("")
		for _, ip := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
			if a, err := netip.ParseAddr(ip); err == nil && a.Is4() {
				f.addA("", a)
				f.addPTR(a, f.name, ptrService)
			}
		}
		// SRV of a ClusterIP service points at the service name.
		for _, p := range svc.Spec.Ports {
			f.addSRV("", ttl, p.Port, f.name) // bare-name SRV: every port
			if p.Name != "" {
				f.addSRV(srvPrefix(p.Name, p.Protocol), ttl, p.Port, f.name)
			}
		}
	}
	f.endpoints(ttl, svc, sls)
	return f
}

func srvPrefix(port string, proto v1.Protocol) string {
	return "_" + strings.ToLower(port) + "." + protoLabel(proto)
}

// endpoints adds the per-endpoint names of a Service: every ready
// endpoint is host.svc.ns.svc.domain, where host is its hostname (a
// StatefulSet pod's name, or a pod's spec.hostname when its
// spec.subdomain names the service: the EndpointSlice controller fills
// it in) or else its dashed address. CoreDNS answers these for ClusterIP
// services too. A headless service's own name resolves to every such
// address and its SRV records point at the endpoint names.
func (f *fragment) endpoints(ttl uint32, svc *v1.Service, sls []*discoveryv1.EndpointSlice) {
	headless := svc.Spec.ClusterIP == v1.ClusterIPNone
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
				host, kind := hostname, ptrNamed
				if host == "" {
					host, kind = dashed(a), ptrDashed
				}
				f.addA(host, a)
				f.addPTR(a, f.fqdn(host), kind)
				if !headless {
					continue
				}
				f.addA("", a)
				for _, p := range sl.Ports {
					if p.Port == nil {
						continue
					}
					proto := v1.ProtocolTCP
					if p.Protocol != nil {
						proto = *p.Protocol
					}
					f.addSRV("", ttl, *p.Port, f.fqdn(host))
					if p.Name != nil && *p.Name != "" {
						f.addSRV(srvPrefix(*p.Name, proto), ttl, *p.Port, f.fqdn(host))
					}
				}
			}
		}
	}
}
