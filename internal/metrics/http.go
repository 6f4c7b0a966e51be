package metrics

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Names of the request metrics, as the Kubernetes API server calls them, so
// that existing dashboards and alerts work.
const (
	RequestsTotalName       = "apiserver_request_total"
	RequestDurationName     = "apiserver_request_duration_seconds"
	LongRunningRequestsName = "apiserver_longrunning_requests"
)

// RequestInfo is what the request metrics know about a request, derived
// from its method, path and query alone.
type RequestInfo struct {
	// Verb is the Kubernetes verb in upper case (GET, LIST, WATCH, CREATE,
	// UPDATE, PATCH, APPLY, DELETE, DELETECOLLECTION, CONNECT), or the
	// HTTP method for paths that are not resources (/version, /openapi/v3).
	Verb        string
	Group       string
	Version     string
	Resource    string
	Subresource string
	// LongRunning requests (watches, exec, attach, port-forward, proxy,
	// followed logs) are counted when they start and tracked while they
	// run, but their durations are not latencies.
	LongRunning bool
}

// connectSubresources are streamed sessions rather than requests.
var connectSubresources = map[string]bool{"exec": true, "attach": true, "portforward": true, "proxy": true}

// ParseRequestInfo derives the metric labels of a request the way the
// Kubernetes API server's RequestInfo does: /api/v1/... is the core group,
// /apis/GROUP/VERSION/... a named group; then an optional
// namespaces/NAMESPACE/, the resource, a name and a subresource.
func ParseRequestInfo(r *http.Request) RequestInfo {
	info := RequestInfo{Verb: r.Method}
	parts := splitPath(r.URL.Path)
	switch {
	case len(parts) >= 2 && parts[0] == "api":
		info.Version, parts = parts[1], parts[2:]
	case len(parts) >= 3 && parts[0] == "apis":
		info.Group, info.Version, parts = parts[1], parts[2], parts[3:]
	default:
		return info // not a resource path; the verb is the method
	}
	watchPath := false
	if len(parts) > 0 && parts[0] == "watch" { // the deprecated /watch/ prefix
		watchPath, parts = true, parts[1:]
	}
	if len(parts) >= 2 && parts[0] == "namespaces" {
		// namespaces/NAME/status and /finalize are subresources of the
		// namespace; namespaces/NAME/RESOURCE... is a namespaced resource.
		if len(parts) >= 3 && parts[2] != "status" && parts[2] != "finalize" {
			parts = parts[2:]
		}
	}
	if len(parts) == 0 {
		return info // discovery of the group version
	}
	info.Resource = parts[0]
	hasName := len(parts) >= 2
	if len(parts) >= 3 {
		info.Subresource = parts[2]
	}
	q := r.URL.Query()
	watch := watchPath || isTrue(q.Get("watch"))
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case watch:
			info.Verb = "WATCH"
		case hasName:
			info.Verb = "GET"
		default:
			info.Verb = "LIST"
		}
	case http.MethodPost:
		info.Verb = "CREATE"
	case http.MethodPut:
		info.Verb = "UPDATE"
	case http.MethodPatch:
		info.Verb = "PATCH"
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/apply-patch") {
			info.Verb = "APPLY"
		}
	case http.MethodDelete:
		info.Verb = "DELETE"
		if !hasName {
			info.Verb = "DELETECOLLECTION"
		}
	}
	if connectSubresources[info.Subresource] {
		info.Verb = "CONNECT"
	}
	info.LongRunning = info.Verb == "WATCH" || info.Verb == "CONNECT" ||
		(info.Subresource == "log" && isTrue(q.Get("follow")))
	return info
}

func splitPath(p string) []string {
	var parts []string
	for _, s := range strings.Split(p, "/") {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return parts
}

func isTrue(s string) bool { return s == "true" || s == "1" }

// RequestMetrics are the API request metrics of one registry.
type RequestMetrics struct {
	total       *CounterVec
	duration    *HistogramVec
	longRunning *GaugeVec
}

// NewRequestMetrics defines the request metrics in reg (once; later calls
// return the same metrics).
func NewRequestMetrics(reg *Registry) *RequestMetrics {
	resource := []string{"verb", "group", "version", "resource", "subresource"}
	return &RequestMetrics{
		total: reg.NewCounterVec(RequestsTotalName,
			"Counter of API requests by verb, group, version, resource, subresource and HTTP response code.",
			slices.Concat(resource, []string{"code"})...),
		duration: reg.NewHistogramVec(RequestDurationName,
			"Response latency distribution in seconds of API requests that are not long-running, by verb, group, version, resource and subresource.",
			nil, resource...),
		longRunning: reg.NewGaugeVec(LongRunningRequestsName,
			"Number of long-running API requests (watches, exec, attach, port-forward, followed logs) in progress.",
			resource...),
	}
}

// InstrumentHandler counts and times the requests next serves, with labels
// from ParseRequestInfo. Watches and other streams do not use the latency
// histogram; they are counted in a gauge while they run.
func InstrumentHandler(reg *Registry, next http.Handler) http.Handler {
	return NewRequestMetrics(reg).Wrap(next)
}

// Wrap instruments next; see InstrumentHandler.
func (m *RequestMetrics) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := ParseRequestInfo(r)
		labels := []string{info.Verb, info.Group, info.Version, info.Resource, info.Subresource}
		if info.LongRunning {
			g := m.longRunning.With(labels...)
			g.Inc()
			defer g.Dec()
		}
		sw := &statusWriter{ResponseWriter: w}
		var ww http.ResponseWriter = sw
		if _, ok := w.(http.Hijacker); ok {
			ww = hijackWriter{sw}
		}
		defer func() {
			// Count a request whose handler panicked as the 500 the
			// server answers, then let the panic go on.
			code := sw.code()
			if p := recover(); p != nil {
				if !sw.wrote {
					code = http.StatusInternalServerError
				}
				m.observe(info, labels, code, start)
				panic(p)
			}
			m.observe(info, labels, code, start)
		}()
		next.ServeHTTP(ww, r)
	})
}

func (m *RequestMetrics) observe(info RequestInfo, labels []string, code int, start time.Time) {
	m.total.With(append(labels, strconv.Itoa(code))...).Inc()
	if !info.LongRunning {
		m.duration.With(labels...).Observe(time.Since(start).Seconds())
	}
}

// statusWriter records the response code. It implements http.Flusher
// (watches flush every event) and Unwrap for http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	status   int
	wrote    bool
	hijacked bool
}

func (w *statusWriter) WriteHeader(code int) {
	// 1xx are interim responses; the final code comes later.
	if !w.wrote && code >= 200 {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int {
	switch {
	case w.wrote:
		return w.status
	case w.hijacked:
		return http.StatusSwitchingProtocols
	}
	return http.StatusOK // net/http's answer when the handler writes nothing
}

// hijackWriter is a statusWriter over a connection that can be hijacked
// (HTTP/1.1: exec and port-forward upgrades). It is a separate type so that
// a writer that cannot hijack (HTTP/2) does not claim it can.
type hijackWriter struct{ *statusWriter }

func (w hijackWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("metrics: the response writer cannot be hijacked")
	}
	c, rw, err := h.Hijack()
	if err == nil {
		w.hijacked = true
	}
	return c, rw, err
}
