package ingressclass

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestSelector(t *testing.T) {
	class := func(name, controller string, isDefault bool) *networkingv1.IngressClass {
		c := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.IngressClassSpec{Controller: controller}}
		if isDefault {
			c.Annotations = map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"}
		}
		return c
	}
	ingress := func(class *string, legacy string) *networkingv1.Ingress {
		ing := &networkingv1.Ingress{Spec: networkingv1.IngressSpec{IngressClassName: class}}
		if legacy != "" {
			ing.Annotations = map[string]string{LegacyAnnotation: legacy}
		}
		return ing
	}
	name := func(n string) *string { return &n }
	ingresses := map[string]*networkingv1.Ingress{
		"orch":          ingress(name("orch"), ""),
		"nginx":         ingress(name("nginx"), ""),
		"legacy orch":   ingress(nil, "orch"),
		"legacy nginx":  ingress(nil, "nginx"),
		"field wins":    ingress(name("nginx"), "orch"),
		"classless":     ingress(nil, ""),
		"missing class": ingress(name("gone"), ""),
	}
	orchClass := func(isDefault bool) *networkingv1.IngressClass { return class("orch", ControllerName, isDefault) }
	nginxClass := func(isDefault bool) *networkingv1.IngressClass {
		return class("nginx", "k8s.io/ingress-nginx", isDefault)
	}
	for _, tc := range []struct {
		name    string
		classes []*networkingv1.IngressClass
		served  []string
	}{
		{"orch is the default", []*networkingv1.IngressClass{orchClass(true), nginxClass(false)}, []string{"orch", "legacy orch", "classless"}},
		{"no default", []*networkingv1.IngressClass{orchClass(false), nginxClass(false)}, []string{"orch", "legacy orch", "classless"}},
		{"another controller's default", []*networkingv1.IngressClass{orchClass(false), nginxClass(true)}, []string{"orch", "legacy orch"}},
		{"both default", []*networkingv1.IngressClass{orchClass(true), nginxClass(true)}, []string{"orch", "legacy orch", "classless"}},
		{"no classes (--disable ingressclass)", nil, []string{"classless"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sel := NewSelector(tc.classes)
			want := map[string]bool{}
			for _, n := range tc.served {
				want[n] = true
			}
			for n, ing := range ingresses {
				if got := sel.Serves(ing); got != want[n] {
					t.Errorf("Serves(%s) = %v, want %v", n, got, want[n])
				}
			}
		})
	}
}

func TestNodeServes(t *testing.T) {
	for _, tc := range []struct {
		name        string
		annotations map[string]string
		want        bool
	}{
		{name: "no annotations"},
		{name: "other annotations", annotations: map[string]string{"flannel.alpha.coreos.com/public-ip": "198.18.0.1"}},
		{name: "unknown value", annotations: map[string]string{ProxyAnnotation: "true"}},
		{name: "serving", annotations: map[string]string{ProxyAnnotation: ProxyServing}, want: true},
	} {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Annotations: tc.annotations}}
		if got := NodeServes(n); got != tc.want {
			t.Errorf("%s: NodeServes = %v, want %v", tc.name, got, tc.want)
		}
	}
}
