package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/orch-dev/orch/internal/nodeapi"
	"github.com/orch-dev/orch/runtime/container"
	"github.com/orch-dev/orch/runtime/logs"
)

// The node API: what the server asks of this node directly, today only
// container logs, served as the kubelet serves them so the server can proxy
// `kubectl logs` unchanged. The agent beside the server serves it on a Unix
// socket (nodeapi.SocketPath); remote agents will serve it over the tunnel.

// timeFormatOut is the kubelet's fixed-width timestamp for --timestamps, so
// columns line up whatever the nanoseconds are.
const timeFormatOut = "2006-01-02T15:04:05.000000000Z07:00"

// logPollInterval is how often a followed log is checked for new lines.
const logPollInterval = 200 * time.Millisecond

// containerLog is where one container of a pod logs.
type containerLog struct {
	// dir holds the instance logs, <restartCount>.log.
	dir string
	// restartCount is the newest instance's.
	restartCount int
	// running reports whether the newest instance still runs; a followed
	// log ends once it does not.
	running func() bool
}

// logRequestError is answered as plain text with its code, as the kubelet
// answers errors.
type logRequestError struct {
	code int
	msg  string
}

func (e *logRequestError) Error() string { return e.msg }

// logLocator finds a container's logs by pod namespace, pod name and
// container name.
type logLocator func(namespace, pod, container string) (containerLog, error)

// logServer serves GET /containerLogs/{namespace}/{pod}/{container}.
type logServer struct {
	locate logLocator
	now    func() time.Time
	poll   time.Duration
}

func newLogServer(locate logLocator) *logServer {
	return &logServer{locate: locate, now: time.Now, poll: logPollInterval}
}

// handler routes the node API.
func (s *logServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(nodeapi.ContainerLogsPattern, s.serveContainerLogs)
	return mux
}

func writeTextError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	fmt.Fprintln(w, msg)
}

func (s *logServer) serveContainerLogs(w http.ResponseWriter, r *http.Request) {
	pod, name := r.PathValue("pod"), r.PathValue("container")
	opts, err := nodeapi.ParseLogOptions(r.URL.Query())
	if err != nil {
		writeTextError(w, http.StatusBadRequest, err.Error())
		return
	}
	cl, err := s.locate(r.PathValue("namespace"), pod, name)
	if err != nil {
		var re *logRequestError
		if errors.As(err, &re) {
			writeTextError(w, re.code, re.msg)
			return
		}
		writeTextError(w, http.StatusInternalServerError, err.Error())
		return
	}
	restart, running := cl.restartCount, cl.running
	notFound := fmt.Sprintf("container %q in pod %q is waiting to start: ContainerCreating", name, pod)
	if opts.Previous {
		restart--
		running = func() bool { return false }
		notFound = fmt.Sprintf("previous terminated container %q in pod %q not found", name, pod)
	}
	if restart < 0 {
		writeTextError(w, http.StatusBadRequest, notFound)
		return
	}
	path := filepath.Join(cl.dir, strconv.Itoa(restart)+".log")
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		writeTextError(w, http.StatusBadRequest, notFound)
		return
	}
	if err != nil {
		writeTextError(w, http.StatusInternalServerError, fmt.Sprintf("open log of container %q in pod %q: %v", name, pod, err))
		return
	}
	defer func() { f.Close() }()
	if opts.TailLines != nil {
		start, err := tailStart(f, *opts.TailLines)
		if err == nil {
			_, err = f.Seek(start, io.SeekStart)
		}
		if err != nil {
			writeTextError(w, http.StatusInternalServerError, fmt.Sprintf("read log of container %q in pod %q: %v", name, pod, err))
			return
		}
	}
	lw := &logWriter{w: w, timestamps: opts.Timestamps, lineStart: true, limit: -1}
	if opts.LimitBytes != nil {
		lw.limit = *opts.LimitBytes
	}
	switch {
	case opts.SinceSeconds != nil:
		lw.since = s.now().Add(-time.Duration(*opts.SinceSeconds) * time.Second)
	case opts.SinceTime != nil:
		lw.since = *opts.SinceTime
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush() // kubectl shows nothing until the headers arrive
	s.copyLog(r.Context(), &f, path, opts.Follow, running, lw, rc)
}

