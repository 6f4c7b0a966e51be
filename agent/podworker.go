package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/agent/apiclient"
	"github.com/orch-dev/orch/runtime/container"
	"github.com/orch-dev/orch/runtime/image"
)

// Labels the agent puts on sandboxes and containers, so that it can map
// them back to pods after a restart. The names are the kubelet's.
const (
	labelPodUID        = "io.kubernetes.pod.uid"
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelContainerName = "io.kubernetes.container.name"
	labelRestartCount  = "io.kubernetes.container.restartCount"
	labelImageID       = "orch.image.id"
	labelImageName     = "orch.image.name"
	// labelImageRef is the status' imageID: repo@sha256:digest, or the
	// image ID when the image has no repo digest (image.ImageRef).
	labelImageRef = "orch.image.ref"
)

// minKillGrace is the least time a container gets between SIGTERM and
// SIGKILL, as the kubelet's minimumGracePeriodInSeconds.
const minKillGrace = 2 * time.Second

// podWorker converges one pod. Only its run goroutine touches the fields
// below mu's; probers and container waiters only wake it.
type podWorker struct {
	a      *Agent
	uid    types.UID
	wakeCh chan struct{}
	// firstSeen starts the pod start latency (kubelet_pod_start_duration_seconds).
	firstSeen time.Time

	mu     sync.Mutex
	pod    *v1.Pod // latest desired state
	gone   bool    // the pod is no longer in the API
	resend bool    // write the status even if unchanged (resendStatus)

	lastPod    *v1.Pod
	netSandbox string // sandbox whose network is set up
	podIP      string
	filesFor   string // sandbox the pod's files were written for
	lastSent   *v1.PodStatus
	// statusDirty forces the next status write (a new mirror pod).
	statusDirty bool
	waiting     map[string]*v1.ContainerStateWaiting
	waiters     map[string]bool // container IDs being waited on
	probes      map[string]*containerProbes
	timer       *time.Timer
}

func newPodWorker(a *Agent, uid types.UID) *podWorker {
	return &podWorker{
		a:         a,
		uid:       uid,
		wakeCh:    make(chan struct{}, 1),
		firstSeen: a.now(),
		waiting:   map[string]*v1.ContainerStateWaiting{},
		waiters:   map[string]bool{},
		probes:    map[string]*containerProbes{},
	}
}

func (w *podWorker) wake() {
	select {
	case w.wakeCh <- struct{}{}:
	default:
	}
}

// after wakes the worker after d (the earliest request wins).
func (w *podWorker) after(d time.Duration) {
	if d < 100*time.Millisecond {
		d = 100 * time.Millisecond
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	w.timer = time.AfterFunc(d, w.wake)
}

func (w *podWorker) run(ctx context.Context) {
	resync := time.NewTicker(podResync)
	defer resync.Stop()
	defer w.stopProbes()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wakeCh:
		case <-resync.C:
		}
		w.mu.Lock()
		pod, gone := w.pod, w.gone
		if w.resend {
			w.resend, w.statusDirty = false, true
		}
		w.mu.Unlock()
		if pod != nil {
			w.lastPod = pod
		}
		if w.sync(ctx, pod, gone) {
			if w.timer != nil {
				w.timer.Stop()
			}
			return
		}
	}
}

func (w *podWorker) log() *slog.Logger {
	if p := w.lastPod; p != nil {
		return w.a.log.With("pod", p.Namespace+"/"+p.Name, "uid", string(w.uid))
	}
	return w.a.log.With("uid", string(w.uid))
}

