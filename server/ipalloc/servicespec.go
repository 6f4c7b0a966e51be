package ipalloc

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// What a Service holds follows from its spec alone, so create, update,
// delete and Restore agree without remembering anything per Service.

// holdsClusterIPs: every type but ExternalName has cluster IPs, unless
// headless.
func holdsClusterIPs(svc *corev1.Service) bool {
	return svc.Spec.Type != corev1.ServiceTypeExternalName && !isHeadless(svc)
}

func isHeadless(svc *corev1.Service) bool {
	return svc.Spec.ClusterIP == corev1.ClusterIPNone ||
		len(svc.Spec.ClusterIPs) > 0 && svc.Spec.ClusterIPs[0] == corev1.ClusterIPNone
}

func needsNodePorts(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer
}

// shouldAllocateNodePorts: a LoadBalancer may opt out of node ports it did
// not ask for (spec.allocateLoadBalancerNodePorts=false).
func shouldAllocateNodePorts(svc *corev1.Service) bool {
	switch svc.Spec.Type {
	case corev1.ServiceTypeNodePort:
		return true
	case corev1.ServiceTypeLoadBalancer:
		return svc.Spec.AllocateLoadBalancerNodePorts == nil || *svc.Spec.AllocateLoadBalancerNodePorts
	}
	return false
}

// needsHealthCheck: a LoadBalancer that keeps traffic node-local gets a
// health check node port for the load balancer to probe.
func needsHealthCheck(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer &&
		svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
}

// ipsHeld lists the cluster IPs svc holds. Unparsable entries are skipped:
// they were never allocated.
func ipsHeld(svc *corev1.Service) []netip.Addr {
	if !holdsClusterIPs(svc) {
		return nil
	}
	strs := svc.Spec.ClusterIPs
	if len(strs) == 0 && svc.Spec.ClusterIP != "" {
		strs = []string{svc.Spec.ClusterIP}
	}
	var out []netip.Addr
	for _, s := range strs {
		if ip, err := netip.ParseAddr(s); err == nil && !slices.Contains(out, ip.Unmap()) {
			out = append(out, ip.Unmap())
		}
	}
	return out
}

// portsHeld lists the node ports svc holds, each once (TCP and UDP of one
// port may share one).
func portsHeld(svc *corev1.Service) []int32 {
	var out []int32
	add := func(p int32) {
		if p != 0 && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	if needsNodePorts(svc) {
		for _, p := range svc.Spec.Ports {
			add(p.NodePort)
		}
	}
	if needsHealthCheck(svc) {
		add(svc.Spec.HealthCheckNodePort)
	}
	return out
}

// syncClusterIPs makes spec.clusterIP and spec.clusterIPs[0] agree when the
// client set only one of them, as the v1 defaulting does.
func syncClusterIPs(svc *corev1.Service) {
	switch {
	case svc.Spec.ClusterIP != "" && len(svc.Spec.ClusterIPs) == 0:
		svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
	case svc.Spec.ClusterIP == "" && len(svc.Spec.ClusterIPs) > 0:
		svc.Spec.ClusterIP = svc.Spec.ClusterIPs[0]
	}
}

// PatchAllocatedValues copies into svc the allocated values the client
// left out of an update (a PUT of a manifest without clusterIP or
// nodePort), so the update keeps them instead of allocating new ones:
// clusterIP(s), nodePorts matched by port name, healthCheckNodePort. It is
// idempotent; the services strategy may call it before validation too, so
// that "field is immutable" is not reported for a value the client omitted.
func PatchAllocatedValues(svc, old *corev1.Service) {
	if svc.Spec.Type != corev1.ServiceTypeExternalName && old.Spec.Type != corev1.ServiceTypeExternalName {
		if svc.Spec.ClusterIP == "" {
			svc.Spec.ClusterIP = old.Spec.ClusterIP
		}
		if len(svc.Spec.ClusterIPs) == 0 && len(old.Spec.ClusterIPs) > 0 {
			svc.Spec.ClusterIPs = slices.Clone(old.Spec.ClusterIPs)
		}
	}
	if needsNodePorts(svc) && needsNodePorts(old) {
		// A nodePort still named by the new spec cannot move to another port.
		used := map[int32]bool{}
		for _, p := range svc.Spec.Ports {
			if p.NodePort != 0 {
				used[p.NodePort] = true
			}
		}
		byName := map[string]int32{}
		for _, p := range old.Spec.Ports {
			byName[p.Name] = p.NodePort
		}
		for i := range svc.Spec.Ports {
			p := &svc.Spec.Ports[i]
			if np := byName[p.Name]; p.NodePort == 0 && np != 0 && !used[np] {
				p.NodePort = np
			}
		}
	}
	if needsHealthCheck(svc) && needsHealthCheck(old) && svc.Spec.HealthCheckNodePort == 0 {
		svc.Spec.HealthCheckNodePort = old.Spec.HealthCheckNodePort
	}
}

// initIPFamilies fills in spec.ipFamilyPolicy and spec.ipFamilies as
// Kubernetes does on a single-stack cluster, and refuses families the
// cluster does not have.
func (s *Services) initIPFamilies(svc, old *corev1.Service) error {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil
	}
	headlessNoSelector := isHeadless(svc) && len(svc.Spec.Selector) == 0
	if svc.Spec.IPFamilyPolicy == nil {
		switch {
		case old != nil && old.Spec.IPFamilyPolicy != nil:
			svc.Spec.IPFamilyPolicy = ptr.To(*old.Spec.IPFamilyPolicy)
		case headlessNoSelector:
			// Kubernetes' special case: such a Service serves whatever
			// endpoints it is given, of any family.
			svc.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicyRequireDualStack)
		default:
			svc.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicySingleStack)
		}
	}
	fam := s.family()
	if headlessNoSelector {
		if len(svc.Spec.IPFamilies) == 0 {
			svc.Spec.IPFamilies = []corev1.IPFamily{fam}
		}
		if len(svc.Spec.IPFamilies) == 1 && *svc.Spec.IPFamilyPolicy != corev1.IPFamilyPolicySingleStack {
			svc.Spec.IPFamilies = append(svc.Spec.IPFamilies, otherFamily(svc.Spec.IPFamilies[0]))
		}
		return nil
	}

	var errs field.ErrorList
	if *svc.Spec.IPFamilyPolicy == corev1.IPFamilyPolicyRequireDualStack {
		errs = append(errs, field.Invalid(field.NewPath("spec", "ipFamilyPolicy"), *svc.Spec.IPFamilyPolicy,
			"this cluster is not configured for dual-stack services"))
	}
	for i, f := range svc.Spec.IPFamilies {
		if f != fam {
			errs = append(errs, field.Invalid(field.NewPath("spec", "ipFamilies").Index(i), f, "not configured on this cluster"))
		}
	}
	for i, str := range svc.Spec.ClusterIPs {
		if str == corev1.ClusterIPNone {
			break
		}
		if ip, err := netip.ParseAddr(str); err == nil && familyOf(ip) != fam {
			errs = append(errs, field.Invalid(field.NewPath("spec", "clusterIPs").Index(i), svc.Spec.ClusterIPs,
				string(familyOf(ip))+" is not configured on this cluster"))
		}
	}
	if len(errs) > 0 {
		return invalid(svc, errs...)
	}
	if len(svc.Spec.IPFamilies) == 0 {
		svc.Spec.IPFamilies = []corev1.IPFamily{fam}
	}
	return nil
}

