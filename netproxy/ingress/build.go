package ingress

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"

	v1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/internal/ingressclass"
)

// ControllerName is the spec.controller of the IngressClasses this
// package serves.
const ControllerName = ingressclass.ControllerName

// Objects are the cluster objects a Config is built from. Build only
// reads them.
type Objects struct {
	Ingresses      []*networkingv1.Ingress
	IngressClasses []*networkingv1.IngressClass
	Services       []*v1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	Secrets        []*v1.Secret
}

// Backend is where requests for one service port go.
type Backend struct {
	// Name is "namespace/service:port", for logs and errors.
	Name string
	// Endpoints are the ready endpoints' "ip:port" addresses, sorted.
	Endpoints []string
	// Problem says why there are no endpoints when the Service or its
	// port does not exist, or the backend is not a Service.
	Problem string

	next atomic.Uint32 // round-robin position
}

// pick returns the endpoints in the order to try them: round robin over
// requests, the rest after the first in case dialing it fails.
func (b *Backend) pick() []string {
	n := len(b.Endpoints)
	if n <= 1 {
		return b.Endpoints
	}
	start := int(b.next.Add(1)-1) % n
	out := make([]string, 0, n)
	out = append(out, b.Endpoints[start:]...)
	return append(out, b.Endpoints[:start]...)
}

// Warning is a problem with one Ingress that Build worked around.
type Warning struct {
	Ingress types.NamespacedName
	Err     error
}

// Config is what a Proxy serves: the routing table, the certificates by
// host, and what Build could not honour.
type Config struct {
	Table *Table
	// Served are the Ingresses this controller serves, sorted.
	Served   []types.NamespacedName
	Warnings []Warning

	certs map[string]*tls.Certificate // by lower-case host, "*.foo.com" as written
}

// Certificate returns the certificate for an SNI server name: the exact
// host's, else the wildcard's covering it, else nil.
func (c *Config) Certificate(serverName string) *tls.Certificate {
	host := normalizeHost(serverName)
	if cert := c.certs[host]; cert != nil {
		return cert
	}
	for i := 0; i < len(host); i++ {
		if host[i] == '.' {
			return c.certs["*"+host[i:]]
		}
	}
	return nil
}

