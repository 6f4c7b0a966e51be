package registry

import (
	"fmt"
	"math"
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validation of pod specs: a faithful subset of ValidatePodSpec in
// Kubernetes' pkg/apis/core/validation. Field paths and messages are
// Kubernetes' own so clients and users see the errors they know.

// podSpecOptions says where a pod spec is validated: a Pod is stricter than
// a template (its defaults are complete: e.g. host-network ports carry
// their hostPort).
type podSpecOptions struct {
	isPod bool
}

// validatePodTemplateSpec checks a pod template of a workload kind
// (labels, annotations, the pod spec). Shared by ReplicationController,
// Deployment, ReplicaSet, StatefulSet, DaemonSet, Job and CronJob.
func validatePodTemplateSpec(t *corev1.PodTemplateSpec, fldPath *field.Path) field.ErrorList {
	allErrs := metav1validation.ValidateLabels(t.Labels, fldPath.Child("labels"))
	allErrs = append(allErrs, apivalidation.ValidateAnnotations(t.Annotations, fldPath.Child("annotations"))...)
	allErrs = append(allErrs, validatePodSpec(&t.Spec, fldPath.Child("spec"))...)
	if len(t.Spec.EphemeralContainers) > 0 {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("spec", "ephemeralContainers"), "ephemeral containers not allowed in pod template"))
	}
	return allErrs
}

// validatePodSpec checks a pod spec as Kubernetes' ValidatePodSpec does.
func validatePodSpec(spec *corev1.PodSpec, fldPath *field.Path) field.ErrorList {
	return validatePodSpecWithOptions(spec, podSpecOptions{}, fldPath)
}

func validatePodSpecWithOptions(spec *corev1.PodSpec, opts podSpecOptions, fldPath *field.Path) field.ErrorList {
	volumes, allErrs := validateVolumes(spec.Volumes, fldPath.Child("volumes"))
	allErrs = append(allErrs, validateContainers(spec.Containers, volumes, fldPath.Child("containers"))...)
	allErrs = append(allErrs, validateInitContainers(spec.InitContainers, volumes, fldPath.Child("initContainers"))...)
	allErrs = append(allErrs, validateEphemeralContainers(spec.EphemeralContainers, volumes, fldPath.Child("ephemeralContainers"))...)
	allErrs = append(allErrs, validateContainerNamesUnique(spec, fldPath)...)
	allErrs = append(allErrs, validateHostPortsUnique(spec, fldPath)...)
	allErrs = append(allErrs, validateHostNetwork(spec, opts, fldPath.Child("containers"))...)
	allErrs = append(allErrs, validateRestartPolicy(spec.RestartPolicy, fldPath.Child("restartPolicy"))...)
	allErrs = append(allErrs, validateDNSPolicy(spec, fldPath)...)
	allErrs = append(allErrs, metav1validation.ValidateLabels(spec.NodeSelector, fldPath.Child("nodeSelector"))...)
	allErrs = append(allErrs, validateTolerations(spec.Tolerations, fldPath.Child("tolerations"))...)

	for _, f := range []struct {
		value string
		name  string
		check func(string) []string
	}{
		{spec.ServiceAccountName, "serviceAccountName", validation.IsDNS1123Subdomain},
		{spec.NodeName, "nodeName", validation.IsDNS1123Subdomain},
		{spec.PriorityClassName, "priorityClassName", validation.IsDNS1123Subdomain},
		{spec.Hostname, "hostname", validation.IsDNS1123Label},
		{spec.Subdomain, "subdomain", validation.IsDNS1123Label},
	} {
		if f.value == "" {
			continue
		}
		for _, msg := range f.check(f.value) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child(f.name), f.value, msg))
		}
	}
	if spec.ActiveDeadlineSeconds != nil {
		if v := *spec.ActiveDeadlineSeconds; v < 1 || v > math.MaxInt32 {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("activeDeadlineSeconds"), v, validation.InclusiveRangeError(1, math.MaxInt32)))
		}
	}
	for i, ref := range spec.ImagePullSecrets {
		if ref.Name == "" {
			allErrs = append(allErrs, field.Required(fldPath.Child("imagePullSecrets").Index(i).Child("name"), ""))
		}
	}
	for i, ha := range spec.HostAliases {
		allErrs = append(allErrs, validation.IsValidIP(fldPath.Child("hostAliases").Index(i).Child("ip"), ha.IP)...)
	}
	if spec.Resources != nil {
		allErrs = append(allErrs, validateResourceRequirements(spec.Resources.Limits, spec.Resources.Requests, fldPath.Child("resources"))...)
	}
	return allErrs
}