func familyOf(ip netip.Addr) corev1.IPFamily {
	if ip.Unmap().Is4() {
		return corev1.IPv4Protocol
	}
	return corev1.IPv6Protocol
}

func otherFamily(f corev1.IPFamily) corev1.IPFamily {
	if f == corev1.IPv4Protocol {
		return corev1.IPv6Protocol
	}
	return corev1.IPv4Protocol
}

// DropTypeDependentFields clears, on a type change, the allocated values
// the new type does not use and the client left as they were: cluster IPs
// (and families, policy) when switching to ExternalName, node ports when
// switching to ClusterIP or ExternalName, the health check port when it is
// no longer needed, allocateLoadBalancerNodePorts off LoadBalancer. This is
// what Kubernetes' service update strategy does before validation, so that
// `kubectl edit` of the type alone succeeds; values the client changed are
// left for validation to refuse. an update releases the same values once stored.
func DropTypeDependentFields(svc, old *corev1.Service) {
	if old.Spec.Type != corev1.ServiceTypeExternalName && svc.Spec.Type == corev1.ServiceTypeExternalName {
		if svc.Spec.ClusterIP == old.Spec.ClusterIP && slices.Equal(svc.Spec.ClusterIPs, old.Spec.ClusterIPs) {
			svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "", nil
		}
		if slices.Equal(svc.Spec.IPFamilies, old.Spec.IPFamilies) {
			svc.Spec.IPFamilies = nil
		}
		if ptr.Equal(svc.Spec.IPFamilyPolicy, old.Spec.IPFamilyPolicy) {
			svc.Spec.IPFamilyPolicy = nil
		}
	}
	if needsNodePorts(old) && !needsNodePorts(svc) {
		// Ports may be added, removed or edited; only node ports the old
		// spec already had are dropped.
		oldPorts := map[int32]bool{}
		for _, p := range old.Spec.Ports {
			oldPorts[p.NodePort] = true
		}
		unchanged := true
		for _, p := range svc.Spec.Ports {
			if p.NodePort != 0 && !oldPorts[p.NodePort] {
				unchanged = false
			}
		}
		if unchanged {
			for i := range svc.Spec.Ports {
				svc.Spec.Ports[i].NodePort = 0
			}
		}
	}
	if needsHealthCheck(old) && !needsHealthCheck(svc) && svc.Spec.HealthCheckNodePort == old.Spec.HealthCheckNodePort {
		svc.Spec.HealthCheckNodePort = 0
	}
	if old.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.Type != corev1.ServiceTypeLoadBalancer &&
		ptr.Equal(svc.Spec.AllocateLoadBalancerNodePorts, old.Spec.AllocateLoadBalancerNodePorts) {
		svc.Spec.AllocateLoadBalancerNodePorts = nil
	}
}
