package registry

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	pathvalidation "k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// networking.k8s.io/v1: ingresses, ingressclasses and networkpolicies, as
// pkg/registry/networking and pkg/apis/networking/{v1,validation} define
// them. orch's ingress proxy and nftables rules read these objects, so the
// table rejects what Kubernetes rejects and fills in what it fills in.

var (
	ingressPathTypes = sets.New(networkingv1.PathTypeExact, networkingv1.PathTypePrefix,
		networkingv1.PathTypeImplementationSpecific)
	// Sequences an Exact or Prefix path may not hold: they would let one
	// path escape another after normalisation.
	ingressInvalidPathSequences = []string{"//", "/./", "/../", "%2f", "%2F"}
	ingressInvalidPathSuffixes  = []string{"/..", "/."}

	networkPolicyProtocols   = sets.New(corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP)
	networkPolicyTypes       = sets.New(networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress)
	ingressClassParamsScopes = sets.New(networkingv1.IngressClassParametersReferenceScopeCluster,
		networkingv1.IngressClassParametersReferenceScopeNamespace)
)

// maxIngressClassControllerLen is the longest spec.controller Kubernetes
// accepts.
const maxIngressClassControllerLen = 250

// ingressLoadBalancerWidth is where the printer cuts ADDRESS when not wide.
const ingressLoadBalancerWidth = 16

var networkingGV = networkingv1.SchemeGroupVersion

func networkingResources() []*Resource {
	return []*Resource{ingressesResource(), ingressClassesResource(), networkPoliciesResource()}
}

// ingressesResource is networking.k8s.io/v1 ingresses (status is written by
// the ingress controller through the status subresource).
func ingressesResource() *Resource {
	return &Resource{
		GroupVersion: networkingGV,
		Name:         "ingresses",
		Kind:         "Ingress",
		SingularName: "ingress",
		Namespaced:   true,
		ShortNames:   []string{"ing"},
		Subresources: []string{"status"},
		New:          func() runtime.Object { return &networkingv1.Ingress{} },
		NewList:      func() runtime.Object { return &networkingv1.IngressList{} },
		PrepareForCreate: func(obj runtime.Object) {
			ing := obj.(*networkingv1.Ingress)
			ing.Status = networkingv1.IngressStatus{}
			ing.Generation = 1
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			ing, oldIng := obj.(*networkingv1.Ingress), old.(*networkingv1.Ingress)
			ing.Status = oldIng.Status
			bumpGeneration(ing, oldIng, ing.Spec, oldIng.Spec)
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			ing, oldIng := obj.(*networkingv1.Ingress), old.(*networkingv1.Ingress)
			ing.Spec = oldIng.Spec
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateIngress(obj.(*networkingv1.Ingress)) },
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Class", "string", "The name of the IngressClass resource that should be used for additional configuration", 0),
			column("Hosts", "string", "Hosts that incoming requests are matched against before the ingress rule", 0),
			column("Address", "string", "Address is a list containing ingress points for the load-balancer", 0),
			column("Ports", "string", "Ports of TLS configurations that open", 0),
			ageColumn(),
		},
		Row: func(obj runtime.Object) []interface{} { return ingressRow(obj.(*networkingv1.Ingress)) },
	}
}

func validateIngress(ing *networkingv1.Ingress) field.ErrorList {
	allErrs := validateIngressSpec(&ing.Spec, field.NewPath("spec"))
	allErrs = append(allErrs, validateIngressStatus(&ing.Status, field.NewPath("status"))...)
	return allErrs
}

func validateIngressSpec(spec *networkingv1.IngressSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if len(spec.Rules) == 0 && spec.DefaultBackend == nil {
		allErrs = append(allErrs, field.Invalid(fldPath, spec.Rules, "either `defaultBackend` or `rules` must be specified"))
	}
	if spec.DefaultBackend != nil {
		allErrs = append(allErrs, validateIngressBackend(spec.DefaultBackend, fldPath.Child("defaultBackend"))...)
	}
	for i, rule := range spec.Rules {
		allErrs = append(allErrs, validateIngressRule(&rule, fldPath.Child("rules").Index(i))...)
	}
	for i, tls := range spec.TLS {
		tlsPath := fldPath.Child("tls").Index(i)
		for j, host := range tls.Hosts {
			allErrs = append(allErrs, validateIngressHost(host, tlsPath.Child("hosts").Index(j))...)
		}
		if tls.SecretName != "" {
			for _, msg := range apivalidation.NameIsDNSSubdomain(tls.SecretName, false) {
				allErrs = append(allErrs, field.Invalid(tlsPath.Child("secretName"), tls.SecretName, msg))
			}
		}
	}
	if spec.IngressClassName != nil {
		for _, msg := range apivalidation.NameIsDNSSubdomain(*spec.IngressClassName, false) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("ingressClassName"), *spec.IngressClassName, msg))
		}
	}
	return allErrs
}

