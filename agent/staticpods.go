package agent

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/orch-dev/orch/agent/apiclient"
	"github.com/orch-dev/orch/internal/dirwatch"
)

// Static pods are pods the node runs from files in DATA/agent/pod-manifests
// whether or not the API server answers, as the kubelet's
// --pod-manifest-path (k3s: DATA/agent/pod-manifests). Each one is shown
// in the API by a mirror pod the agent creates and keeps: same name and
// spec, the annotation kubernetes.io/config.mirror, and the Node as its
// controlling owner. The mirror only reports; deleting it through the API
// does not stop the static pod (the agent creates it again), removing or
// changing the file does.

// Annotations the kubelet puts on static pods and their mirrors.
const (
	annotationConfigHash   = "kubernetes.io/config.hash"
	annotationConfigMirror = "kubernetes.io/config.mirror"
	annotationConfigSource = "kubernetes.io/config.source"
	annotationConfigSeen   = "kubernetes.io/config.seen"
	staticSourceFile       = "file"
)

// manifestPoll is how often the manifest directory is read again besides
// the reads its inotify watch asks for: the kubelet's
// --file-check-frequency, which covers what a watch could miss (the
// directory made later, a file system without inotify). Polling every few
// seconds instead woke an idle agent up for nothing.
const manifestPoll = 20 * time.Second

// maxManifestSize bounds one manifest file: a pod spec is kilobytes.
const maxManifestSize = 1 << 20

// isMirrorPod reports whether pod is an API mirror of a static pod.
func isMirrorPod(pod *v1.Pod) bool {
	_, ok := pod.Annotations[annotationConfigMirror]
	return ok
}

// isStaticPod reports whether pod came from a manifest file rather than
// the API.
func isStaticPod(pod *v1.Pod) bool {
	return pod != nil && pod.Annotations[annotationConfigSource] == staticSourceFile && !isMirrorPod(pod)
}

// manifestDir reads static pod manifests for one node.
type manifestDir struct {
	dir      string
	nodeName string
}

// manifestResult is one file's pod, or why it is not one.
type manifestResult struct {
	path string
	pod  *v1.Pod
	err  error
}

// read decodes every *.yaml, *.yml and *.json file of the directory, in
// name order. Hidden files and others (editor backups) are skipped, as
// the kubelet skips dot-files. A missing directory holds no pods.
func (m manifestDir) read() ([]manifestResult, error) {
	ents, err := os.ReadDir(m.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read static pod manifests: %w", err)
	}
	var out []manifestResult
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue
		}
		switch strings.ToLower(filepath.Ext(name)) {
		case ".yaml", ".yml", ".json":
		default:
			continue
		}
		path := filepath.Join(m.dir, name)
		pod, err := m.readFile(path)
		out = append(out, manifestResult{path: path, pod: pod, err: err})
	}
	return out, nil
}

// readFile decodes and defaults one manifest.
func (m manifestDir) readFile(path string) (*v1.Pod, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, maxManifestSize+1)); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if buf.Len() > maxManifestSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxManifestSize)
	}
	return decodeStaticPod(buf.Bytes(), path, m.nodeName)
}

// decodeStaticPod turns one manifest into the pod the node runs, as the
// kubelet's file source does: a single v1 Pod, its UID the hash of the
// node, the file and the pod, its name suffixed with the node's, bound to
// the node, tolerating NoExecute taints, then defaulted and validated.
func decodeStaticPod(data []byte, source, nodeName string) (*v1.Pod, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: couldn't parse as pod(%w), please check config file", source, err)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, fmt.Errorf("%s: couldn't parse as pod(%w), please check config file", source, err)
	}
	if tm.APIVersion != "v1" || tm.Kind != "Pod" {
		return nil, fmt.Errorf("%s: couldn't parse as pod(Object 'Kind' is %q in apiVersion %q, want a v1 Pod), please check config file", source, tm.Kind, tm.APIVersion)
	}
	pod := &v1.Pod{}
	if err := json.Unmarshal(js, pod); err != nil {
		return nil, fmt.Errorf("%s: couldn't parse as pod(%w), please check config file", source, err)
	}
	if pod.UID == "" {
		// The pod as written, re-encoded: stable across agent restarts, so
		// that a restarted agent adopts the static pods it was running.
		canonical, err := json.Marshal(pod)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		h := md5.New()
		fmt.Fprintf(h, "host:%s", nodeName)
		fmt.Fprintf(h, "file:%s", source)
		h.Write(canonical)
		pod.UID = types.UID(hex.EncodeToString(h.Sum(nil)))
	}
	if pod.Name != "" {
		pod.Name = pod.Name + "-" + strings.ToLower(nodeName)
	}
	if pod.Namespace == "" {
		pod.Namespace = metav1.NamespaceDefault
	}
	pod.Spec.NodeName = nodeName
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[annotationConfigHash] = string(pod.UID)
	pod.Annotations[annotationConfigSource] = staticSourceFile
	// Static pods stay through node problems.
	tolerate := v1.Toleration{Operator: v1.TolerationOpExists, Effect: v1.TaintEffectNoExecute}
	found := false
	for _, t := range pod.Spec.Tolerations {
		found = found || t.MatchToleration(&tolerate)
	}
	if !found {
		pod.Spec.Tolerations = append(pod.Spec.Tolerations, tolerate)
	}
	pod.Status = v1.PodStatus{Phase: v1.PodPending}
	defaultStaticPod(pod)
	if errs := validateStaticPod(pod); len(errs) > 0 {
		return nil, fmt.Errorf("%s: invalid pod: %v", source, errs.ToAggregate())
	}
	return pod, nil
}