// sync converges the pod once; it returns true when the worker is done.
func (w *podWorker) sync(ctx context.Context, pod *v1.Pod, gone bool) bool {
	if gone || pod == nil {
		grace := time.Duration(0)
		if w.lastPod != nil {
			grace = minKillGrace
		}
		w.killPod(ctx, w.lastPod, grace)
		if ctx.Err() != nil {
			return false
		}
		w.cleanupPod(ctx, w.lastPod)
		return true
	}
	if pod.DeletionTimestamp != nil {
		return w.terminate(ctx, pod)
	}
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		// A finished pod keeps its exited containers (for logs) but no
		// processes.
		w.stopSandboxes(ctx)
		w.stopProbes()
		return false
	}

	sb, err := w.ensureSandbox(ctx, pod)
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		w.log().Warn("cannot create pod sandbox", "err", err)
		w.a.events.podEvent(pod, "", v1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
		w.postStatus(ctx, pod, false, false)
		w.after(5 * time.Second)
		return false
	}

	views := w.views(pod)
	initDone := true
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		v := views[c.Name]
		cur := v.current
		if isSidecar(c) {
			if cur != nil && cur.State == container.StateRunning {
				w.checkProbeKill(ctx, pod, c, cur)
				if p := w.probes[cur.ID]; p == nil || p.isStarted() {
					continue
				}
			} else if cur == nil {
				w.startContainer(ctx, pod, c, v, sb)
			} else {
				w.restart(ctx, pod, c, v, sb)
			}
			initDone = false
			break
		}
		if cur != nil && cur.State == container.StateExited && cur.ExitCode == 0 {
			continue
		}
		initDone = false
		switch {
		case cur == nil:
			w.startContainer(ctx, pod, c, v, sb)
		case cur.State == container.StateRunning:
		case pod.Spec.RestartPolicy != v1.RestartPolicyNever:
			w.restart(ctx, pod, c, v, sb)
		}
		break
	}
	if initDone {
		for i := range pod.Spec.Containers {
			c := &pod.Spec.Containers[i]
			v := views[c.Name]
			cur := v.current
			switch {
			case cur == nil:
				w.startContainer(ctx, pod, c, v, sb)
			case cur.State == container.StateRunning:
				w.checkProbeKill(ctx, pod, c, cur)
			case shouldRestart(pod.Spec.RestartPolicy, cur.ExitCode):
				w.restart(ctx, pod, c, v, sb)
			}
		}
	}
	w.syncProbes(ctx, pod)
	if err := w.a.refreshTokens(ctx, pod, w.podIP); err != nil {
		w.log().Warn("cannot refresh service account tokens", "err", err)
	}
	st := w.postStatus(ctx, pod, true, false)
	if st.Phase == v1.PodSucceeded || st.Phase == v1.PodFailed {
		w.stopSandboxes(ctx)
		w.stopProbes()
	}
	w.gcContainers(ctx)
	return false
}

func shouldRestart(policy v1.RestartPolicy, exitCode int) bool {
	switch policy {
	case v1.RestartPolicyNever:
		return false
	case v1.RestartPolicyOnFailure:
		return exitCode != 0
	default:
		return true
	}
}

// podContainers returns the runtime's containers of this pod grouped by
// container name, newest first.
func (w *podWorker) podContainers() map[string][]container.ContainerStatus {
	out := map[string][]container.ContainerStatus{}
	for _, c := range w.a.rt.ListContainersWithLabel(labelPodUID, string(w.uid)) {
		name := c.Labels[labelContainerName]
		out[name] = append(out[name], c)
	}
	for _, list := range out {
		sort.Slice(list, func(i, j int) bool { return list[i].CreatedAt.After(list[j].CreatedAt) })
	}
	return out
}

