// Package ingressclass decides which Ingresses orch's built-in ingress
// controller serves, for the agents' proxies (netproxy/ingress) and the
// server's status controller (server/controllers/ingressstatus) alike, so
// that the status is written for exactly the Ingresses the nodes route,
// and names the Node annotation by which a node's agent tells the server
// that its proxy serves.
package ingressclass

import (
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// ControllerName is the spec.controller of the IngressClasses orch
// serves (manifests/ingressclass.yaml ships class "orch").
const ControllerName = "orch.dev/ingress"

// ProxyAnnotation, with the value ProxyServing, is set by a node's agent
// on its own Node while the node's ingress proxy listens and routes with
// the cluster's Ingresses, and removed when it does not (--disable
// ingress, ports 80 and 443 both taken, the agent stopping). The status
// controller lists only the nodes that carry it.
//
// An annotation, not a label: it is state the node reports about itself,
// as flannel and Calico advertise a node's network state in annotations,
// not an attribute to select by (a nodeSelector on it would move pods as
// proxies bind and unbind). NodeRestriction limits the labels a node may
// set on itself, not its annotations, and the orch.dev prefix is outside
// the kubernetes.io and k8s.io ones it guards.
const ProxyAnnotation = "ingress.orch.dev/proxy"

// ProxyServing is ProxyAnnotation's value on a serving node.
const ProxyServing = "serving"

// NodeServes reports whether n advertises a serving ingress proxy.
func NodeServes(n *corev1.Node) bool { return n.Annotations[ProxyAnnotation] == ProxyServing }

// LegacyAnnotation is the class annotation from before
// spec.ingressClassName, still honoured by ingress-nginx and Traefik.
const LegacyAnnotation = "kubernetes.io/ingress.class"

// Selector tells the Ingresses orch serves: those of a class whose
// controller is ControllerName (by spec.ingressClassName or the legacy
// annotation), and those naming no class unless another controller's
// class is the cluster's default (the class-less ones are that
// controller's then). Kubernetes' admission would have given new
// class-less Ingresses the default class; orch leaves them class-less and
// decides here, as Traefik does.
type Selector struct {
	ours      map[string]bool
	classless bool
}

// NewSelector returns the Selector for the cluster's IngressClasses.
func NewSelector(classes []*networkingv1.IngressClass) Selector {
	s := Selector{ours: map[string]bool{}, classless: true}
	othersDefault, oursDefault := false, false
	for _, c := range classes {
		isDefault := c.Annotations[networkingv1.AnnotationIsDefaultIngressClass] == "true"
		if c.Spec.Controller == ControllerName {
			s.ours[c.Name] = true
			oursDefault = oursDefault || isDefault
		} else if isDefault {
			othersDefault = true
		}
	}
	s.classless = oursDefault || !othersDefault
	return s
}

// Serves reports whether orch serves ing.
func (s Selector) Serves(ing *networkingv1.Ingress) bool {
	class := ing.Annotations[LegacyAnnotation]
	if ing.Spec.IngressClassName != nil {
		class = *ing.Spec.IngressClassName
	}
	if class == "" {
		return s.classless
	}
	return s.ours[class]
}
