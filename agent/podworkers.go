package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/agent/apiclient"
)

// podWorkers runs one goroutine per pod. Each worker is fed only the
// latest desired state of its pod: updates that arrive while it is busy
// replace one another, they do not queue.
type podWorkers struct {
	a *Agent

	mu      sync.Mutex
	workers map[types.UID]*podWorker
	wg      sync.WaitGroup
}

func newPodWorkers(a *Agent) *podWorkers {
	return &podWorkers{a: a, workers: map[types.UID]*podWorker{}}
}

// update hands the worker of pod its latest state, starting the worker if
// needed.
func (p *podWorkers) update(ctx context.Context, pod *v1.Pod) {
	w := p.worker(ctx, pod.UID)
	w.mu.Lock()
	w.pod = pod
	w.mu.Unlock()
	w.wake()
}

// removed tells the worker of uid that its pod is gone from the API (force
// deleted, or never there: an orphan found in the runtime).
func (p *podWorkers) removed(ctx context.Context, uid types.UID) {
	w := p.worker(ctx, uid)
	w.mu.Lock()
	w.gone = true
	w.mu.Unlock()
	w.wake()
}

// resendStatus makes the worker of uid write its pod's status again even
// if unchanged: a static pod's new mirror starts with none.
func (p *podWorkers) resendStatus(uid types.UID) {
	p.mu.Lock()
	w := p.workers[uid]
	p.mu.Unlock()
	if w == nil {
		return
	}
	w.mu.Lock()
	w.resend = true
	w.mu.Unlock()
	w.wake()
}

func (p *podWorkers) worker(ctx context.Context, uid types.UID) *podWorker {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w, ok := p.workers[uid]; ok {
		return w
	}
	w := newPodWorker(p.a, uid)
	p.workers[uid] = w
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		w.run(ctx)
		p.mu.Lock()
		if p.workers[uid] == w {
			delete(p.workers, uid)
		}
		p.mu.Unlock()
	}()
	return w
}

func (p *podWorkers) known() map[types.UID]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[types.UID]bool{}
	for uid := range p.workers {
		out[uid] = true
	}
	return out
}

// wait blocks until every worker has returned (after ctx ended).
func (p *podWorkers) wait() { p.wg.Wait() }

// watchPods lists and watches the pods bound to this node and feeds the
// workers; it relists after any watch failure. After the first list, pods
// the runtime still runs but the API no longer has are torn down.
func (a *Agent) watchPods(ctx context.Context) {
	opts := apiclient.ListOptions{FieldSelector: "spec.nodeName=" + a.nodeName}
	first := true
	for ctx.Err() == nil {
		var list v1.PodList
		if err := a.api.List(ctx, apiclient.Pods, "", opts, &list); err != nil {
			if ctx.Err() == nil {
				a.log.Warn("cannot list pods", "err", err)
				sleepCtx(ctx, 2*time.Second)
			}
			continue
		}
		seen := map[types.UID]bool{}
		var mirrors []*v1.Pod
		for i := range list.Items {
			pod := &list.Items[i]
			if isMirrorPod(pod) {
				mirrors = append(mirrors, pod)
				continue
			}
			seen[pod.UID] = true
			a.workers.update(ctx, pod)
		}
		a.static.replaceMirrors(mirrors)
		// Pods deleted while we were not watching; static pods are not
		// the API's to delete.
		for uid := range a.workers.known() {
			if !seen[uid] && !a.static.isStatic(uid) {
				a.workers.removed(ctx, uid)
			}
		}
		if first {
			first = false
			for _, s := range a.rt.ListSandboxes() {
				uid := types.UID(s.PodUID)
				if !seen[uid] && !a.static.isStatic(uid) {
					a.workers.removed(ctx, uid)
				}
			}
		}
		a.streamPods(ctx, opts, list.ResourceVersion)
	}
}

// streamPods follows one watch until it ends.
func (a *Agent) streamPods(ctx context.Context, opts apiclient.ListOptions, rv string) {
	for ctx.Err() == nil {
		opts.ResourceVersion = rv
		opts.TimeoutSeconds = 300
		w, err := a.api.Watch(ctx, apiclient.Pods, "", opts)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("cannot watch pods", "err", err)
				sleepCtx(ctx, time.Second)
			}
			return
		}
		for {
			ev, err := w.Next()
			if err != nil {
				w.Close()
				if errors.Is(err, io.EOF) && ctx.Err() == nil {
					break // server timeout: watch again from rv
				}
				if ctx.Err() == nil && !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
					a.log.Warn("pod watch failed; relisting", "err", err)
				}
				return
			}
			var pod v1.Pod
			if err := json.Unmarshal(ev.Object, &pod); err != nil {
				a.log.Warn("undecodable pod in watch", "err", err)
				continue
			}
			if pod.ResourceVersion != "" {
				rv = pod.ResourceVersion
			}
			if isMirrorPod(&pod) {
				// Mirrors show static pods; the files say what runs.
				a.static.observeMirror(&pod, ev.Type == "DELETED")
				continue
			}
			switch ev.Type {
			case "ADDED", "MODIFIED":
				a.workers.update(ctx, &pod)
			case "DELETED":
				a.workers.removed(ctx, pod.UID)
			}
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
