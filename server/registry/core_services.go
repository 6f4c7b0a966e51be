package registry

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// servicesResource is core/v1 services. Cluster IPs, IP families and node
// ports are allocated by hooks the server attaches (server/ipalloc); this
// entry defaults, validates and prints.
func servicesResource() *Resource {
	return &Resource{
		GroupVersion:   schema.GroupVersion{Version: "v1"},
		Name:           "services",
		Kind:           "Service",
		SingularName:   "service",
		Namespaced:     true,
		ShortNames:     []string{"svc"},
		Categories:     []string{"all"},
		Subresources:   []string{"status"},
		NameValidation: apivalidation.NameIsDNS1035Label,
		New:            func() runtime.Object { return &corev1.Service{} },
		NewList:        func() runtime.Object { return &corev1.ServiceList{} },
		Default:        func(obj runtime.Object) { defaultService(obj.(*corev1.Service)) },
		PrepareForCreate: func(obj runtime.Object) {
			obj.(*corev1.Service).Status = corev1.ServiceStatus{}
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			svc, oldSvc := obj.(*corev1.Service), old.(*corev1.Service)
			svc.Status = oldSvc.Status
			patchAllocatedValues(svc, oldSvc)
			dropTypeDependentFields(svc, oldSvc)
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.Service).Spec = old.(*corev1.Service).Spec
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateService(obj.(*corev1.Service)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateServiceUpdate(obj.(*corev1.Service), old.(*corev1.Service))
		},
		Columns: serviceColumns(),
		Row:     func(obj runtime.Object) []interface{} { return serviceRow(obj.(*corev1.Service)) },
		Fields: func(obj runtime.Object) fields.Set {
			svc := obj.(*corev1.Service)
			return fields.Set{"spec.clusterIP": svc.Spec.ClusterIP, "spec.type": string(svc.Spec.Type)}
		},
	}
}

// externallyAccessible: services reachable from outside the cluster, which
// have an externalTrafficPolicy.
func externallyAccessible(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer || svc.Spec.Type == corev1.ServiceTypeNodePort ||
		(svc.Spec.Type == corev1.ServiceTypeClusterIP && len(svc.Spec.ExternalIPs) > 0)
}

func needsNodePorts(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer
}

func needsHealthCheckNodePort(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
}

func isHeadless(svc *corev1.Service) bool {
	return svc.Spec.ClusterIP == corev1.ClusterIPNone
}

