// Package streaming serves the kubelet's streaming sessions, the part of
// the node API that `kubectl exec`, `attach`, `cp` and `port-forward`
// reach through the API server: it speaks their wire protocols (WebSocket
// channel.k8s.io v1–v5, SPDY/3.1 with remote command v1–v4 and
// portforward.k8s.io, and port forwarding tunnelled as SPDY over a
// WebSocket) and hands plain streams to the caller's functions.
//
// It knows nothing of containers or pods: what a session runs, or where a
// forwarded port is dialled, is the caller's business (see RunFunc and
// DialFunc). It must not import the runtime beyond its terminal size type.
package streaming

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/moby/spdystream"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	rcconst "k8s.io/apimachinery/pkg/util/remotecommand"

	"github.com/orch-dev/orch/runtime/container"
)

// Timeouts, the kubelet's defaults: a client has this long to open its
// streams after the upgrade, and an idle session is closed after IdleTimeout
// (--streaming-connection-idle-timeout).
const (
	StreamCreationTimeout = rcconst.DefaultStreamCreationTimeout
	IdleTimeout           = 4 * time.Hour
)

// WebSocket subprotocols of remote command sessions, besides the SPDY ones
// in rcconst.
const (
	wsV4Binary  = "v4.channel.k8s.io"
	wsV4Base64  = "v4.base64.channel.k8s.io"
	wsV5Binary  = rcconst.StreamProtocolV5Name
	wsPreV4     = "channel.k8s.io"
	wsPreV4Base = "base64.channel.k8s.io"
)

// spdyRemoteCommandProtocols are the SPDY subprotocols served, preferred
// first. v5 over SPDY is v4: its CLOSE signal only exists on WebSockets.
var spdyRemoteCommandProtocols = []string{
	rcconst.StreamProtocolV5Name, rcconst.StreamProtocolV4Name,
	rcconst.StreamProtocolV3Name, rcconst.StreamProtocolV2Name,
}

// Options are the streams a session asks for (PodExecOptions and
// PodAttachOptions less the command and container).
type Options struct {
	Stdin, Stdout, Stderr, TTY bool
}

// ParseOptions reads the kubelet's query parameters input, output, error
// and tty, which the API server sets to "1" for PodExecOptions' stdin,
// stdout, stderr and tty. With a TTY stderr is dropped: a terminal has one
// output.
func ParseOptions(q url.Values) (Options, error) {
	flag := func(name string) bool {
		v, err := strconv.ParseBool(q.Get(name))
		return err == nil && v
	}
	o := Options{
		Stdin:  flag(corev1.ExecStdinParam),
		Stdout: flag(corev1.ExecStdoutParam),
		Stderr: flag(corev1.ExecStderrParam),
		TTY:    flag(corev1.ExecTTYParam),
	}
	if o.TTY {
		o.Stderr = false
	}
	if !o.Stdin && !o.Stdout && !o.Stderr {
		return o, errors.New("you must specify at least 1 of stdin, stdout, stderr")
	}
	return o, nil
}

// Streams connect a session's process to the client. Unrequested streams
// are nil.
type Streams struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	TTY            bool
	// Resize carries the client's terminal sizes (TTY only); it is closed
	// when the client stops sending them.
	Resize <-chan container.TerminalSize
}

// ExitError is a process that ran and exited with a non-zero code.
type ExitError struct {
	Command []string
	Code    int
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("error executing command %v, exit code %d", e.Command, e.Code)
}

// RunFunc runs a session's process on s until it ends or ctx is done. It
// returns nil for a zero exit, an *ExitError for another exit code, and
// any other error when the process could not run.
type RunFunc func(ctx context.Context, s Streams) error

// session is one remote command session's streams once established.
type session struct {
	stdin          io.ReadCloser
	stdout, stderr io.WriteCloser
	resize         io.ReadCloser
	// writeStatus reports the outcome on the error stream in the
	// negotiated protocol's form.
	writeStatus func(*apierrors.StatusError) error
	close       func() error
}

