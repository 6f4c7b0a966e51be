// Package resourcemetrics is the wire format of a node's resource metrics
// endpoint, the kubelet's /metrics/resource: cumulative CPU time and memory
// working set of the node, of each pod and of each container, in the
// Prometheus text format with a timestamp on every sample.
//
// A node (the agent, or a simulated node in tests) writes it; the server's
// metrics API (server/metricsapi) reads it, as metrics-server reads the
// kubelet's. The package does no I/O of its own and holds no state.
package resourcemetrics

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Path is the endpoint on a node, the same as the kubelet's.
const Path = "/metrics/resource"

// Metric names, as the kubelet's resource metrics collector names them.
const (
	NodeCPU         = "node_cpu_usage_seconds_total"
	NodeMemory      = "node_memory_working_set_bytes"
	PodCPU          = "pod_cpu_usage_seconds_total"
	PodMemory       = "pod_memory_working_set_bytes"
	ContainerCPU    = "container_cpu_usage_seconds_total"
	ContainerMemory = "container_memory_working_set_bytes"
	ScrapeError     = "scrape_error"
)

// Usage is one reading: cumulative CPU time in core-seconds and the memory
// working set in bytes, taken at Time.
type Usage struct {
	CPUSeconds   float64
	MemoryBytes  uint64
	Time         time.Time
	MemoryUnread bool // memory could not be read; CPU still counts
}

// PodRef names a pod.
type PodRef struct{ Namespace, Name string }

// Container is the usage of one container of a pod.
type Container struct {
	Pod  PodRef
	Name string
	Usage
}

// Pod is the usage of a whole pod (its cgroup, all containers together).
type Pod struct {
	Pod PodRef
	Usage
}

// Snapshot is everything one scrape of a node returns.
type Snapshot struct {
	Node       *Usage // nil when the node's own usage could not be read
	Pods       []Pod
	Containers []Container
}

var help = map[string]string{
	NodeCPU:         "counter [STABLE] Cumulative cpu time consumed by the node in core-seconds",
	NodeMemory:      "gauge [STABLE] Current working set of the node in bytes",
	PodCPU:          "counter [STABLE] Cumulative cpu time consumed by the pod in core-seconds",
	PodMemory:       "gauge [STABLE] Current working set of the pod in bytes",
	ContainerCPU:    "counter [STABLE] Cumulative cpu time consumed by the container in core-seconds",
	ContainerMemory: "gauge [STABLE] Current working set of the container in bytes",
	ScrapeError:     "gauge [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise",
}

// Write encodes s in the Prometheus text format, families in the kubelet's
// order, each sample with its millisecond timestamp.
func Write(w io.Writer, s Snapshot) error {
	bw := bufio.NewWriter(w)
	family := func(name string) {
		typ, text, _ := strings.Cut(help[name], " ")
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, typ)
	}
	sample := func(name, labels string, v float64, t time.Time) {
		fmt.Fprintf(bw, "%s%s %s %d\n", name, labels, strconv.FormatFloat(v, 'g', -1, 64), t.UnixMilli())
	}
	family(ContainerCPU)
	for _, c := range s.Containers {
		sample(ContainerCPU, containerLabels(c), c.CPUSeconds, c.Time)
	}
	family(ContainerMemory)
	for _, c := range s.Containers {
		if !c.MemoryUnread {
			sample(ContainerMemory, containerLabels(c), float64(c.MemoryBytes), c.Time)
		}
	}
	if s.Node != nil {
		family(NodeCPU)
		sample(NodeCPU, "", s.Node.CPUSeconds, s.Node.Time)
		if !s.Node.MemoryUnread {
			family(NodeMemory)
			sample(NodeMemory, "", float64(s.Node.MemoryBytes), s.Node.Time)
		}
	}
	family(PodCPU)
	for _, p := range s.Pods {
		sample(PodCPU, podLabels(p.Pod), p.CPUSeconds, p.Time)
	}
	family(PodMemory)
	for _, p := range s.Pods {
		if !p.MemoryUnread {
			sample(PodMemory, podLabels(p.Pod), float64(p.MemoryBytes), p.Time)
		}
	}
	family(ScrapeError)
	errValue := 0.0
	if s.Node == nil {
		errValue = 1
	}
	fmt.Fprintf(bw, "%s %s\n", ScrapeError, strconv.FormatFloat(errValue, 'g', -1, 64))
	return bw.Flush()
}

func containerLabels(c Container) string {
	return "{container=" + strconv.Quote(c.Name) + ",namespace=" + strconv.Quote(c.Pod.Namespace) + ",pod=" + strconv.Quote(c.Pod.Name) + "}"
}

func podLabels(p PodRef) string {
	return "{namespace=" + strconv.Quote(p.Namespace) + ",pod=" + strconv.Quote(p.Name) + "}"
}

// maxLineBytes bounds one line of a scrape; a node answering longer lines
// is broken or hostile.
const maxLineBytes = 64 << 10