// validateVolumes checks names (unique DNS labels) and that each volume
// has exactly one source. It returns the volumes by name for the mounts.
func validateVolumes(volumes []corev1.Volume, fldPath *field.Path) (map[string]*corev1.Volume, field.ErrorList) {
	var allErrs field.ErrorList
	byName := map[string]*corev1.Volume{}
	for i := range volumes {
		vol := &volumes[i]
		idxPath := fldPath.Index(i)
		namePath := idxPath.Child("name")
		switch {
		case vol.Name == "":
			allErrs = append(allErrs, field.Required(namePath, ""))
		default:
			for _, msg := range validation.IsDNS1123Label(vol.Name) {
				allErrs = append(allErrs, field.Invalid(namePath, vol.Name, msg))
			}
			if _, dup := byName[vol.Name]; dup {
				allErrs = append(allErrs, field.Duplicate(namePath, vol.Name))
			} else {
				byName[vol.Name] = vol
			}
		}
		allErrs = append(allErrs, validateVolumeSource(&vol.VolumeSource, idxPath)...)
	}
	return byName, allErrs
}

// validateVolumeSource requires exactly one source and checks the
// required fields of the common ones.
func validateVolumeSource(src *corev1.VolumeSource, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	set := setPointerFields(src)
	switch {
	case len(set) == 0:
		return field.ErrorList{field.Required(fldPath, "must specify a volume type")}
	case len(set) > 1:
		for _, name := range set[1:] {
			allErrs = append(allErrs, field.Forbidden(fldPath.Child(name), "may not specify more than 1 volume type"))
		}
		return allErrs
	}
	switch {
	case src.HostPath != nil:
		if src.HostPath.Path == "" {
			allErrs = append(allErrs, field.Required(fldPath.Child("hostPath", "path"), ""))
		}
	case src.Secret != nil:
		if src.Secret.SecretName == "" {
			allErrs = append(allErrs, field.Required(fldPath.Child("secret", "secretName"), ""))
		}
		allErrs = append(allErrs, validateKeyToPaths(src.Secret.Items, fldPath.Child("secret", "items"))...)
	case src.ConfigMap != nil:
		if src.ConfigMap.Name == "" {
			allErrs = append(allErrs, field.Required(fldPath.Child("configMap", "name"), ""))
		}
		allErrs = append(allErrs, validateKeyToPaths(src.ConfigMap.Items, fldPath.Child("configMap", "items"))...)
	case src.PersistentVolumeClaim != nil:
		if src.PersistentVolumeClaim.ClaimName == "" {
			allErrs = append(allErrs, field.Required(fldPath.Child("persistentVolumeClaim", "claimName"), ""))
		}
	case src.EmptyDir != nil:
		if m := src.EmptyDir.Medium; m != corev1.StorageMediumDefault && m != corev1.StorageMediumMemory && !strings.HasPrefix(string(m), "HugePages") {
			allErrs = append(allErrs, field.NotSupported(fldPath.Child("emptyDir", "medium"), m,
				[]corev1.StorageMedium{corev1.StorageMediumDefault, corev1.StorageMediumMemory, corev1.StorageMediumHugePages}))
		}
		if sl := src.EmptyDir.SizeLimit; sl != nil && sl.Sign() < 0 {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("emptyDir", "sizeLimit"), sl.String(), apivalidation.IsNegativeErrorMsg))
		}
	}
	return allErrs
}

// setPointerFields lists the JSON names of the non-nil pointer fields of a
// struct such as VolumeSource, whose fields are alternatives.
func setPointerFields(v interface{}) []string {
	rv := reflect.ValueOf(v).Elem()
	var set []string
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Field(i)
		if f.Kind() != reflect.Pointer || f.IsNil() {
			continue
		}
		name, _, _ := strings.Cut(rv.Type().Field(i).Tag.Get("json"), ",")
		set = append(set, name)
	}
	return set
}

func validateKeyToPaths(items []corev1.KeyToPath, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for i, kp := range items {
		idxPath := fldPath.Index(i)
		if kp.Key == "" {
			allErrs = append(allErrs, field.Required(idxPath.Child("key"), ""))
		}
		allErrs = append(allErrs, validateLocalNonReservedPath(kp.Path, idxPath.Child("path"))...)
		if kp.Mode != nil && (*kp.Mode > 0777 || *kp.Mode < 0) {
			allErrs = append(allErrs, field.Invalid(idxPath.Child("mode"), *kp.Mode, "must be a number between 0 and 0777 (octal), both inclusive"))
		}
	}
	return allErrs
}

// validateLocalDescendingPath: relative, without "..".
func validateLocalDescendingPath(p string, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if strings.HasPrefix(p, "/") {
		allErrs = append(allErrs, field.Invalid(fldPath, p, "must be a relative path"))
	}
	for _, item := range strings.Split(p, "/") {
		if item == ".." {
			allErrs = append(allErrs, field.Invalid(fldPath, p, "must not contain '..'"))
			break
		}
	}
	return allErrs
}

