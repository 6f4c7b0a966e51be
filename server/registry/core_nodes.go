package registry

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// nodesResource is core/v1 nodes. Agents create their Node with its status
// (as kubelets do) and report heartbeats through the status subresource;
// a heartbeat that changes nothing but lastHeartbeatTime stays in memory.
func nodesResource() *Resource {
	return &Resource{
		GroupVersion: schema.GroupVersion{Version: "v1"},
		Name:         "nodes",
		Kind:         "Node",
		SingularName: "node",
		ShortNames:   []string{"no"},
		Subresources: []string{"status"},
		New:          func() runtime.Object { return &corev1.Node{} },
		NewList:      func() runtime.Object { return &corev1.NodeList{} },
		Default:      func(obj runtime.Object) { defaultNode(obj.(*corev1.Node)) },
		PrepareForUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.Node).Status = old.(*corev1.Node).Status
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			obj.(*corev1.Node).Spec = old.(*corev1.Node).Spec
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateNode(obj.(*corev1.Node)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateNodeUpdate(obj.(*corev1.Node), old.(*corev1.Node))
		},
		Columns: nodeColumns(),
		Row:     func(obj runtime.Object) []interface{} { return nodeRow(obj.(*corev1.Node)) },
		Fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"spec.unschedulable": strconv.FormatBool(obj.(*corev1.Node).Spec.Unschedulable)}
		},
		Volatile: func(obj, old runtime.Object) bool {
			if old == nil {
				return false
			}
			return nodeHeartbeatOnly(obj.(*corev1.Node), old.(*corev1.Node))
		},
	}
}

// defaultNode: allocatable defaults to capacity (SetDefaults_NodeStatus)
// and the v1 spec mirrors podCIDR and podCIDRs[0].
func defaultNode(node *corev1.Node) {
	if node.Status.Allocatable == nil && node.Status.Capacity != nil {
		node.Status.Allocatable = node.Status.Capacity.DeepCopy()
	}
	roundResourceList(node.Status.Capacity)
	roundResourceList(node.Status.Allocatable)
	if len(node.Spec.PodCIDRs) == 0 && node.Spec.PodCIDR != "" {
		node.Spec.PodCIDRs = []string{node.Spec.PodCIDR}
	} else if len(node.Spec.PodCIDRs) > 0 {
		node.Spec.PodCIDR = node.Spec.PodCIDRs[0]
	}
}

// nodeHeartbeatOnly reports whether node differs from old only in its
// conditions' lastHeartbeatTime (and the bookkeeping every write changes:
// resourceVersion, managedFields timestamps).
func nodeHeartbeatOnly(node, old *corev1.Node) bool {
	if len(node.Status.Conditions) != len(old.Status.Conditions) {
		return false
	}
	strip := func(n *corev1.Node) *corev1.Node {
		c := n.DeepCopy()
		c.ResourceVersion = ""
		c.ManagedFields = nil
		for i := range c.Status.Conditions {
			c.Status.Conditions[i].LastHeartbeatTime = metav1.Time{}
		}
		return c
	}
	return apiequality.Semantic.DeepEqual(strip(node), strip(old))
}

// validateNode is ValidateNode's spec and status checks.
func validateNode(node *corev1.Node) field.ErrorList {
	specPath := field.NewPath("spec")
	var allErrs field.ErrorList
	allErrs = append(allErrs, validatePodCIDRs(node.Spec.PodCIDRs, specPath.Child("podCIDRs"))...)
	if len(node.Spec.PodCIDRs) > 0 && node.Spec.PodCIDR != node.Spec.PodCIDRs[0] {
		allErrs = append(allErrs, field.Invalid(specPath.Child("podCIDR"), node.Spec.PodCIDR, "must match `podCIDRs[0]`"))
	}
	allErrs = append(allErrs, validateNodeTaints(node.Spec.Taints, specPath.Child("taints"))...)
	statusPath := field.NewPath("status")
	for _, l := range []struct {
		name string
		list corev1.ResourceList
	}{{"capacity", node.Status.Capacity}, {"allocatable", node.Status.Allocatable}} {
		for _, name := range sortedResourceNames(l.list) {
			q := l.list[name]
			p := statusPath.Child(l.name).Key(string(name))
			for _, msg := range validation.IsQualifiedName(string(name)) {
				allErrs = append(allErrs, field.Invalid(p, name, msg))
			}
			if q.Sign() < 0 {
				allErrs = append(allErrs, field.Invalid(p, q.String(), "must be greater than or equal to 0"))
			}
		}
	}
	for i, a := range node.Status.Addresses {
		p := statusPath.Child("addresses").Index(i)
		if a.Type == "" {
			allErrs = append(allErrs, field.Required(p.Child("type"), ""))
		}
		if a.Address == "" {
			allErrs = append(allErrs, field.Required(p.Child("address"), ""))
		}
	}
	return allErrs
}