// ServeRemoteCommand upgrades r to a WebSocket or SPDY session with the
// streams opts asks for, runs run on them, and reports its outcome on the
// error stream as the kubelet does. Upgrade failures are answered to the
// client, nothing is returned.
func ServeRemoteCommand(w http.ResponseWriter, r *http.Request, opts Options, run RunFunc) {
	var (
		s  *session
		ok bool
	)
	if wsstream.IsWebSocketRequest(r) {
		s, ok = webSocketSession(w, r, opts)
	} else {
		s, ok = spdySession(w, r, opts)
	}
	if !ok {
		return
	}

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	// Unrequested streams are nil interfaces and stay nil here.
	streams := Streams{Stdin: s.stdin, Stdout: s.stdout, Stderr: s.stderr, TTY: opts.TTY}
	var resizes sync.WaitGroup
	if opts.TTY && s.resize != nil {
		ch := make(chan container.TerminalSize)
		streams.Resize = ch
		resizes.Add(1)
		go func() {
			defer resizes.Done()
			decodeResizes(ctx, s.resize, ch)
		}()
	}
	err := run(ctx, streams)
	cancel()
	// End the outputs before the status: clients read them to EOF.
	for _, c := range []io.Closer{s.stdout, s.stderr} {
		if c != nil {
			c.Close()
		}
	}
	_ = s.writeStatus(exitStatus(err))
	s.close()
	resizes.Wait()
}

// exitStatus is the Status the kubelet reports for a session's outcome;
// kubectl turns NonZeroExitCode into its own exit code.
func exitStatus(err error) *apierrors.StatusError {
	var exit *ExitError
	switch {
	case err == nil:
		return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusSuccess}}
	case errors.As(err, &exit):
		return &apierrors.StatusError{ErrStatus: metav1.Status{
			Status: metav1.StatusFailure,
			Reason: rcconst.NonZeroExitCodeReason,
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{
				Type: rcconst.ExitCodeCauseType, Message: strconv.Itoa(exit.Code),
			}}},
			Message: "command terminated with non-zero exit code: " + exit.Error(),
		}}
	}
	return apierrors.NewInternalError(fmt.Errorf("error executing command in container: %w", err))
}

// decodeResizes sends each JSON terminal size read from r on ch until r
// ends or ctx is done, then closes ch.
func decodeResizes(ctx context.Context, r io.Reader, ch chan<- container.TerminalSize) {
	defer close(ch)
	dec := json.NewDecoder(r)
	for {
		var size container.TerminalSize
		if err := dec.Decode(&size); err != nil {
			return
		}
		select {
		case ch <- size:
		case <-ctx.Done():
			return
		}
	}
}

// webSocketSession accepts a WebSocket session: channel 0 stdin, 1 stdout,
// 2 stderr, 3 error, 4 resize, with v5's CLOSE of a channel (255).
func webSocketSession(w http.ResponseWriter, r *http.Request, opts Options) (*session, bool) {
	channels := make([]wsstream.ChannelType, 5)
	channels[rcconst.StreamStdIn] = readIf(opts.Stdin)
	channels[rcconst.StreamStdOut] = writeIf(opts.Stdout)
	channels[rcconst.StreamStdErr] = writeIf(opts.Stderr)
	channels[rcconst.StreamErr] = wsstream.WriteChannel
	channels[rcconst.StreamResize] = wsstream.ReadChannel
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		"":          {Binary: true, Channels: channels},
		wsPreV4:     {Binary: true, Channels: channels},
		wsPreV4Base: {Binary: false, Channels: channels},
		wsV4Binary:  {Binary: true, Channels: channels},
		wsV4Base64:  {Binary: false, Channels: channels},
		wsV5Binary:  {Binary: true, Channels: channels},
	})
	conn.SetIdleTimeout(IdleTimeout)
	protocol, chans, err := conn.Open(w, r)
	if err != nil {
		// Open has answered the client.
		return nil, false
	}
	// An empty frame on the first output channel tells the client the
	// session is up, as the kubelet does for the older protocols. v5
	// clients (client-go's WebSocket executor, kubectl 1.29+) do not wait
	// for it, and it can beat their stream set-up, which kubectl then
	// reports as "Unknown stream id 1, discarding message".
	switch {
	case protocol == wsV5Binary:
	case opts.Stdout:
		_, _ = chans[rcconst.StreamStdOut].Write(nil)
	case opts.Stderr:
		_, _ = chans[rcconst.StreamStdErr].Write(nil)
	default:
		_, _ = chans[rcconst.StreamErr].Write(nil)
	}
	s := &session{close: conn.Close, resize: chans[rcconst.StreamResize]}
	if opts.Stdin {
		s.stdin = chans[rcconst.StreamStdIn]
	}
	if opts.Stdout {
		s.stdout = chans[rcconst.StreamStdOut]
	}
	if opts.Stderr {
		s.stderr = chans[rcconst.StreamStdErr]
	}
	switch protocol {
	case wsV4Binary, wsV4Base64, wsV5Binary:
		s.writeStatus = jsonStatusWriter(chans[rcconst.StreamErr])
	default:
		s.writeStatus = textStatusWriter(chans[rcconst.StreamErr])
	}
	return s, true
}