func validateLocalNonReservedPath(p string, fldPath *field.Path) field.ErrorList {
	if p == "" {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	allErrs := validateLocalDescendingPath(p, fldPath)
	if strings.HasPrefix(p, "..") {
		allErrs = append(allErrs, field.Invalid(fldPath, p, "must not start with '..'"))
	}
	return allErrs
}

// container checks shared by containers, init containers and ephemeral
// containers.
func validateContainerCommon(c *corev1.Container, volumes map[string]*corev1.Volume, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	namePath := fldPath.Child("name")
	if c.Name == "" {
		allErrs = append(allErrs, field.Required(namePath, ""))
	} else {
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			allErrs = append(allErrs, field.Invalid(namePath, c.Name, msg))
		}
	}
	// A template may carry a placeholder image; an empty one is refused
	// everywhere.
	if c.Image == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("image"), ""))
	}
	allErrs = append(allErrs, validatePullPolicy(c.ImagePullPolicy, fldPath.Child("imagePullPolicy"))...)
	allErrs = append(allErrs, validateTerminationMessagePolicy(c.TerminationMessagePolicy, fldPath.Child("terminationMessagePolicy"))...)
	allErrs = append(allErrs, validateContainerPorts(c.Ports, fldPath.Child("ports"))...)
	allErrs = append(allErrs, validateEnv(c.Env, fldPath.Child("env"))...)
	allErrs = append(allErrs, validateEnvFrom(c.EnvFrom, fldPath.Child("envFrom"))...)
	allErrs = append(allErrs, validateVolumeMounts(c.VolumeMounts, volumes, fldPath.Child("volumeMounts"))...)
	allErrs = append(allErrs, validateResourceRequirements(c.Resources.Limits, c.Resources.Requests, fldPath.Child("resources"))...)
	if c.WorkingDir != "" && strings.ContainsRune(c.WorkingDir, 0) {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("workingDir"), c.WorkingDir, "must not contain NUL characters"))
	}
	return allErrs
}

func validateContainers(containers []corev1.Container, volumes map[string]*corev1.Volume, fldPath *field.Path) field.ErrorList {
	if len(containers) == 0 {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	var allErrs field.ErrorList
	for i := range containers {
		c := &containers[i]
		idxPath := fldPath.Index(i)
		allErrs = append(allErrs, validateContainerCommon(c, volumes, idxPath)...)
		if c.RestartPolicy != nil {
			allErrs = append(allErrs, field.Forbidden(idxPath.Child("restartPolicy"), "may not be set for non-init containers"))
		}
		allErrs = append(allErrs, validateLifecycle(c.Lifecycle, idxPath.Child("lifecycle"))...)
		allErrs = append(allErrs, validateProbe(c.LivenessProbe, true, idxPath.Child("livenessProbe"))...)
		allErrs = append(allErrs, validateProbe(c.ReadinessProbe, false, idxPath.Child("readinessProbe"))...)
		allErrs = append(allErrs, validateProbe(c.StartupProbe, true, idxPath.Child("startupProbe"))...)
	}
	return allErrs
}

// validateInitContainers: init containers without restartPolicy Always run
// to completion, so they may not have probes or lifecycle hooks; those with
// it are sidecars and may.
func validateInitContainers(containers []corev1.Container, volumes map[string]*corev1.Volume, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for i := range containers {
		c := &containers[i]
		idxPath := fldPath.Index(i)
		allErrs = append(allErrs, validateContainerCommon(c, volumes, idxPath)...)
		sidecar := false
		if c.RestartPolicy != nil {
			if *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
				sidecar = true
			} else {
				allErrs = append(allErrs, field.NotSupported(idxPath.Child("restartPolicy"), *c.RestartPolicy,
					[]corev1.ContainerRestartPolicy{corev1.ContainerRestartPolicyAlways}))
			}
		}
		if sidecar {
			allErrs = append(allErrs, validateLifecycle(c.Lifecycle, idxPath.Child("lifecycle"))...)
			allErrs = append(allErrs, validateProbe(c.LivenessProbe, true, idxPath.Child("livenessProbe"))...)
			allErrs = append(allErrs, validateProbe(c.ReadinessProbe, false, idxPath.Child("readinessProbe"))...)
			allErrs = append(allErrs, validateProbe(c.StartupProbe, true, idxPath.Child("startupProbe"))...)
			continue
		}
		for _, f := range []namedFlag{
			{"lifecycle", c.Lifecycle != nil},
			{"livenessProbe", c.LivenessProbe != nil},
			{"readinessProbe", c.ReadinessProbe != nil},
			{"startupProbe", c.StartupProbe != nil},
		} {
			if f.set {
				allErrs = append(allErrs, field.Forbidden(idxPath.Child(f.name), "may not be set for init containers without restartPolicy=Always"))
			}
		}
	}
	return allErrs
}

// validateEphemeralContainers: debugging containers share the pod's
// resources and may not declare ports, probes, lifecycle or resources.
func validateEphemeralContainers(containers []corev1.EphemeralContainer, volumes map[string]*corev1.Volume, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for i := range containers {
		ec := &containers[i]
		idxPath := fldPath.Index(i)
		c := (*corev1.Container)(&ec.EphemeralContainerCommon)
		allErrs = append(allErrs, validateContainerCommon(c, volumes, idxPath)...)
		for _, f := range []namedFlag{
			{"ports", len(c.Ports) > 0},
			{"lifecycle", c.Lifecycle != nil},
			{"livenessProbe", c.LivenessProbe != nil},
			{"readinessProbe", c.ReadinessProbe != nil},
			{"startupProbe", c.StartupProbe != nil},
			{"resources", len(c.Resources.Limits) > 0 || len(c.Resources.Requests) > 0},
		} {
			if f.set {
				allErrs = append(allErrs, field.Forbidden(idxPath.Child(f.name), "cannot be set for an Ephemeral Container"))
			}
		}
	}
	return allErrs
}

