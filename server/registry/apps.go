package registry

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

// apps/v1: Deployments, ReplicaSets, StatefulSets, DaemonSets and
// ControllerRevisions, after pkg/apis/apps/v1/defaults.go,
// pkg/apis/apps/validation and pkg/registry/apps/*/strategy.go. Pod
// templates are defaulted and validated by the shared pod spec code.

var appsGV = schema.GroupVersion{Group: "apps", Version: "v1"}

func appsResources() []*Resource {
	return []*Resource{
		deploymentsResource(),
		replicaSetsResource(),
		statefulSetsResource(),
		daemonSetsResource(),
		controllerRevisionsResource(),
	}
}

// Columns every workload's `-o wide` output ends with.
var (
	containersColumn = column("Containers", "string", "Names of each container in the template.", 1)
	imagesColumn     = column("Images", "string", "Images referenced by each container in the template.", 1)
)

func deploymentsResource() *Resource {
	prepareForUpdate := func(obj, old runtime.Object) {
		d, oldD := obj.(*appsv1.Deployment), old.(*appsv1.Deployment)
		d.Status = oldD.Status
		// Annotations count as spec: the controller copies them to the
		// deployment's replica sets.
		bumpGeneration(d, oldD, []interface{}{&d.Spec, d.Annotations}, []interface{}{&oldD.Spec, oldD.Annotations})
	}
	return &Resource{
		GroupVersion: appsGV,
		Name:         "deployments",
		Kind:         "Deployment",
		SingularName: "deployment",
		Namespaced:   true,
		ShortNames:   []string{"deploy"},
		Categories:   []string{"all"},
		Subresources: []string{"status", "scale"},
		New:          func() runtime.Object { return &appsv1.Deployment{} },
		NewList:      func() runtime.Object { return &appsv1.DeploymentList{} },
		Default:      func(obj runtime.Object) { defaultDeployment(obj.(*appsv1.Deployment)) },
		PrepareForCreate: func(obj runtime.Object) {
			d := obj.(*appsv1.Deployment)
			d.Status = appsv1.DeploymentStatus{}
			d.Generation = 1
		},
		PrepareForUpdate:      prepareForUpdate,
		PrepareForSubresource: map[string]func(obj, old runtime.Object){"scale": prepareForUpdate},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			d, oldD := obj.(*appsv1.Deployment), old.(*appsv1.Deployment)
			d.Spec = oldD.Spec
			d.Generation = oldD.Generation
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateDeployment(obj.(*appsv1.Deployment)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			d, oldD := obj.(*appsv1.Deployment), old.(*appsv1.Deployment)
			return validateImmutableSelector(d.Spec.Selector, oldD.Spec.Selector)
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Ready", "string", "Number of the pod with ready state", 0),
			column("Up-to-date", "integer", appsv1.DeploymentStatus{}.SwaggerDoc()["updatedReplicas"], 0),
			column("Available", "integer", appsv1.DeploymentStatus{}.SwaggerDoc()["availableReplicas"], 0),
			ageColumn(),
			containersColumn, imagesColumn,
			column("Selector", "string", appsv1.DeploymentSpec{}.SwaggerDoc()["selector"], 1),
		},
		Row: func(obj runtime.Object) []interface{} { return deploymentRow(obj.(*appsv1.Deployment)) },
	}
}

// defaultDeployment is SetDefaults_Deployment of apps/v1.
func defaultDeployment(d *appsv1.Deployment) {
	if d.Spec.Replicas == nil {
		d.Spec.Replicas = ptr.To[int32](1)
	}
	s := &d.Spec.Strategy
	if s.Type == "" {
		s.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
	if s.Type == appsv1.RollingUpdateDeploymentStrategyType {
		if s.RollingUpdate == nil {
			s.RollingUpdate = &appsv1.RollingUpdateDeployment{}
		}
		if s.RollingUpdate.MaxUnavailable == nil {
			s.RollingUpdate.MaxUnavailable = ptr.To(intstr.FromString("25%"))
		}
		if s.RollingUpdate.MaxSurge == nil {
			s.RollingUpdate.MaxSurge = ptr.To(intstr.FromString("25%"))
		}
	}
	if d.Spec.RevisionHistoryLimit == nil {
		d.Spec.RevisionHistoryLimit = ptr.To[int32](10)
	}
	if d.Spec.ProgressDeadlineSeconds == nil {
		d.Spec.ProgressDeadlineSeconds = ptr.To[int32](600)
	}
	defaultPodTemplateSpec(&d.Spec.Template)
}

func validateDeployment(d *appsv1.Deployment) field.ErrorList {
	specPath := field.NewPath("spec")
	spec := &d.Spec
	replicas := ptr.Deref(spec.Replicas, 0)
	allErrs := apivalidation.ValidateNonnegativeField(int64(replicas), specPath.Child("replicas"))
	allErrs = append(allErrs, validateWorkloadSelector(spec.Selector, "empty selector is invalid for deployment", specPath.Child("selector"))...)
	allErrs = append(allErrs, validateReplicaSetTemplate(&spec.Template, spec.Selector, "ReplicaSet", specPath.Child("template"))...)
	allErrs = append(allErrs, validateDeploymentStrategy(&spec.Strategy, specPath.Child("strategy"))...)
	allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(spec.MinReadySeconds), specPath.Child("minReadySeconds"))...)
	if spec.RevisionHistoryLimit != nil {
		allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(*spec.RevisionHistoryLimit), specPath.Child("revisionHistoryLimit"))...)
	}
	if spec.ProgressDeadlineSeconds != nil {
		p := *spec.ProgressDeadlineSeconds
		allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(p), specPath.Child("progressDeadlineSeconds"))...)
		if p <= spec.MinReadySeconds {
			allErrs = append(allErrs, field.Invalid(specPath.Child("progressDeadlineSeconds"), p, "must be greater than minReadySeconds"))
		}
	}
	allErrs = append(allErrs, validateDeploymentStatus(&d.Status, field.NewPath("status"))...)
	return allErrs
}

