package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/ipalloc"
	"github.com/orch-dev/orch/server/registry"
)

// attachServiceAllocators gives Services their cluster IPs and node ports:
// it rebuilds the allocators from the stored Services, then installs them
// on the services entry of the table. It runs before the API server serves.
func attachServiceAllocators(ctx context.Context, api *apiserver.Server, table *registry.Table, serviceCIDR netip.Prefix, log *slog.Logger) error {
	ports, err := ipalloc.ParsePortRange(ipalloc.DefaultNodePortRange)
	if err != nil {
		return err
	}
	alloc, err := ipalloc.NewServices(serviceCIDR, ports, ipalloc.WithLogger(log))
	if err != nil {
		return fmt.Errorf("server: service allocators: %w", err)
	}
	res := table.Lookup(corev1.SchemeGroupVersion, "services")
	if res == nil {
		return fmt.Errorf("server: the resource table has no services")
	}
	objs, _, err := api.Local().List(ctx, corev1.SchemeGroupVersion.WithResource("services"), "", metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("server: read services to restore their addresses: %w", err)
	}
	services := make([]corev1.Service, 0, len(objs))
	for _, o := range objs {
		if svc, ok := o.(*corev1.Service); ok {
			services = append(services, *svc)
		}
	}
	alloc.Restore(services)
	alloc.Attach(res)
	return nil
}

// dnsServiceIP is the kube-dns Service address: the 10th address of the
// service CIDR (10.43.0.10), as k3s and kubeadm choose it. Agents compute
// the same address for pods' resolv.conf.
func dnsServiceIP(serviceCIDR netip.Prefix) (netip.Addr, error) {
	ip := serviceCIDR.Masked().Addr()
	for range 10 {
		ip = ip.Next()
	}
	if !ip.IsValid() || !serviceCIDR.Contains(ip) {
		return netip.Addr{}, fmt.Errorf("server: service CIDR %s is too small for the DNS service address", serviceCIDR)
	}
	return ip, nil
}

// dnsServiceCreator is the part of the in-process API ensureDNSService
// reads and writes through.
type dnsServiceCreator interface {
	Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error)
	Create(ctx context.Context, gvr schema.GroupVersionResource, obj runtime.Object, fieldManager string) (runtime.Object, error)
}

// ensureDNSService creates kube-system/kube-dns, the Service pods'
// resolv.conf points at. Its address is in the band of the service CIDR
// the allocator keeps for static addresses, so no other Service takes it
// first. Every agent answers DNS on it itself (node-local); the Service
// has no selector and so no endpoints. An existing Service, possibly
// changed by the user, is left alone.
func ensureDNSService(ctx context.Context, api dnsServiceCreator, serviceCIDR netip.Prefix) error {
	ip, err := dnsServiceIP(serviceCIDR)
	if err != nil {
		return err
	}
	// Look first: a create of the existing Service would be refused for its
	// address (allocated, to itself) before its name.
	services := corev1.SchemeGroupVersion.WithResource("services")
	if _, err := api.Get(ctx, services, metav1.NamespaceSystem, "kube-dns"); err == nil {
		return nil
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("server: read the kube-dns Service: %w", err)
	}
	labels := map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS", "kubernetes.io/cluster-service": "true"}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Namespace: metav1.NamespaceSystem, Labels: labels,
			Annotations: map[string]string{"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
		Spec: corev1.ServiceSpec{
			Type:       corev1.ServiceTypeClusterIP,
			ClusterIP:  ip.String(),
			ClusterIPs: []string{ip.String()},
			Ports: []corev1.ServicePort{
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Protocol: corev1.ProtocolTCP, Port: 53, TargetPort: intstr.FromInt32(53)},
			},
			SessionAffinity: corev1.ServiceAffinityNone,
		},
	}
	_, err = api.Create(ctx, services, svc, "orch")
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("server: create the kube-dns Service (%s): %w", ip, err)
	}
	return nil
}