// defaultService is SetDefaults_Service plus the v1 mirroring of clusterIP
// and clusterIPs. The IP family fields are left to the allocator, which
// knows the service CIDR's family.
func defaultService(svc *corev1.Service) {
	s := &svc.Spec
	if s.SessionAffinity == "" {
		s.SessionAffinity = corev1.ServiceAffinityNone
	}
	if s.SessionAffinity == corev1.ServiceAffinityClientIP {
		if s.SessionAffinityConfig == nil {
			s.SessionAffinityConfig = &corev1.SessionAffinityConfig{}
		}
		if s.SessionAffinityConfig.ClientIP == nil {
			s.SessionAffinityConfig.ClientIP = &corev1.ClientIPConfig{}
		}
		if s.SessionAffinityConfig.ClientIP.TimeoutSeconds == nil {
			s.SessionAffinityConfig.ClientIP.TimeoutSeconds = ptr.To(corev1.DefaultClientIPServiceAffinitySeconds)
		}
	}
	if s.Type == "" {
		s.Type = corev1.ServiceTypeClusterIP
	}
	for i := range s.Ports {
		p := &s.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort == intstr.FromInt32(0) || p.TargetPort == intstr.FromString("") {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
	if len(s.ClusterIPs) == 0 && s.ClusterIP != "" {
		s.ClusterIPs = []string{s.ClusterIP}
	} else if s.ClusterIP == "" && len(s.ClusterIPs) > 0 {
		s.ClusterIP = s.ClusterIPs[0]
	}
	if externallyAccessible(svc) && s.ExternalTrafficPolicy == "" {
		s.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	if s.InternalTrafficPolicy == nil && s.Type != corev1.ServiceTypeExternalName {
		s.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyCluster)
	}
	if s.Type == corev1.ServiceTypeLoadBalancer {
		if s.AllocateLoadBalancerNodePorts == nil {
			s.AllocateLoadBalancerNodePorts = ptr.To(true)
		}
		for i := range svc.Status.LoadBalancer.Ingress {
			ing := &svc.Status.LoadBalancer.Ingress[i]
			if ing.IP != "" && ing.IPMode == nil {
				ing.IPMode = ptr.To(corev1.LoadBalancerIPModeVIP)
			}
		}
	}
}

// patchAllocatedValues: an update that omits the allocated cluster IPs,
// node ports or health check port (e.g. `kubectl replace` of the original
// manifest) keeps them, as Kubernetes' service strategy does.
func patchAllocatedValues(svc, old *corev1.Service) {
	if old.Spec.Type != corev1.ServiceTypeExternalName && svc.Spec.Type != corev1.ServiceTypeExternalName {
		if svc.Spec.ClusterIP == "" {
			svc.Spec.ClusterIP = old.Spec.ClusterIP
		}
		if len(svc.Spec.ClusterIPs) == 0 && len(old.Spec.ClusterIPs) > 0 {
			svc.Spec.ClusterIPs = append([]string(nil), old.Spec.ClusterIPs...)
		}
	}
	if needsNodePorts(old) && needsNodePorts(svc) {
		used := func(s *corev1.Service) sets.Set[int32] {
			u := sets.New[int32]()
			for _, p := range s.Spec.Ports {
				if p.NodePort != 0 {
					u.Insert(p.NodePort)
				}
			}
			return u
		}
		taken := used(old).Intersection(used(svc))
		byName := map[string]int32{}
		for _, p := range old.Spec.Ports {
			byName[p.Name] = p.NodePort
		}
		for i := range svc.Spec.Ports {
			p := &svc.Spec.Ports[i]
			if p.NodePort == 0 && !taken.Has(byName[p.Name]) {
				p.NodePort = byName[p.Name]
			}
		}
	}
	if needsHealthCheckNodePort(old) && needsHealthCheckNodePort(svc) && svc.Spec.HealthCheckNodePort == 0 {
		svc.Spec.HealthCheckNodePort = old.Spec.HealthCheckNodePort
	}
}

// dropTypeDependentFields clears, on a type change, what the old type had
// (perhaps allocated or defaulted) and the new type cannot have, unless the
// user changed it in this very update.
func dropTypeDependentFields(svc, old *corev1.Service) {
	if old.Spec.Type != corev1.ServiceTypeExternalName && svc.Spec.Type == corev1.ServiceTypeExternalName {
		if svc.Spec.ClusterIP == old.Spec.ClusterIP && equalStrings(svc.Spec.ClusterIPs, old.Spec.ClusterIPs) {
			svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "", nil
		}
		if equalFamilies(svc.Spec.IPFamilies, old.Spec.IPFamilies) {
			svc.Spec.IPFamilies = nil
		}
		if ptr.Equal(svc.Spec.IPFamilyPolicy, old.Spec.IPFamilyPolicy) {
			svc.Spec.IPFamilyPolicy = nil
		}
		if ptr.Equal(svc.Spec.InternalTrafficPolicy, old.Spec.InternalTrafficPolicy) {
			svc.Spec.InternalTrafficPolicy = nil
		}
	}
	if needsNodePorts(old) && !needsNodePorts(svc) && sameNodePorts(svc, old) {
		for i := range svc.Spec.Ports {
			svc.Spec.Ports[i].NodePort = 0
		}
	}
	if old.Spec.Type == corev1.ServiceTypeLoadBalancer && svc.Spec.Type != corev1.ServiceTypeLoadBalancer &&
		svc.Spec.AllocateLoadBalancerNodePorts != nil && old.Spec.AllocateLoadBalancerNodePorts != nil &&
		*svc.Spec.AllocateLoadBalancerNodePorts == *old.Spec.AllocateLoadBalancerNodePorts {
		svc.Spec.AllocateLoadBalancerNodePorts = nil
	}
	if needsHealthCheckNodePort(old) && !needsHealthCheckNodePort(svc) && svc.Spec.HealthCheckNodePort == old.Spec.HealthCheckNodePort {
		svc.Spec.HealthCheckNodePort = 0
	}
	if externallyAccessible(old) && !externallyAccessible(svc) && svc.Spec.ExternalTrafficPolicy == old.Spec.ExternalTrafficPolicy {
		svc.Spec.ExternalTrafficPolicy = ""
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		svc.Status.LoadBalancer = corev1.LoadBalancerStatus{}
		if ptr.Equal(svc.Spec.LoadBalancerClass, old.Spec.LoadBalancerClass) {
			svc.Spec.LoadBalancerClass = nil
		}
	}
}

func sameNodePorts(a, b *corev1.Service) bool {
	if len(a.Spec.Ports) != len(b.Spec.Ports) {
		return false
	}
	for i := range a.Spec.Ports {
		if a.Spec.Ports[i].NodePort != b.Spec.Ports[i].NodePort {
			return false
		}
	}
	return true
}

func equalFamilies(a, b []corev1.IPFamily) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var supportedServiceTypes = []corev1.ServiceType{
	corev1.ServiceTypeClusterIP, corev1.ServiceTypeExternalName, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeNodePort,
}

// validateService is the spec part of ValidateService. Node port ranges
// and cluster IP ranges are checked by the allocator.
func validateService(svc *corev1.Service) field.ErrorList {
	specPath := field.NewPath("spec")
	s := &svc.Spec
	var allErrs field.ErrorList

	switch s.Type {
	case "":
		allErrs = append(allErrs, field.Required(specPath.Child("type"), ""))
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort, corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeExternalName:
	default:
		allErrs = append(allErrs, field.NotSupported(specPath.Child("type"), s.Type, supportedServiceTypes))
	}

	if s.Type == corev1.ServiceTypeExternalName {
		if len(s.ClusterIPs) > 0 || s.ClusterIP != "" {
			allErrs = append(allErrs, field.Forbidden(specPath.Child("clusterIPs"), "may not be set for ExternalName services"))
		}
		if len(s.IPFamilies) > 0 {
			allErrs = append(allErrs, field.Forbidden(specPath.Child("ipFamilies"), "may not be set for ExternalName services"))
		}
		if s.IPFamilyPolicy != nil {
			allErrs = append(allErrs, field.Forbidden(specPath.Child("ipFamilyPolicy"), "may not be set for ExternalName services"))
		}
		// A trailing dot marks a fully qualified name.
		if name := strings.TrimSuffix(s.ExternalName, "."); name != "" {
			for _, msg := range validation.IsDNS1123Subdomain(name) {
				allErrs = append(allErrs, field.Invalid(specPath.Child("externalName"), name, msg))
			}
		} else {
			allErrs = append(allErrs, field.Required(specPath.Child("externalName"), ""))
		}
	} else {
		allErrs = append(allErrs, validateClusterIPs(svc, specPath)...)
	}

	portsPath := specPath.Child("ports")
	if len(s.Ports) == 0 && !isHeadless(svc) && s.Type != corev1.ServiceTypeExternalName {
		allErrs = append(allErrs, field.Required(portsPath, ""))
	}
	names := sets.New[string]()
	type portKey struct {
		protocol corev1.Protocol
		port     int32
	}
	seen, seenNode := map[portKey]bool{}, map[portKey]bool{}
	for i, p := range s.Ports {
		idxPath := portsPath.Index(i)
		allErrs = append(allErrs, validateServicePort(&p, len(s.Ports) > 1, names, idxPath)...)
		key := portKey{p.Protocol, p.Port}
		if seen[key] {
			allErrs = append(allErrs, field.Duplicate(idxPath, corev1.ServicePort{Protocol: p.Protocol, Port: p.Port}))
		}
		seen[key] = true
		if p.NodePort != 0 {
			if s.Type == corev1.ServiceTypeClusterIP {
				allErrs = append(allErrs, field.Forbidden(idxPath.Child("nodePort"), "may not be used when `type` is 'ClusterIP'"))
			}
			nk := portKey{p.Protocol, p.NodePort}
			if seenNode[nk] {
				allErrs = append(allErrs, field.Duplicate(idxPath.Child("nodePort"), p.NodePort))
			}
			seenNode[nk] = true
		}
	}

	switch s.SessionAffinity {
	case "":
		allErrs = append(allErrs, field.Required(specPath.Child("sessionAffinity"), ""))
	case corev1.ServiceAffinityNone:
		if s.SessionAffinityConfig != nil {
			allErrs = append(allErrs, field.Forbidden(specPath.Child("sessionAffinityConfig"),
				fmt.Sprintf("must not be set when session affinity is %s", corev1.ServiceAffinityNone)))
		}
	case corev1.ServiceAffinityClientIP:
		cfg := s.SessionAffinityConfig
		p := specPath.Child("sessionAffinityConfig", "clientIP", "timeoutSeconds")
		switch {
		case cfg == nil || cfg.ClientIP == nil || cfg.ClientIP.TimeoutSeconds == nil:
			allErrs = append(allErrs, field.Required(p, fmt.Sprintf("when session affinity type is %s", corev1.ServiceAffinityClientIP)))
		case *cfg.ClientIP.TimeoutSeconds <= 0 || *cfg.ClientIP.TimeoutSeconds > maxClientIPServiceAffinitySeconds:
			allErrs = append(allErrs, field.Invalid(p, *cfg.ClientIP.TimeoutSeconds,
				fmt.Sprintf("must be greater than 0 and less than %d", maxClientIPServiceAffinitySeconds)))
		}
	default:
		allErrs = append(allErrs, field.NotSupported(specPath.Child("sessionAffinity"), s.SessionAffinity,
			[]corev1.ServiceAffinity{corev1.ServiceAffinityClientIP, corev1.ServiceAffinityNone}))
	}

	for i, ip := range s.ExternalIPs {
		p := specPath.Child("externalIPs").Index(i)
		if errs := validation.IsValidIP(p, ip); len(errs) > 0 {
			allErrs = append(allErrs, errs...)
		} else {
			allErrs = append(allErrs, validateNonSpecialIP(ip, p)...)
		}
	}
	allErrs = append(allErrs, metav1validation.ValidateLabels(s.Selector, specPath.Child("selector"))...)

	if len(s.LoadBalancerSourceRanges) > 0 {
		p := specPath.Child("loadBalancerSourceRanges")
		if s.Type != corev1.ServiceTypeLoadBalancer {
			allErrs = append(allErrs, field.Forbidden(p, "may only be used when `type` is 'LoadBalancer'"))
		}
		for i, r := range s.LoadBalancerSourceRanges {
			allErrs = append(allErrs, validation.IsValidCIDR(p.Index(i), strings.TrimSpace(r))...)
		}
	}

	etp := specPath.Child("externalTrafficPolicy")
	switch {
	case !externallyAccessible(svc):
		if s.ExternalTrafficPolicy != "" {
			allErrs = append(allErrs, field.Invalid(etp, s.ExternalTrafficPolicy, "may only be set for externally-accessible services"))
		}
	case s.ExternalTrafficPolicy == "":
		allErrs = append(allErrs, field.Required(etp, ""))
	case s.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster && s.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal:
		allErrs = append(allErrs, field.NotSupported(etp, s.ExternalTrafficPolicy, []corev1.ServiceExternalTrafficPolicy{
			corev1.ServiceExternalTrafficPolicyCluster, corev1.ServiceExternalTrafficPolicyLocal}))
	}
	if s.HealthCheckNodePort != 0 && !needsHealthCheckNodePort(svc) {
		allErrs = append(allErrs, field.Invalid(specPath.Child("healthCheckNodePort"), s.HealthCheckNodePort,
			"may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'"))
	}
	itp := specPath.Child("internalTrafficPolicy")
	if s.Type != corev1.ServiceTypeExternalName {
		if s.InternalTrafficPolicy == nil {
			allErrs = append(allErrs, field.Required(itp, ""))
		} else if p := *s.InternalTrafficPolicy; p != corev1.ServiceInternalTrafficPolicyCluster && p != corev1.ServiceInternalTrafficPolicyLocal {
			allErrs = append(allErrs, field.NotSupported(itp, p, []corev1.ServiceInternalTrafficPolicy{
				corev1.ServiceInternalTrafficPolicyCluster, corev1.ServiceInternalTrafficPolicyLocal}))
		}
	}
	if s.AllocateLoadBalancerNodePorts != nil && s.Type != corev1.ServiceTypeLoadBalancer {
		allErrs = append(allErrs, field.Forbidden(specPath.Child("allocateLoadBalancerNodePorts"), "may only be used when `type` is 'LoadBalancer'"))
	}
	if s.IPFamilyPolicy != nil {
		switch *s.IPFamilyPolicy {
		case corev1.IPFamilyPolicySingleStack, corev1.IPFamilyPolicyPreferDualStack, corev1.IPFamilyPolicyRequireDualStack:
		default:
			allErrs = append(allErrs, field.NotSupported(specPath.Child("ipFamilyPolicy"), *s.IPFamilyPolicy, []corev1.IPFamilyPolicy{
				corev1.IPFamilyPolicyPreferDualStack, corev1.IPFamilyPolicyRequireDualStack, corev1.IPFamilyPolicySingleStack}))
		}
	}
	for i, f := range s.IPFamilies {
		if f != corev1.IPv4Protocol && f != corev1.IPv6Protocol {
			allErrs = append(allErrs, field.NotSupported(specPath.Child("ipFamilies").Index(i), f, []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}))
		}
	}
	allErrs = append(allErrs, validateLoadBalancerStatus(&svc.Status.LoadBalancer, field.NewPath("status", "loadBalancer"))...)
	return allErrs
}

// validateClusterIPs: clusterIP is empty (to be allocated), "None"
// (headless, ClusterIP type only) or an IP, and clusterIPs[0] agrees.
func validateClusterIPs(svc *corev1.Service, specPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	s := &svc.Spec
	ipsPath := specPath.Child("clusterIPs")
	if s.ClusterIP == "" && len(s.ClusterIPs) == 0 {
		return nil
	}
	if len(s.ClusterIPs) == 0 || s.ClusterIPs[0] != s.ClusterIP {
		allErrs = append(allErrs, field.Invalid(ipsPath, s.ClusterIPs, "first value must match `clusterIP`"))
	}
	if s.ClusterIP == corev1.ClusterIPNone {
		if s.Type == corev1.ServiceTypeNodePort || s.Type == corev1.ServiceTypeLoadBalancer {
			allErrs = append(allErrs, field.Invalid(ipsPath.Index(0), s.ClusterIP, fmt.Sprintf("may not be set to 'None' for %s services", s.Type)))
		}
		if len(s.ClusterIPs) > 1 {
			allErrs = append(allErrs, field.Invalid(ipsPath, s.ClusterIPs, "must not have more than one value when the first is 'None'"))
		}
		return allErrs
	}
	if len(s.ClusterIPs) > 2 {
		allErrs = append(allErrs, field.Invalid(ipsPath, s.ClusterIPs, "may only hold up to 2 values"))
	}
	for i, ip := range s.ClusterIPs {
		p := ipsPath.Index(i)
		if i == 0 && ip != s.ClusterIP {
			continue
		}
		allErrs = append(allErrs, validation.IsValidIP(p, ip)...)
	}
	return allErrs
}

func validateServicePort(p *corev1.ServicePort, requireName bool, names sets.Set[string], fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if requireName && p.Name == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("name"), ""))
	} else if p.Name != "" {
		for _, msg := range validation.IsDNS1123Label(p.Name) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("name"), p.Name, msg))
		}
		if names.Has(p.Name) {
			allErrs = append(allErrs, field.Duplicate(fldPath.Child("name"), p.Name))
		}
		names.Insert(p.Name)
	}
	for _, msg := range validation.IsValidPortNum(int(p.Port)) {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("port"), p.Port, msg))
	}
	allErrs = append(allErrs, validateProtocol(p.Protocol, fldPath.Child("protocol"))...)
	allErrs = append(allErrs, validatePortNumOrName(p.TargetPort, fldPath.Child("targetPort"))...)
	if p.AppProtocol != nil {
		for _, msg := range validation.IsQualifiedName(*p.AppProtocol) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("appProtocol"), *p.AppProtocol, msg))
		}
	}
	return allErrs
}

