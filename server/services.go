package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