func validateDeploymentStrategy(s *appsv1.DeploymentStrategy, fldPath *field.Path) field.ErrorList {
	switch s.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if s.RollingUpdate != nil {
			return field.ErrorList{field.Forbidden(fldPath.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'")}
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		if s.RollingUpdate == nil {
			return field.ErrorList{field.Required(fldPath.Child("rollingUpdate"), "this should be defaulted and never be nil")}
		}
		ruPath := fldPath.Child("rollingUpdate")
		maxUnavailable, maxSurge := intOrZero(s.RollingUpdate.MaxUnavailable), intOrZero(s.RollingUpdate.MaxSurge)
		allErrs := validatePositiveIntOrPercent(maxUnavailable, ruPath.Child("maxUnavailable"))
		allErrs = append(allErrs, validatePositiveIntOrPercent(maxSurge, ruPath.Child("maxSurge"))...)
		if intOrPercentValue(maxUnavailable) == 0 && intOrPercentValue(maxSurge) == 0 {
			allErrs = append(allErrs, field.Invalid(ruPath.Child("maxUnavailable"), maxUnavailable, "may not be 0 when `maxSurge` is 0"))
		}
		allErrs = append(allErrs, validateNotMoreThan100Percent(maxUnavailable, ruPath.Child("maxUnavailable"))...)
		return allErrs
	default:
		return field.ErrorList{field.NotSupported(fldPath.Child("type"), s.Type,
			[]appsv1.DeploymentStrategyType{appsv1.RecreateDeploymentStrategyType, appsv1.RollingUpdateDeploymentStrategyType})}
	}
	return nil
}

func validateDeploymentStatus(st *appsv1.DeploymentStatus, fldPath *field.Path) field.ErrorList {
	allErrs := validateNonnegativeFields(fldPath, map[string]int64{
		"replicas":            int64(st.Replicas),
		"updatedReplicas":     int64(st.UpdatedReplicas),
		"readyReplicas":       int64(st.ReadyReplicas),
		"availableReplicas":   int64(st.AvailableReplicas),
		"unavailableReplicas": int64(st.UnavailableReplicas),
		"observedGeneration":  st.ObservedGeneration,
	})
	if st.TerminatingReplicas != nil {
		allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(*st.TerminatingReplicas), fldPath.Child("terminatingReplicas"))...)
	}
	if st.CollisionCount != nil {
		allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(*st.CollisionCount), fldPath.Child("collisionCount"))...)
	}
	const msg = "cannot be greater than status.replicas"
	if st.UpdatedReplicas > st.Replicas {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("updatedReplicas"), st.UpdatedReplicas, msg))
	}
	if st.ReadyReplicas > st.Replicas {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("readyReplicas"), st.ReadyReplicas, msg))
	}
	if st.AvailableReplicas > st.Replicas {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("availableReplicas"), st.AvailableReplicas, msg))
	}
	if st.AvailableReplicas > st.ReadyReplicas {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("availableReplicas"), st.AvailableReplicas, "cannot be greater than readyReplicas"))
	}
	return allErrs
}

func deploymentRow(d *appsv1.Deployment) []interface{} {
	names, images := podTemplateContainerCells(d.Spec.Template.Spec.Containers)
	return []interface{}{
		d.Name,
		fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, ptr.Deref(d.Spec.Replicas, 0)),
		int64(d.Status.UpdatedReplicas), int64(d.Status.AvailableReplicas),
		translateTimestampSince(d.CreationTimestamp),
		names, images, selectorString(d.Spec.Selector),
	}
}

