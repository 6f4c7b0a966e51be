package apiserver

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/orch-dev/orch/internal/nodeapi"
	"github.com/orch-dev/orch/server/registry"
)

// Requests the API server forwards to a pod's node (pods/log today), as
// Kubernetes' apiserver forwards them to the kubelet. How a node is reached
// is Config.NodeTransport's business: a Unix socket for the agent beside
// the server, the tunnel for the others.

// defaultContainerAnnotation names the container kubectl picks when none
// is given.
const defaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// maxNodeErrorBytes bounds how much of a node's error answer is read.
const maxNodeErrorBytes = 64 << 10

// podLogResource names pods/log in errors.
var podLogResource = schema.GroupResource{Resource: "pods/log"}

// serveLog answers GET pods/NAME/log by streaming the container's log from
// the pod's node.
func (s *Server) serveLog(w http.ResponseWriter, r *http.Request, res *registry.Resource, ri requestInfo) {
	if ri.Verb != "get" {
		s.writeError(w, r, apierrors.NewMethodNotSupported(podLogResource, ri.Verb))
		return
	}
	q := r.URL.Query()
	opts, err := nodeapi.ParseLogOptions(q)
	if err != nil {
		s.writeError(w, r, apierrors.NewBadRequest(err.Error()))
		return
	}
	pod, ok := s.storedPod(w, r, res, ri)
	if !ok {
		return
	}
	container, err := logContainer(pod, q.Get("container"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if pod.Spec.NodeName == "" {
		s.writeError(w, r, apierrors.NewBadRequest(fmt.Sprintf("pod %s does not have a host assigned", pod.Name)))
		return
	}
	rt, err := s.nodeTransport(pod.Spec.NodeName)
	if err != nil {
		s.writeError(w, r, apierrors.NewServiceUnavailable(err.Error()))
		return
	}
	// The host only names the node; the transport knows where it is.
	u := "http://" + url.PathEscape(pod.Spec.NodeName) +
		nodeapi.ContainerLogsPath(pod.Namespace, pod.Name, container) + "?" + opts.Query().Encode()
	// The request lives as long as the client's: a followed log has no
	// timeout, and a client that goes away stops the node's stream.
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u, nil)
	if err != nil {
		s.writeError(w, r, apierrors.NewInternalError(err))
		return
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		s.writeError(w, r, apierrors.NewServiceUnavailable(fmt.Sprintf("node %s: get container logs: %v", pod.Spec.NodeName, err)))
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.writeError(w, r, nodeError(resp, pod.Name))
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	streamFlushing(w, resp.Body)
}

// storedPod reads the pod a node request is about, answering the client
// itself when it cannot.
func (s *Server) storedPod(w http.ResponseWriter, r *http.Request, res *registry.Resource, ri requestInfo) (*corev1.Pod, bool) {
	kv, err := s.store.Get(r.Context(), objectKey(res, ri.Namespace, ri.Name))
	if err != nil {
		s.writeError(w, r, storeError(err, res.GroupVersionResource().GroupResource(), ri.Name))
		return nil, false
	}
	obj, err := s.decodeStored(res, kv)
	if err != nil {
		s.writeError(w, r, apierrors.NewInternalError(err))
		return nil, false
	}
	pod, err := asPod(obj)
	if err != nil {
		s.writeError(w, r, apierrors.NewInternalError(err))
		return nil, false
	}
	return pod, true
}

// nodeTransport is Config.NodeTransport with its errors worded for users.
func (s *Server) nodeTransport(node string) (http.RoundTripper, error) {
	if s.cfg.NodeTransport == nil {
		return nil, fmt.Errorf("node %s is not connected: this server reaches no nodes", node)
	}
	rt, err := s.cfg.NodeTransport(node)
	if err != nil {
		return nil, err
	}
	if rt == nil {
		return nil, fmt.Errorf("node %s is not connected", node)
	}
	return rt, nil
}

// asPod returns obj as a core/v1 Pod, converting if storage uses another
// type for pods.
func asPod(obj runtime.Object) (*corev1.Pod, error) {
	if p, ok := obj.(*corev1.Pod); ok {
		return p, nil
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("read stored pod: %w", err)
	}
	p := &corev1.Pod{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u, p); err != nil {
		return nil, fmt.Errorf("read stored pod: %w", err)
	}
	return p, nil
}

// logContainer picks the container whose log is asked for, with the rules
// and messages of Kubernetes' pod log REST (pkg/registry/core/pod), plus
// kubectl's default-container annotation.
func logContainer(pod *corev1.Pod, name string) (string, error) {
	var names, initNames []string
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	for _, c := range pod.Spec.InitContainers {
		initNames = append(initNames, c.Name)
	}
	if name != "" {
		ok := slices.Contains(names, name) || slices.Contains(initNames, name)
		for _, c := range pod.Spec.EphemeralContainers {
			ok = ok || c.Name == name
		}
		if !ok {
			return "", apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", name, pod.Name))
		}
		return name, nil
	}
	if def := pod.Annotations[defaultContainerAnnotation]; def != "" && slices.Contains(names, def) {
		return def, nil
	}
	switch len(names) {
	case 1:
		return names[0], nil
	case 0:
		return "", apierrors.NewBadRequest(fmt.Sprintf("a container name must be specified for pod %s", pod.Name))
	}
	msg := fmt.Sprintf("a container name must be specified for pod %s, choose one of: [%s]", pod.Name, strings.Join(names, " "))
	if len(initNames) > 0 {
		msg += fmt.Sprintf(" or one of the init containers: [%s]", strings.Join(initNames, " "))
	}
	return "", apierrors.NewBadRequest(msg)
}

// nodeError turns a node's error answer, plain text as the kubelet's, into
// the API error Kubernetes' apiserver would return for it.
func nodeError(resp *http.Response, pod string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxNodeErrorBytes))
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		msg = fmt.Sprintf("the node answered %s", resp.Status)
	}
	switch resp.StatusCode {
	case http.StatusBadRequest:
		return apierrors.NewBadRequest(msg)
	case http.StatusNotFound:
		se := apierrors.NewNotFound(podLogResource, pod)
		se.ErrStatus.Message = msg
		return se
	case http.StatusServiceUnavailable:
		return apierrors.NewServiceUnavailable(msg)
	}
	return apierrors.NewInternalError(errors.New(msg))
}

// streamFlushing copies the node's answer to the client, flushing as data
// arrives so that followed logs show at once.
func streamFlushing(w http.ResponseWriter, body io.Reader) {
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
		if err != nil {
			return // EOF, or the node went away: the status is already sent
		}
	}
}
