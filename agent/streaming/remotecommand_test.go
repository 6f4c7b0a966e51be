package streaming

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/websocket"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		query   string
		want    Options
		wantErr bool
	}{
		{query: "output=1", want: Options{Stdout: true}},
		{query: "input=1&output=1&error=1", want: Options{Stdin: true, Stdout: true, Stderr: true}},
		{query: "input=true&output=1&error=1&tty=1", want: Options{Stdin: true, Stdout: true, TTY: true}},
		{query: "tty=1", wantErr: true},
		{query: "output=0&error=no", wantErr: true},
		{query: "", wantErr: true},
	} {
		q, _ := url.ParseQuery(tc.query)
		got, err := ParseOptions(q)
		if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
			t.Errorf("ParseOptions(%q) = %+v, %v", tc.query, got, err)
		}
	}
}

func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status string
		reason metav1.StatusReason
		msg    string
		cause  string
	}{
		{name: "success", status: metav1.StatusSuccess},
		{name: "exit code", err: &ExitError{Command: []string{"sh", "-c", "exit 3"}, Code: 3},
			status: metav1.StatusFailure, reason: "NonZeroExitCode", cause: "3",
			msg: "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3"},
		{name: "wrapped exit code", err: fmt.Errorf("run: %w", &ExitError{Code: 1}),
			status: metav1.StatusFailure, reason: "NonZeroExitCode", cause: "1",
			msg: "command terminated with non-zero exit code: error executing command [], exit code 1"},
		{name: "could not run", err: errors.New(`exec: "nope": executable file not found in $PATH`),
			status: metav1.StatusFailure, reason: metav1.StatusReasonInternalError,
			msg: `Internal error occurred: error executing command in container: exec: "nope": executable file not found in $PATH`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := exitStatus(tc.err).Status()
			if st.Status != tc.status || st.Reason != tc.reason || st.Message != tc.msg {
				t.Errorf("status = %+v", st)
			}
			if tc.cause != "" && (st.Details == nil || len(st.Details.Causes) != 1 ||
				st.Details.Causes[0].Type != "ExitCode" || st.Details.Causes[0].Message != tc.cause) {
				t.Errorf("details = %+v", st.Details)
			}
		})
	}
}

// echoSession is a RunFunc standing for a process: it answers the first
// terminal size and the first input line, writes to stderr, and exits
// with the code given in the input ("exit N").
func echoSession(ctx context.Context, s Streams) error {
	if s.Resize != nil {
		size := <-s.Resize
		fmt.Fprintf(s.Stdout, "size %dx%d\n", size.Width, size.Height)
	}
	line, err := bufio.NewReader(s.Stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	fmt.Fprintf(s.Stdout, "out:%s", line)
	if s.Stderr != nil {
		fmt.Fprintln(s.Stderr, "err")
	}
	var code int
	if _, err := fmt.Sscanf(line, "exit %d", &code); err == nil && code != 0 {
		return &ExitError{Command: []string{"echo"}, Code: code}
	}
	return nil
}

func newRemoteCommandServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		opts, err := ParseOptions(r.URL.Query())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ServeRemoteCommand(w, r, opts, echoSession)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestWebSocketExec(t *testing.T) {
	srv := newRemoteCommandServer(t)
	for _, tc := range []struct {
		protocol   string
		closeStdin bool // v5's CLOSE signal
		wantStatus string
	}{
		{protocol: "v5.channel.k8s.io", closeStdin: true,
			wantStatus: `{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [echo], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}`},
		{protocol: "v4.channel.k8s.io",
			wantStatus: `{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [echo], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}`},
		{protocol: "channel.k8s.io", wantStatus: "command terminated with non-zero exit code: error executing command [echo], exit code 3"},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			ws := dialWebSocket(t, srv, "/exec?input=1&output=1&error=1", tc.protocol)
			if err := websocket.Message.Send(ws, append([]byte{0}, "exit 3"...)); err != nil {
				t.Fatal(err)
			}
			if tc.closeStdin {
				if err := websocket.Message.Send(ws, []byte{255, 0}); err != nil {
					t.Fatal(err)
				}
			} else {
				// Without CLOSE the line must end the input.
				if err := websocket.Message.Send(ws, []byte{0, '\n'}); err != nil {
					t.Fatal(err)
				}
			}
			channels := map[byte]string{}
			for {
				var frame []byte
				if err := websocket.Message.Receive(ws, &frame); err != nil {
					break // the node closes the session after the status
				}
				if len(frame) > 0 {
					channels[frame[0]] += string(frame[1:])
				}
			}
			wantOut := "out:exit 3"
			if !tc.closeStdin {
				wantOut += "\n"
			}
			if channels[1] != wantOut || channels[2] != "err\n" || channels[3] != tc.wantStatus {
				t.Errorf("channels = %q", channels)
			}
		})
	}
}

func TestSPDYExec(t *testing.T) {
	srv := newRemoteCommandServer(t)
	sc, protocol := dialSPDY(t, srv, "/exec?input=1&output=1&tty=1", "v4.channel.k8s.io")
	if protocol != "v4.channel.k8s.io" {
		t.Fatalf("negotiated %q", protocol)
	}
	errStream := createStream(t, sc, corev1.StreamType, corev1.StreamTypeError)
	stdin := createStream(t, sc, corev1.StreamType, corev1.StreamTypeStdin)
	stdout := createStream(t, sc, corev1.StreamType, corev1.StreamTypeStdout)
	resize := createStream(t, sc, corev1.StreamType, corev1.StreamTypeResize)
	if err := json.NewEncoder(resize).Encode(map[string]int{"Width": 80, "Height": 24}); err != nil {
		t.Fatal(err)
	}
	if _, err := stdin.Write([]byte("hi\n")); err != nil {
		t.Fatal(err)
	}
	stdin.Close()
	out, _ := io.ReadAll(stdout)
	status, _ := io.ReadAll(errStream)
	if string(out) != "size 80x24\nout:hi\n" || string(status) != `{"metadata":{},"status":"Success"}` {
		t.Errorf("stdout %q, status %q", out, status)
	}
}

func TestSPDYUnsupportedProtocol(t *testing.T) {
	srv := newRemoteCommandServer(t)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/exec?output=1", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	req.Header.Set("X-Stream-Protocol-Version", "v9.channel.k8s.io")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(b), "unable to upgrade") {
		t.Errorf("answer %s %q", resp.Status, b)
	}
}