// validateIngressHost accepts DNS names and "*.example.com" wildcards, never
// IP addresses: a rule matches the Host header.
func validateIngressHost(host string, fldPath *field.Path) field.ErrorList {
	if _, err := netip.ParseAddr(host); err == nil {
		return field.ErrorList{field.Invalid(fldPath, host, "must be a DNS name, not an IP address")}
	}
	var allErrs field.ErrorList
	check := validation.IsDNS1123Subdomain
	if strings.Contains(host, "*") {
		check = validation.IsWildcardDNS1123Subdomain
	}
	for _, msg := range check(host) {
		allErrs = append(allErrs, field.Invalid(fldPath, host, msg))
	}
	return allErrs
}

func validateIngressRule(rule *networkingv1.IngressRule, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if rule.Host != "" {
		allErrs = append(allErrs, validateIngressHost(rule.Host, fldPath.Child("host"))...)
	}
	if rule.HTTP == nil {
		return allErrs
	}
	httpPath := fldPath.Child("http")
	if len(rule.HTTP.Paths) == 0 {
		allErrs = append(allErrs, field.Required(httpPath.Child("paths"), ""))
	}
	for i := range rule.HTTP.Paths {
		allErrs = append(allErrs, validateHTTPIngressPath(&rule.HTTP.Paths[i], httpPath.Child("paths").Index(i))...)
	}
	return allErrs
}

// validateHTTPIngressPath: networking/v1 has no default pathType, so every
// path must say how it matches.
func validateHTTPIngressPath(p *networkingv1.HTTPIngressPath, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	pathPath := fldPath.Child("path")
	if p.PathType == nil {
		allErrs = append(allErrs, field.Required(fldPath.Child("pathType"), "pathType must be specified"))
	} else {
		switch *p.PathType {
		case networkingv1.PathTypeExact, networkingv1.PathTypePrefix:
			if !strings.HasPrefix(p.Path, "/") {
				allErrs = append(allErrs, field.Invalid(pathPath, p.Path, "must be an absolute path"))
			}
			if p.Path != "" {
				for _, seq := range ingressInvalidPathSequences {
					if strings.Contains(p.Path, seq) {
						allErrs = append(allErrs, field.Invalid(pathPath, p.Path, fmt.Sprintf("must not contain '%s'", seq)))
					}
				}
				for _, suffix := range ingressInvalidPathSuffixes {
					if strings.HasSuffix(p.Path, suffix) {
						allErrs = append(allErrs, field.Invalid(pathPath, p.Path, fmt.Sprintf("cannot end with '%s'", suffix)))
					}
				}
			}
		case networkingv1.PathTypeImplementationSpecific:
			if p.Path != "" && !strings.HasPrefix(p.Path, "/") {
				allErrs = append(allErrs, field.Invalid(pathPath, p.Path, "must be an absolute path"))
			}
		default:
			allErrs = append(allErrs, field.NotSupported(fldPath.Child("pathType"), *p.PathType, sets.List(ingressPathTypes)))
		}
	}
	allErrs = append(allErrs, validateIngressBackend(&p.Backend, fldPath.Child("backend"))...)
	return allErrs
}