func validateLoadBalancerStatus(st *corev1.LoadBalancerStatus, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for i, ing := range st.Ingress {
		idxPath := fldPath.Child("ingress").Index(i)
		if ing.IP != "" {
			allErrs = append(allErrs, validation.IsValidIP(idxPath.Child("ip"), ing.IP)...)
		} else if ing.IPMode != nil {
			allErrs = append(allErrs, field.Forbidden(idxPath.Child("ipMode"), "may not be specified when `ip` is not set"))
		}
		if ing.Hostname != "" {
			for _, msg := range validation.IsDNS1123Subdomain(ing.Hostname) {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("hostname"), ing.Hostname, msg))
			}
			if _, err := netip.ParseAddr(ing.Hostname); err == nil {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("hostname"), ing.Hostname, "must be a DNS name, not an IP address"))
			}
		}
	}
	return allErrs
}

// validateServiceUpdate: the primary cluster IP never changes while the
// service has one (switching to or from ExternalName releases it).
func validateServiceUpdate(svc, old *corev1.Service) field.ErrorList {
	var allErrs field.ErrorList
	if svc.Spec.Type != corev1.ServiceTypeExternalName && old.Spec.Type != corev1.ServiceTypeExternalName && old.Spec.ClusterIP != "" {
		allErrs = append(allErrs, apivalidation.ValidateImmutableField(svc.Spec.ClusterIP, old.Spec.ClusterIP, field.NewPath("spec", "clusterIP"))...)
		if len(old.Spec.ClusterIPs) > 0 && len(svc.Spec.ClusterIPs) > 0 && old.Spec.ClusterIPs[0] != svc.Spec.ClusterIPs[0] {
			allErrs = append(allErrs, field.Invalid(field.NewPath("spec", "clusterIPs").Index(0), svc.Spec.ClusterIPs, "may not change once set"))
		}
	}
	return allErrs
}