// defaultStaticPod sets the defaults the API server would set and the
// pod worker relies on (the mirror pod gets the same from the server).
func defaultStaticPod(pod *v1.Pod) {
	s := &pod.Spec
	if s.RestartPolicy == "" {
		s.RestartPolicy = v1.RestartPolicyAlways
	}
	if s.DNSPolicy == "" {
		s.DNSPolicy = v1.DNSClusterFirst
	}
	if s.TerminationGracePeriodSeconds == nil {
		g := int64(v1.DefaultTerminationGracePeriodSeconds)
		s.TerminationGracePeriodSeconds = &g
	}
	if s.SchedulerName == "" {
		s.SchedulerName = v1.DefaultSchedulerName
	}
	if s.SecurityContext == nil {
		s.SecurityContext = &v1.PodSecurityContext{}
	}
	defaults := func(c *v1.Container) {
		if c.TerminationMessagePath == "" {
			c.TerminationMessagePath = v1.TerminationMessagePathDefault
		}
		if c.TerminationMessagePolicy == "" {
			c.TerminationMessagePolicy = v1.TerminationMessageReadFile
		}
		if c.ImagePullPolicy == "" {
			c.ImagePullPolicy = v1.PullIfNotPresent
			if tagOf(c.Image) == "latest" {
				c.ImagePullPolicy = v1.PullAlways
			}
		}
		for i := range c.Ports {
			if c.Ports[i].Protocol == "" {
				c.Ports[i].Protocol = v1.ProtocolTCP
			}
		}
	}
	for i := range s.InitContainers {
		defaults(&s.InitContainers[i])
	}
	for i := range s.Containers {
		defaults(&s.Containers[i])
	}
}

// validateStaticPod checks what would make the pod unrunnable or its
// mirror unstorable, with the API server's field paths and messages.
func validateStaticPod(pod *v1.Pod) field.ErrorList {
	var errs field.ErrorList
	meta := field.NewPath("metadata")
	if pod.Name == "" {
		errs = append(errs, field.Required(meta.Child("name"), "name or generateName is required"))
	} else {
		for _, msg := range validation.IsDNS1123Subdomain(pod.Name) {
			errs = append(errs, field.Invalid(meta.Child("name"), pod.Name, msg))
		}
	}
	for _, msg := range validation.IsDNS1123Label(pod.Namespace) {
		errs = append(errs, field.Invalid(meta.Child("namespace"), pod.Namespace, msg))
	}
	spec := field.NewPath("spec")
	if len(pod.Spec.Containers) == 0 {
		errs = append(errs, field.Required(spec.Child("containers"), ""))
	}
	names := map[string]bool{}
	check := func(p *field.Path, c *v1.Container) {
		if c.Name == "" {
			errs = append(errs, field.Required(p.Child("name"), ""))
		} else {
			for _, msg := range validation.IsDNS1123Label(c.Name) {
				errs = append(errs, field.Invalid(p.Child("name"), c.Name, msg))
			}
			if names[c.Name] {
				errs = append(errs, field.Duplicate(p.Child("name"), c.Name))
			}
			names[c.Name] = true
		}
		if strings.TrimSpace(c.Image) == "" {
			errs = append(errs, field.Required(p.Child("image"), ""))
		}
	}
	for i := range pod.Spec.InitContainers {
		check(spec.Child("initContainers").Index(i), &pod.Spec.InitContainers[i])
	}
	for i := range pod.Spec.Containers {
		check(spec.Child("containers").Index(i), &pod.Spec.Containers[i])
	}
	return errs
}

