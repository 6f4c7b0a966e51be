package endpoints

import (
	"cmp"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/server/controllers/endpoints/backends"
)

// Subsets computes the Endpoints subsets of svc from the pods its selector
// matches, packed (addresses offering the same ports share a subset) and
// sorted, so that equal inputs give equal outputs whatever the pods' order.
func Subsets(svc *corev1.Service, pods []*corev1.Pod) []corev1.EndpointSubset {
	family := backends.IPFamilies(svc)[0]
	publishNotReady := svc.Spec.PublishNotReadyAddresses
	b := newSubsetBuilder()
	for _, pod := range pods {
		if !backends.ShouldPodBeInEndpoints(pod, publishNotReady) {
			continue
		}
		ip := backends.PodIP(pod, family)
		if ip == "" {
			// No address of the service's family (e.g. a single-stack pod
			// of a dual-stack cluster).
			continue
		}
		addr := corev1.EndpointAddress{
			IP:        ip,
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		}
		if pod.Spec.NodeName != "" {
			addr.NodeName = new(pod.Spec.NodeName)
		}
		if backends.ShouldSetHostname(pod, svc) {
			addr.Hostname = pod.Spec.Hostname
		}
		ready := publishNotReady || backends.IsPodReady(pod)
		if len(svc.Spec.Ports) == 0 {
			// Only headless services may have no ports; their addresses
			// still serve DNS.
			if svc.Spec.ClusterIP == corev1.ClusterIPNone {
				b.add(addr, nil, ready)
			}
			continue
		}
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			num, err := backends.FindPort(pod, sp)
			if err != nil {
				continue
			}
			b.add(addr, &corev1.EndpointPort{Name: sp.Name, Port: num, Protocol: sp.Protocol, AppProtocol: sp.AppProtocol}, ready)
		}
	}
	return b.subsets()
}

// addressKey tells addresses apart: the same IP may belong to two pods
// (one finished, one new) for a moment.
type addressKey struct {
	ip  string
	uid types.UID
}

// portKey is an EndpointPort usable as a map key; noPorts stands for the
// port set of headless services without ports.
type portKey struct {
	name, protocol, appProtocol string
	hasAppProtocol              bool
	port                        int32
	noPorts                     bool
}

func keyOfPort(p *corev1.EndpointPort) portKey {
	if p == nil {
		return portKey{noPorts: true}
	}
	k := portKey{name: p.Name, protocol: string(p.Protocol), port: p.Port}
	if p.AppProtocol != nil {
		k.appProtocol, k.hasAppProtocol = *p.AppProtocol, true
	}
	return k
}

func (k portKey) endpointPort() corev1.EndpointPort {
	p := corev1.EndpointPort{Name: k.name, Port: k.port, Protocol: corev1.Protocol(k.protocol)}
	if k.hasAppProtocol {
		p.AppProtocol = new(k.appProtocol)
	}
	return p
}

// subsetBuilder packs (address, port, ready) triples into subsets, as
// Kubernetes' RepackSubsets: ports offered by the same set of addresses
// (with the same readiness) share one subset. An address ready for a port
// anywhere is ready for it.
type subsetBuilder struct {
	addrs map[addressKey]corev1.EndpointAddress
	ports map[portKey]map[addressKey]bool
}

func newSubsetBuilder() *subsetBuilder {
	return &subsetBuilder{addrs: map[addressKey]corev1.EndpointAddress{}, ports: map[portKey]map[addressKey]bool{}}
}

func (b *subsetBuilder) add(addr corev1.EndpointAddress, port *corev1.EndpointPort, ready bool) {
	ak := addressKey{ip: addr.IP}
	if addr.TargetRef != nil {
		ak.uid = addr.TargetRef.UID
	}
	if _, ok := b.addrs[ak]; !ok {
		b.addrs[ak] = addr
	}
	pk := keyOfPort(port)
	set := b.ports[pk]
	if set == nil {
		set = map[addressKey]bool{}
		b.ports[pk] = set
	}
	set[ak] = set[ak] || ready
}