func replicaSetsResource() *Resource {
	prepareForUpdate := func(obj, old runtime.Object) {
		rs, oldRS := obj.(*appsv1.ReplicaSet), old.(*appsv1.ReplicaSet)
		rs.Status = oldRS.Status
		bumpGeneration(rs, oldRS, &rs.Spec, &oldRS.Spec)
	}
	return &Resource{
		GroupVersion: appsGV,
		Name:         "replicasets",
		Kind:         "ReplicaSet",
		SingularName: "replicaset",
		Namespaced:   true,
		ShortNames:   []string{"rs"},
		Categories:   []string{"all"},
		Subresources: []string{"status", "scale"},
		New:          func() runtime.Object { return &appsv1.ReplicaSet{} },
		NewList:      func() runtime.Object { return &appsv1.ReplicaSetList{} },
		Default: func(obj runtime.Object) {
			rs := obj.(*appsv1.ReplicaSet)
			if rs.Spec.Replicas == nil {
				rs.Spec.Replicas = ptr.To[int32](1)
			}
			defaultPodTemplateSpec(&rs.Spec.Template)
		},
		PrepareForCreate: func(obj runtime.Object) {
			rs := obj.(*appsv1.ReplicaSet)
			rs.Status = appsv1.ReplicaSetStatus{}
			rs.Generation = 1
		},
		PrepareForUpdate:      prepareForUpdate,
		PrepareForSubresource: map[string]func(obj, old runtime.Object){"scale": prepareForUpdate},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			rs, oldRS := obj.(*appsv1.ReplicaSet), old.(*appsv1.ReplicaSet)
			rs.Spec = oldRS.Spec
			rs.Generation = oldRS.Generation
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateReplicaSet(obj.(*appsv1.ReplicaSet)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			rs, oldRS := obj.(*appsv1.ReplicaSet), old.(*appsv1.ReplicaSet)
			return validateImmutableSelector(rs.Spec.Selector, oldRS.Spec.Selector)
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Desired", "integer", appsv1.ReplicaSetSpec{}.SwaggerDoc()["replicas"], 0),
			column("Current", "integer", appsv1.ReplicaSetStatus{}.SwaggerDoc()["replicas"], 0),
			column("Ready", "integer", appsv1.ReplicaSetStatus{}.SwaggerDoc()["readyReplicas"], 0),
			ageColumn(),
			containersColumn, imagesColumn,
			column("Selector", "string", appsv1.ReplicaSetSpec{}.SwaggerDoc()["selector"], 1),
		},
		Row: func(obj runtime.Object) []interface{} {
			rs := obj.(*appsv1.ReplicaSet)
			names, images := podTemplateContainerCells(rs.Spec.Template.Spec.Containers)
			return []interface{}{
				rs.Name, int64(ptr.Deref(rs.Spec.Replicas, 0)), int64(rs.Status.Replicas), int64(rs.Status.ReadyReplicas),
				translateTimestampSince(rs.CreationTimestamp),
				names, images, formatLabelSelector(rs.Spec.Selector),
			}
		},
		Fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"status.replicas": strconv.Itoa(int(obj.(*appsv1.ReplicaSet).Status.Replicas))}
		},
	}
}

func validateReplicaSet(rs *appsv1.ReplicaSet) field.ErrorList {
	specPath := field.NewPath("spec")
	spec := &rs.Spec
	allErrs := apivalidation.ValidateNonnegativeField(int64(ptr.Deref(spec.Replicas, 0)), specPath.Child("replicas"))
	allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(spec.MinReadySeconds), specPath.Child("minReadySeconds"))...)
	allErrs = append(allErrs, validateWorkloadSelector(spec.Selector, "empty selector is invalid for deployment", specPath.Child("selector"))...)
	allErrs = append(allErrs, validateReplicaSetTemplate(&spec.Template, spec.Selector, "ReplicaSet", specPath.Child("template"))...)

	st, stPath := &rs.Status, field.NewPath("status")
	allErrs = append(allErrs, validateNonnegativeFields(stPath, map[string]int64{
		"replicas":             int64(st.Replicas),
		"fullyLabeledReplicas": int64(st.FullyLabeledReplicas),
		"readyReplicas":        int64(st.ReadyReplicas),
		"availableReplicas":    int64(st.AvailableReplicas),
		"observedGeneration":   st.ObservedGeneration,
	})...)
	if st.TerminatingReplicas != nil {
		allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(*st.TerminatingReplicas), stPath.Child("terminatingReplicas"))...)
	}
	const msg = "cannot be greater than status.replicas"
	if st.FullyLabeledReplicas > st.Replicas {
		allErrs = append(allErrs, field.Invalid(stPath.Child("fullyLabeledReplicas"), st.FullyLabeledReplicas, msg))
	}
	if st.ReadyReplicas > st.Replicas {
		allErrs = append(allErrs, field.Invalid(stPath.Child("readyReplicas"), st.ReadyReplicas, msg))
	}
	if st.AvailableReplicas > st.Replicas {
		allErrs = append(allErrs, field.Invalid(stPath.Child("availableReplicas"), st.AvailableReplicas, msg))
	}
	if st.AvailableReplicas > st.ReadyReplicas {
		allErrs = append(allErrs, field.Invalid(stPath.Child("availableReplicas"), st.AvailableReplicas, "cannot be greater than readyReplicas"))
	}
	return allErrs
}