// views builds the containerView of every container in the pod spec.
func (w *podWorker) views(pod *v1.Pod) map[string]*containerView {
	byName := w.podContainers()
	out := map[string]*containerView{}
	add := func(c *v1.Container) {
		v := &containerView{name: c.Name, image: c.Image, waiting: w.waiting[c.Name]}
		if n, err := image.Normalize(c.Image); err == nil {
			v.image = n
		}
		list := byName[c.Name]
		if len(list) > 0 {
			cur := list[0]
			v.current = &cur
			// Containers started before image refs were recorded show
			// the image ID.
			v.imageID = firstNonEmpty(cur.Labels[labelImageRef], cur.Labels[labelImageID])
			if n := cur.Labels[labelImageName]; n != "" {
				v.image = n
			}
			if n, err := strconv.Atoi(cur.Labels[labelRestartCount]); err == nil {
				v.restartCount = int32(n)
			}
			if cur.State == container.StateRunning {
				v.ready, v.started = true, true
				if p := w.probes[cur.ID]; p != nil {
					v.ready, v.started = p.isReady(), p.isStarted()
				} else if c.ReadinessProbe != nil || c.StartupProbe != nil {
					v.ready = false
					v.started = c.StartupProbe == nil
				}
			}
		}
		if len(list) > 1 {
			prev := list[1]
			v.previous = &prev
		}
		out[c.Name] = v
	}
	for i := range pod.Spec.InitContainers {
		add(&pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		add(&pod.Spec.Containers[i])
	}
	return out
}

// podSandboxes returns the pod's sandboxes, newest first.
func (w *podWorker) podSandboxes() []*container.Sandbox {
	out := w.a.rt.PodSandboxes(string(w.uid))
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out
}

// ensureSandbox returns the pod's running sandbox, creating it (and its
// network and files) when there is none.
func (w *podWorker) ensureSandbox(ctx context.Context, pod *v1.Pod) (*container.Sandbox, error) {
	sbs := w.podSandboxes()
	var sb *container.Sandbox
	if len(sbs) > 0 && sbs[0].Ready {
		sb = sbs[0]
	}
	if sb == nil {
		if len(sbs) > 0 {
			w.a.events.podEvent(pod, "", v1.EventTypeNormal, "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
			w.stopSandboxes(ctx)
		}
		var err error
		sb, err = w.a.rt.RunSandbox(ctx, container.SandboxConfig{
			PodUID:                string(pod.UID),
			Hostname:              podHostname(pod),
			QOSClass:              string(qosClass(pod)),
			ShareProcessNamespace: pod.Spec.ShareProcessNamespace != nil && *pod.Spec.ShareProcessNamespace,
			HostNetwork:           pod.Spec.HostNetwork,
			Labels: map[string]string{
				labelPodUID: string(pod.UID), labelPodName: pod.Name, labelPodNamespace: pod.Namespace,
			},
		})
		if err != nil {
			return nil, err
		}
	}
	if w.netSandbox != sb.ID {
		ip, err := w.a.setupPodNetwork(ctx, pod, sb.NetNS)
		if err != nil {
			return nil, err
		}
		w.podIP, w.netSandbox = ip, sb.ID
	}
	if w.filesFor != sb.ID {
		if err := w.a.writePodFiles(pod, w.podIP); err != nil {
			return nil, err
		}
		w.filesFor = sb.ID
	}
	return sb, nil
}

// stopSandboxes kills every sandbox of the pod and its containers.
func (w *podWorker) stopSandboxes(ctx context.Context) {
	for _, s := range w.podSandboxes() {
		if !s.Ready {
			continue
		}
		if err := w.a.rt.StopSandbox(ctx, s.ID); err != nil && ctx.Err() == nil {
			w.log().Warn("cannot stop sandbox", "sandbox", s.ID, "err", err)
		}
	}
}

// startContainer pulls, configures and starts one container.
func (w *podWorker) startContainer(ctx context.Context, pod *v1.Pod, c *v1.Container, v *containerView, sb *container.Sandbox) {
	ref := fieldPath(pod, c)
	img, werr := w.a.ensureImage(ctx, pod, c, ref)
	if werr != nil {
		w.waiting[c.Name] = werr.waiting
		w.after(werr.retry)
		return
	}
	restarts := 0
	if v.current != nil {
		restarts = int(v.restartCount) + 1
	}
	cfg, err := w.a.containerConfig(ctx, pod, c, img, sb, restarts, w.podIP)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		w.waiting[c.Name] = &v1.ContainerStateWaiting{Reason: reasonCreateConfigError, Message: err.Error()}
		w.a.events.podEvent(pod, ref, v1.EventTypeWarning, "Failed", "Error: %v", err)
		w.after(10 * time.Second)
		return
	}
	cfg.Labels[labelImageName] = firstOr(img.Names, c.Image)
	st, err := w.a.rt.StartContainer(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		w.waiting[c.Name] = &v1.ContainerStateWaiting{Reason: reasonRunContainerError, Message: err.Error()}
		w.a.events.podEvent(pod, ref, v1.EventTypeWarning, "Failed", "Error: %v", err)
		w.after(10 * time.Second)
		return
	}
	delete(w.waiting, c.Name)
	w.a.events.podEvent(pod, ref, v1.EventTypeNormal, "Created", "Created container: %s", c.Name)
	w.a.events.podEvent(pod, ref, v1.EventTypeNormal, "Started", "Started container %s", c.Name)
	w.watchContainer(ctx, st.ID)
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		if msg, err := w.runHandler(ctx, pod, c, st.ID, c.Lifecycle.PostStart, podGrace(pod)); err != nil {
			w.a.events.podEvent(pod, ref, v1.EventTypeWarning, "FailedPostStartHook", "PostStartHook failed: %v", firstNonEmpty(msg, err.Error()))
			w.killContainer(ctx, pod, c, st.ID, podGrace(pod), "FailedPostStartHook")
		}
	}
}

