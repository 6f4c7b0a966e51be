package metricsapi

import (
	"sync"
	"time"

	"github.com/orch-dev/orch/internal/resourcemetrics"
)

// point is one reading of a cumulative CPU counter and a memory gauge.
type point struct {
	cpu   float64 // core-seconds
	mem   uint64
	memOK bool
	t     time.Time
}

func pointOf(u resourcemetrics.Usage) point {
	return point{cpu: u.CPUSeconds, mem: u.MemoryBytes, memOK: !u.MemoryUnread, t: u.Time}
}

// series keeps the last two readings of one node or container: the CPU
// rate is the counter's increase between them, as metrics-server computes
// it.
type series struct{ prev, last point }

// add records p. The same reading again changes nothing; a counter that
// went back (the container restarted) starts the series over.
func (s series) add(p point) series {
	switch {
	case s.last.t.IsZero():
		return series{last: p}
	case !p.t.After(s.last.t):
		return s
	case p.cpu < s.last.cpu:
		return series{last: p}
	}
	return series{prev: s.last, last: p}
}

// usage is the CPU rate in nanocores and the memory of the last reading,
// over the window between the two readings; ok is false until there are
// two readings with memory.
type usage struct {
	nanoCores int64
	memory    int64
	timestamp time.Time
	window    time.Duration
}

func (s series) usage() (usage, bool) {
	if s.prev.t.IsZero() || !s.last.memOK {
		return usage{}, false
	}
	window := s.last.t.Sub(s.prev.t)
	rate := (s.last.cpu - s.prev.cpu) / window.Seconds()
	return usage{nanoCores: int64(rate * 1e9), memory: int64(s.last.mem), timestamp: s.last.t, window: window}, true
}

// podSeries are the containers of one pod, on the node that reported them.
type podSeries struct {
	node       string
	containers map[string]series
	order      []string // as the node reported them
}

// storage holds the series of every scraped node and its pods. A node's
// scrape replaces everything known about that node's pods, so pods that
// are gone disappear with the next scrape.
type storage struct {
	mu    sync.RWMutex
	nodes map[string]series
	pods  map[resourcemetrics.PodRef]*podSeries
}

func newStorage() *storage {
	return &storage{nodes: map[string]series{}, pods: map[resourcemetrics.PodRef]*podSeries{}}
}

// update records a scrape of node.
func (s *storage) update(node string, snap resourcemetrics.Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if snap.Node != nil {
		s.nodes[node] = s.nodes[node].add(pointOf(*snap.Node))
	} else {
		delete(s.nodes, node)
	}
	fresh := map[resourcemetrics.PodRef]*podSeries{}
	for _, c := range snap.Containers {
		ps := fresh[c.Pod]
		if ps == nil {
			ps = &podSeries{node: node, containers: map[string]series{}}
			fresh[c.Pod] = ps
		}
		var old series
		if prev := s.pods[c.Pod]; prev != nil && prev.node == node {
			old = prev.containers[c.Name]
		}
		if _, dup := ps.containers[c.Name]; !dup {
			ps.order = append(ps.order, c.Name)
		}
		ps.containers[c.Name] = old.add(pointOf(c.Usage))
	}
	for ref, ps := range s.pods {
		if ps.node == node && fresh[ref] == nil {
			delete(s.pods, ref)
		}
	}
	for ref, ps := range fresh {
		s.pods[ref] = ps
	}
}

// forgetNodesExcept drops what is known about nodes not in keep (deleted,
// or no longer Ready).
func (s *storage) forgetNodesExcept(keep map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name := range s.nodes {
		if !keep[name] {
			delete(s.nodes, name)
		}
	}
	for ref, ps := range s.pods {
		if !keep[ps.node] {
			delete(s.pods, ref)
		}
	}
}

// forgetNode drops a node whose scrape failed, as metrics-server serves
// nothing for a node it could not scrape in the last round.
func (s *storage) forgetNode(node string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.nodes, node)
	for ref, ps := range s.pods {
		if ps.node == node {
			delete(s.pods, ref)
		}
	}
}

func (s *storage) nodeUsage(node string) (usage, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.nodes[node].usage()
}

// containerUsage is one container's usage.
type containerUsage struct {
	name string
	usage
}

// podUsage returns the usage of every container of a pod, with the newest
// timestamp and its window; ok is false unless every container has one.
func (s *storage) podUsage(ref resourcemetrics.PodRef) (containers []containerUsage, at usage, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ps := s.pods[ref]
	if ps == nil || len(ps.order) == 0 {
		return nil, usage{}, false
	}
	for _, name := range ps.order {
		u, ok := ps.containers[name].usage()
		if !ok {
			return nil, usage{}, false
		}
		if u.timestamp.After(at.timestamp) {
			at = u
		}
		containers = append(containers, containerUsage{name: name, usage: u})
	}
	return containers, at, true
}