// validateNonSpecialIP refuses addresses no service or endpoint may use.
func validateNonSpecialIP(ip string, fldPath *field.Path) field.ErrorList {
	addr := net.ParseIP(ip)
	if addr == nil {
		return field.ErrorList{field.Invalid(fldPath, ip, "must be a valid IP address")}
	}
	var allErrs field.ErrorList
	if addr.IsUnspecified() {
		allErrs = append(allErrs, field.Invalid(fldPath, ip, fmt.Sprintf("may not be unspecified (%v)", ip)))
	}
	if addr.IsLoopback() {
		allErrs = append(allErrs, field.Invalid(fldPath, ip, "may not be in the loopback range (127.0.0.0/8, ::1/128)"))
	}
	if addr.IsLinkLocalUnicast() {
		allErrs = append(allErrs, field.Invalid(fldPath, ip, "may not be in the link-local range (169.254.0.0/16, fe80::/10)"))
	}
	if addr.IsLinkLocalMulticast() {
		allErrs = append(allErrs, field.Invalid(fldPath, ip, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"))
	}
	return allErrs
}

func serviceColumns() []metav1.TableColumnDefinition {
	doc := corev1.ServiceSpec{}.SwaggerDoc()
	return []metav1.TableColumnDefinition{
		nameColumn(),
		column("Type", "string", doc["type"], 0),
		column("Cluster-IP", "string", doc["clusterIP"], 0),
		column("External-IP", "string", doc["externalIPs"], 0),
		column("Port(s)", "string", doc["ports"], 0),
		ageColumn(),
		column("Selector", "string", doc["selector"], 1),
	}
}

// serviceRow is printService.
func serviceRow(svc *corev1.Service) []interface{} {
	clusterIP := "<none>"
	if len(svc.Spec.ClusterIPs) > 0 {
		clusterIP = svc.Spec.ClusterIPs[0]
	}
	ports := servicePortsText(svc.Spec.Ports)
	if ports == "" {
		ports = "<none>"
	}
	return []interface{}{
		svc.Name, string(svc.Spec.Type), clusterIP, serviceExternalIP(svc), ports,
		translateTimestampSince(svc.CreationTimestamp), formatLabels(svc.Spec.Selector),
	}
}

// servicePortsText renders "80/TCP" or, with a node port, "80:30080/TCP".
func servicePortsText(ports []corev1.ServicePort) string {
	pieces := make([]string, len(ports))
	for i, p := range ports {
		pieces[i] = fmt.Sprintf("%d/%s", p.Port, p.Protocol)
		if p.NodePort > 0 {
			pieces[i] = fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol)
		}
	}
	return strings.Join(pieces, ",")
}

// serviceExternalIP is the EXTERNAL-IP cell: external IPs, load balancer
// addresses ("<pending>" until there are some) or the external name. The
// table is generated wide, so addresses are not shortened.
func serviceExternalIP(svc *corev1.Service) string {
	switch svc.Spec.Type {
	case corev1.ServiceTypeClusterIP, corev1.ServiceTypeNodePort:
		if len(svc.Spec.ExternalIPs) > 0 {
			return strings.Join(svc.Spec.ExternalIPs, ",")
		}
		return "<none>"
	case corev1.ServiceTypeLoadBalancer:
		lb := sets.New[string]()
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IP != "" {
				lb.Insert(ing.IP)
			} else if ing.Hostname != "" {
				lb.Insert(ing.Hostname)
			}
		}
		all := sets.List(lb)
		all = append(all, svc.Spec.ExternalIPs...)
		if len(all) == 0 {
			return "<pending>"
		}
		return strings.Join(all, ",")
	case corev1.ServiceTypeExternalName:
		return svc.Spec.ExternalName
	}
	return "<unknown>"
}