func (b *subsetBuilder) subsets() []corev1.EndpointSubset {
	type group struct {
		addrs map[addressKey]bool
		ports []portKey
	}
	groups := map[string]*group{}
	for pk, set := range b.ports {
		sig := signature(set)
		g := groups[sig]
		if g == nil {
			g = &group{addrs: set}
			groups[sig] = g
		}
		g.ports = append(g.ports, pk)
	}
	sigs := slices.Sorted(func(yield func(string) bool) {
		for sig := range groups {
			if !yield(sig) {
				return
			}
		}
	})
	var out []corev1.EndpointSubset
	for _, sig := range sigs {
		g := groups[sig]
		var subset corev1.EndpointSubset
		for _, ak := range sortedAddressKeys(g.addrs) {
			if g.addrs[ak] {
				subset.Addresses = append(subset.Addresses, b.addrs[ak])
			} else {
				subset.NotReadyAddresses = append(subset.NotReadyAddresses, b.addrs[ak])
			}
		}
		slices.SortFunc(g.ports, comparePorts)
		for _, pk := range g.ports {
			if !pk.noPorts {
				subset.Ports = append(subset.Ports, pk.endpointPort())
			}
		}
		out = append(out, subset)
	}
	return out
}

// signature identifies a set of addresses with their readiness.
func signature(set map[addressKey]bool) string {
	var sb strings.Builder
	for _, ak := range sortedAddressKeys(set) {
		sb.WriteString(ak.ip)
		sb.WriteByte('/')
		sb.WriteString(string(ak.uid))
		sb.WriteByte('/')
		sb.WriteString(strconv.FormatBool(set[ak]))
		sb.WriteByte(';')
	}
	return sb.String()
}

func sortedAddressKeys(set map[addressKey]bool) []addressKey {
	keys := make([]addressKey, 0, len(set))
	for ak := range set {
		keys = append(keys, ak)
	}
	slices.SortFunc(keys, func(a, b addressKey) int {
		if c := compareIPs(a.ip, b.ip); c != 0 {
			return c
		}
		return cmp.Compare(a.uid, b.uid)
	})
	return keys
}

// compareIPs orders addresses numerically (10.0.0.9 before 10.0.0.10).
func compareIPs(a, b string) int {
	aa, errA := netip.ParseAddr(a)
	ba, errB := netip.ParseAddr(b)
	if errA != nil || errB != nil {
		return cmp.Compare(a, b)
	}
	return aa.Compare(ba)
}

func comparePorts(a, b portKey) int {
	return cmp.Or(
		cmp.Compare(a.name, b.name),
		cmp.Compare(a.port, b.port),
		cmp.Compare(a.protocol, b.protocol),
		cmp.Compare(a.appProtocol, b.appProtocol),
	)
}

// truncate caps e at MaxCapacity addresses, as Kubernetes does: not-ready
// addresses go first; if the ready ones alone are too many, every subset
// keeps its share of them. It reports whether anything was cut.
func truncate(e *corev1.Endpoints) bool {
	var ready, notReady int
	for _, s := range e.Subsets {
		ready += len(s.Addresses)
		notReady += len(s.NotReadyAddresses)
	}
	if ready+notReady <= MaxCapacity {
		return false
	}
	truncateReady := ready > MaxCapacity
	budget, total := MaxCapacity-ready, notReady
	if truncateReady {
		budget, total = MaxCapacity, ready
	}
	left := budget
	for i := range e.Subsets {
		s := &e.Subsets[i]
		n := len(s.NotReadyAddresses)
		if truncateReady {
			n = len(s.Addresses)
		}
		share := min(int(math.Ceil(float64(n)/float64(total)*float64(budget))), left)
		if truncateReady {
			s.Addresses = s.Addresses[:min(share, len(s.Addresses))]
			s.NotReadyAddresses = nil
			left -= len(s.Addresses)
		} else {
			s.NotReadyAddresses = s.NotReadyAddresses[:min(share, len(s.NotReadyAddresses))]
			left -= len(s.NotReadyAddresses)
		}
	}
	return true
}