// namedFlag pairs a field name with whether it is set, in field order.
type namedFlag struct {
	name string
	set  bool
}

// validateContainerNamesUnique: names are unique across all kinds of
// containers of a pod.
func validateContainerNamesUnique(spec *corev1.PodSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	seen := sets.New[string]()
	check := func(name string, p *field.Path) {
		if name == "" {
			return
		}
		if seen.Has(name) {
			allErrs = append(allErrs, field.Duplicate(p, name))
		}
		seen.Insert(name)
	}
	for i, c := range spec.InitContainers {
		check(c.Name, fldPath.Child("initContainers").Index(i).Child("name"))
	}
	for i, c := range spec.Containers {
		check(c.Name, fldPath.Child("containers").Index(i).Child("name"))
	}
	for i, c := range spec.EphemeralContainers {
		check(c.Name, fldPath.Child("ephemeralContainers").Index(i).Child("name"))
	}
	return allErrs
}

var supportedPortProtocols = []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}

func validateProtocol(p corev1.Protocol, fldPath *field.Path) field.ErrorList {
	switch p {
	case "":
		return field.ErrorList{field.Required(fldPath, "")}
	case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		return nil
	}
	return field.ErrorList{field.NotSupported(fldPath, p, supportedPortProtocols)}
}

func validateContainerPorts(ports []corev1.ContainerPort, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	names := sets.New[string]()
	for i, port := range ports {
		idxPath := fldPath.Index(i)
		if port.Name != "" {
			for _, msg := range validation.IsValidPortName(port.Name) {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("name"), port.Name, msg))
			}
			if names.Has(port.Name) {
				allErrs = append(allErrs, field.Duplicate(idxPath.Child("name"), port.Name))
			}
			names.Insert(port.Name)
		}
		if port.ContainerPort == 0 {
			allErrs = append(allErrs, field.Required(idxPath.Child("containerPort"), ""))
		} else {
			for _, msg := range validation.IsValidPortNum(int(port.ContainerPort)) {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("containerPort"), port.ContainerPort, msg))
			}
		}
		if port.HostPort != 0 {
			for _, msg := range validation.IsValidPortNum(int(port.HostPort)) {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("hostPort"), port.HostPort, msg))
			}
		}
		if port.HostIP != "" {
			allErrs = append(allErrs, validation.IsValidIP(idxPath.Child("hostIP"), port.HostIP)...)
		}
		allErrs = append(allErrs, validateProtocol(port.Protocol, idxPath.Child("protocol"))...)
	}
	return allErrs
}

// validateHostPortsUnique: two containers of a pod may not claim the same
// host port, protocol and host IP.
func validateHostPortsUnique(spec *corev1.PodSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	seen := sets.New[string]()
	for _, group := range []struct {
		name       string
		containers []corev1.Container
	}{{"containers", spec.Containers}, {"initContainers", spec.InitContainers}} {
		for i, c := range group.containers {
			for j, port := range c.Ports {
				if port.HostPort == 0 {
					continue
				}
				key := fmt.Sprintf("%s/%s/%d", port.HostIP, port.Protocol, port.HostPort)
				if seen.Has(key) {
					allErrs = append(allErrs, field.Duplicate(fldPath.Child(group.name).Index(i).Child("ports").Index(j).Child("hostPort"), key))
				}
				seen.Insert(key)
			}
		}
	}
	return allErrs
}

// validateHostNetwork: a host-network container listens on the host, so a
// declared hostPort must equal the container port. Pods have hostPort
// defaulted; templates may leave it 0.
func validateHostNetwork(spec *corev1.PodSpec, opts podSpecOptions, fldPath *field.Path) field.ErrorList {
	if !spec.HostNetwork {
		return nil
	}
	var allErrs field.ErrorList
	for i, c := range spec.Containers {
		for j, port := range c.Ports {
			if port.HostPort == 0 && !opts.isPod {
				continue
			}
			if port.HostPort != port.ContainerPort {
				allErrs = append(allErrs, field.Invalid(fldPath.Index(i).Child("ports").Index(j).Child("containerPort"),
					port.ContainerPort, "must match `hostPort` when `hostNetwork` is true"))
			}
		}
	}
	return allErrs
}

// validEnvFieldPaths are what env[*].valueFrom.fieldRef may select.
var validEnvFieldPaths = []string{
	"metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace", "metadata.uid",
	"spec.nodeName", "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs",
}