func statefulSetsResource() *Resource {
	prepareForUpdate := func(obj, old runtime.Object) {
		ss, oldSS := obj.(*appsv1.StatefulSet), old.(*appsv1.StatefulSet)
		ss.Status = oldSS.Status
		bumpGeneration(ss, oldSS, &ss.Spec, &oldSS.Spec)
	}
	return &Resource{
		GroupVersion: appsGV,
		Name:         "statefulsets",
		Kind:         "StatefulSet",
		SingularName: "statefulset",
		Namespaced:   true,
		ShortNames:   []string{"sts"},
		Categories:   []string{"all"},
		Subresources: []string{"status", "scale"},
		New:          func() runtime.Object { return &appsv1.StatefulSet{} },
		NewList:      func() runtime.Object { return &appsv1.StatefulSetList{} },
		Default:      func(obj runtime.Object) { defaultStatefulSet(obj.(*appsv1.StatefulSet)) },
		PrepareForCreate: func(obj runtime.Object) {
			ss := obj.(*appsv1.StatefulSet)
			ss.Status = appsv1.StatefulSetStatus{}
			ss.Generation = 1
		},
		PrepareForUpdate:      prepareForUpdate,
		PrepareForSubresource: map[string]func(obj, old runtime.Object){"scale": prepareForUpdate},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			ss, oldSS := obj.(*appsv1.StatefulSet), old.(*appsv1.StatefulSet)
			ss.Spec = oldSS.Spec
			ss.Generation = oldSS.Generation
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateStatefulSet(obj.(*appsv1.StatefulSet)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return validateStatefulSetUpdate(obj.(*appsv1.StatefulSet), old.(*appsv1.StatefulSet))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Ready", "string", "Number of the pod with ready state", 0),
			ageColumn(),
			containersColumn, imagesColumn,
		},
		Row: func(obj runtime.Object) []interface{} {
			ss := obj.(*appsv1.StatefulSet)
			names, images := podTemplateContainerCells(ss.Spec.Template.Spec.Containers)
			return []interface{}{
				ss.Name, fmt.Sprintf("%d/%d", ss.Status.ReadyReplicas, ptr.Deref(ss.Spec.Replicas, 0)),
				translateTimestampSince(ss.CreationTimestamp), names, images,
			}
		},
	}
}

