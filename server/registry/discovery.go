package registry

import (
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// discovery.k8s.io/v1 endpointslices (pkg/registry/discovery/endpointslice
// and pkg/apis/discovery/validation). The endpointslice controller writes
// them; every agent's service proxy and DNS read them.

// Limits of one EndpointSlice, from Kubernetes' validation.
const (
	endpointSliceMaxAddresses      = 100
	endpointSliceMaxPorts          = 100
	endpointSliceMaxEndpoints      = 1000
	endpointSliceMaxTopologyLabels = 16
)

var (
	endpointSliceAddressTypes = sets.New(discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6, discoveryv1.AddressTypeFQDN)
	endpointSliceProtocols    = sets.New(corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP)
)

func discoveryResources() []*Resource {
	return []*Resource{endpointSlicesResource()}
}

func endpointSlicesResource() *Resource {
	return &Resource{
		GroupVersion: discoveryv1.SchemeGroupVersion,
		Name:         "endpointslices",
		Kind:         "EndpointSlice",
		SingularName: "endpointslice",
		Namespaced:   true,
		New:          func() runtime.Object { return &discoveryv1.EndpointSlice{} },
		NewList:      func() runtime.Object { return &discoveryv1.EndpointSliceList{} },
		Default:      func(obj runtime.Object) { defaultEndpointSlice(obj.(*discoveryv1.EndpointSlice)) },
		PrepareForCreate: func(obj runtime.Object) {
			obj.(*discoveryv1.EndpointSlice).Generation = 1
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			eps, oldEPS := obj.(*discoveryv1.EndpointSlice), old.(*discoveryv1.EndpointSlice)
			// The slice has no spec: its generation follows what it says.
			gen := oldEPS.Generation
			if eps.AddressType != oldEPS.AddressType ||
				!apiequality.Semantic.DeepEqual(eps.Endpoints, oldEPS.Endpoints) ||
				!apiequality.Semantic.DeepEqual(eps.Ports, oldEPS.Ports) {
				gen++
			}
			eps.Generation = gen
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateEndpointSlice(obj.(*discoveryv1.EndpointSlice))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return apivalidation.ValidateImmutableField(obj.(*discoveryv1.EndpointSlice).AddressType,
				old.(*discoveryv1.EndpointSlice).AddressType, field.NewPath("addressType"))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("AddressType", "string", discoveryv1.EndpointSlice{}.SwaggerDoc()["addressType"], 0),
			column("Ports", "string", discoveryv1.EndpointSlice{}.SwaggerDoc()["ports"], 0),
			column("Endpoints", "string", discoveryv1.EndpointSlice{}.SwaggerDoc()["endpoints"], 0),
			ageColumn(),
		},
		Row: func(obj runtime.Object) []interface{} {
			eps := obj.(*discoveryv1.EndpointSlice)
			return []interface{}{eps.Name, string(eps.AddressType), endpointSlicePorts(eps.Ports),
				endpointSliceAddresses(eps.Endpoints), translateTimestampSince(eps.CreationTimestamp)}
		},
	}
}

// defaultEndpointSlice is SetDefaults_EndpointPort: an unnamed port has the
// name "" and the protocol TCP.
func defaultEndpointSlice(eps *discoveryv1.EndpointSlice) {
	for i := range eps.Ports {
		p := &eps.Ports[i]
		if p.Name == nil {
			p.Name = new(string)
		}
		if p.Protocol == nil {
			tcp := corev1.ProtocolTCP
			p.Protocol = &tcp
		}
	}
}

func validateEndpointSlice(eps *discoveryv1.EndpointSlice) field.ErrorList {
	var allErrs field.ErrorList
	typePath := field.NewPath("addressType")
	if eps.AddressType == "" {
		allErrs = append(allErrs, field.Required(typePath, ""))
	} else if !endpointSliceAddressTypes.Has(eps.AddressType) {
		allErrs = append(allErrs, field.NotSupported(typePath, eps.AddressType, sets.List(endpointSliceAddressTypes)))
	}
	allErrs = append(allErrs, validateSliceEndpoints(eps.Endpoints, eps.AddressType, field.NewPath("endpoints"))...)
	allErrs = append(allErrs, validateSlicePorts(eps.Ports, field.NewPath("ports"))...)
	return allErrs
}

func validateSliceEndpoints(endpoints []discoveryv1.Endpoint, addrType discoveryv1.AddressType, fldPath *field.Path) field.ErrorList {
	if len(endpoints) > endpointSliceMaxEndpoints {
		return field.ErrorList{field.TooMany(fldPath, len(endpoints), endpointSliceMaxEndpoints)}
	}
	var allErrs field.ErrorList
	for i, ep := range endpoints {
		idxPath := fldPath.Index(i)
		addrPath := idxPath.Child("addresses")
		if len(ep.Addresses) == 0 {
			allErrs = append(allErrs, field.Required(addrPath, "must contain at least 1 address"))
		} else if len(ep.Addresses) > endpointSliceMaxAddresses {
			allErrs = append(allErrs, field.TooMany(addrPath, len(ep.Addresses), endpointSliceMaxAddresses))
		}
		for j, addr := range ep.Addresses {
			allErrs = append(allErrs, validateSliceAddress(addr, addrType, addrPath.Index(j))...)
		}
		topoPath := idxPath.Child("deprecatedTopology")
		if len(ep.DeprecatedTopology) > endpointSliceMaxTopologyLabels {
			allErrs = append(allErrs, field.TooMany(topoPath, len(ep.DeprecatedTopology), endpointSliceMaxTopologyLabels))
		}
		allErrs = append(allErrs, metav1validation.ValidateLabels(ep.DeprecatedTopology, topoPath)...)
		if ep.Hostname != nil {
			for _, msg := range validation.IsDNS1123Label(*ep.Hostname) {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("hostname"), *ep.Hostname, msg))
			}
		}
		if ep.NodeName != nil {
			for _, msg := range apivalidation.NameIsDNSSubdomain(*ep.NodeName, false) {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("nodeName"), *ep.NodeName, msg))
			}
		}
	}
	return allErrs
}