func validateEnv(env []corev1.EnvVar, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for i, ev := range env {
		idxPath := fldPath.Index(i)
		if ev.Name == "" {
			allErrs = append(allErrs, field.Required(idxPath.Child("name"), ""))
		} else {
			for _, msg := range validation.IsRelaxedEnvVarName(ev.Name) {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("name"), ev.Name, msg))
			}
		}
		if ev.ValueFrom != nil {
			allErrs = append(allErrs, validateEnvVarValueFrom(ev, idxPath.Child("valueFrom"))...)
		}
	}
	return allErrs
}

func validateEnvVarValueFrom(ev corev1.EnvVar, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	vf := ev.ValueFrom
	sources := 0
	if vf.FieldRef != nil {
		sources++
		allErrs = append(allErrs, validateObjectFieldSelector(vf.FieldRef, fldPath.Child("fieldRef"))...)
	}
	if vf.ResourceFieldRef != nil {
		sources++
		if vf.ResourceFieldRef.Resource == "" {
			allErrs = append(allErrs, field.Required(fldPath.Child("resourceFieldRef", "resource"), ""))
		}
	}
	if vf.ConfigMapKeyRef != nil {
		sources++
		allErrs = append(allErrs, validateKeySelector(vf.ConfigMapKeyRef.Name, vf.ConfigMapKeyRef.Key, fldPath.Child("configMapKeyRef"))...)
	}
	if vf.SecretKeyRef != nil {
		sources++
		allErrs = append(allErrs, validateKeySelector(vf.SecretKeyRef.Name, vf.SecretKeyRef.Key, fldPath.Child("secretKeyRef"))...)
	}
	if vf.FileKeyRef != nil {
		sources++
	}
	switch {
	case sources == 0:
		allErrs = append(allErrs, field.Invalid(fldPath, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
	case ev.Value != "":
		allErrs = append(allErrs, field.Invalid(fldPath, "", "may not be specified when `value` is not empty"))
	case sources > 1:
		allErrs = append(allErrs, field.Invalid(fldPath, "", "may not have more than one field specified at a time"))
	}
	return allErrs
}

func validateObjectFieldSelector(fs *corev1.ObjectFieldSelector, fldPath *field.Path) field.ErrorList {
	if fs.APIVersion == "" {
		return field.ErrorList{field.Required(fldPath.Child("apiVersion"), "")}
	}
	if fs.FieldPath == "" {
		return field.ErrorList{field.Required(fldPath.Child("fieldPath"), "")}
	}
	p := fs.FieldPath
	// metadata.labels['key'] and metadata.annotations['key'] select one entry.
	for _, prefix := range []string{"metadata.labels[", "metadata.annotations["} {
		if strings.HasPrefix(p, prefix) && strings.HasSuffix(p, "]") {
			key := strings.Trim(strings.TrimSuffix(strings.TrimPrefix(p, prefix), "]"), "'")
			var errs field.ErrorList
			for _, msg := range validation.IsQualifiedName(strings.ToLower(key)) {
				errs = append(errs, field.Invalid(fldPath.Child("fieldPath"), p, fmt.Sprintf("invalid key in subscript: %s", msg)))
			}
			return errs
		}
	}
	for _, ok := range validEnvFieldPaths {
		if p == ok {
			return nil
		}
	}
	return field.ErrorList{field.NotSupported(fldPath.Child("fieldPath"), p, validEnvFieldPaths)}
}

func validateKeySelector(name, key string, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if name == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("name"), ""))
	}
	if key == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("key"), ""))
	} else {
		for _, msg := range validation.IsConfigMapKey(key) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("key"), key, msg))
		}
	}
	return allErrs
}

func validateEnvFrom(sources []corev1.EnvFromSource, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for i, src := range sources {
		idxPath := fldPath.Index(i)
		if src.Prefix != "" {
			for _, msg := range validation.IsRelaxedEnvVarName(src.Prefix) {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("prefix"), src.Prefix, msg))
			}
		}
		n := 0
		if src.ConfigMapRef != nil {
			n++
			if src.ConfigMapRef.Name == "" {
				allErrs = append(allErrs, field.Required(idxPath.Child("configMapRef", "name"), ""))
			}
		}
		if src.SecretRef != nil {
			n++
			if src.SecretRef.Name == "" {
				allErrs = append(allErrs, field.Required(idxPath.Child("secretRef", "name"), ""))
			}
		}
		switch {
		case n == 0:
			allErrs = append(allErrs, field.Invalid(idxPath, "", "must specify one of: `configMapRef` or `secretRef`"))
		case n > 1:
			allErrs = append(allErrs, field.Invalid(idxPath, "", "may not have more than one field specified at a time"))
		}
	}
	return allErrs
}

