// Package nodeapi is the small contract between the server and a node's
// agent for requests the server sends to the node, such as container logs:
// where the agent listens on its own machine, the paths it serves, and how
// log options are put on and read from a URL, as the kubelet's API does.
//
// Both sides import it so that they meet on the wire without importing one
// another. It must stay free of server and agent logic.
package nodeapi

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"time"
)

// SocketPath is the Unix socket where the agent whose data directory is
// dataDir serves node requests (DATA/agent/kubelet.sock, mode 0600).
func SocketPath(dataDir string) string {
	return filepath.Join(dataDir, "agent", "kubelet.sock")
}

// ContainerLogsPattern is the agent's route for container logs, in
// net/http.ServeMux syntax, the same path as the kubelet's.
const ContainerLogsPattern = "GET /containerLogs/{namespace}/{pod}/{container}"

// ContainerLogsPath is the path of one container's logs.
func ContainerLogsPath(namespace, pod, container string) string {
	return "/containerLogs/" + url.PathEscape(namespace) + "/" + url.PathEscape(pod) + "/" + url.PathEscape(container)
}

// LogOptions select what part of a container's log is returned, as
// Kubernetes' PodLogOptions (less the container, which is in the path).
type LogOptions struct {
	Follow     bool
	Previous   bool
	Timestamps bool
	// Nil pointers mean "not set".
	SinceSeconds *int64
	SinceTime    *time.Time
	TailLines    *int64
	LimitBytes   *int64
}

// Query encodes the options as the kubelet's query parameters.
func (o LogOptions) Query() url.Values {
	q := url.Values{}
	setBool := func(k string, v bool) {
		if v {
			q.Set(k, "true")
		}
	}
	setInt := func(k string, v *int64) {
		if v != nil {
			q.Set(k, strconv.FormatInt(*v, 10))
		}
	}
	setBool("follow", o.Follow)
	setBool("previous", o.Previous)
	setBool("timestamps", o.Timestamps)
	setInt("sinceSeconds", o.SinceSeconds)
	setInt("tailLines", o.TailLines)
	setInt("limitBytes", o.LimitBytes)
	if o.SinceTime != nil {
		q.Set("sinceTime", o.SinceTime.UTC().Format(time.RFC3339))
	}
	return q
}

// ParseLogOptions reads and validates options from query parameters, with
// Kubernetes' rules: sinceSeconds and limitBytes are positive, tailLines is
// not negative, and sinceSeconds and sinceTime are exclusive. Unknown
// parameters are ignored, as the API server does.
func ParseLogOptions(q url.Values) (LogOptions, error) {
	var o LogOptions
	var err error
	if o.Follow, err = parseBool(q, "follow"); err != nil {
		return o, err
	}
	if o.Previous, err = parseBool(q, "previous"); err != nil {
		return o, err
	}
	if o.Timestamps, err = parseBool(q, "timestamps"); err != nil {
		return o, err
	}
	if o.SinceSeconds, err = parseInt(q, "sinceSeconds", 1); err != nil {
		return o, err
	}
	if o.TailLines, err = parseInt(q, "tailLines", 0); err != nil {
		return o, err
	}
	if o.LimitBytes, err = parseInt(q, "limitBytes", 1); err != nil {
		return o, err
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return o, fmt.Errorf("sinceTime: invalid time %q: want RFC 3339", v)
		}
		o.SinceTime = &t
	}
	if o.SinceSeconds != nil && o.SinceTime != nil {
		return o, fmt.Errorf("sinceSeconds and sinceTime: at most one of them may be specified")
	}
	return o, nil
}

func parseBool(q url.Values, key string) (bool, error) {
	v := q.Get(key)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s: invalid value %q: want true or false", key, v)
	}
	return b, nil
}

func parseInt(q url.Values, key string, min int64) (*int64, error) {
	v := q.Get(key)
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%s: invalid value %q: want an integer", key, v)
	}
	if n < min {
		if min == 0 {
			return nil, fmt.Errorf("%s: must be greater than or equal to 0", key)
		}
		return nil, fmt.Errorf("%s: must be greater than 0", key)
	}
	return &n, nil
}

// UnixTransport returns a transport that sends every request to the Unix
// socket at path, whatever the URL's host is. Responses are streamed: it
// neither compresses nor buffers.
func UnixTransport(path string) *http.Transport {
	var d net.Dialer
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
		MaxIdleConns:       4,
		IdleConnTimeout:    90 * time.Second,
	}
}
