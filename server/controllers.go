package server

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"

	"golang.org/x/sync/errgroup"

	"github.com/orch-dev/orch/server/admission"
	"github.com/orch-dev/orch/server/apiserver"
	"github.com/orch-dev/orch/server/controllers/cronjob"
	"github.com/orch-dev/orch/server/controllers/daemonset"
	"github.com/orch-dev/orch/server/controllers/deployment"
	"github.com/orch-dev/orch/server/controllers/disruption"
	"github.com/orch-dev/orch/server/controllers/endpoints"
	"github.com/orch-dev/orch/server/controllers/endpointslice"
	"github.com/orch-dev/orch/server/controllers/garbagecollector"
	"github.com/orch-dev/orch/server/controllers/informer"
	"github.com/orch-dev/orch/server/controllers/ingressstatus"
	"github.com/orch-dev/orch/server/controllers/job"
	"github.com/orch-dev/orch/server/controllers/namespace"
	"github.com/orch-dev/orch/server/controllers/nodeipam"
	"github.com/orch-dev/orch/server/controllers/nodelifecycle"
	"github.com/orch-dev/orch/server/controllers/nodelifecycle/tainteviction"
	"github.com/orch-dev/orch/server/controllers/nodepassword"
	"github.com/orch-dev/orch/server/controllers/podautoscaler"
	"github.com/orch-dev/orch/server/controllers/replicaset"
	"github.com/orch-dev/orch/server/controllers/resourcequota"
	"github.com/orch-dev/orch/server/controllers/serviceaccount"
	"github.com/orch-dev/orch/server/controllers/servicelb"
	"github.com/orch-dev/orch/server/controllers/statefulset"
	"github.com/orch-dev/orch/server/controllers/tokencleaner"
	"github.com/orch-dev/orch/server/controllers/volume"
	"github.com/orch-dev/orch/server/events"
	"github.com/orch-dev/orch/server/metricsapi"
	"github.com/orch-dev/orch/server/scheduler"
)

