package admission

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

type fakeAccounts map[string]*corev1.ServiceAccount

func (f fakeAccounts) Get(ns, name string) (*corev1.ServiceAccount, bool) {
	sa, ok := f[ns+"/"+name]
	return sa, ok
}

func account(name string, automount *bool) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, AutomountServiceAccountToken: automount}
}

func boolp(b bool) *bool { return &b }

// admitPod runs the plugin attached to a pods entry.
func admitPod(t *testing.T, s *ServiceAccount, p *corev1.Pod) error {
	t.Helper()
	r := podsEntry()
	s.Attach(r)
	_, err := r.BeginCreate(context.Background(), p)
	return err
}

func tokenVolumeOf(p *corev1.Pod) *corev1.Volume {
	for i := range p.Spec.Volumes {
		if strings.HasPrefix(p.Spec.Volumes[i].Name, TokenVolumePrefix) {
			return &p.Spec.Volumes[i]
		}
	}
	return nil
}

func TestServiceAccountAdmission(t *testing.T) {
	accounts := fakeAccounts{
		"ns/default":   account("default", nil),
		"ns/builder":   account("builder", nil),
		"ns/no-mounts": account("no-mounts", boolp(false)),
	}
	tests := []struct {
		name        string
		pod         func() *corev1.Pod
		wantAccount string
		wantMount   bool
		wantErr     string
	}{
		{name: "default account", pod: func() *corev1.Pod { return pod("web") }, wantAccount: "default", wantMount: true},
		{name: "named account", pod: func() *corev1.Pod {
			p := pod("web")
			p.Spec.ServiceAccountName = "builder"
			return p
		}, wantAccount: "builder", wantMount: true},
		{name: "missing account", pod: func() *corev1.Pod {
			p := pod("web")
			p.Spec.ServiceAccountName = "ghost"
			return p
		}, wantErr: `pods "web" is forbidden: error looking up service account ns/ghost: serviceaccount "ghost" not found`},
		{name: "account opts out", pod: func() *corev1.Pod {
			p := pod("web")
			p.Spec.ServiceAccountName = "no-mounts"
			return p
		}, wantAccount: "no-mounts"},
		{name: "pod opts back in", pod: func() *corev1.Pod {
			p := pod("web")
			p.Spec.ServiceAccountName = "no-mounts"
			p.Spec.AutomountServiceAccountToken = boolp(true)
			return p
		}, wantAccount: "no-mounts", wantMount: true},
		{name: "pod opts out", pod: func() *corev1.Pod {
			p := pod("web")
			p.Spec.AutomountServiceAccountToken = boolp(false)
			return p
		}, wantAccount: "default"},
		{name: "mirror pod untouched", pod: func() *corev1.Pod {
			p := pod("web")
			p.Annotations = map[string]string{mirrorPodAnnotation: "x"}
			return p
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.pod()
			err := admitPod(t, NewServiceAccount(accounts, nil), p)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr || !apierrors.IsForbidden(err) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Spec.ServiceAccountName != tt.wantAccount {
				t.Errorf("serviceAccountName = %q, want %q", p.Spec.ServiceAccountName, tt.wantAccount)
			}
			v := tokenVolumeOf(p)
			if (v != nil) != tt.wantMount {
				t.Fatalf("token volume = %v, want present=%v", v, tt.wantMount)
			}
			if v == nil {
				return
			}
			if len(v.Name) != len(TokenVolumePrefix)+5 {
				t.Errorf("volume name %q, want kube-api-access-xxxxx", v.Name)
			}
			if want := tokenVolume(v.Name); !apiequality.Semantic.DeepEqual(*v, want) {
				t.Errorf("volume = %+v, want %+v", *v, want)
			}
			src := v.Projected.Sources
			if *src[0].ServiceAccountToken.ExpirationSeconds != 3607 || src[1].ConfigMap.Name != "kube-root-ca.crt" ||
				src[2].DownwardAPI.Items[0].FieldRef.FieldPath != "metadata.namespace" || *v.Projected.DefaultMode != 0o644 {
				t.Errorf("projected sources = %+v", src)
			}
			want := corev1.VolumeMount{Name: v.Name, ReadOnly: true, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}
			if m := p.Spec.Containers[0].VolumeMounts; len(m) != 1 || m[0] != want {
				t.Errorf("mounts = %+v, want %+v", m, want)
			}
		})
	}
}