// validateIngressBackend: a backend is a service (by name, with a port
// number or name) or a typed resource reference, never both.
func validateIngressBackend(b *networkingv1.IngressBackend, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	switch {
	case b.Resource != nil && b.Service != nil:
		allErrs = append(allErrs, field.Invalid(fldPath, "", "cannot set both resource and service backends"))
	case b.Resource != nil:
		allErrs = append(allErrs, validateTypedLocalObjectReference(b.Resource, fldPath.Child("resource"))...)
	case b.Service != nil:
		svcPath := fldPath.Child("service")
		if b.Service.Name == "" {
			allErrs = append(allErrs, field.Required(svcPath.Child("name"), ""))
		} else {
			for _, msg := range apivalidation.NameIsDNS1035Label(b.Service.Name, false) {
				allErrs = append(allErrs, field.Invalid(svcPath.Child("name"), b.Service.Name, msg))
			}
		}
		port := b.Service.Port
		switch {
		case port.Name != "" && port.Number != 0:
			allErrs = append(allErrs, field.Invalid(fldPath, "", "cannot set both port name & port number"))
		case port.Name != "":
			for _, msg := range validation.IsValidPortName(port.Name) {
				allErrs = append(allErrs, field.Invalid(svcPath.Child("port", "name"), port.Name, msg))
			}
		case port.Number != 0:
			for _, msg := range validation.IsValidPortNum(int(port.Number)) {
				allErrs = append(allErrs, field.Invalid(svcPath.Child("port", "number"), port.Number, msg))
			}
		default:
			allErrs = append(allErrs, field.Required(fldPath, "port name or number is required"))
		}
	default:
		allErrs = append(allErrs, field.Invalid(fldPath, "", "resource or service backend is required"))
	}
	return allErrs
}

// validateTypedLocalObjectReference checks an ingress resource backend.
func validateTypedLocalObjectReference(ref *corev1.TypedLocalObjectReference, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if ref.APIGroup != nil && *ref.APIGroup != "" {
		for _, msg := range validation.IsDNS1123Subdomain(*ref.APIGroup) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("apiGroup"), *ref.APIGroup, msg))
		}
	}
	allErrs = append(allErrs, validateKindAndName(ref.Kind, ref.Name, fldPath)...)
	return allErrs
}

// validateKindAndName requires a kind and a name usable as URL path
// segments.
func validateKindAndName(kind, name string, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if kind == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("kind"), "kind is required"))
	} else {
		for _, msg := range pathvalidation.ValidatePathSegmentName(kind, false) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("kind"), kind, msg))
		}
	}
	if name == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("name"), "name is required"))
	} else {
		for _, msg := range pathvalidation.ValidatePathSegmentName(name, false) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("name"), name, msg))
		}
	}
	return allErrs
}

func validateIngressStatus(st *networkingv1.IngressStatus, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for i, in := range st.LoadBalancer.Ingress {
		p := fldPath.Child("loadBalancer", "ingress").Index(i)
		if in.IP != "" {
			allErrs = append(allErrs, validation.IsValidIP(p.Child("ip"), in.IP)...)
		}
		if in.Hostname != "" {
			for _, msg := range validation.IsDNS1123Subdomain(in.Hostname) {
				allErrs = append(allErrs, field.Invalid(p.Child("hostname"), in.Hostname, msg))
			}
			if _, err := netip.ParseAddr(in.Hostname); err == nil {
				allErrs = append(allErrs, field.Invalid(p.Child("hostname"), in.Hostname, "must be a DNS name, not an IP address"))
			}
		}
	}
	return allErrs
}

// ingressRow is printIngress.
func ingressRow(ing *networkingv1.Ingress) []interface{} {
	class := "<none>"
	if ing.Spec.IngressClassName != nil {
		class = *ing.Spec.IngressClassName
	}
	ports := "80"
	if len(ing.Spec.TLS) != 0 {
		ports = "80, 443"
	}
	return []interface{}{ing.Name, class, ingressHosts(ing.Spec.Rules), ingressAddress(ing.Status.LoadBalancer),
		ports, translateTimestampSince(ing.CreationTimestamp)}
}

// ingressHosts is formatHosts: up to three hosts, "*" when no rule names one.
func ingressHosts(rules []networkingv1.IngressRule) string {
	const max = 3
	var list []string
	more := false
	for _, rule := range rules {
		if len(list) == max {
			more = true
		}
		if !more && rule.Host != "" {
			list = append(list, rule.Host)
		}
	}
	if len(list) == 0 {
		return "*"
	}
	ret := strings.Join(list, ",")
	if more {
		return fmt.Sprintf("%s + %d more...", ret, len(rules)-max)
	}
	return ret
}