// defaultStatefulSet is SetDefaults_StatefulSet of apps/v1 plus the
// generated defaults of its volume claim templates (which, like
// PersistentVolumeClaim objects, start in phase Pending).
func defaultStatefulSet(ss *appsv1.StatefulSet) {
	spec := &ss.Spec
	if spec.PodManagementPolicy == "" {
		spec.PodManagementPolicy = appsv1.OrderedReadyPodManagement
	}
	if spec.UpdateStrategy.Type == "" {
		spec.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType
	}
	if spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType {
		if spec.UpdateStrategy.RollingUpdate == nil {
			spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
		}
		if spec.UpdateStrategy.RollingUpdate.Partition == nil {
			spec.UpdateStrategy.RollingUpdate.Partition = ptr.To[int32](0)
		}
	}
	if spec.PersistentVolumeClaimRetentionPolicy == nil {
		spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{}
	}
	if p := spec.PersistentVolumeClaimRetentionPolicy; p.WhenDeleted == "" {
		p.WhenDeleted = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	if p := spec.PersistentVolumeClaimRetentionPolicy; p.WhenScaled == "" {
		p.WhenScaled = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	if spec.Replicas == nil {
		spec.Replicas = ptr.To[int32](1)
	}
	if spec.RevisionHistoryLimit == nil {
		spec.RevisionHistoryLimit = ptr.To[int32](10)
	}
	defaultPodTemplateSpec(&spec.Template)
	for i := range spec.VolumeClaimTemplates {
		pvc := &spec.VolumeClaimTemplates[i]
		defaultPVCSpec(&pvc.Spec)
		if pvc.Status.Phase == "" {
			pvc.Status.Phase = corev1.ClaimPending
		}
	}
}

func validateStatefulSet(ss *appsv1.StatefulSet) field.ErrorList {
	specPath := field.NewPath("spec")
	spec := &ss.Spec
	var allErrs field.ErrorList
	switch spec.PodManagementPolicy {
	case "":
		allErrs = append(allErrs, field.Required(specPath.Child("podManagementPolicy"), ""))
	case appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement:
	default:
		allErrs = append(allErrs, field.Invalid(specPath.Child("podManagementPolicy"), spec.PodManagementPolicy,
			fmt.Sprintf("must be '%s' or '%s'", appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement)))
	}
	usPath := specPath.Child("updateStrategy")
	switch spec.UpdateStrategy.Type {
	case "":
		allErrs = append(allErrs, field.Required(usPath, ""))
	case appsv1.OnDeleteStatefulSetStrategyType:
		if spec.UpdateStrategy.RollingUpdate != nil {
			allErrs = append(allErrs, field.Invalid(usPath.Child("rollingUpdate"), spec.UpdateStrategy.RollingUpdate,
				fmt.Sprintf("only allowed for updateStrategy '%s'", appsv1.RollingUpdateStatefulSetStrategyType)))
		}
	case appsv1.RollingUpdateStatefulSetStrategyType:
		if ru := spec.UpdateStrategy.RollingUpdate; ru != nil {
			ruPath := usPath.Child("rollingUpdate")
			if ru.Partition != nil {
				allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(*ru.Partition), ruPath.Child("partition"))...)
			}
			if ru.MaxUnavailable != nil {
				allErrs = append(allErrs, validatePositiveIntOrPercent(*ru.MaxUnavailable, ruPath.Child("maxUnavailable"))...)
				if intOrPercentValue(*ru.MaxUnavailable) == 0 {
					allErrs = append(allErrs, field.Invalid(ruPath.Child("maxUnavailable"), *ru.MaxUnavailable, "cannot be 0"))
				}
				allErrs = append(allErrs, validateNotMoreThan100Percent(*ru.MaxUnavailable, ruPath.Child("maxUnavailable"))...)
			}
		}
	default:
		allErrs = append(allErrs, field.Invalid(usPath, spec.UpdateStrategy,
			fmt.Sprintf("must be '%s' or '%s'", appsv1.RollingUpdateStatefulSetStrategyType, appsv1.OnDeleteStatefulSetStrategyType)))
	}
	if p := spec.PersistentVolumeClaimRetentionPolicy; p != nil {
		pPath := specPath.Child("persistentVolumeClaimRetentionPolicy")
		valid := []appsv1.PersistentVolumeClaimRetentionPolicyType{appsv1.RetainPersistentVolumeClaimRetentionPolicyType, appsv1.DeletePersistentVolumeClaimRetentionPolicyType}
		for name, v := range map[string]appsv1.PersistentVolumeClaimRetentionPolicyType{"whenDeleted": p.WhenDeleted, "whenScaled": p.WhenScaled} {
			if v != appsv1.RetainPersistentVolumeClaimRetentionPolicyType && v != appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
				allErrs = append(allErrs, field.NotSupported(pPath.Child(name), v, valid))
			}
		}
	}
	if spec.Ordinals != nil {
		allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(spec.Ordinals.Start), specPath.Child("ordinals", "start"))...)
	}
	allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(ptr.Deref(spec.Replicas, 0)), specPath.Child("replicas"))...)
	allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(spec.MinReadySeconds), specPath.Child("minReadySeconds"))...)
	if spec.RevisionHistoryLimit != nil {
		allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(*spec.RevisionHistoryLimit), specPath.Child("revisionHistoryLimit"))...)
	}
	if spec.ServiceName != "" {
		for _, msg := range validation.IsDNS1123Label(spec.ServiceName) {
			allErrs = append(allErrs, field.Invalid(specPath.Child("serviceName"), spec.ServiceName, msg))
		}
	}
	allErrs = append(allErrs, validateWorkloadSelector(spec.Selector, "empty selector is not valid for statefulset.", specPath.Child("selector"))...)

	tmplPath := specPath.Child("template")
	t := &spec.Template
	if sel, err := metav1.LabelSelectorAsSelector(spec.Selector); err == nil && !sel.Empty() && !sel.Matches(labels.Set(t.Labels)) {
		allErrs = append(allErrs, field.Invalid(tmplPath.Child("metadata", "labels"), t.Labels, "`selector` does not match template `labels`"))
	}
	allErrs = append(allErrs, validatePodTemplateSpec(t, tmplPath)...)
	if t.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		allErrs = append(allErrs, field.NotSupported(tmplPath.Child("spec", "restartPolicy"), t.Spec.RestartPolicy, []corev1.RestartPolicy{corev1.RestartPolicyAlways}))
	}
	if t.Spec.ActiveDeadlineSeconds != nil {
		allErrs = append(allErrs, field.Invalid(tmplPath.Child("spec", "activeDeadlineSeconds"), t.Spec.ActiveDeadlineSeconds, "must not be specified"))
	}
	for i := range spec.VolumeClaimTemplates {
		pvc := &spec.VolumeClaimTemplates[i]
		pvcPath := specPath.Child("volumeClaimTemplates").Index(i)
		for _, msg := range apivalidation.NameIsDNSSubdomain(pvc.Name, false) {
			allErrs = append(allErrs, field.Invalid(pvcPath.Child("metadata", "name"), pvc.Name, msg))
		}
		if len(pvc.Spec.AccessModes) == 0 {
			allErrs = append(allErrs, field.Required(pvcPath.Child("spec", "accessModes"), "at least 1 access mode is required"))
		}
	}

	st, stPath := &ss.Status, field.NewPath("status")
	allErrs = append(allErrs, validateNonnegativeFields(stPath, map[string]int64{
		"replicas":          int64(st.Replicas),
		"readyReplicas":     int64(st.ReadyReplicas),
		"currentReplicas":   int64(st.CurrentReplicas),
		"updatedReplicas":   int64(st.UpdatedReplicas),
		"availableReplicas": int64(st.AvailableReplicas),
	})...)
	allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(st.ObservedGeneration, stPath.Child("observedGeneration"))...)
	if st.CollisionCount != nil {
		allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(*st.CollisionCount), stPath.Child("collisionCount"))...)
	}
	const msg = "cannot be greater than status.replicas"
	for name, v := range map[string]int32{"readyReplicas": st.ReadyReplicas, "currentReplicas": st.CurrentReplicas, "updatedReplicas": st.UpdatedReplicas, "availableReplicas": st.AvailableReplicas} {
		if v > st.Replicas {
			allErrs = append(allErrs, field.Invalid(stPath.Child(name), v, msg))
		}
	}
	if st.AvailableReplicas > st.ReadyReplicas {
		allErrs = append(allErrs, field.Invalid(stPath.Child("availableReplicas"), st.AvailableReplicas, "cannot be greater than status.readyReplicas"))
	}
	return allErrs
}