// endpointsResource is core/v1 endpoints, written by the endpoints
// controller and read by every agent's service proxy and DNS.
func endpointsResource() *Resource {
	return &Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"},
		Name:         "endpoints",
		Kind:         "Endpoints",
		SingularName: "endpoints",
		Namespaced:   true,
		ShortNames:   []string{"ep"},
		New:          func() runtime.Object { return &corev1.Endpoints{} },
		NewList:      func() runtime.Object { return &corev1.EndpointsList{} },
		Default: func(obj runtime.Object) {
			ep := obj.(*corev1.Endpoints)
			for i := range ep.Subsets {
				for j := range ep.Subsets[i].Ports {
					if p := &ep.Subsets[i].Ports[j]; p.Protocol == "" {
						p.Protocol = corev1.ProtocolTCP
					}
				}
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateEndpoints(obj.(*corev1.Endpoints)) },
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Endpoints", "string", corev1.Endpoints{}.SwaggerDoc()["subsets"], 0),
			ageColumn(),
		},
		Row: func(obj runtime.Object) []interface{} {
			ep := obj.(*corev1.Endpoints)
			return []interface{}{ep.Name, endpointsText(ep), translateTimestampSince(ep.CreationTimestamp)}
		},
	}
}

func validateEndpoints(ep *corev1.Endpoints) field.ErrorList {
	var allErrs field.ErrorList
	fldPath := field.NewPath("subsets")
	for i := range ep.Subsets {
		ss := &ep.Subsets[i]
		idxPath := fldPath.Index(i)
		if len(ss.Addresses) == 0 && len(ss.NotReadyAddresses) == 0 {
			allErrs = append(allErrs, field.Required(idxPath, "must specify `addresses` or `notReadyAddresses`"))
		}
		for j := range ss.Addresses {
			allErrs = append(allErrs, validateEndpointAddress(&ss.Addresses[j], idxPath.Child("addresses").Index(j))...)
		}
		for j := range ss.NotReadyAddresses {
			allErrs = append(allErrs, validateEndpointAddress(&ss.NotReadyAddresses[j], idxPath.Child("notReadyAddresses").Index(j))...)
		}
		names := sets.New[string]()
		for j, p := range ss.Ports {
			pp := idxPath.Child("ports").Index(j)
			if len(ss.Ports) > 1 && p.Name == "" {
				allErrs = append(allErrs, field.Required(pp.Child("name"), ""))
			} else if p.Name != "" {
				for _, msg := range validation.IsDNS1123Label(p.Name) {
					allErrs = append(allErrs, field.Invalid(pp.Child("name"), p.Name, msg))
				}
				if names.Has(p.Name) {
					allErrs = append(allErrs, field.Duplicate(pp.Child("name"), p.Name))
				}
				names.Insert(p.Name)
			}
			for _, msg := range validation.IsValidPortNum(int(p.Port)) {
				allErrs = append(allErrs, field.Invalid(pp.Child("port"), p.Port, msg))
			}
			allErrs = append(allErrs, validateProtocol(p.Protocol, pp.Child("protocol"))...)
		}
	}
	return allErrs
}