func validateVolumeMounts(mounts []corev1.VolumeMount, volumes map[string]*corev1.Volume, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	paths := sets.New[string]()
	for i, m := range mounts {
		idxPath := fldPath.Index(i)
		if m.Name == "" {
			allErrs = append(allErrs, field.Required(idxPath.Child("name"), ""))
		} else if _, ok := volumes[m.Name]; !ok {
			allErrs = append(allErrs, field.NotFound(idxPath.Child("name"), m.Name))
		}
		if m.MountPath == "" {
			allErrs = append(allErrs, field.Required(idxPath.Child("mountPath"), ""))
		} else if paths.Has(m.MountPath) {
			allErrs = append(allErrs, field.Invalid(idxPath.Child("mountPath"), m.MountPath, "must be unique"))
		}
		paths.Insert(m.MountPath)
		if m.SubPath != "" {
			allErrs = append(allErrs, validateLocalDescendingPath(m.SubPath, idxPath.Child("subPath"))...)
		}
		if m.SubPathExpr != "" && m.SubPath != "" {
			allErrs = append(allErrs, field.Invalid(idxPath.Child("subPathExpr"), m.SubPathExpr, "subPathExpr and subPath are mutually exclusive"))
		}
		if mp := m.MountPropagation; mp != nil {
			switch *mp {
			case corev1.MountPropagationNone, corev1.MountPropagationHostToContainer, corev1.MountPropagationBidirectional:
			default:
				allErrs = append(allErrs, field.NotSupported(idxPath.Child("mountPropagation"), *mp, []corev1.MountPropagationMode{
					corev1.MountPropagationBidirectional, corev1.MountPropagationHostToContainer, corev1.MountPropagationNone}))
			}
		}
	}
	return allErrs
}

// standardContainerResources are the resource names without a domain a
// container may ask for; hugepages-<size> are allowed as well.
var standardContainerResources = sets.New[corev1.ResourceName](corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage)

func validateContainerResourceName(name corev1.ResourceName, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for _, msg := range validation.IsQualifiedName(string(name)) {
		allErrs = append(allErrs, field.Invalid(fldPath, name, msg))
	}
	if len(allErrs) > 0 {
		return allErrs
	}
	if !strings.Contains(string(name), "/") {
		if !standardContainerResources.Has(name) && !strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix) {
			allErrs = append(allErrs, field.Invalid(fldPath, name, "must be a standard resource for containers"))
		}
	} else if strings.HasPrefix(string(name), "requests.") {
		allErrs = append(allErrs, field.Invalid(fldPath, name, "doesn't follow extended resource name standard"))
	}
	return allErrs
}

// overcommitAllowed: extended resources (with a domain outside
// kubernetes.io) need request == limit, hence a limit.
func overcommitAllowed(name corev1.ResourceName) bool {
	s := string(name)
	if !strings.Contains(s, "/") || strings.Contains(s, "kubernetes.io/") {
		return !strings.HasPrefix(s, corev1.ResourceHugePagesPrefix)
	}
	return false
}

// validateResourceRequirements: known names, non-negative quantities and
// requests no larger than limits.
func validateResourceRequirements(limits, requests corev1.ResourceList, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	limPath, reqPath := fldPath.Child("limits"), fldPath.Child("requests")
	for _, name := range sortedResourceNames(limits) {
		q := limits[name]
		p := limPath.Key(string(name))
		allErrs = append(allErrs, validateContainerResourceName(name, p)...)
		allErrs = append(allErrs, validateQuantityValue(name, q, p)...)
	}
	for _, name := range sortedResourceNames(requests) {
		q := requests[name]
		p := reqPath.Key(string(name))
		allErrs = append(allErrs, validateContainerResourceName(name, p)...)
		allErrs = append(allErrs, validateQuantityValue(name, q, p)...)
		if lim, ok := limits[name]; ok {
			if q.Cmp(lim) > 0 {
				allErrs = append(allErrs, field.Invalid(p, q.String(), fmt.Sprintf("must be less than or equal to %s limit of %s", name, lim.String())))
			}
		} else if !overcommitAllowed(name) {
			allErrs = append(allErrs, field.Required(limPath, "Limit must be set for non overcommitable resources"))
		}
	}
	return allErrs
}

func validateQuantityValue(name corev1.ResourceName, q resource.Quantity, fldPath *field.Path) field.ErrorList {
	if q.Sign() < 0 {
		return field.ErrorList{field.Invalid(fldPath, q.String(), apivalidation.IsNegativeErrorMsg)}
	}
	// Extended resources are whole units (GPUs, devices).
	if !overcommitAllowed(name) && !strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix) && q.MilliValue()%1000 != 0 {
		return field.ErrorList{field.Invalid(fldPath, q.String(), "must be an integer")}
	}
	return nil
}

func sortedResourceNames(l corev1.ResourceList) []corev1.ResourceName {
	names := make([]corev1.ResourceName, 0, len(l))
	for n := range l {
		names = append(names, n)
	}
	return sets.List(sets.New(names...))
}

func validatePullPolicy(p corev1.PullPolicy, fldPath *field.Path) field.ErrorList {
	switch p {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
		return nil
	case "":
		return field.ErrorList{field.Required(fldPath, "")}
	}
	return field.ErrorList{field.NotSupported(fldPath, p, []corev1.PullPolicy{corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever})}
}