// Build makes the Config for objs. It never fails: an Ingress it cannot
// fully honour (a missing Secret, an unparsable certificate, a relative
// path) is served as far as it can be and reported in Warnings.
func Build(objs Objects) *Config {
	cfg := &Config{
		Table: &Table{exact: map[string][]route{}, wildcard: map[string][]route{}},
		certs: map[string]*tls.Certificate{},
	}
	served := servedIngresses(objs.Ingresses, objs.IngressClasses)
	svcs := newServiceIndex(objs.Services, objs.EndpointSlices)
	secrets := make(map[types.NamespacedName]*v1.Secret, len(objs.Secrets))
	for _, s := range objs.Secrets {
		secrets[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	for age, ing := range served {
		key := types.NamespacedName{Namespace: ing.Namespace, Name: ing.Name}
		cfg.Served = append(cfg.Served, key)
		warn := func(err error) { cfg.Warnings = append(cfg.Warnings, Warning{Ingress: key, Err: err}) }
		// backend resolves a backend of this Ingress, warning once about
		// each that cannot have endpoints (ingress-nginx's "service not
		// found" warnings); its requests get 503.
		problems := map[*Backend]bool{}
		backend := func(b networkingv1.IngressBackend) *Backend {
			be := svcs.backend(ing.Namespace, b)
			if be.Problem != "" && !problems[be] {
				problems[be] = true
				warn(fmt.Errorf("backend %s: %s", be.Name, be.Problem))
			}
			return be
		}
		if b := ing.Spec.DefaultBackend; b != nil {
			if be := backend(*b); cfg.Table.fallback == nil {
				cfg.Table.fallback = be
			}
		}
		var hosts []string
		for _, rule := range ing.Spec.Rules {
			if rule.Host != "" {
				hosts = append(hosts, rule.Host)
			}
			if rule.HTTP == nil {
				continue
			}
			routes := make([]route, 0, len(rule.HTTP.Paths))
			for rank, p := range rule.HTTP.Paths {
				r, ok := newRoute(p, backend(p.Backend), age, rank)
				if !ok {
					warn(fmt.Errorf("path %q of host %q is not absolute; left out", p.Path, rule.Host))
					continue
				}
				routes = append(routes, r)
			}
			cfg.Table.add(rule.Host, routes)
		}
		for _, t := range ing.Spec.TLS {
			cfg.addCertificate(secrets, ing.Namespace, t, hosts, warn)
		}
	}
	cfg.Table.sort()
	slices.SortFunc(cfg.Served, func(a, b types.NamespacedName) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return cfg
}

// addCertificate loads the Secret of one spec.tls entry for its hosts
// (the Ingress's rule hosts when it names none); an older Ingress's
// certificate for a host stays.
func (c *Config) addCertificate(secrets map[types.NamespacedName]*v1.Secret, ns string, t networkingv1.IngressTLS, ruleHosts []string, warn func(error)) {
	if t.SecretName == "" {
		return
	}
	s := secrets[types.NamespacedName{Namespace: ns, Name: t.SecretName}]
	if s == nil {
		warn(fmt.Errorf("TLS secret %s/%s not found; the default certificate answers instead", ns, t.SecretName))
		return
	}
	cert, err := tls.X509KeyPair(s.Data[v1.TLSCertKey], s.Data[v1.TLSPrivateKeyKey])
	if err != nil {
		warn(fmt.Errorf("TLS secret %s/%s: %w; the default certificate answers instead", ns, t.SecretName, err))
		return
	}
	hosts := t.Hosts
	if len(hosts) == 0 {
		hosts = ruleHosts
	}
	for _, h := range hosts {
		h = normalizeHost(h)
		if _, taken := c.certs[h]; !taken && h != "" {
			c.certs[h] = &cert
		}
	}
}

// servedIngresses picks the Ingresses orch serves (ingressclass),
// oldest first.
func servedIngresses(ingresses []*networkingv1.Ingress, classes []*networkingv1.IngressClass) []*networkingv1.Ingress {
	sel := ingressclass.NewSelector(classes)
	var out []*networkingv1.Ingress
	for _, ing := range ingresses {
		if sel.Serves(ing) {
			out = append(out, ing)
		}
	}
	slices.SortFunc(out, func(a, b *networkingv1.Ingress) int {
		return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time),
			cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// serviceIndex resolves Ingress backends to endpoints.
type serviceIndex struct {
	services map[types.NamespacedName]*v1.Service
	slices   map[types.NamespacedName][]*discoveryv1.EndpointSlice // by Service
	resolved map[string]*Backend                                   // one Backend per service port
}

func newServiceIndex(services []*v1.Service, endpointSlices []*discoveryv1.EndpointSlice) *serviceIndex {
	ix := &serviceIndex{
		services: make(map[types.NamespacedName]*v1.Service, len(services)),
		slices:   make(map[types.NamespacedName][]*discoveryv1.EndpointSlice, len(endpointSlices)),
		resolved: map[string]*Backend{},
	}
	for _, s := range services {
		ix.services[types.NamespacedName{Namespace: s.Namespace, Name: s.Name}] = s
	}
	for _, s := range endpointSlices {
		if svc := s.Labels[discoveryv1.LabelServiceName]; svc != "" {
			key := types.NamespacedName{Namespace: s.Namespace, Name: svc}
			ix.slices[key] = append(ix.slices[key], s)
		}
	}
	return ix
}

// backend resolves an Ingress backend in namespace ns. Every use of one
// service port shares one Backend, so round robin spans all its routes.
func (ix *serviceIndex) backend(ns string, b networkingv1.IngressBackend) *Backend {
	if b.Service == nil {
		kind := "unknown"
		if b.Resource != nil {
			kind = b.Resource.Kind
		}
		return &Backend{Name: ns + "/" + kind, Problem: "only Service backends are supported"}
	}
	port := b.Service.Port.Name
	if port == "" {
		port = strconv.Itoa(int(b.Service.Port.Number))
	}
	name := ns + "/" + b.Service.Name + ":" + port
	if be := ix.resolved[name]; be != nil {
		return be
	}
	be := &Backend{Name: name}
	ix.resolved[name] = be
	key := types.NamespacedName{Namespace: ns, Name: b.Service.Name}
	svc := ix.services[key]
	if svc == nil {
		be.Problem = fmt.Sprintf("service %s not found", key)
		return be
	}
	var sp *v1.ServicePort
	for i, p := range svc.Spec.Ports {
		if b.Service.Port.Name != "" && p.Name == b.Service.Port.Name ||
			b.Service.Port.Name == "" && p.Port == b.Service.Port.Number {
			sp = &svc.Spec.Ports[i]
			break
		}
	}
	if sp == nil || sp.Protocol != "" && sp.Protocol != v1.ProtocolTCP {
		be.Problem = fmt.Sprintf("service %s has no TCP port %s", key, port)
		return be
	}
	be.Endpoints = readyEndpoints(ix.slices[key], sp.Name)
	return be
}

// readyEndpoints lists the "ip:port" of the ready endpoints of a service
// port (EndpointSlice ports carry the service port's name and the
// resolved target port number).
func readyEndpoints(endpointSlices []*discoveryv1.EndpointSlice, portName string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range endpointSlices {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		port := int32(-1)
		for _, p := range s.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			if name == portName && p.Port != nil && (p.Protocol == nil || *p.Protocol == v1.ProtocolTCP) {
				port = *p.Port
				break
			}
		}
		if port < 0 {
			continue
		}
		for _, ep := range s.Endpoints {
			// A nil Ready means ready, per the EndpointSlice API.
			if len(ep.Addresses) == 0 || ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			ip, err := netip.ParseAddr(ep.Addresses[0])
			if err != nil {
				continue
			}
			addr := netip.AddrPortFrom(ip, uint16(port)).String()
			if !seen[addr] {
				seen[addr] = true
				out = append(out, addr)
			}
		}
	}
	slices.Sort(out)
	return out
}