// ingressAddress is ingressLoadBalancerStatusStringer: sorted unique IPs or
// hostnames, cut at 16 characters as kubectl shows them without -o wide.
func ingressAddress(st networkingv1.IngressLoadBalancerStatus) string {
	result := sets.New[string]()
	for _, in := range st.Ingress {
		if in.IP != "" {
			result.Insert(in.IP)
		} else if in.Hostname != "" {
			result.Insert(in.Hostname)
		}
	}
	r := strings.Join(sets.List(result), ",")
	if len(r) > ingressLoadBalancerWidth {
		r = r[:ingressLoadBalancerWidth-3] + "..."
	}
	return r
}

// ingressClassesResource is networking.k8s.io/v1 ingressclasses.
func ingressClassesResource() *Resource {
	return &Resource{
		GroupVersion: networkingGV,
		Name:         "ingressclasses",
		Kind:         "IngressClass",
		SingularName: "ingressclass",
		New:          func() runtime.Object { return &networkingv1.IngressClass{} },
		NewList:      func() runtime.Object { return &networkingv1.IngressClassList{} },
		Default:      func(obj runtime.Object) { defaultIngressClass(obj.(*networkingv1.IngressClass)) },
		PrepareForCreate: func(obj runtime.Object) {
			obj.(*networkingv1.IngressClass).Generation = 1
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			ic, oldIC := obj.(*networkingv1.IngressClass), old.(*networkingv1.IngressClass)
			bumpGeneration(ic, oldIC, ic.Spec, oldIC.Spec)
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateIngressClass(obj.(*networkingv1.IngressClass))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return apivalidation.ValidateImmutableField(obj.(*networkingv1.IngressClass).Spec.Controller,
				old.(*networkingv1.IngressClass).Spec.Controller, field.NewPath("spec", "controller"))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Controller", "string", "Controller that is responsible for handling this class", 0),
			column("Parameters", "string", "A reference to a resource with additional parameters", 0),
			ageColumn(),
		},
		Row: func(obj runtime.Object) []interface{} {
			ic := obj.(*networkingv1.IngressClass)
			params := "<none>"
			if p := ic.Spec.Parameters; p != nil {
				params = p.Kind
				if p.APIGroup != nil {
					params += "." + *p.APIGroup
				}
				params += "/" + p.Name
			}
			return []interface{}{ic.Name, ic.Spec.Controller, params, translateTimestampSince(ic.CreationTimestamp)}
		},
	}
}

// defaultIngressClass is SetDefaults_IngressClass: parameters without a
// scope are cluster-scoped.
func defaultIngressClass(ic *networkingv1.IngressClass) {
	if ic.Spec.Parameters != nil && ic.Spec.Parameters.Scope == nil {
		scope := networkingv1.IngressClassParametersReferenceScopeCluster
		ic.Spec.Parameters.Scope = &scope
	}
}

func validateIngressClass(ic *networkingv1.IngressClass) field.ErrorList {
	specPath := field.NewPath("spec")
	ctrlPath := specPath.Child("controller")
	var allErrs field.ErrorList
	if len(ic.Spec.Controller) > maxIngressClassControllerLen {
		allErrs = append(allErrs, field.TooLong(ctrlPath, "" /*unused*/, maxIngressClassControllerLen))
	}
	allErrs = append(allErrs, validation.IsDomainPrefixedPath(ctrlPath, ic.Spec.Controller)...)
	if p := ic.Spec.Parameters; p != nil {
		pPath := specPath.Child("parameters")
		if p.APIGroup != nil && *p.APIGroup != "" {
			for _, msg := range validation.IsDNS1123Subdomain(*p.APIGroup) {
				allErrs = append(allErrs, field.Invalid(pPath.Child("apiGroup"), *p.APIGroup, msg))
			}
		}
		allErrs = append(allErrs, validateKindAndName(p.Kind, p.Name, pPath)...)
		switch {
		case p.Scope == nil:
			allErrs = append(allErrs, field.Required(pPath.Child("scope"), ""))
		case !ingressClassParamsScopes.Has(*p.Scope):
			allErrs = append(allErrs, field.NotSupported(pPath.Child("scope"), *p.Scope, sets.List(ingressClassParamsScopes)))
		case *p.Scope == networkingv1.IngressClassParametersReferenceScopeNamespace:
			if p.Namespace == nil {
				allErrs = append(allErrs, field.Required(pPath.Child("namespace"), "`parameters.scope` is set to 'Namespace'"))
			} else {
				for _, msg := range apivalidation.ValidateNamespaceName(*p.Namespace, false) {
					allErrs = append(allErrs, field.Invalid(pPath.Child("namespace"), *p.Namespace, msg))
				}
			}
		case *p.Scope == networkingv1.IngressClassParametersReferenceScopeCluster:
			if p.Namespace != nil {
				allErrs = append(allErrs, field.Forbidden(pPath.Child("namespace"), "`parameters.scope` is set to 'Cluster'"))
			}
		}
	}
	return allErrs
}