func firstOr(list []string, def string) string {
	if len(list) > 0 {
		return list[0]
	}
	return def
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// restart restarts an exited container unless it is backing off.
func (w *podWorker) restart(ctx context.Context, pod *v1.Pod, c *v1.Container, v *containerView, sb *container.Sandbox) {
	key := string(pod.UID) + "/" + c.Name
	now := w.a.now()
	if in, left := w.a.crashBackOff.inBackOffSince(key, v.current.FinishedAt, now); in {
		w.waiting[c.Name] = &v1.ContainerStateWaiting{
			Reason: reasonCrashLoopBackOff,
			Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)",
				w.a.crashBackOff.delay(key), c.Name, pod.Name, pod.Namespace, pod.UID),
		}
		w.a.events.podEvent(pod, fieldPath(pod, c), v1.EventTypeWarning, "BackOff",
			"Back-off restarting failed container %s in pod %s_%s(%s)", c.Name, pod.Name, pod.Namespace, pod.UID)
		w.after(left)
		return
	}
	w.a.crashBackOff.next(key, v.current.FinishedAt, now)
	w.startContainer(ctx, pod, c, v, sb)
}

// watchContainer wakes the worker when the container exits.
func (w *podWorker) watchContainer(ctx context.Context, id string) {
	if w.waiters[id] {
		return
	}
	w.waiters[id] = true
	go func() {
		if _, err := w.a.rt.Wait(ctx, id); err == nil {
			w.wake()
		}
	}()
}

// killContainer stops a container with the given grace.
func (w *podWorker) killContainer(ctx context.Context, pod *v1.Pod, c *v1.Container, id string, grace time.Duration, why string) {
	if why != "" {
		w.log().Info("killing container", "container", c.Name, "reason", why)
	}
	w.a.events.podEvent(pod, fieldPath(pod, c), v1.EventTypeNormal, "Killing", "Stopping container %s", c.Name)
	if err := w.a.rt.StopContainer(ctx, id, max(grace, minKillGrace)); err != nil && ctx.Err() == nil {
		w.log().Warn("cannot stop container", "container", c.Name, "err", err)
	}
}

// checkProbeKill kills a container whose liveness or startup probe failed.
func (w *podWorker) checkProbeKill(ctx context.Context, pod *v1.Pod, c *v1.Container, cur *container.ContainerStatus) {
	p := w.probes[cur.ID]
	if p == nil {
		return
	}
	kind, failed := p.killRequested()
	if !failed {
		return
	}
	w.a.events.podEvent(pod, fieldPath(pod, c), v1.EventTypeNormal, "Killing",
		"Container %s failed %s probe, will be restarted", c.Name, kind)
	grace := podGrace(pod)
	probe := c.LivenessProbe
	if kind == "startup" {
		probe = c.StartupProbe
	}
	if probe != nil && probe.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*probe.TerminationGracePeriodSeconds) * time.Second
	}
	if err := w.a.rt.StopContainer(ctx, cur.ID, max(grace, minKillGrace)); err != nil && ctx.Err() == nil {
		w.log().Warn("cannot stop container", "container", c.Name, "err", err)
	}
	p.stop()
	delete(w.probes, cur.ID)
	w.wake()
}

func podGrace(pod *v1.Pod) time.Duration {
	if pod.DeletionGracePeriodSeconds != nil {
		return time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
	}
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		return time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	return 30 * time.Second
}

func fieldPath(pod *v1.Pod, c *v1.Container) string {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == c.Name {
			return "spec.initContainers{" + c.Name + "}"
		}
	}
	return "spec.containers{" + c.Name + "}"
}

// specContainer finds a container of the spec by name.
func specContainer(pod *v1.Pod, name string) *v1.Container {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	return nil
}