func validateTerminationMessagePolicy(p corev1.TerminationMessagePolicy, fldPath *field.Path) field.ErrorList {
	switch p {
	case corev1.TerminationMessageReadFile, corev1.TerminationMessageFallbackToLogsOnError:
		return nil
	case "":
		return field.ErrorList{field.Required(fldPath, "")}
	}
	return field.ErrorList{field.NotSupported(fldPath, p, []corev1.TerminationMessagePolicy{
		corev1.TerminationMessageFallbackToLogsOnError, corev1.TerminationMessageReadFile})}
}

func validateRestartPolicy(p corev1.RestartPolicy, fldPath *field.Path) field.ErrorList {
	switch p {
	case corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
		return nil
	case "":
		return field.ErrorList{field.Required(fldPath, "")}
	}
	return field.ErrorList{field.NotSupported(fldPath, p, []corev1.RestartPolicy{
		corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever})}
}

func validateDNSPolicy(spec *corev1.PodSpec, fldPath *field.Path) field.ErrorList {
	p := fldPath.Child("dnsPolicy")
	switch spec.DNSPolicy {
	case corev1.DNSClusterFirstWithHostNet, corev1.DNSClusterFirst, corev1.DNSDefault:
	case corev1.DNSNone:
		if spec.DNSConfig == nil {
			return field.ErrorList{field.Required(fldPath.Child("dnsConfig"), "must provide `dnsConfig` when `dnsPolicy` is None")}
		}
		if len(spec.DNSConfig.Nameservers) == 0 {
			return field.ErrorList{field.Required(fldPath.Child("dnsConfig", "nameservers"), "must provide at least one DNS nameserver when `dnsPolicy` is None")}
		}
	case "":
		return field.ErrorList{field.Required(p, "")}
	default:
		return field.ErrorList{field.NotSupported(p, spec.DNSPolicy, []corev1.DNSPolicy{
			corev1.DNSClusterFirstWithHostNet, corev1.DNSClusterFirst, corev1.DNSDefault, corev1.DNSNone})}
	}
	var allErrs field.ErrorList
	if c := spec.DNSConfig; c != nil {
		if len(c.Nameservers) > 3 {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("dnsConfig", "nameservers"), c.Nameservers, "must not have more than 3 nameservers"))
		}
		for i, ns := range c.Nameservers {
			allErrs = append(allErrs, validation.IsValidIP(fldPath.Child("dnsConfig", "nameservers").Index(i), ns)...)
		}
	}
	return allErrs
}

var validTaintEffects = []corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute}

// validateTaintEffect; allowEmpty for tolerations (empty matches all).
func validateTaintEffect(e corev1.TaintEffect, allowEmpty bool, fldPath *field.Path) field.ErrorList {
	switch {
	case e == "" && allowEmpty:
		return nil
	case e == "":
		return field.ErrorList{field.Required(fldPath, "")}
	case e == corev1.TaintEffectNoSchedule, e == corev1.TaintEffectPreferNoSchedule, e == corev1.TaintEffectNoExecute:
		return nil
	}
	return field.ErrorList{field.NotSupported(fldPath, e, validTaintEffects)}
}

func validateTolerations(tolerations []corev1.Toleration, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for i, t := range tolerations {
		idxPath := fldPath.Index(i)
		if t.Key != "" {
			allErrs = append(allErrs, metav1validation.ValidateLabelName(t.Key, idxPath.Child("key"))...)
		} else if t.Operator != corev1.TolerationOpExists {
			allErrs = append(allErrs, field.Invalid(idxPath.Child("operator"), t.Operator,
				"operator must be Exists when `key` is empty, which means \"match all values and all keys\""))
		}
		if t.TolerationSeconds != nil && t.Effect != corev1.TaintEffectNoExecute {
			allErrs = append(allErrs, field.Invalid(idxPath.Child("effect"), t.Effect,
				"effect must be 'NoExecute' when `tolerationSeconds` is set"))
		}
		switch t.Operator {
		case corev1.TolerationOpEqual, "":
			for _, msg := range validation.IsValidLabelValue(t.Value) {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("value"), t.Value, msg))
			}
		case corev1.TolerationOpExists:
			if t.Value != "" {
				allErrs = append(allErrs, field.Invalid(idxPath.Child("operator"), t.Value, "value must be empty when `operator` is 'Exists'"))
			}
		default:
			allErrs = append(allErrs, field.NotSupported(idxPath.Child("operator"), t.Operator,
				[]corev1.TolerationOperator{corev1.TolerationOpEqual, corev1.TolerationOpExists}))
		}
		allErrs = append(allErrs, validateTaintEffect(t.Effect, true, idxPath.Child("effect"))...)
	}
	return allErrs
}