// validateStatefulSetUpdate is ValidateStatefulSetUpdate: only the listed
// fields of the spec may change.
func validateStatefulSetUpdate(ss, old *appsv1.StatefulSet) field.ErrorList {
	a, b := ss.Spec, old.Spec
	a.Replicas, a.Ordinals, a.Template, a.UpdateStrategy = b.Replicas, b.Ordinals, b.Template, b.UpdateStrategy
	a.RevisionHistoryLimit, a.PersistentVolumeClaimRetentionPolicy, a.MinReadySeconds = b.RevisionHistoryLimit, b.PersistentVolumeClaimRetentionPolicy, b.MinReadySeconds
	if !reflect.DeepEqual(a, b) {
		return field.ErrorList{field.Forbidden(field.NewPath("spec"), "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")}
	}
	return nil
}

func daemonSetsResource() *Resource {
	return &Resource{
		GroupVersion: appsGV,
		Name:         "daemonsets",
		Kind:         "DaemonSet",
		SingularName: "daemonset",
		Namespaced:   true,
		ShortNames:   []string{"ds"},
		Categories:   []string{"all"},
		Subresources: []string{"status"},
		New:          func() runtime.Object { return &appsv1.DaemonSet{} },
		NewList:      func() runtime.Object { return &appsv1.DaemonSetList{} },
		Default:      func(obj runtime.Object) { defaultDaemonSet(obj.(*appsv1.DaemonSet)) },
		PrepareForCreate: func(obj runtime.Object) {
			ds := obj.(*appsv1.DaemonSet)
			ds.Status = appsv1.DaemonSetStatus{}
			ds.Generation = 1
			setDaemonSetTemplateGeneration(ds, 1)
		},
		PrepareForUpdate: func(obj, old runtime.Object) {
			ds, oldDS := obj.(*appsv1.DaemonSet), old.(*appsv1.DaemonSet)
			ds.Status = oldDS.Status
			bumpGeneration(ds, oldDS, &ds.Spec, &oldDS.Spec)
			tg, _ := strconv.ParseInt(oldDS.Annotations[appsv1.DeprecatedTemplateGeneration], 10, 64)
			if !apiequality.Semantic.DeepEqual(&ds.Spec.Template, &oldDS.Spec.Template) {
				tg++
			}
			setDaemonSetTemplateGeneration(ds, tg)
		},
		PrepareForStatusUpdate: func(obj, old runtime.Object) {
			ds, oldDS := obj.(*appsv1.DaemonSet), old.(*appsv1.DaemonSet)
			ds.Spec = oldDS.Spec
			ds.Generation = oldDS.Generation
		},
		Validate: func(obj runtime.Object) field.ErrorList { return validateDaemonSet(obj.(*appsv1.DaemonSet)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			ds, oldDS := obj.(*appsv1.DaemonSet), old.(*appsv1.DaemonSet)
			return validateImmutableSelector(ds.Spec.Selector, oldDS.Spec.Selector)
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Desired", "integer", appsv1.DaemonSetStatus{}.SwaggerDoc()["desiredNumberScheduled"], 0),
			column("Current", "integer", appsv1.DaemonSetStatus{}.SwaggerDoc()["currentNumberScheduled"], 0),
			column("Ready", "integer", appsv1.DaemonSetStatus{}.SwaggerDoc()["numberReady"], 0),
			column("Up-to-date", "integer", appsv1.DaemonSetStatus{}.SwaggerDoc()["updatedNumberScheduled"], 0),
			column("Available", "integer", appsv1.DaemonSetStatus{}.SwaggerDoc()["numberAvailable"], 0),
			column("Node Selector", "string", corev1.PodSpec{}.SwaggerDoc()["nodeSelector"], 0),
			ageColumn(),
			containersColumn, imagesColumn,
			column("Selector", "string", appsv1.DaemonSetSpec{}.SwaggerDoc()["selector"], 1),
		},
		Row: func(obj runtime.Object) []interface{} {
			ds := obj.(*appsv1.DaemonSet)
			st := &ds.Status
			names, images := podTemplateContainerCells(ds.Spec.Template.Spec.Containers)
			return []interface{}{
				ds.Name, int64(st.DesiredNumberScheduled), int64(st.CurrentNumberScheduled), int64(st.NumberReady),
				int64(st.UpdatedNumberScheduled), int64(st.NumberAvailable),
				formatLabels(ds.Spec.Template.Spec.NodeSelector),
				translateTimestampSince(ds.CreationTimestamp),
				names, images, formatLabelSelector(ds.Spec.Selector),
			}
		},
	}
}

// setDaemonSetTemplateGeneration records the deprecated template
// generation annotation Kubernetes keeps on apps/v1 DaemonSets: 1 on
// create, +1 whenever the pod template changes; clients cannot set it.
func setDaemonSetTemplateGeneration(ds *appsv1.DaemonSet, tg int64) {
	a := make(map[string]string, len(ds.Annotations)+1)
	for k, v := range ds.Annotations {
		a[k] = v
	}
	a[appsv1.DeprecatedTemplateGeneration] = strconv.FormatInt(tg, 10)
	ds.Annotations = a
}

// defaultDaemonSet is SetDefaults_DaemonSet of apps/v1.
func defaultDaemonSet(ds *appsv1.DaemonSet) {
	us := &ds.Spec.UpdateStrategy
	if us.Type == "" {
		us.Type = appsv1.RollingUpdateDaemonSetStrategyType
	}
	if us.Type == appsv1.RollingUpdateDaemonSetStrategyType {
		if us.RollingUpdate == nil {
			us.RollingUpdate = &appsv1.RollingUpdateDaemonSet{}
		}
		if us.RollingUpdate.MaxUnavailable == nil {
			us.RollingUpdate.MaxUnavailable = ptr.To(intstr.FromInt32(1))
		}
		if us.RollingUpdate.MaxSurge == nil {
			us.RollingUpdate.MaxSurge = ptr.To(intstr.FromInt32(0))
		}
	}
	if ds.Spec.RevisionHistoryLimit == nil {
		ds.Spec.RevisionHistoryLimit = ptr.To[int32](10)
	}
	defaultPodTemplateSpec(&ds.Spec.Template)
}

func validateDaemonSet(ds *appsv1.DaemonSet) field.ErrorList {
	specPath := field.NewPath("spec")
	spec := &ds.Spec
	allErrs := validateWorkloadSelector(spec.Selector, "empty selector is invalid for daemonset", specPath.Child("selector"))
	allErrs = append(allErrs, validateReplicaSetTemplate(&spec.Template, spec.Selector, "DaemonSet", specPath.Child("template"))...)
	allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(spec.MinReadySeconds), specPath.Child("minReadySeconds"))...)
	if spec.RevisionHistoryLimit != nil {
		allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(*spec.RevisionHistoryLimit), specPath.Child("revisionHistoryLimit"))...)
	}
	usPath := specPath.Child("updateStrategy")
	switch us := &spec.UpdateStrategy; us.Type {
	case appsv1.OnDeleteDaemonSetStrategyType:
	case appsv1.RollingUpdateDaemonSetStrategyType:
		if us.RollingUpdate == nil {
			allErrs = append(allErrs, field.Required(usPath.Child("rollingUpdate"), ""))
			break
		}
		ruPath := usPath.Child("rollingUpdate")
		maxUnavailable, maxSurge := intOrZero(us.RollingUpdate.MaxUnavailable), intOrZero(us.RollingUpdate.MaxSurge)
		allErrs = append(allErrs, validatePositiveIntOrPercent(maxUnavailable, ruPath.Child("maxUnavailable"))...)
		allErrs = append(allErrs, validateNotMoreThan100Percent(maxUnavailable, ruPath.Child("maxUnavailable"))...)
		allErrs = append(allErrs, validatePositiveIntOrPercent(maxSurge, ruPath.Child("maxSurge"))...)
		allErrs = append(allErrs, validateNotMoreThan100Percent(maxSurge, ruPath.Child("maxSurge"))...)
		hasUnavailable, hasSurge := intOrPercentValue(maxUnavailable) != 0, intOrPercentValue(maxSurge) != 0
		switch {
		case hasUnavailable && hasSurge:
			allErrs = append(allErrs, field.Invalid(ruPath.Child("maxSurge"), maxSurge, "may not be set when maxUnavailable is non-zero"))
		case !hasUnavailable && !hasSurge:
			allErrs = append(allErrs, field.Required(ruPath.Child("maxUnavailable"), "cannot be 0 when maxSurge is 0"))
		}
	default:
		allErrs = append(allErrs, field.NotSupported(usPath.Child("type"), us.Type,
			[]appsv1.DaemonSetUpdateStrategyType{appsv1.OnDeleteDaemonSetStrategyType, appsv1.RollingUpdateDaemonSetStrategyType}))
	}

	st, stPath := &ds.Status, field.NewPath("status")
	allErrs = append(allErrs, validateNonnegativeFields(stPath, map[string]int64{
		"currentNumberScheduled": int64(st.CurrentNumberScheduled),
		"numberMisscheduled":     int64(st.NumberMisscheduled),
		"desiredNumberScheduled": int64(st.DesiredNumberScheduled),
		"numberReady":            int64(st.NumberReady),
		"observedGeneration":     st.ObservedGeneration,
		"updatedNumberScheduled": int64(st.UpdatedNumberScheduled),
		"numberAvailable":        int64(st.NumberAvailable),
		"numberUnavailable":      int64(st.NumberUnavailable),
	})...)
	if st.CollisionCount != nil {
		allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(*st.CollisionCount), stPath.Child("collisionCount"))...)
	}
	return allErrs
}