// validateSliceAddress checks an address against the slice's type: an
// IPv4 slice holds only IPv4 addresses, and no slice may point at loopback,
// link-local or unspecified addresses (a route to the node itself).
func validateSliceAddress(addr string, addrType discoveryv1.AddressType, fldPath *field.Path) field.ErrorList {
	switch addrType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
		if errs := validation.IsValidIP(fldPath, addr); len(errs) > 0 {
			return errs
		}
		ip, _ := netip.ParseAddr(addr)
		if addrType == discoveryv1.AddressTypeIPv4 && !ip.Is4() {
			return field.ErrorList{field.Invalid(fldPath, addr, "must be a valid IPv4 address")}
		}
		if addrType == discoveryv1.AddressTypeIPv6 && !ip.Is6() {
			return field.ErrorList{field.Invalid(fldPath, addr, "must be a valid IPv6 address")}
		}
		return validateNonSpecialIP(addr, fldPath)
	case discoveryv1.AddressTypeFQDN:
		return validation.IsFullyQualifiedDomainName(fldPath, addr)
	}
	// Unknown types are reported on addressType; their addresses are not
	// checked.
	return nil
}

func validateSlicePorts(ports []discoveryv1.EndpointPort, fldPath *field.Path) field.ErrorList {
	if len(ports) > endpointSliceMaxPorts {
		return field.ErrorList{field.TooMany(fldPath, len(ports), endpointSliceMaxPorts)}
	}
	var allErrs field.ErrorList
	names := sets.New[string]()
	for i, p := range ports {
		idxPath := fldPath.Index(i)
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		if name != "" {
			for _, msg := range validation.IsDNS1123Label(name) {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("name"), name, msg))
			}
		}
		if names.Has(name) {
			allErrs = append(allErrs, field.Duplicate(idxPath.Child("name"), name))
		}
		names.Insert(name)
		if p.Protocol == nil {
			allErrs = append(allErrs, field.Required(idxPath.Child("protocol"), ""))
		} else if !endpointSliceProtocols.Has(*p.Protocol) {
			allErrs = append(allErrs, field.NotSupported(idxPath.Child("protocol"), *p.Protocol, sets.List(endpointSliceProtocols)))
		}
		if p.Port != nil {
			// 0 is allowed: a slice of a headless service without ports.
			for _, msg := range validation.IsInRange(int(*p.Port), 0, 65535) {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("port"), *p.Port, msg))
			}
		}
		if p.AppProtocol != nil {
			for _, msg := range validation.IsQualifiedName(*p.AppProtocol) {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("appProtocol"), *p.AppProtocol, msg))
			}
		}
	}
	return allErrs
}

// endpointSlicePorts is formatDiscoveryPorts: up to three ports (number,
// else name, else "*").
func endpointSlicePorts(ports []discoveryv1.EndpointPort) string {
	list := make([]string, 0, len(ports))
	for _, p := range ports {
		cell := "*"
		if p.Port != nil {
			cell = strconv.Itoa(int(*p.Port))
		} else if p.Name != nil {
			cell = *p.Name
		}
		list = append(list, cell)
	}
	return endpointSliceCell(list)
}

// endpointSliceAddresses is formatDiscoveryEndpoints: up to three
// addresses across all endpoints.
func endpointSliceAddresses(endpoints []discoveryv1.Endpoint) string {
	var list []string
	for _, ep := range endpoints {
		list = append(list, ep.Addresses...)
	}
	return endpointSliceCell(list)
}

// endpointSliceCell is listWithMoreString: like listWithMore but "<unset>"
// when empty.
func endpointSliceCell(list []string) string {
	if len(list) == 0 {
		return "<unset>"
	}
	return listWithMore(list, 3)
}