// validateProbe: exactly one handler, non-negative timings; liveness and
// startup probes succeed on the first success.
func validateProbe(p *corev1.Probe, successMustBeOne bool, fldPath *field.Path) field.ErrorList {
	if p == nil {
		return nil
	}
	allErrs := validateProbeHandler(&p.ProbeHandler, fldPath)
	for _, f := range []struct {
		name  string
		value int32
	}{
		{"initialDelaySeconds", p.InitialDelaySeconds}, {"timeoutSeconds", p.TimeoutSeconds},
		{"periodSeconds", p.PeriodSeconds}, {"successThreshold", p.SuccessThreshold},
		{"failureThreshold", p.FailureThreshold},
	} {
		allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(f.value), fldPath.Child(f.name))...)
	}
	if successMustBeOne && p.SuccessThreshold != 1 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("successThreshold"), p.SuccessThreshold, "must be 1"))
	}
	if p.TerminationGracePeriodSeconds != nil && *p.TerminationGracePeriodSeconds <= 0 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("terminationGracePeriodSeconds"), *p.TerminationGracePeriodSeconds, "must be greater than 0"))
	}
	return allErrs
}

func validateProbeHandler(h *corev1.ProbeHandler, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	set := setPointerFields(h)
	switch {
	case len(set) == 0:
		return field.ErrorList{field.Required(fldPath, "must specify a handler type")}
	case len(set) > 1:
		for _, name := range set[1:] {
			allErrs = append(allErrs, field.Forbidden(fldPath.Child(name), "may not specify more than 1 handler type"))
		}
		return allErrs
	}
	switch {
	case h.Exec != nil:
		allErrs = append(allErrs, validateExecAction(h.Exec, fldPath.Child("exec"))...)
	case h.HTTPGet != nil:
		allErrs = append(allErrs, validateHTTPGetAction(h.HTTPGet, fldPath.Child("httpGet"))...)
	case h.TCPSocket != nil:
		allErrs = append(allErrs, validatePortNumOrName(h.TCPSocket.Port, fldPath.Child("tcpSocket", "port"))...)
	case h.GRPC != nil:
		for _, msg := range validation.IsValidPortNum(int(h.GRPC.Port)) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("grpc", "port"), h.GRPC.Port, msg))
		}
	}
	return allErrs
}

func validateLifecycle(l *corev1.Lifecycle, fldPath *field.Path) field.ErrorList {
	if l == nil {
		return nil
	}
	var allErrs field.ErrorList
	for _, hook := range []struct {
		name string
		h    *corev1.LifecycleHandler
	}{{"postStart", l.PostStart}, {"preStop", l.PreStop}} {
		h := hook.h
		if h == nil {
			continue
		}
		p := fldPath.Child(hook.name)
		set := setPointerFields(h)
		switch {
		case len(set) == 0:
			allErrs = append(allErrs, field.Required(p, "must specify a handler type"))
			continue
		case len(set) > 1:
			allErrs = append(allErrs, field.Forbidden(p.Child(set[1]), "may not specify more than 1 handler type"))
			continue
		}
		switch {
		case h.Exec != nil:
			allErrs = append(allErrs, validateExecAction(h.Exec, p.Child("exec"))...)
		case h.HTTPGet != nil:
			allErrs = append(allErrs, validateHTTPGetAction(h.HTTPGet, p.Child("httpGet"))...)
		case h.TCPSocket != nil:
			allErrs = append(allErrs, validatePortNumOrName(h.TCPSocket.Port, p.Child("tcpSocket", "port"))...)
		case h.Sleep != nil && h.Sleep.Seconds < 0:
			allErrs = append(allErrs, field.Invalid(p.Child("sleep", "seconds"), h.Sleep.Seconds, "must be non-negative"))
		}
	}
	return allErrs
}

func validateExecAction(e *corev1.ExecAction, fldPath *field.Path) field.ErrorList {
	if len(e.Command) == 0 {
		return field.ErrorList{field.Required(fldPath.Child("command"), "")}
	}
	return nil
}

func validateHTTPGetAction(h *corev1.HTTPGetAction, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if h.Path == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("path"), ""))
	}
	allErrs = append(allErrs, validatePortNumOrName(h.Port, fldPath.Child("port"))...)
	if h.Scheme != corev1.URISchemeHTTP && h.Scheme != corev1.URISchemeHTTPS {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("scheme"), h.Scheme, []corev1.URIScheme{corev1.URISchemeHTTP, corev1.URISchemeHTTPS}))
	}
	for i, hdr := range h.HTTPHeaders {
		for _, msg := range validation.IsHTTPHeaderName(hdr.Name) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("httpHeaders").Index(i).Child("name"), hdr.Name, msg))
		}
	}
	return allErrs
}

// validatePortNumOrName checks an int-or-string port: a number in range or
// an IANA service name.
func validatePortNumOrName(port intstr.IntOrString, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	switch port.Type {
	case intstr.Int:
		for _, msg := range validation.IsValidPortNum(port.IntValue()) {
			allErrs = append(allErrs, field.Invalid(fldPath, port.IntValue(), msg))
		}
	case intstr.String:
		for _, msg := range validation.IsValidPortName(port.StrVal) {
			allErrs = append(allErrs, field.Invalid(fldPath, port.StrVal, msg))
		}
	default:
		allErrs = append(allErrs, field.InternalError(fldPath, fmt.Errorf("unknown type: %v", port.Type)))
	}
	return allErrs
}