func TestServiceAccountAdmissionKeepsOwnMounts(t *testing.T) {
	p := pod("web", corev1.Container{Name: "own", VolumeMounts: []corev1.VolumeMount{{Name: "mine", MountPath: TokenMountPath}}},
		corev1.Container{Name: "plain"})
	p.Spec.InitContainers = []corev1.Container{{Name: "init"}}
	if err := admitPod(t, NewServiceAccount(fakeAccounts{"ns/default": account("default", nil)}, nil), p); err != nil {
		t.Fatal(err)
	}
	v := tokenVolumeOf(p)
	if v == nil || len(p.Spec.Volumes) != 1 {
		t.Fatalf("volumes = %+v", p.Spec.Volumes)
	}
	if m := p.Spec.Containers[0].VolumeMounts; len(m) != 1 || m[0].Name != "mine" {
		t.Errorf("a container's own mount at the token path was changed: %+v", m)
	}
	for _, c := range []corev1.Container{p.Spec.InitContainers[0], p.Spec.Containers[1]} {
		if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].Name != v.Name {
			t.Errorf("container %s mounts %+v", c.Name, c.VolumeMounts)
		}
	}

	// Every container mounting the path already: no volume at all.
	p = pod("web", corev1.Container{Name: "own", VolumeMounts: []corev1.VolumeMount{{Name: "mine", MountPath: TokenMountPath}}})
	if err := admitPod(t, NewServiceAccount(fakeAccounts{"ns/default": account("default", nil)}, nil), p); err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.Volumes) != 0 {
		t.Errorf("volumes = %+v, want none", p.Spec.Volumes)
	}
}

func TestServiceAccountAdmissionLiveFallback(t *testing.T) {
	var asked []string
	live := func(_ context.Context, ns, name string) (*corev1.ServiceAccount, error) {
		asked = append(asked, ns+"/"+name)
		if name == "fresh" {
			return account("fresh", nil), nil
		}
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "serviceaccounts"}, name)
	}
	s := NewServiceAccount(fakeAccounts{}, live)
	p := pod("web")
	p.Spec.ServiceAccountName = "fresh"
	if err := admitPod(t, s, p); err != nil {
		t.Fatalf("account the cache has not seen yet: %v", err)
	}
	p = pod("web")
	err := admitPod(t, s, p)
	if err == nil || !strings.Contains(err.Error(), `serviceaccount "default" not found`) {
		t.Errorf("err = %v", err)
	}
	// The default account is asked for repeatedly: its controller may
	// not have made it yet.
	if len(asked) != 1+defaultAccountAttempts {
		t.Errorf("live lookups = %q", asked)
	}
}

func TestServiceAccountImagePullSecrets(t *testing.T) {
	sa := account("default", nil)
	sa.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "registry"}}
	accounts := fakeAccounts{"ns/default": sa}

	p := pod("web")
	if err := admitPod(t, NewServiceAccount(accounts, nil), p); err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.ImagePullSecrets) != 1 || p.Spec.ImagePullSecrets[0].Name != "registry" {
		t.Errorf("imagePullSecrets = %+v, want the account's", p.Spec.ImagePullSecrets)
	}
	p = pod("own")
	p.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "mine"}}
	if err := admitPod(t, NewServiceAccount(accounts, nil), p); err != nil {
		t.Fatal(err)
	}
	if len(p.Spec.ImagePullSecrets) != 1 || p.Spec.ImagePullSecrets[0].Name != "mine" {
		t.Errorf("imagePullSecrets = %+v, want the pod's own", p.Spec.ImagePullSecrets)
	}
}