// validatePodCIDRs: valid CIDRs, at most one per IP family.
func validatePodCIDRs(cidrs []string, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	families := map[bool]bool{}
	for i, c := range cidrs {
		errs := validation.IsValidCIDR(fldPath.Index(i), c)
		allErrs = append(allErrs, errs...)
		if len(errs) > 0 {
			continue
		}
		if p, err := netip.ParsePrefix(c); err == nil {
			families[p.Addr().Is4()] = true
		}
	}
	if len(cidrs) > 2 {
		allErrs = append(allErrs, field.Invalid(fldPath, cidrs, "may specify no more than one CIDR for each IP family"))
	} else if len(cidrs) == 2 && len(families) == 1 {
		allErrs = append(allErrs, field.Invalid(fldPath, cidrs, "may specify no more than one CIDR for each IP family"))
	}
	return allErrs
}

// validateNodeTaints: label-like keys and values, a known effect, unique
// by key and effect.
func validateNodeTaints(taints []corev1.Taint, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	seen := map[corev1.TaintEffect]sets.Set[string]{}
	for i, t := range taints {
		idxPath := fldPath.Index(i)
		if t.Key == "" {
			allErrs = append(allErrs, field.Required(idxPath.Child("key"), ""))
		} else {
			for _, msg := range validation.IsQualifiedName(t.Key) {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("key"), t.Key, msg))
			}
		}
		for _, msg := range validation.IsValidLabelValue(t.Value) {
			allErrs = append(allErrs, field.Invalid(idxPath.Child("value"), t.Value, msg))
		}
		allErrs = append(allErrs, validateTaintEffect(t.Effect, false, idxPath.Child("effect"))...)
		if seen[t.Effect].Has(t.Key) {
			dup := field.Duplicate(idxPath, t)
			dup.Detail = "taints must be unique by key and effect pair"
			allErrs = append(allErrs, dup)
			continue
		}
		if seen[t.Effect] == nil {
			seen[t.Effect] = sets.New[string]()
		}
		seen[t.Effect].Insert(t.Key)
	}
	return allErrs
}

// validateNodeUpdate: podCIDRs and providerID may be set once, never
// changed.
func validateNodeUpdate(node, old *corev1.Node) field.ErrorList {
	var allErrs field.ErrorList
	if len(old.Spec.PodCIDRs) > 0 && !equalStrings(old.Spec.PodCIDRs, node.Spec.PodCIDRs) {
		allErrs = append(allErrs, field.Forbidden(field.NewPath("spec", "podCIDRs"), "node updates may not change podCIDR except from \"\" to valid"))
	}
	if old.Spec.ProviderID != "" && old.Spec.ProviderID != node.Spec.ProviderID {
		allErrs = append(allErrs, field.Forbidden(field.NewPath("spec", "providerID"), "node updates may not change providerID except from \"\" to valid"))
	}
	return allErrs
}

func equalStrings(a, b []string) bool {
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

func nodeColumns() []metav1.TableColumnDefinition {
	info := corev1.NodeSystemInfo{}.SwaggerDoc()
	addresses := corev1.NodeStatus{}.SwaggerDoc()["addresses"]
	return []metav1.TableColumnDefinition{
		nameColumn(),
		column("Status", "string", "The status of the node", 0),
		column("Roles", "string", "The roles of the node", 0),
		ageColumn(),
		column("Version", "string", info["kubeletVersion"], 0),
		column("Internal-IP", "string", addresses, 1),
		column("External-IP", "string", addresses, 1),
		column("OS-Image", "string", info["osImage"], 1),
		column("Kernel-Version", "string", info["kernelVersion"], 1),
		column("Container-Runtime", "string", info["containerRuntimeVersion"], 1),
	}
}

// nodeRow is printNode: STATUS is Ready, NotReady or Unknown (no Ready
// condition yet), with ",SchedulingDisabled" for cordoned nodes.
func nodeRow(node *corev1.Node) []interface{} {
	var status []string
	for _, c := range node.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		if c.Status == corev1.ConditionTrue {
			status = append(status, string(c.Type))
		} else {
			status = append(status, "Not"+string(c.Type))
		}
		break
	}
	if len(status) == 0 {
		status = append(status, "Unknown")
	}
	if node.Spec.Unschedulable {
		status = append(status, "SchedulingDisabled")
	}
	roles := strings.Join(nodeRoles(node), ",")
	if roles == "" {
		roles = "<none>"
	}
	info := node.Status.NodeInfo
	unknown := func(s string) string {
		if s == "" {
			return "<unknown>"
		}
		return s
	}
	return []interface{}{
		node.Name, strings.Join(status, ","), roles, translateTimestampSince(node.CreationTimestamp), info.KubeletVersion,
		nodeAddress(node, corev1.NodeInternalIP), nodeAddress(node, corev1.NodeExternalIP),
		unknown(info.OSImage), unknown(info.KernelVersion), unknown(info.ContainerRuntimeVersion),
	}
}

// nodeRoles reads node-role.kubernetes.io/<role> labels and the older
// kubernetes.io/role=<role>, sorted.
func nodeRoles(node *corev1.Node) []string {
	const rolePrefix, roleLabel = "node-role.kubernetes.io/", "kubernetes.io/role"
	roles := sets.New[string]()
	for k, v := range node.Labels {
		switch {
		case strings.HasPrefix(k, rolePrefix):
			if r := strings.TrimPrefix(k, rolePrefix); r != "" {
				roles.Insert(r)
			}
		case k == roleLabel && v != "":
			roles.Insert(v)
		}
	}
	list := roles.UnsortedList()
	sort.Strings(list)
	return list
}

func nodeAddress(node *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range node.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return "<none>"
}