// Parse decodes a scrape. Families other than the resource metrics are
// skipped, as metrics-server does; a sample without a timestamp gets now.
// A CPU or memory sample alone makes an entry (the other value stays zero
// and MemoryUnread tells a missing memory reading apart).
func Parse(r io.Reader, now time.Time) (Snapshot, error) {
	var s Snapshot
	pods := map[PodRef]*Pod{}
	type ckey struct {
		pod  PodRef
		name string
	}
	containers := map[ckey]*Container{}
	var podOrder []PodRef
	var ctrOrder []ckey
	var node *Usage
	getPod := func(ref PodRef) *Pod {
		p := pods[ref]
		if p == nil {
			p = &Pod{Pod: ref, Usage: Usage{MemoryUnread: true}}
			pods[ref] = p
			podOrder = append(podOrder, ref)
		}
		return p
	}
	getContainer := func(k ckey) *Container {
		c := containers[k]
		if c == nil {
			c = &Container{Pod: k.pod, Name: k.name, Usage: Usage{MemoryUnread: true}}
			containers[k] = c
			ctrOrder = append(ctrOrder, k)
		}
		return c
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLineBytes)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		smp, err := parseSample(text, now)
		if err != nil {
			return Snapshot{}, fmt.Errorf("line %d: %w", line, err)
		}
		set := func(u *Usage, memory bool) error {
			if smp.value < 0 || math.IsNaN(smp.value) || math.IsInf(smp.value, 0) || (memory && smp.value >= math.MaxUint64) {
				return fmt.Errorf("line %d: %s: invalid value %v", line, smp.name, smp.value)
			}
			u.Time = smp.time
			if memory {
				u.MemoryBytes, u.MemoryUnread = uint64(smp.value), false
			} else {
				u.CPUSeconds = smp.value
			}
			return nil
		}
		podRef := PodRef{Namespace: smp.labels["namespace"], Name: smp.labels["pod"]}
		switch smp.name {
		case NodeCPU, NodeMemory:
			if node == nil {
				node = &Usage{MemoryUnread: true}
			}
			err = set(node, smp.name == NodeMemory)
		case PodCPU, PodMemory:
			if podRef.Namespace == "" || podRef.Name == "" {
				return Snapshot{}, fmt.Errorf("line %d: %s without namespace and pod labels", line, smp.name)
			}
			err = set(&getPod(podRef).Usage, smp.name == PodMemory)
		case ContainerCPU, ContainerMemory:
			k := ckey{pod: podRef, name: smp.labels["container"]}
			if podRef.Namespace == "" || podRef.Name == "" || k.name == "" {
				return Snapshot{}, fmt.Errorf("line %d: %s without container, namespace and pod labels", line, smp.name)
			}
			err = set(&getContainer(k).Usage, smp.name == ContainerMemory)
		}
		if err != nil {
			return Snapshot{}, err
		}
	}
	if err := sc.Err(); err != nil {
		return Snapshot{}, fmt.Errorf("read metrics: %w", err)
	}
	s.Node = node
	for _, ref := range podOrder {
		s.Pods = append(s.Pods, *pods[ref])
	}
	for _, k := range ctrOrder {
		s.Containers = append(s.Containers, *containers[k])
	}
	return s, nil
}

type parsedSample struct {
	name   string
	labels map[string]string
	value  float64
	time   time.Time
}

// parseSample reads `name{l="v",...} value [timestamp_ms]`.
func parseSample(text string, now time.Time) (parsedSample, error) {
	var smp parsedSample
	end := strings.IndexAny(text, "{ \t")
	if end <= 0 {
		return smp, errors.New("sample without a value")
	}
	smp.name, text = text[:end], text[end:]
	if text[0] == '{' {
		labels, rest, err := parseLabels(text[1:])
		if err != nil {
			return smp, fmt.Errorf("%s: %w", smp.name, err)
		}
		smp.labels, text = labels, rest
	}
	fields := strings.Fields(text)
	if len(fields) < 1 || len(fields) > 2 {
		return smp, fmt.Errorf("%s: want a value and an optional timestamp", smp.name)
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil {
		return smp, fmt.Errorf("%s: value: %w", smp.name, err)
	}
	smp.value, smp.time = v, now
	if len(fields) == 2 {
		ms, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			return smp, fmt.Errorf("%s: timestamp: %w", smp.name, err)
		}
		smp.time = time.UnixMilli(ms)
	}
	return smp, nil
}

// parseLabels reads `l="v",...}` and returns the rest after the brace.
func parseLabels(text string) (map[string]string, string, error) {
	labels := map[string]string{}
	for {
		text = strings.TrimLeft(text, " ,")
		if strings.HasPrefix(text, "}") {
			return labels, text[1:], nil
		}
		eq := strings.IndexByte(text, '=')
		if eq <= 0 || len(text) < eq+2 || text[eq+1] != '"' {
			return nil, "", errors.New("malformed labels")
		}
		name := strings.TrimSpace(text[:eq])
		// The value is a Go-compatible quoted string: \\, \" and \n.
		rest := text[eq+1:]
		i := 1
		for ; i < len(rest); i++ {
			if rest[i] == '\\' {
				i++
				continue
			}
			if rest[i] == '"' {
				break
			}
		}
		if i >= len(rest) {
			return nil, "", errors.New("unterminated label value")
		}
		v, err := strconv.Unquote(rest[:i+1])
		if err != nil {
			return nil, "", fmt.Errorf("label %s: %w", name, err)
		}
		labels[name] = v
		text = rest[i+1:]
	}
}