// staticPods runs the node's static pods through the pod workers and
// keeps their mirror pods. Files are read by run; mirror pods are learnt
// from the agent's pod watch (observeMirror, replaceMirrors).
type staticPods struct {
	a        *Agent
	workers  podUpdater
	src      manifestDir
	interval time.Duration
	// mirrorWake asks run to reconcile mirror pods now.
	mirrorWake chan struct{}

	mu          sync.Mutex
	pods        map[types.UID]*v1.Pod // current static pods
	terminating map[types.UID]*v1.Pod // removed or replaced, still stopping
	failed      map[string]string     // path -> last error, so it is told once
	seen        map[types.UID]string  // config.seen of each pod, kept across reads
	held        map[types.UID]bool    // pod-network pods waiting for the network
	netReady    bool
	nodeUID     types.UID
	mirrors     map[string]*v1.Pod // namespace/name -> mirror pod in the API
	mirrorsOK   bool               // mirrors holds a full list
}

// podUpdater hands a pod's latest desired state to its worker; podWorkers
// is one.
type podUpdater interface {
	update(ctx context.Context, pod *v1.Pod)
	resendStatus(uid types.UID)
}

func newStaticPods(a *Agent, workers podUpdater) *staticPods {
	return &staticPods{
		a:           a,
		workers:     workers,
		src:         manifestDir{dir: filepath.Join(a.dir, "pod-manifests"), nodeName: a.nodeName},
		interval:    manifestPoll,
		mirrorWake:  make(chan struct{}, 1),
		pods:        map[types.UID]*v1.Pod{},
		terminating: map[types.UID]*v1.Pod{},
		failed:      map[string]string{},
		seen:        map[types.UID]string{},
		held:        map[types.UID]bool{},
		mirrors:     map[string]*v1.Pod{},
	}
}

// isStatic reports whether uid is a static pod this node runs or stops,
// so that the API watch does not tear it down as an orphan.
func (s *staticPods) isStatic(uid types.UID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pods[uid] != nil || s.terminating[uid] != nil
}