// copyLog writes the log from f's offset on. Following, it waits for new
// lines, reopens the file when the writer rotates it, and stops once the
// container has stopped and every line it wrote is out, or ctx ends.
func (s *logServer) copyLog(ctx context.Context, f **os.File, path string, follow bool,
	running func() bool, lw *logWriter, rc *http.ResponseController) {
	rd := bufio.NewReaderSize(*f, 64<<10)
	var pending []byte
	stopped := false
	for {
		b, err := rd.ReadSlice('\n')
		pending = append(pending, b...)
		if err == nil {
			if !lw.writeLine(pending) {
				return
			}
			pending = pending[:0]
			continue
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue // a line longer than the buffer: keep collecting it
		}
		if !errors.Is(err, io.EOF) {
			return // the status is sent; a broken read just ends the stream
		}
		_ = rc.Flush()
		if !follow || stopped {
			if len(pending) > 0 {
				lw.writeLine(pending) // the writer died mid-line
			}
			return
		}
		if !running() {
			// Read once more: lines may have landed since the EOF.
			stopped = true
			continue
		}
		if next := reopenIfRotated(*f, path); next != nil {
			// The old file is read to its end; go on with the new one.
			(*f).Close()
			*f = next
			rd.Reset(next)
			continue
		}
		t := time.NewTimer(s.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// reopenIfRotated opens path if it no longer names the file f.
func reopenIfRotated(f *os.File, path string) *os.File {
	cur, err := f.Stat()
	if err != nil {
		return nil
	}
	st, err := os.Stat(path)
	if err != nil || os.SameFile(cur, st) {
		return nil
	}
	next, err := os.Open(path)
	if err != nil {
		return nil
	}
	return next
}

// tailStart is the offset of the n-th last line of f, counting lines as
// the kubelet does (a partial fragment is a line).
func tailStart(f *os.File, n int64) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := st.Size()
	if n == 0 {
		return size, nil
	}
	buf := make([]byte, 32<<10)
	var count int64
	for pos := size; pos > 0; {
		chunk := int64(len(buf))
		if pos < chunk {
			chunk = pos
		}
		pos -= chunk
		b := buf[:chunk]
		if _, err := f.ReadAt(b, pos); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != '\n' || pos+int64(i) == size-1 {
				continue // not a line end, or the end of the last line
			}
			if count++; count == n {
				return pos + int64(i) + 1, nil
			}
		}
	}
	return 0, nil
}

// logWriter turns CRI log lines into what `kubectl logs` prints.
type logWriter struct {
	w          io.Writer
	timestamps bool
	since      time.Time
	limit      int64 // bytes left to write; negative: no limit
	lineStart  bool  // the next fragment starts an output line
}

// writeLine writes one CRI line; it returns false when the output must
// end (limit reached or the client is gone). Malformed lines are skipped,
// as the kubelet does.
func (l *logWriter) writeLine(raw []byte) bool {
	line, err := logs.ParseLine(raw)
	if err != nil {
		return true
	}
	if !l.since.IsZero() && line.Time.Before(l.since) {
		return true
	}
	out := make([]byte, 0, len(line.Message)+len(timeFormatOut)+2)
	if l.timestamps && l.lineStart {
		out = append(line.Time.UTC().AppendFormat(out, timeFormatOut), ' ')
	}
	out = append(out, line.Message...)
	if !line.Partial {
		out = append(out, '\n')
	}
	l.lineStart = !line.Partial
	if l.limit >= 0 && int64(len(out)) >= l.limit {
		_, _ = l.w.Write(out[:l.limit])
		l.limit = 0
		return false
	}
	if l.limit > 0 {
		l.limit -= int64(len(out))
	}
	_, err = l.w.Write(out)
	return err == nil
}

// locateContainerLog finds a container's logs from the runtime's
// containers: the newest instance with the pod's and container's labels.
func (a *Agent) locateContainerLog(namespace, pod, name string) (containerLog, error) {
	var newest *container.ContainerStatus
	for _, c := range a.rt.ListContainers() {
		if c.Labels[labelPodNamespace] != namespace || c.Labels[labelPodName] != pod || c.Labels[labelContainerName] != name {
			continue
		}
		if newest == nil || c.CreatedAt.After(newest.CreatedAt) {
			newest = &c
		}
	}
	if newest == nil {
		return containerLog{}, &logRequestError{code: http.StatusBadRequest,
			msg: fmt.Sprintf("container %q in pod %q is waiting to start: ContainerCreating", name, pod)}
	}
	restarts, err := strconv.Atoi(newest.Labels[labelRestartCount])
	if err != nil {
		return containerLog{}, fmt.Errorf("container %s: bad restart count label: %w", newest.ID, err)
	}
	dir := filepath.Dir(newest.LogPath)
	if newest.LogPath == "" {
		dir = filepath.Join(a.logsDir(), namespace+"_"+pod+"_"+newest.Labels[labelPodUID], name)
	}
	id := newest.ID
	return containerLog{dir: dir, restartCount: restarts, running: func() bool {
		st, err := a.rt.Container(id)
		return err == nil && st.State == container.StateRunning
	}}, nil
}

// nodeAPIHandler is the node API, served on the agent's Unix socket and,
// for a joined agent, through its tunnel (join_tunnel.go).
func (a *Agent) nodeAPIHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", newLogServer(a.locateContainerLog).handler())
	// Prometheus text format (internal/metrics), for the server to scrape.
	mux.Handle("GET /metrics", a.metricsHandler)
	a.registerStreaming(mux)       // exec, attach, port-forward: streaming.go
	a.registerResourceMetrics(mux) // GET /metrics/resource: stats.go
	return mux
}

// serveNodeAPI serves the node API on the agent's Unix socket until ctx
// ends. It is not vital to running pods, so a failure is only logged.
func (a *Agent) serveNodeAPI(ctx context.Context) {
	path := nodeapi.SocketPath(a.cfg.DataDir)
	_ = os.Remove(path) // left by an earlier run
	ln, err := net.Listen("unix", path)
	if err != nil {
		a.log.Error("cannot serve container logs", "socket", path, "err", err)
		return
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		a.log.Error("cannot serve container logs", "socket", path, "err", err)
		return
	}
	srv := &http.Server{Handler: a.nodeAPIHandler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		// Followed logs never end by themselves: close, don't drain.
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		a.log.Error("container log server stopped", "err", err)
	}
	<-done
}