func validateEndpointAddress(a *corev1.EndpointAddress, fldPath *field.Path) field.ErrorList {
	ipPath := fldPath.Child("ip")
	allErrs := validation.IsValidIP(ipPath, a.IP)
	if len(allErrs) == 0 {
		allErrs = append(allErrs, validateNonSpecialIP(a.IP, ipPath)...)
	}
	if a.Hostname != "" {
		for _, msg := range validation.IsDNS1123Label(a.Hostname) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("hostname"), a.Hostname, msg))
		}
	}
	if a.NodeName != nil {
		for _, msg := range validation.IsDNS1123Subdomain(*a.NodeName) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("nodeName"), *a.NodeName, msg))
		}
	}
	return allErrs
}

// endpointsText is formatEndpoints: up to three ip:port pairs, then
// " + N more...".
func endpointsText(ep *corev1.Endpoints) string {
	if len(ep.Subsets) == 0 {
		return "<none>"
	}
	const max = 3
	var list []string
	count := 0
	more := false
	for _, ss := range ep.Subsets {
		if len(ss.Ports) == 0 {
			// Headless services may have no ports.
			count += len(ss.Addresses)
			for _, a := range ss.Addresses {
				if len(list) == max {
					more = true
					break
				}
				list = append(list, a.IP)
			}
			continue
		}
		for _, p := range ss.Ports {
			count += len(ss.Addresses)
			for _, a := range ss.Addresses {
				if len(list) == max {
					more = true
					break
				}
				list = append(list, net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
			}
		}
	}
	if more {
		return fmt.Sprintf("%s + %d more...", strings.Join(list, ","), count-max)
	}
	return strings.Join(list, ",")
}

// maxClientIPServiceAffinitySeconds is Kubernetes' upper bound for
// sessionAffinityConfig.clientIP.timeoutSeconds (one day).
const maxClientIPServiceAffinitySeconds = 86400