// run reads the manifests and reconciles mirror pods until ctx ends. The
// first read happens before run is called (syncFiles from Agent.run), so
// that the first pod list already knows the static pods.
func (s *staticPods) run(ctx context.Context) {
	// The directory exists from the start, as k3s makes it, so that it
	// can be watched and a manifest dropped in starts at once.
	if err := os.MkdirAll(s.src.dir, 0o700); err != nil {
		s.a.log.Warn("cannot make the static pod manifest directory", "dir", s.src.dir, "err", err)
	}
	t := time.NewTicker(s.interval)
	defer t.Stop()
	var changed <-chan struct{} // nil while the directory is not watched
	warned := false
	for {
		if changed == nil {
			ch, err := dirwatch.Watch(ctx, s.src.dir)
			switch {
			case err == nil:
				// Read once more: a file written between the last
				// read and the watch's start sends no event.
				changed = ch
				s.syncFiles(ctx)
			case !warned && !errors.Is(err, os.ErrNotExist):
				s.a.log.Warn("cannot watch the static pod manifests; reading them every "+s.interval.String(), "err", err)
				warned = true
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.syncFiles(ctx)
		case _, ok := <-changed:
			if !ok {
				changed = nil // the directory went: read it, watch it again
			}
			s.syncFiles(ctx)
		case <-s.mirrorWake:
		}
		s.syncMirrors(ctx)
	}
}

// networkReady lets pods on the pod network start; hostNetwork static
// pods start at once, even before the node is registered.
func (s *staticPods) networkReady(ctx context.Context) {
	s.mu.Lock()
	s.netReady = true
	var start []*v1.Pod
	for uid := range s.held {
		start = append(start, s.pods[uid])
	}
	s.held = map[types.UID]bool{}
	s.mu.Unlock()
	for _, p := range start {
		s.workers.update(ctx, p)
	}
}

// setNode records the registered Node, the mirror pods' owner, and
// reconciles mirrors.
func (s *staticPods) setNode(uid types.UID) {
	s.mu.Lock()
	s.nodeUID = uid
	s.mu.Unlock()
	s.wakeMirrors()
}

func (s *staticPods) wakeMirrors() {
	select {
	case s.mirrorWake <- struct{}{}:
	default:
	}
}

// syncFiles reads the directory and hands new pods to the pod workers
// and removed or changed ones (their hash changed) to termination.
func (s *staticPods) syncFiles(ctx context.Context) {
	results, err := s.src.read()
	if err != nil {
		s.a.log.Warn("cannot read static pod manifests", "dir", s.src.dir, "err", err)
		return
	}
	now := s.a.now().UTC().Format(time.RFC3339Nano)
	want := map[types.UID]*v1.Pod{}
	s.mu.Lock()
	failed := map[string]string{}
	names := map[string]string{} // namespace/name -> path
	for _, r := range results {
		if r.err == nil {
			key := r.pod.Namespace + "/" + r.pod.Name
			if other, dup := names[key]; dup {
				r.err = fmt.Errorf("%s: pod %s is also defined in %s; ignoring this file", r.path, key, other)
			} else {
				names[key] = r.path
			}
		}
		if r.err != nil {
			failed[r.path] = r.err.Error()
			if s.failed[r.path] != r.err.Error() {
				s.a.log.Warn("ignoring static pod manifest", "file", r.path, "err", r.err)
				s.a.events.nodeEvent(v1.EventTypeWarning, "FailedStaticPod", "Could not process manifest file %s: %v", r.path, r.err)
			}
			continue
		}
		p := r.pod
		if seen, ok := s.seen[p.UID]; ok {
			p.Annotations[annotationConfigSeen] = seen
		} else {
			p.Annotations[annotationConfigSeen] = now
		}
		want[p.UID] = p
	}
	s.failed = failed
	var start, stop []*v1.Pod
	for uid, p := range want {
		if s.pods[uid] == nil {
			s.a.log.Info("static pod added", "pod", p.Namespace+"/"+p.Name, "uid", string(uid))
			if p.Spec.HostNetwork || s.netReady {
				start = append(start, p)
			} else {
				s.held[uid] = true
			}
		}
	}
	for uid, p := range s.pods {
		if want[uid] != nil {
			continue
		}
		s.a.log.Info("static pod removed or changed; stopping it", "pod", p.Namespace+"/"+p.Name, "uid", string(uid))
		delete(s.held, uid)
		s.terminating[uid] = p
		stop = append(stop, terminatingCopy(p, s.a.now()))
	}
	s.pods = want
	s.seen = map[types.UID]string{}
	for uid, p := range want {
		s.seen[uid] = p.Annotations[annotationConfigSeen]
	}
	s.mu.Unlock()
	for _, p := range stop {
		s.workers.update(ctx, p)
	}
	for _, p := range start {
		s.workers.update(ctx, p)
	}
}

// terminatingCopy is pod as the pod worker sees a pod being deleted: it
// runs preStop hooks and gives the pod its grace period.
func terminatingCopy(pod *v1.Pod, now time.Time) *v1.Pod {
	p := pod.DeepCopy()
	t := metav1.NewTime(now)
	p.DeletionTimestamp = &t
	p.DeletionGracePeriodSeconds = p.Spec.TerminationGracePeriodSeconds
	return p
}

// terminated is told by the pod worker that a removed static pod has
// stopped; its mirror goes too, unless a newer version already replaced it.
func (s *staticPods) terminated(ctx context.Context, pod *v1.Pod) {
	s.mu.Lock()
	delete(s.terminating, pod.UID)
	m := s.mirrors[pod.Namespace+"/"+pod.Name]
	s.mu.Unlock()
	if m != nil && m.Annotations[annotationConfigMirror] == string(pod.UID) {
		s.deleteMirror(ctx, m)
	}
	s.wakeMirrors()
}

// mirrorOf reports whether the API has a mirror of this version of pod.
func (s *staticPods) mirrorOf(pod *v1.Pod) bool {
	_, ok := s.mirrorUID(pod)
	return ok
}

// mirrorUID returns the UID of the mirror pod showing this version of pod,
// if the API has one; the pod worker writes status only there, naming the
// UID so that the server refuses the write if the mirror was replaced
// since the cache showed it (as the kubelet's status manager does).
func (s *staticPods) mirrorUID(pod *v1.Pod) (types.UID, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.mirrors[pod.Namespace+"/"+pod.Name]
	if m == nil || m.DeletionTimestamp != nil || m.Annotations[annotationConfigMirror] != string(pod.UID) {
		return "", false
	}
	return m.UID, true
}

// observeMirror records a mirror pod seen on the pod watch.
func (s *staticPods) observeMirror(pod *v1.Pod, deleted bool) {
	key := pod.Namespace + "/" + pod.Name
	s.mu.Lock()
	if deleted {
		if m := s.mirrors[key]; m != nil && m.UID == pod.UID {
			delete(s.mirrors, key)
		}
	} else {
		s.mirrors[key] = pod.DeepCopy()
	}
	s.mu.Unlock()
	if deleted || pod.DeletionTimestamp != nil {
		s.wakeMirrors()
	}
}

// replaceMirrors records the mirror pods of a full pod list.
func (s *staticPods) replaceMirrors(list []*v1.Pod) {
	s.mu.Lock()
	s.mirrors = map[string]*v1.Pod{}
	for _, p := range list {
		s.mirrors[p.Namespace+"/"+p.Name] = p.DeepCopy()
	}
	s.mirrorsOK = true
	s.mu.Unlock()
	s.wakeMirrors()
}

// syncMirrors makes the API show one current mirror per static pod: it
// creates missing ones, replaces outdated or deleted ones and removes
// those whose static pod is gone, as the kubelet's mirror pod handling.
func (s *staticPods) syncMirrors(ctx context.Context) {
	s.mu.Lock()
	if s.nodeUID == "" || !s.mirrorsOK {
		s.mu.Unlock()
		return
	}
	var create []*v1.Pod
	var remove []*v1.Pod
	wanted := map[string]bool{}
	for _, p := range s.pods {
		key := p.Namespace + "/" + p.Name
		wanted[key] = true
		m := s.mirrors[key]
		switch {
		case m == nil:
			create = append(create, s.mirrorPod(p))
		case m.DeletionTimestamp != nil || m.Annotations[annotationConfigMirror] != string(p.UID):
			remove = append(remove, m)
			create = append(create, s.mirrorPod(p))
		}
	}
	stopping := map[string]bool{}
	for _, p := range s.terminating {
		stopping[p.Namespace+"/"+p.Name+"/"+string(p.UID)] = true
	}
	for key, m := range s.mirrors {
		if !wanted[key] && !stopping[key+"/"+m.Annotations[annotationConfigMirror]] {
			remove = append(remove, m)
		}
	}
	s.mu.Unlock()
	sort.Slice(create, func(i, j int) bool { return create[i].Name < create[j].Name })
	for _, m := range remove {
		s.deleteMirror(ctx, m)
	}
	for _, m := range create {
		s.createMirror(ctx, m)
	}
}

// mirrorPod is the API object showing static pod p. Callers hold s.mu.
func (s *staticPods) mirrorPod(p *v1.Pod) *v1.Pod {
	m := &v1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        p.Name,
			Namespace:   p.Namespace,
			Labels:      p.Labels,
			Annotations: map[string]string{},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Node", Name: s.a.nodeName, UID: s.nodeUID, Controller: ptrTo(true),
			}},
		},
		Spec: *p.Spec.DeepCopy(),
	}
	for k, v := range p.Annotations {
		m.Annotations[k] = v
	}
	m.Annotations[annotationConfigMirror] = string(p.UID)
	return m
}