// networkPoliciesResource is networking.k8s.io/v1 networkpolicies.
func networkPoliciesResource() *Resource {
	return &Resource{
		GroupVersion: networkingGV,
		Name:         "networkpolicies",
		Kind:         "NetworkPolicy",
		SingularName: "networkpolicy",
		Namespaced:   true,
		ShortNames:   []string{"netpol"},
		New:          func() runtime.Object { return &networkingv1.NetworkPolicy{} },
		NewList:      func() runtime.Object { return &networkingv1.NetworkPolicyList{} },
		Default:      func(obj runtime.Object) { defaultNetworkPolicy(obj.(*networkingv1.NetworkPolicy)) },
		PrepareForCreate: func(obj runtime.Object) {
			obj.(*networkingv1.NetworkPolicy).Generation = 1
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			np, oldNP := obj.(*networkingv1.NetworkPolicy), old.(*networkingv1.NetworkPolicy)
			bumpGeneration(np, oldNP, np.Spec, oldNP.Spec)
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateNetworkPolicySpec(&obj.(*networkingv1.NetworkPolicy).Spec, field.NewPath("spec"))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Pod-Selector", "string", networkingv1.NetworkPolicySpec{}.SwaggerDoc()["podSelector"], 0),
			ageColumn(),
		},
		Row: func(obj runtime.Object) []interface{} {
			np := obj.(*networkingv1.NetworkPolicy)
			return []interface{}{np.Name, metav1.FormatLabelSelector(&np.Spec.PodSelector), translateTimestampSince(np.CreationTimestamp)}
		},
	}
}