func controllerRevisionsResource() *Resource {
	return &Resource{
		GroupVersion: appsGV,
		Name:         "controllerrevisions",
		Kind:         "ControllerRevision",
		SingularName: "controllerrevision",
		Namespaced:   true,
		New:          func() runtime.Object { return &appsv1.ControllerRevision{} },
		NewList:      func() runtime.Object { return &appsv1.ControllerRevisionList{} },
		Validate: func(obj runtime.Object) field.ErrorList {
			cr := obj.(*appsv1.ControllerRevision)
			var allErrs field.ErrorList
			if cr.Data.Raw == nil && cr.Data.Object == nil {
				allErrs = append(allErrs, field.Required(field.NewPath("data"), "data is mandatory"))
			}
			return append(allErrs, apivalidation.ValidateNonnegativeField(cr.Revision, field.NewPath("revision"))...)
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			cr, oldCR := obj.(*appsv1.ControllerRevision), old.(*appsv1.ControllerRevision)
			return apivalidation.ValidateImmutableField(cr.Data, oldCR.Data, field.NewPath("data"))
		},
		Columns: []metav1.TableColumnDefinition{
			nameColumn(),
			column("Controller", "string", "Controller of the object", 0),
			column("Revision", "string", appsv1.ControllerRevision{}.SwaggerDoc()["revision"], 0),
			ageColumn(),
		},
		Row: func(obj runtime.Object) []interface{} {
			cr := obj.(*appsv1.ControllerRevision)
			controller := "<none>"
			if ref := metav1.GetControllerOf(cr); ref != nil {
				if gv, err := schema.ParseGroupVersion(ref.APIVersion); err == nil {
					controller = strings.ToLower(gv.WithKind(ref.Kind).GroupKind().String()) + "/" + ref.Name
				} else {
					controller = ref.Name
				}
			}
			return []interface{}{cr.Name, controller, cr.Revision, translateTimestampSince(cr.CreationTimestamp)}
		},
	}
}