func readIf(b bool) wsstream.ChannelType {
	if b {
		return wsstream.ReadChannel
	}
	return wsstream.IgnoreChannel
}

func writeIf(b bool) wsstream.ChannelType {
	if b {
		return wsstream.WriteChannel
	}
	return wsstream.IgnoreChannel
}

// spdySession negotiates a remote command protocol, upgrades to SPDY/3.1
// and waits for the client's streams, told apart by their streamType
// header.
func spdySession(w http.ResponseWriter, r *http.Request, opts Options) (*session, bool) {
	protocol, err := httpstream.Handshake(r, w, spdyRemoteCommandProtocols)
	if err != nil {
		return nil, false // Handshake has answered the client
	}
	if protocol == "" {
		// Clients old enough to skip negotiation speak v1, whose bugs we
		// do not reproduce.
		http.Error(w, fmt.Sprintf("unsupported remote command protocol: want one of %v", spdyRemoteCommandProtocols), http.StatusForbidden)
		return nil, false
	}
	streams := make(chan *spdystream.Stream)
	done := make(chan struct{})
	defer close(done)
	conn := upgradeSPDY(w, r, func(st *spdystream.Stream) {
		select {
		case streams <- st:
		case <-done:
			_ = st.Reset() // opened after the session was set up
		}
	})
	if conn == nil {
		return nil, false // the upgrader has answered the client
	}
	conn.SetIdleTimeout(IdleTimeout)
	want := 1 // the error stream
	for _, b := range []bool{opts.Stdin, opts.Stdout, opts.Stderr} {
		if b {
			want++
		}
	}
	resizable := protocol != rcconst.StreamProtocolV2Name
	if opts.TTY && resizable {
		want++
	}
	var accepted []*spdystream.Stream
	s := &session{close: func() error {
		// As the kubelet: what is written is on the wire before the
		// resets; nothing waits for a client that keeps its streams open.
		for _, st := range accepted {
			_ = st.Reset()
		}
		return conn.Close()
	}}
	timeout := time.NewTimer(StreamCreationTimeout)
	defer timeout.Stop()
	for received := 0; received < want; {
		select {
		case st := <-streams:
			accepted = append(accepted, st)
			if !s.take(st, protocol) {
				_ = st.Reset() // not one of ours: keep waiting for those
				continue
			}
			received++
		case <-timeout.C:
			s.close()
			return nil, false
		case <-conn.CloseChan():
			s.close()
			return nil, false
		}
	}
	if s.writeStatus == nil {
		s.close()
		return nil, false
	}
	return s, true
}

// take files a client stream by its streamType header; false if the type
// is unknown.
func (s *session) take(st *spdystream.Stream, protocol string) bool {
	switch st.Headers().Get(corev1.StreamType) {
	case corev1.StreamTypeError:
		if protocol == rcconst.StreamProtocolV4Name || protocol == rcconst.StreamProtocolV5Name {
			s.writeStatus = jsonStatusWriter(st)
		} else {
			s.writeStatus = textStatusWriter(st)
		}
	case corev1.StreamTypeStdin:
		s.stdin = st
	case corev1.StreamTypeStdout:
		s.stdout = st
	case corev1.StreamTypeStderr:
		s.stderr = st
	case corev1.StreamTypeResize:
		s.resize = st
	default:
		return false
	}
	return true
}

// jsonStatusWriter writes the Status as JSON (protocol v4 and later).
func jsonStatusWriter(w io.Writer) func(*apierrors.StatusError) error {
	return func(se *apierrors.StatusError) error {
		b, err := json.Marshal(se.Status())
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
}

// textStatusWriter writes failures as text, success as nothing (before v4).
func textStatusWriter(w io.Writer) func(*apierrors.StatusError) error {
	return func(se *apierrors.StatusError) error {
		if se.Status().Status == metav1.StatusSuccess {
			return nil
		}
		_, err := w.Write([]byte(se.Error()))
		return err
	}
}