// defaultNetworkPolicy is SetDefaults_NetworkPolicy and
// SetDefaults_NetworkPolicyPort: a policy always isolates ingress, and
// egress too when it has egress rules; ports default to TCP.
func defaultNetworkPolicy(np *networkingv1.NetworkPolicy) {
	if len(np.Spec.PolicyTypes) == 0 {
		np.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(np.Spec.Egress) != 0 {
			np.Spec.PolicyTypes = append(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
	defaultPorts := func(ports []networkingv1.NetworkPolicyPort) {
		for i := range ports {
			if ports[i].Protocol == nil {
				tcp := corev1.ProtocolTCP
				ports[i].Protocol = &tcp
			}
		}
	}
	for i := range np.Spec.Ingress {
		defaultPorts(np.Spec.Ingress[i].Ports)
	}
	for i := range np.Spec.Egress {
		defaultPorts(np.Spec.Egress[i].Ports)
	}
}

func validateNetworkPolicySpec(spec *networkingv1.NetworkPolicySpec, fldPath *field.Path) field.ErrorList {
	allErrs := metav1validation.ValidateLabelSelector(&spec.PodSelector, metav1validation.LabelSelectorValidationOptions{}, fldPath.Child("podSelector"))
	for i, rule := range spec.Ingress {
		p := fldPath.Child("ingress").Index(i)
		for j := range rule.Ports {
			allErrs = append(allErrs, validateNetworkPolicyPort(&rule.Ports[j], p.Child("ports").Index(j))...)
		}
		for j := range rule.From {
			allErrs = append(allErrs, validateNetworkPolicyPeer(&rule.From[j], p.Child("from").Index(j))...)
		}
	}
	for i, rule := range spec.Egress {
		p := fldPath.Child("egress").Index(i)
		for j := range rule.Ports {
			allErrs = append(allErrs, validateNetworkPolicyPort(&rule.Ports[j], p.Child("ports").Index(j))...)
		}
		for j := range rule.To {
			allErrs = append(allErrs, validateNetworkPolicyPeer(&rule.To[j], p.Child("to").Index(j))...)
		}
	}
	typesPath := fldPath.Child("policyTypes")
	for i, t := range spec.PolicyTypes {
		if !networkPolicyTypes.Has(t) {
			allErrs = append(allErrs, field.NotSupported(typesPath.Index(i), t, sets.List(networkPolicyTypes)))
		}
	}
	if len(spec.PolicyTypes) > 2 {
		allErrs = append(allErrs, field.Invalid(typesPath, spec.PolicyTypes, "may not specify more than two policyTypes"))
	}
	return allErrs
}

func validateNetworkPolicyPort(port *networkingv1.NetworkPolicyPort, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if port.Protocol != nil && !networkPolicyProtocols.Has(*port.Protocol) {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("protocol"), *port.Protocol, sets.List(networkPolicyProtocols)))
	}
	if port.Port == nil {
		if port.EndPort != nil {
			allErrs = append(allErrs, field.Required(fldPath.Child("port"), "must be specified when endPort is specified"))
		}
		return allErrs
	}
	portPath := fldPath.Child("port")
	if port.Port.Type == intstr.String {
		if port.EndPort != nil {
			allErrs = append(allErrs, field.Forbidden(fldPath.Child("endPort"), "may not be specified when `port` is non-numeric"))
		}
		for _, msg := range validation.IsValidPortName(port.Port.StrVal) {
			allErrs = append(allErrs, field.Invalid(portPath, port.Port.StrVal, msg))
		}
		return allErrs
	}
	for _, msg := range validation.IsValidPortNum(int(port.Port.IntVal)) {
		allErrs = append(allErrs, field.Invalid(portPath, port.Port.IntVal, msg))
	}
	if port.EndPort != nil {
		if *port.EndPort < port.Port.IntVal {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("endPort"), *port.EndPort, "must be greater than or equal to `port`"))
		}
		for _, msg := range validation.IsValidPortNum(int(*port.EndPort)) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("endPort"), *port.EndPort, msg))
		}
	}
	return allErrs
}

// validateNetworkPolicyPeer: a peer is pod and/or namespace selectors, or
// an ipBlock alone.
func validateNetworkPolicyPeer(peer *networkingv1.NetworkPolicyPeer, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	opts := metav1validation.LabelSelectorValidationOptions{}
	peers := 0
	if peer.PodSelector != nil {
		peers++
		allErrs = append(allErrs, metav1validation.ValidateLabelSelector(peer.PodSelector, opts, fldPath.Child("podSelector"))...)
	}
	if peer.NamespaceSelector != nil {
		peers++
		allErrs = append(allErrs, metav1validation.ValidateLabelSelector(peer.NamespaceSelector, opts, fldPath.Child("namespaceSelector"))...)
	}
	if peer.IPBlock != nil {
		peers++
		allErrs = append(allErrs, validateIPBlock(peer.IPBlock, fldPath.Child("ipBlock"))...)
	}
	switch {
	case peers == 0:
		allErrs = append(allErrs, field.Required(fldPath, "must specify a peer"))
	case peers > 1 && peer.IPBlock != nil:
		allErrs = append(allErrs, field.Forbidden(fldPath, "may not specify both ipBlock and another peer"))
	}
	return allErrs
}

// validateIPBlock: every except entry must be a strict subnet of cidr.
func validateIPBlock(b *networkingv1.IPBlock, fldPath *field.Path) field.ErrorList {
	cidrPath := fldPath.Child("cidr")
	if b.CIDR == "" {
		return field.ErrorList{field.Required(cidrPath, "")}
	}
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil {
		return validation.IsValidCIDR(cidrPath, b.CIDR)
	}
	var allErrs field.ErrorList
	for i, ex := range b.Except {
		exPath := fldPath.Child("except").Index(i)
		exCIDR, err := netip.ParsePrefix(ex)
		if err != nil {
			allErrs = append(allErrs, validation.IsValidCIDR(exPath, ex)...)
			continue
		}
		if exCIDR.Bits() <= cidr.Bits() || !cidr.Contains(exCIDR.Addr()) {
			allErrs = append(allErrs, field.Invalid(exPath, ex, "must be a strict subset of `cidr`"))
		}
	}
	return allErrs
}
