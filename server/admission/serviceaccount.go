package admission

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/rand"

	"github.com/orch-dev/orch/server/registry"
)

// What the ServiceAccount plugin gives pods, as Kubernetes'
// plugin/pkg/admission/serviceaccount does.
const (
	// DefaultServiceAccountName is used by pods that name none.
	DefaultServiceAccountName = "default"
	// TokenVolumePrefix starts the name of the projected token volume:
	// kube-api-access-<5 random characters>.
	TokenVolumePrefix = "kube-api-access-"
	// TokenMountPath is where every container finds token, ca.crt and
	// namespace (client libraries' in-cluster configuration reads it).
	TokenMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"
	// TokenExpirationSeconds is the lifetime the kubelet is asked to
	// request tokens with (server/serviceaccount extends it for the API).
	TokenExpirationSeconds = 3607
	rootCAConfigMap        = "kube-root-ca.crt"
	mirrorPodAnnotation    = "kubernetes.io/config.mirror"
	// projectedDefaultMode is what the kubelet gives projected files when
	// the volume says nothing.
	projectedDefaultMode = 0o644
)

// ServiceAccountLister finds service accounts in a cache.
type ServiceAccountLister interface {
	Get(namespace, name string) (*corev1.ServiceAccount, bool)
}

// ServiceAccountGetter reads a service account from the store; the plugin
// asks it when the cache does not have the account (yet).
type ServiceAccountGetter func(ctx context.Context, namespace, name string) (*corev1.ServiceAccount, error)

// ServiceAccount is the ServiceAccount admission plugin for new pods: it
// sets spec.serviceAccountName to "default" when empty, refuses pods whose
// account does not exist, and, unless automountServiceAccountToken is false
// (on the pod, else on the account), adds the projected kube-api-access
// volume (a bound token, the cluster CA, the namespace) mounted read-only
// at TokenMountPath in every container that has nothing mounted there. A
// pod without imagePullSecrets gets its account's.
type ServiceAccount struct {
	accounts ServiceAccountLister
	live     ServiceAccountGetter
}

// NewServiceAccount reads accounts through lister, falling back to live
// (may be nil) on a miss.
func NewServiceAccount(lister ServiceAccountLister, live ServiceAccountGetter) *ServiceAccount {
	return &ServiceAccount{accounts: lister, live: live}
}

// Attach installs the plugin on the pods entry (create only, as upstream:
// a pod's account and volumes cannot change afterwards).
func (s *ServiceAccount) Attach(r *registry.Resource) {
	if r.StorageResource().GroupVersionResource().GroupResource() != podsResource {
		return
	}
	served := r.GroupVersionResource().GroupResource()
	chainCreate(r, func(ctx context.Context, obj runtime.Object) (registry.FinishFunc, error) {
		pod, ok := obj.(*corev1.Pod)
		if !ok {
			return nil, nil
		}
		return nil, s.admit(ctx, pod, served)
	})
}

func (s *ServiceAccount) admit(ctx context.Context, pod *corev1.Pod, served schema.GroupResource) error {
	if _, mirror := pod.Annotations[mirrorPodAnnotation]; mirror {
		// Static pods' mirrors run whatever the node has; they get no
		// credentials from the API server.
		return nil
	}
	if pod.Spec.ServiceAccountName == "" {
		pod.Spec.ServiceAccountName = DefaultServiceAccountName
	}
	sa, err := s.account(ctx, pod.Namespace, pod.Spec.ServiceAccountName)
	if err != nil {
		return apierrors.NewForbidden(served, pod.Name,
			fmt.Errorf("error looking up service account %s/%s: %w", pod.Namespace, pod.Spec.ServiceAccountName, err))
	}
	if automount(sa, pod) {
		mountToken(pod)
	}
	// A pod without pull secrets of its own uses its account's.
	if len(pod.Spec.ImagePullSecrets) == 0 && len(sa.ImagePullSecrets) > 0 {
		pod.Spec.ImagePullSecrets = append([]corev1.LocalObjectReference(nil), sa.ImagePullSecrets...)
	}
	return nil
}

// defaultAccountAttempts is how often the live getter is asked for the
// default account, which the service account controller creates just
// after its namespace: a pod created right after its namespace waits for
// it (for 1-2 s) rather than failing, as in Kubernetes.
const defaultAccountAttempts = 10

func (s *ServiceAccount) account(ctx context.Context, ns, name string) (*corev1.ServiceAccount, error) {
	if sa, ok := s.accounts.Get(ns, name); ok {
		return sa, nil
	}
	if s.live != nil {
		attempts := 1
		if name == DefaultServiceAccountName {
			attempts = defaultAccountAttempts
		}
		interval := time.Duration(100+rand.Intn(100)) * time.Millisecond
		for i := 0; i < attempts; i++ {
			if i > 0 {
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(interval):
				}
			}
			sa, err := s.live(ctx, ns, name)
			if err == nil || !apierrors.IsNotFound(err) {
				return sa, err
			}
		}
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "serviceaccount"}, name)
}

// automount: the pod's setting wins over the account's; default true.
func automount(sa *corev1.ServiceAccount, pod *corev1.Pod) bool {
	if pod.Spec.AutomountServiceAccountToken != nil {
		return *pod.Spec.AutomountServiceAccountToken
	}
	if sa.AutomountServiceAccountToken != nil {
		return *sa.AutomountServiceAccountToken
	}
	return true
}

// mountToken mounts the token volume in every (init) container without a
// mount at TokenMountPath, adding the volume if one needs it.
func mountToken(pod *corev1.Pod) {
	name := ""
	for _, v := range pod.Spec.Volumes {
		if strings.HasPrefix(v.Name, TokenVolumePrefix) {
			name = v.Name
			break
		}
	}
	hasVolume := name != ""
	if !hasVolume {
		name = TokenVolumePrefix + rand.String(5)
	}
	mount := corev1.VolumeMount{Name: name, ReadOnly: true, MountPath: TokenMountPath}
	needed := false
	for _, containers := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range containers {
			if !mountsAt(containers[i].VolumeMounts, TokenMountPath) {
				containers[i].VolumeMounts = append(containers[i].VolumeMounts, mount)
				needed = true
			}
		}
	}
	if needed && !hasVolume {
		pod.Spec.Volumes = append(pod.Spec.Volumes, tokenVolume(name))
	}
}

func mountsAt(mounts []corev1.VolumeMount, path string) bool {
	for _, m := range mounts {
		if m.MountPath == path {
			return true
		}
	}
	return false
}

// tokenVolume is the projected volume Kubernetes adds, field for field.
func tokenVolume(name string) corev1.Volume {
	exp := int64(TokenExpirationSeconds)
	mode := int32(projectedDefaultMode)
	return corev1.Volume{
		Name: name,
		VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: &exp, Path: "token"}},
				{ConfigMap: &corev1.ConfigMapProjection{
					LocalObjectReference: corev1.LocalObjectReference{Name: rootCAConfigMap},
					Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
				}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
					Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
				}}}},
			},
			DefaultMode: &mode,
		}},
	}
}