// terminate stops a pod being deleted: preStop hooks, SIGTERM, the grace
// period, SIGKILL; then its final status, its files, and the final delete
// of the API object, as the kubelet does.
func (w *podWorker) terminate(ctx context.Context, pod *v1.Pod) bool {
	w.killPod(ctx, pod, podGrace(pod))
	if ctx.Err() != nil {
		return false
	}
	w.postStatus(ctx, pod, w.netSandbox != "", true)
	w.cleanupPod(ctx, pod)
	if isStaticPod(pod) {
		// Its file is gone or changed: there is no API object to delete,
		// only its mirror.
		w.a.static.terminated(ctx, pod)
		return true
	}
	err := w.a.api.Delete(ctx, apiclient.Pods, pod.Namespace, pod.Name, &metav1.DeleteOptions{
		GracePeriodSeconds: new(int64),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		if ctx.Err() == nil {
			w.log().Warn("cannot delete pod", "err", err)
			w.after(2 * time.Second)
		}
		return false
	}
	return true
}

// killPod runs preStop hooks and stops every running container of the pod
// in parallel within grace. pod may be nil (an orphan).
func (w *podWorker) killPod(ctx context.Context, pod *v1.Pod, grace time.Duration) {
	w.stopProbes()
	start := w.a.now()
	var wg sync.WaitGroup
	for name, list := range w.podContainers() {
		for _, cs := range list {
			if cs.State != container.StateRunning {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				var c *v1.Container
				if pod != nil {
					c = specContainer(pod, name)
				}
				if c != nil {
					w.a.events.podEvent(pod, fieldPath(pod, c), v1.EventTypeNormal, "Killing", "Stopping container %s", c.Name)
					if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && grace > 0 {
						hctx, cancel := context.WithTimeout(ctx, grace)
						if msg, err := w.runHandler(hctx, pod, c, cs.ID, c.Lifecycle.PreStop, grace); err != nil {
							w.a.events.podEvent(pod, fieldPath(pod, c), v1.EventTypeWarning, "FailedPreStopHook",
								"PreStopHook failed: %v", firstNonEmpty(msg, err.Error()))
						}
						cancel()
					}
				}
				left := grace - w.a.now().Sub(start)
				if grace > 0 {
					left = max(left, minKillGrace)
				}
				if err := w.a.rt.StopContainer(ctx, cs.ID, max(left, 0)); err != nil && ctx.Err() == nil {
					w.log().Warn("cannot stop container", "container", name, "err", err)
				}
			}()
		}
	}
	wg.Wait()
}

// cleanupPod removes the pod's sandboxes, containers, network, files and
// logs, and forgets its back-off state.
func (w *podWorker) cleanupPod(ctx context.Context, pod *v1.Pod) {
	for _, s := range w.podSandboxes() {
		if pod != nil && !pod.Spec.HostNetwork {
			if err := w.a.net.Teardown(ctx, pod, s.NetNS); err != nil {
				w.log().Warn("cannot tear down pod network", "err", err)
			}
		}
		if err := w.a.rt.RemoveSandbox(ctx, s.ID); err != nil && !errors.Is(err, container.ErrNotFound) {
			w.log().Warn("cannot remove sandbox", "sandbox", s.ID, "err", err)
		}
	}
	// Containers whose sandbox record is gone.
	for _, list := range w.podContainers() {
		for _, c := range list {
			_ = w.a.rt.StopContainer(ctx, c.ID, 0)
			_ = w.a.rt.RemoveContainer(ctx, c.ID)
		}
	}
	if err := w.a.removePodDir(w.uid); err != nil {
		w.log().Warn("cannot remove pod directory", "err", err)
	}
	if pod != nil {
		_ = os.RemoveAll(w.a.podLogDir(pod))
	}
	w.a.crashBackOff.forget(string(w.uid) + "/")
	w.a.pullBackOff.forget(string(w.uid) + "/")
	w.a.events.forget(w.uid)
}

// gcContainers removes exited instances older than the previous one of
// each container (the previous one stays for `kubectl logs --previous`).
func (w *podWorker) gcContainers(ctx context.Context) {
	for _, list := range w.podContainers() {
		for _, c := range list[min(2, len(list)):] {
			if c.State == container.StateExited {
				if err := w.a.rt.RemoveContainer(ctx, c.ID); err != nil {
					w.log().Debug("cannot remove old container", "id", c.ID, "err", err)
				}
				delete(w.waiters, c.ID)
			}
		}
	}
}

// postStatus computes the pod's status and writes it when it changed.
// terminal marks a pod whose containers were all stopped for deletion.
func (w *podWorker) postStatus(ctx context.Context, pod *v1.Pod, sandboxReady, terminal bool) v1.PodStatus {
	p := pod.DeepCopy()
	if w.lastSent != nil {
		// The watch may not have brought our last write back yet.
		p.Status.StartTime = w.lastSent.StartTime
		for _, c := range w.lastSent.Conditions {
			replaced := false
			for i := range p.Status.Conditions {
				if p.Status.Conditions[i].Type == c.Type {
					p.Status.Conditions[i], replaced = c, true
				}
			}
			if !replaced {
				p.Status.Conditions = append(p.Status.Conditions, c)
			}
		}
	}
	views := w.views(pod)
	in := statusInput{pod: p, now: w.a.now(), sandboxReady: sandboxReady, hostIP: w.a.hostIP, podIP: w.podIP}
	for i := range pod.Spec.InitContainers {
		in.init = append(in.init, *views[pod.Spec.InitContainers[i].Name])
	}
	for i := range pod.Spec.Containers {
		v := *views[pod.Spec.Containers[i].Name]
		if !initializedFromViews(pod, views) && v.current == nil && v.waiting == nil {
			v.waiting = &v1.ContainerStateWaiting{Reason: reasonPodInitializing}
		}
		in.app = append(in.app, v)
	}
	if terminal {
		in.sandboxReady = false
		for i := range in.app {
			in.app[i].waiting, in.app[i].ready = nil, false
		}
	}
	st := computePodStatus(in)
	if terminal && st.Phase != v1.PodSucceeded && st.Phase != v1.PodFailed {
		st.Phase = v1.PodFailed
		if allSucceeded(st.ContainerStatuses) {
			st.Phase = v1.PodSucceeded
		}
	}
	if !w.statusDirty && w.lastSent != nil && apiequality.Semantic.DeepEqual(*w.lastSent, st) {
		return st
	}
	target := pod.UID
	if isStaticPod(pod) {
		mirror, ok := w.a.static.mirrorUID(pod)
		if !ok {
			// The kubelet's status manager too skips static pods without a
			// mirror; creating the mirror asks for a resend.
			return st
		}
		target = mirror
	}
	// The uid makes the server refuse a status meant for a pod that was
	// replaced under the same name since the cache showed it.
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"uid": target}, "status": st})
	if err != nil {
		return st
	}
	if err := w.a.api.Patch(ctx, apiclient.Pods, pod.Namespace, pod.Name, "status", types.MergePatchType, body, nil); err != nil {
		if ctx.Err() == nil && !apierrors.IsNotFound(err) {
			w.log().Warn("cannot update pod status", "err", err)
			w.after(time.Second)
		}
		return st
	}
	// As the kubelet: a pod counts as started when its status first goes
	// from Pending to Running (pods adopted after a restart already run).
	if prev := lastPhase(pod, w.lastSent); st.Phase == v1.PodRunning && (prev == v1.PodPending || prev == "") {
		w.a.metrics.ObservePodStart(w.a.now().Sub(w.firstSeen))
	}
	w.lastSent, w.statusDirty = &st, false
	return st
}

// lastPhase is the phase last reported for pod: ours if we sent one.
func lastPhase(pod *v1.Pod, sent *v1.PodStatus) v1.PodPhase {
	if sent != nil {
		return sent.Phase
	}
	return pod.Status.Phase
}

func allSucceeded(list []v1.ContainerStatus) bool {
	for _, s := range list {
		if s.State.Terminated == nil || s.State.Terminated.ExitCode != 0 {
			return false
		}
	}
	return true
}

// initializedFromViews reports whether every regular init container has
// completed.
func initializedFromViews(pod *v1.Pod, views map[string]*containerView) bool {
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		v := views[c.Name]
		if isSidecar(c) {
			if v.current == nil || v.current.State != container.StateRunning {
				return false
			}
			continue
		}
		if v.current == nil || v.current.State != container.StateExited || v.current.ExitCode != 0 {
			return false
		}
	}
	return true
}

// podLogDir is where the pod's container logs live.
func (a *Agent) podLogDir(pod *v1.Pod) string {
	return filepath.Join(a.logsDir(), pod.Namespace+"_"+pod.Name+"_"+string(pod.UID))
}
