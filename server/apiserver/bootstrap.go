package apiserver

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// systemNamespaces exist in every cluster.
var systemNamespaces = []string{metav1.NamespaceDefault, metav1.NamespaceSystem, metav1.NamespacePublic, corev1.NamespaceNodeLease}

// bootstrap creates the objects every Kubernetes cluster has, through the
// normal create path, leaving existing ones alone (the endpoints of the
// kubernetes Service are refreshed, the server's address may change).
func (s *Server) bootstrap(ctx context.Context) error {
	opts := writeOptions{validation: validationStrict, fieldManager: "orch"}
	for _, ns := range systemNamespaces {
		if err := s.ensure(ctx, "namespaces", "", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, opts); err != nil {
			return err
		}
	}
	ks := s.cfg.KubernetesService
	if ks == nil {
		return nil
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{"component": "apiserver", "provider": "kubernetes"}},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: ks.ClusterIP,
			Ports: []corev1.ServicePort{{Name: "https", Protocol: corev1.ProtocolTCP, Port: 443,
				TargetPort: intstr.FromInt32(ks.Port)}},
			SessionAffinity: corev1.ServiceAffinityNone,
		},
	}
	if err := s.ensure(ctx, "services", metav1.NamespaceDefault, svc, opts); err != nil {
		return err
	}
	eps := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{"endpointslice.kubernetes.io/skip-mirror": "true"}},
		Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: ks.EndpointIP}},
			Ports:     []corev1.EndpointPort{{Name: "https", Port: ks.Port, Protocol: corev1.ProtocolTCP}},
		}},
	}
	res := s.table.Lookup(corev1.SchemeGroupVersion, "endpoints")
	if res == nil {
		return nil
	}
	if ip, err := netip.ParseAddr(ks.EndpointIP); err != nil || ip.IsLoopback() || ip.IsUnspecified() {
		// A host with no usable address (an isolated test namespace) has
		// no in-cluster endpoint for the API; the Service stays empty.
		s.log.Warn("no routable address to advertise; the kubernetes Service has no endpoints", "address", ks.EndpointIP)
		return nil
	}
	_, err := s.guaranteedUpdate(ctx, res, metav1.NamespaceDefault, "kubernetes", true, opts, func(current runtime.Object) (runtime.Object, error) {
		out := eps.DeepCopy()
		if cur, ok := current.(*corev1.Endpoints); ok {
			out.ObjectMeta = *cur.ObjectMeta.DeepCopy()
			out.ResourceVersion = ""
		}
		return out, nil
	})
	if err != nil {
		return fmt.Errorf("bootstrap endpoints default/kubernetes: %w", err)
	}
	return nil
}

// ensure creates obj unless it exists.
func (s *Server) ensure(ctx context.Context, resource, ns string, obj runtime.Object, opts writeOptions) error {
	res := s.table.Lookup(corev1.SchemeGroupVersion, resource)
	if res == nil {
		return nil // not served (partial tables in tests)
	}
	// Look first: a create that repeats a fixed address (the kubernetes
	// Service's 10.43.0.1) is refused by the allocator once it is taken.
	m, err := meta.Accessor(obj)
	if err != nil {
		return err
	}
	if _, err := s.store.Get(ctx, objectKey(res, ns, m.GetName())); err == nil {
		return nil
	}
	_, err = s.createObject(ctx, res, ns, obj, opts)
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("bootstrap %s: %w", resource, err)
	}
	return nil
}
