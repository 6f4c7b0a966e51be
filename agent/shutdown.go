package agent

// Stopping the node with Config.KillPodsOnStop (--kill-pods-on-stop).
//
// By default a stopped agent leaves its pods running and the next one
// adopts them, as k3s does, so that upgrading or restarting orch never
// takes workloads down. With the flag, SIGTERM takes the node down with
// it: every pod is stopped the way a deleted pod is (preStop hooks,
// SIGTERM, its grace period, SIGKILL), then its sandbox, cgroups, mounts,
// veth and address are removed, and only then does the agent exit. The
// pods stay in the API: an agent started later runs them again.
//
// The order matters. The pod workers stop first, so that nothing restarts
// a container being killed; the pod network, node API and event recorder
// run until the pods are gone, because their teardown needs them.

import (
	"context"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Bounds of the stop. A pod asking for a longer grace period is killed
// after maxStopGrace; the cleanup after it gets stopCleanupTimeout. Both
// together stay under systemd's default TimeoutStopSec (90 s), after which
// the service manager would SIGKILL the agent halfway.
const (
	maxStopGrace       = 30 * time.Second
	stopCleanupTimeout = 30 * time.Second
)

// nodeStop decides how the node's loops end. Without KillPodsOnStop they
// run on the agent's context and end with it. With it they run on a
// context of their own, which killPods ends once the pods are gone; if the
// agent is stopped before killPods took over (while it registers), the
// loops end at once and the pods are left as without the flag.
type nodeStop struct {
	stop context.Context // the agent's context: ends when it is asked to stop
	run  context.Context // the node's loops run on this
	end  context.CancelFunc
	kill bool

	mu           sync.Mutex
	taken, ended bool
}

func (a *Agent) newNodeStop(ctx context.Context) *nodeStop {
	if !a.cfg.KillPodsOnStop {
		return &nodeStop{stop: ctx, run: ctx, end: func() {}}
	}
	run, end := context.WithCancel(context.WithoutCancel(ctx))
	s := &nodeStop{stop: ctx, run: run, end: end, kill: true}
	context.AfterFunc(ctx, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.taken {
			s.ended = true
			end()
		}
	})
	return s
}

// take makes killPods responsible for ending the loops; false if the
// agent was stopped before.
func (s *nodeStop) take() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return false
	}
	s.taken = true
	return true
}

// killPods, with KillPodsOnStop, waits until the agent is asked to stop,
// then stops the pod workers (stopWorkers), kills and removes every pod,
// and ends the node's loops. If gctx (the loops' errgroup) ends first, the
// node failed rather than being stopped: its pods are left running for
// the next agent, as without the flag.
func (s *nodeStop) killPods(a *Agent, gctx context.Context, stopWorkers context.CancelFunc) {
	if !s.kill {
		return
	}
	if !s.take() {
		a.log.Warn("stopped while starting: pods are left running despite --kill-pods-on-stop")
		return
	}
	defer s.end()
	select {
	case <-gctx.Done():
		return
	case <-s.stop.Done():
	}
	pods := a.workers.lastPods()
	stopWorkers()
	a.workers.wait()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(gctx), maxStopGrace+stopCleanupTimeout)
	defer cancel()
	n := a.killAllPods(ctx, pods)
	a.log.Info("stopped every pod of the node (--kill-pods-on-stop)", "pods", n)
}

// killAllPods stops and removes, in parallel, every pod the runtime has:
// those in known with their spec (grace period, preStop hooks), others
// (found in the runtime only) with the default grace period. It returns
// how many pods it stopped.
func (a *Agent) killAllPods(ctx context.Context, known map[types.UID]*v1.Pod) int {
	pods := map[types.UID]*v1.Pod{}
	add := func(uid string, labels map[string]string) {
		if uid == "" || pods[types.UID(uid)] != nil {
			return
		}
		pod := known[types.UID(uid)]
		if pod == nil {
			pod = podFromLabels(types.UID(uid), labels)
		}
		pods[types.UID(uid)] = pod
	}
	for _, s := range a.rt.ListSandboxes() {
		add(s.PodUID, s.Labels)
	}
	for _, c := range a.rt.ListContainers() {
		add(c.Labels[labelPodUID], c.Labels)
	}
	var wg sync.WaitGroup
	for uid, pod := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newPodWorker(a, uid)
			w.lastPod = pod
			w.log().Info("stopping pod: the node is stopping")
			w.killPod(ctx, pod, min(podGrace(pod), maxStopGrace))
			w.cleanupPod(ctx, pod)
		}()
	}
	wg.Wait()
	return len(pods)
}

// podFromLabels is what the runtime's labels tell of a pod the workers did
// not know (the API was unreachable since the agent started): enough to
// name it in logs and events and to tear down its network.
func podFromLabels(uid types.UID, labels map[string]string) *v1.Pod {
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{
		UID:       uid,
		Name:      labels[labelPodName],
		Namespace: labels[labelPodNamespace],
	}}
}

// lastPods returns the latest pod given to each worker.
func (p *podWorkers) lastPods() map[types.UID]*v1.Pod {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[types.UID]*v1.Pod, len(p.workers))
	for uid, w := range p.workers {
		w.mu.Lock()
		if w.pod != nil {
			out[uid] = w.pod
		}
		w.mu.Unlock()
	}
	return out
}