// runControllers starts the control loops once the API server is ready:
// one shared informer factory over the in-process API, the event
// broadcaster, the scheduler and the controllers. It returns when ctx ends.
func runControllers(ctx context.Context, cfg Config, api *apiserver.Server, factory *informer.Factory, quotaAdmission *admission.Quota, resourceMetrics *metricsapi.Provider, log *slog.Logger) error {
	select {
	case <-api.Ready():
	case <-ctx.Done():
		return nil
	}
	local := api.Local()
	if err := ensureDNSService(ctx, local, cfg.ServiceCIDR); err != nil {
		log.Warn("pods will have no cluster DNS", "err", err)
	}
	broadcaster := events.NewBroadcaster(local, log.With("component", "events"))

	sched, err := scheduler.New(scheduler.Config{
		Informers: factory,
		Writer:    local,
		Binder:    scheduler.NewBinder(local, scheduler.DefaultSchedulerName),
		Recorder:  broadcaster.Recorder(scheduler.DefaultSchedulerName),
		Logger:    log,
	})
	if err != nil {
		return fmt.Errorf("server: scheduler: %w", err)
	}
	namespaces := namespace.New(local, factory, namespace.Options{Logger: log.With("component", "namespace-controller")})
	daemonSets := daemonset.New(local, factory, broadcaster.Recorder("daemonset-controller"),
		daemonset.Options{Logger: log.With("component", "daemonset-controller")})
	gc := garbagecollector.New(local, factory, broadcaster.Recorder("garbage-collector-controller"),
		garbagecollector.Options{Logger: log.With("component", "garbage-collector")})
	endpointsCtl := endpoints.New(local, factory, broadcaster.Recorder("endpoint-controller"),
		endpoints.Options{Logger: log.With("component", "endpoint-controller")})
	slicesCtl := endpointslice.New(local, factory, broadcaster.Recorder("endpoint-slice-controller"),
		endpointslice.Options{Logger: log.With("component", "endpointslice-controller")})
	serviceAccounts := serviceaccount.New(local, factory, serviceaccount.Options{Logger: log.With("component", "serviceaccount-controller")})
	replicaSets := replicaset.New(local, factory, broadcaster.Recorder("replicaset-controller"),
		replicaset.Options{Logger: log.With("component", "replicaset-controller")})
	replicationControllers := replicaset.NewForReplicationControllers(local, factory, broadcaster.Recorder("replication-controller"),
		replicaset.Options{Logger: log.With("component", "replication-controller")})
	nodeLifecycle := nodelifecycle.New(local, factory, broadcaster.Recorder(nodelifecycle.ComponentName),
		nodelifecycle.Options{GracePeriod: cfg.NodeGracePeriod, Logger: log.With("component", "node-lifecycle-controller")})
	taintEviction := tainteviction.New(local, factory, broadcaster.Recorder(tainteviction.ComponentName),
		tainteviction.Options{Logger: log.With("component", "taint-eviction-controller")})
	deployments := deployment.New(local, factory, broadcaster.Recorder("deployment-controller"),
		deployment.Options{Logger: log.With("component", "deployment-controller")})
	volumes := volume.New(local, factory, broadcaster.Recorder(volume.ComponentName),
		volume.Options{StorageDir: filepath.Join(cfg.DataDir, "storage"), Logger: log.With("component", "persistentvolume-controller")})
	disruptions := disruption.New(local, factory, broadcaster.Recorder(disruption.ComponentName),
		disruption.Options{Logger: log.With("component", disruption.ComponentName)})
	quotas := resourcequota.New(local, factory, resourcequota.Options{
		Usage: quotaAdmission, Logger: log.With("component", "resourcequota-controller")})
	jobs := job.New(local, factory, broadcaster.Recorder("job-controller"),
		job.Options{Logger: log.With("component", "job-controller")})
	cronJobs := cronjob.New(local, factory, broadcaster.Recorder("cronjob-controller"),
		cronjob.Options{Logger: log.With("component", "cronjob-controller")})
	statefulSets := statefulset.New(local, factory, broadcaster.Recorder("statefulset-controller"),
		statefulset.Options{Logger: log.With("component", "statefulset-controller")})
	nodeIPAM, err := nodeipam.New(local, factory, broadcaster.Recorder(nodeipam.ComponentName),
		nodeipam.Options{ClusterCIDR: cfg.ClusterCIDR, Logger: log.With("component", "node-ipam-controller")})
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	tokenCleaner := tokencleaner.New(local, factory, tokencleaner.Options{Logger: log.With("component", tokencleaner.ComponentName)})
	nodePasswords := nodepassword.New(local, factory, nodepassword.Options{Logger: log.With("component", nodepassword.ComponentName)})

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return nodeIPAM.Run(gctx) })
	autoscalers := podautoscaler.New(local, factory, broadcaster.Recorder(podautoscaler.ComponentName), resourceMetrics,
		podautoscaler.Options{SyncPeriod: cfg.HPASyncPeriod, Logger: log.With("component", "horizontal-pod-autoscaler")})
	g.Go(func() error { return broadcaster.Run(gctx) })
	g.Go(func() error { return autoscalers.Run(gctx, 5) })
	g.Go(func() error { return sched.Run(gctx) })
	g.Go(func() error { return namespaces.Run(gctx) })
	g.Go(func() error { return daemonSets.Run(gctx) })
	g.Go(func() error { return statefulSets.Run(gctx) })
	g.Go(func() error { return gc.Run(gctx) })
	g.Go(func() error { return replicaSets.Run(gctx, 5) })
	g.Go(func() error { return replicationControllers.Run(gctx, 5) })
	g.Go(func() error { return nodeLifecycle.Run(gctx) })
	g.Go(func() error { return taintEviction.Run(gctx) })
	g.Go(func() error { return deployments.Run(gctx, 5) })
	g.Go(func() error { return volumes.Run(gctx) })
	g.Go(func() error { return disruptions.Run(gctx) })
	g.Go(func() error { return quotas.Run(gctx) })
	g.Go(func() error { return jobs.Run(gctx) })
	g.Go(func() error { return cronJobs.Run(gctx) })
	g.Go(func() error { return endpointsCtl.Run(gctx) })
	g.Go(func() error { return slicesCtl.Run(gctx) })
	g.Go(func() error { return serviceAccounts.Run(gctx) })
	g.Go(func() error { return tokenCleaner.Run(gctx) })
	g.Go(func() error { return nodePasswords.Run(gctx) })
	lbOpts := servicelb.Options{Logger: log.With("component", servicelb.ComponentName)}
	if !slices.Contains(cfg.Disable, DisableIngress) {
		// Every node's ingress proxy listens on TCP 80 and 443.
		lbOpts.Reserved = []servicelb.ReservedPort{{Port: 80, By: "the built-in ingress proxy"}, {Port: 443, By: "the built-in ingress proxy"}}
	}
	g.Go(func() error {
		return servicelb.New(local, factory, broadcaster.Recorder(servicelb.ComponentName), lbOpts).Run(gctx)
	})
	if !slices.Contains(cfg.Disable, DisableIngress) {
		g.Go(func() error {
			return ingressstatus.New(local, factory, ingressstatus.Options{Logger: log.With("component", ingressstatus.ComponentName)}).Run(gctx)
		})
	}
	// The factory starts last so that every informer the loops asked for
	// is registered; informers asked for later start on their own.
	g.Go(func() error { return factory.Run(gctx) })
	return g.Wait()
}