// Helpers shared by the workload kinds of apps/v1 and batch/v1.

// validateWorkloadSelector is the selector check of the apps kinds: it is
// required, a valid label selector, and not empty (an empty selector would
// select every pod of the namespace); emptyMsg is the kind's own wording.
func validateWorkloadSelector(sel *metav1.LabelSelector, emptyMsg string, fldPath *field.Path) field.ErrorList {
	if sel == nil {
		return field.ErrorList{field.Required(fldPath, "")}
	}
	allErrs := metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, fldPath)
	if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
		allErrs = append(allErrs, field.Invalid(fldPath, sel, emptyMsg))
	}
	return allErrs
}

// validateReplicaSetTemplate is ValidatePodTemplateSpecForReplicaSet (also
// used for DaemonSets): labels match the selector, the pod spec is valid,
// pods restart Always and have no deadline. kind names the kind in the
// activeDeadlineSeconds message.
func validateReplicaSetTemplate(t *corev1.PodTemplateSpec, selector *metav1.LabelSelector, kind string, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if sel, err := metav1.LabelSelectorAsSelector(selector); err == nil && selector != nil && !sel.Empty() && !sel.Matches(labels.Set(t.Labels)) {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("metadata", "labels"), t.Labels, "`selector` does not match template `labels`"))
	}
	allErrs = append(allErrs, validatePodTemplateSpec(t, fldPath)...)
	if t.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("spec", "restartPolicy"), t.Spec.RestartPolicy, []corev1.RestartPolicy{corev1.RestartPolicyAlways}))
	}
	if t.Spec.ActiveDeadlineSeconds != nil {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("spec", "activeDeadlineSeconds"), "activeDeadlineSeconds in "+kind+" is not Supported"))
	}
	return allErrs
}

// validateImmutableSelector is the apps/v1 rule that spec.selector never
// changes after create.
func validateImmutableSelector(sel, old *metav1.LabelSelector) field.ErrorList {
	return apivalidation.ValidateImmutableField(sel, old, field.NewPath("spec", "selector"))
}

// validateNonnegativeFields checks each named child of fldPath is ≥ 0.
func validateNonnegativeFields(fldPath *field.Path, values map[string]int64) field.ErrorList {
	var allErrs field.ErrorList
	for name, v := range values {
		allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(v, fldPath.Child(name))...)
	}
	return allErrs
}

// intOrZero dereferences an optional int-or-percent; nil is 0, as the
// internal API types (which have no pointer) see it.
func intOrZero(v *intstr.IntOrString) intstr.IntOrString {
	if v == nil {
		return intstr.FromInt32(0)
	}
	return *v
}

// validatePositiveIntOrPercent is ValidatePositiveIntOrPercent: a
// non-negative integer or a percent string such as "25%".
func validatePositiveIntOrPercent(v intstr.IntOrString, fldPath *field.Path) field.ErrorList {
	switch v.Type {
	case intstr.String:
		var allErrs field.ErrorList
		for _, msg := range validation.IsValidPercent(v.StrVal) {
			allErrs = append(allErrs, field.Invalid(fldPath, v, msg))
		}
		return allErrs
	case intstr.Int:
		return apivalidation.ValidateNonnegativeField(int64(v.IntValue()), fldPath)
	default:
		return field.ErrorList{field.Invalid(fldPath, v, "must be an integer or percentage (e.g '5%')")}
	}
}

// intOrPercentValue is the number of an int or a percent ("25%" is 25); an
// unparsable percent counts as 0 (it is reported by validation anyway).
func intOrPercentValue(v intstr.IntOrString) int {
	if v.Type == intstr.String {
		n, err := strconv.Atoi(strings.TrimSuffix(v.StrVal, "%"))
		if err != nil {
			return 0
		}
		return n
	}
	return v.IntValue()
}

func validateNotMoreThan100Percent(v intstr.IntOrString, fldPath *field.Path) field.ErrorList {
	if v.Type != intstr.String || len(validation.IsValidPercent(v.StrVal)) > 0 || intOrPercentValue(v) <= 100 {
		return nil
	}
	return field.ErrorList{field.Invalid(fldPath, v, "must not be greater than 100%")}
}

// selectorString is a label selector as labels.Selector renders it, the
// SELECTOR cell of deployments; "<invalid>" when it does not parse.
func selectorString(sel *metav1.LabelSelector) string {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return "<invalid>"
	}
	return s.String()
}