func ptrTo[T any](v T) *T { return &v }

func (s *staticPods) createMirror(ctx context.Context, m *v1.Pod) {
	var got v1.Pod
	err := s.a.api.Create(ctx, apiclient.Pods, m.Namespace, m, &got)
	switch {
	case err == nil:
		s.a.log.Info("created mirror pod", "pod", m.Namespace+"/"+m.Name)
		s.observeMirror(&got, false)
		// The pod's status so far was kept back for want of a mirror.
		s.workers.resendStatus(types.UID(m.Annotations[annotationConfigMirror]))
	case apierrors.IsAlreadyExists(err):
		// The watch has not shown it yet, or a deleted one is going away:
		// the next event or tick looks again.
	case ctx.Err() == nil:
		s.a.log.Warn("cannot create mirror pod", "pod", m.Namespace+"/"+m.Name, "err", err)
	}
}

// deleteMirror deletes m at once; the UID precondition keeps a newer
// mirror of the same name.
func (s *staticPods) deleteMirror(ctx context.Context, m *v1.Pod) {
	uid := m.UID
	err := s.a.api.Delete(ctx, apiclient.Pods, m.Namespace, m.Name, &metav1.DeleteOptions{
		GracePeriodSeconds: new(int64),
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	switch {
	case err == nil, apierrors.IsNotFound(err):
		s.a.log.Info("deleted mirror pod", "pod", m.Namespace+"/"+m.Name, "uid", string(uid))
		s.observeMirror(m, true)
	case apierrors.IsConflict(err):
	case ctx.Err() == nil:
		s.a.log.Warn("cannot delete mirror pod", "pod", m.Namespace+"/"+m.Name, "err", err)
	}
}
