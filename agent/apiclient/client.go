// Package apiclient is the agent's small Kubernetes API client: JSON over
// net/http with k8s.io/api types, for the handful of resources a node
// works with (nodes, leases, pods, events, configmaps, secrets). It exists
// so that the orch binary does not link client-go.
//
// The node's heartbeats (its Lease every 10 s, its Node status) go as
// protobuf (application/vnd.kubernetes.protobuf), as client-go sends
// built-in kinds: a Lease is about a third of its JSON size, and these
// calls are most of an idle node's traffic. Lists and watches stay JSON.
//
// The client takes its *http.Client from the caller: today a TLS client
// with a node or admin certificate, later the agent's tunnel transport.
// Errors from the server are returned as *apierrors.StatusError, so
// apierrors.IsNotFound, IsConflict and friends work on them.
package apiclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// Resource names a REST resource: its group, version and plural name.
type Resource struct {
	Group, Version, Name string
	Namespaced           bool
	// ProtobufKind is the kind's name for resources whose single objects
	// (Get, Create, Update and the answers of Patch) travel as protobuf;
	// empty means JSON. The objects must be k8s.io/api types.
	ProtobufKind string
}

// The resources the agent uses.
var (
	Nodes           = Resource{Version: "v1", Name: "nodes", ProtobufKind: "Node"}
	Pods            = Resource{Version: "v1", Name: "pods", Namespaced: true}
	Events          = Resource{Version: "v1", Name: "events", Namespaced: true}
	ConfigMaps      = Resource{Version: "v1", Name: "configmaps", Namespaced: true}
	Secrets         = Resource{Version: "v1", Name: "secrets", Namespaced: true}
	ServiceAccounts = Resource{Version: "v1", Name: "serviceaccounts", Namespaced: true}
	Leases          = Resource{Group: "coordination.k8s.io", Version: "v1", Name: "leases", Namespaced: true, ProtobufKind: "Lease"}
)

// maxErrorBody bounds how much of an error answer is read.
const maxErrorBody = 1 << 20

// Client calls one API server. It is safe for concurrent use.
type Client struct {
	base      *url.URL
	hc        *http.Client
	userAgent string
	// impersonate, when set, is sent as Impersonate-User.
	impersonate string
}

// New returns a client for the server at serverURL (https://host:port)
// that sends its requests with hc.
func New(serverURL string, hc *http.Client, userAgent string) (*Client, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return nil, fmt.Errorf("api client: server URL %q: %w", serverURL, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("api client: server URL %q: scheme must be https", serverURL)
	}
	if hc == nil {
		return nil, errors.New("api client: no HTTP client")
	}
	return &Client{base: u, hc: hc, userAgent: userAgent}, nil
}

// Impersonating returns a copy of c whose requests act as user (the
// Impersonate-User header, as kubectl --as sends it). The server allows
// them only if c's own identity may impersonate that user.
func (c *Client) Impersonating(user string) *Client {
	cc := *c
	cc.impersonate = user
	return &cc
}

// ListOptions are the query parameters of list and watch calls.
type ListOptions struct {
	LabelSelector   string
	FieldSelector   string
	ResourceVersion string
	// TimeoutSeconds bounds a watch on the server side.
	TimeoutSeconds int64
}

func (o ListOptions) query(watch bool) url.Values {
	q := url.Values{}
	if o.LabelSelector != "" {
		q.Set("labelSelector", o.LabelSelector)
	}
	if o.FieldSelector != "" {
		q.Set("fieldSelector", o.FieldSelector)
	}
	if o.ResourceVersion != "" {
		q.Set("resourceVersion", o.ResourceVersion)
	}
	if o.TimeoutSeconds > 0 {
		q.Set("timeoutSeconds", strconv.FormatInt(o.TimeoutSeconds, 10))
	}
	if watch {
		q.Set("watch", "true")
		q.Set("allowWatchBookmarks", "true")
	}
	return q
}

// urlFor builds the URL of a collection (name empty), an object or one of
// its subresources.
func (c *Client) urlFor(res Resource, ns, name, sub string, q url.Values) string {
	parts := []string{"/api", res.Version}
	if res.Group != "" {
		parts = []string{"/apis", res.Group, res.Version}
	}
	if res.Namespaced && ns != "" {
		parts = append(parts, "namespaces", ns)
	}
	parts = append(parts, res.Name)
	if name != "" {
		parts = append(parts, name)
	}
	if sub != "" {
		parts = append(parts, sub)
	}
	u := *c.base
	u.Path = path.Join(append([]string{u.Path}, parts...)...)
	u.RawQuery = q.Encode()
	return u.String()
}

// Get reads one object into out.
func (c *Client) Get(ctx context.Context, res Resource, ns, name string, out any) error {
	return c.do(ctx, http.MethodGet, c.urlFor(res, ns, name, "", nil), res, requestBody{}, out)
}

// List reads a collection (all namespaces when ns is empty) into out, a
// *v1.PodList or the like.
func (c *Client) List(ctx context.Context, res Resource, ns string, opts ListOptions, out any) error {
	return c.do(ctx, http.MethodGet, c.urlFor(res, ns, "", "", opts.query(false)), Resource{}, requestBody{}, out)
}

// Create creates obj and decodes the stored object into out (may be nil).
func (c *Client) Create(ctx context.Context, res Resource, ns string, obj, out any) error {
	return c.send(ctx, http.MethodPost, c.urlFor(res, ns, "", "", nil), res, obj, out)
}

// CreateSubresource posts obj to a subresource such as
// serviceaccounts/NAME/token.
func (c *Client) CreateSubresource(ctx context.Context, res Resource, ns, name, sub string, obj, out any) error {
	// The subresource's kind is not the resource's.
	return c.send(ctx, http.MethodPost, c.urlFor(res, ns, name, sub, nil), Resource{}, obj, out)
}

// Update replaces an object (sub empty) or a subresource such as
// "status"; obj carries the resourceVersion it was read at.
func (c *Client) Update(ctx context.Context, res Resource, ns, name, sub string, obj, out any) error {
	return c.send(ctx, http.MethodPut, c.urlFor(res, ns, name, sub, nil), res, obj, out)
}

// Patch patches an object or a subresource with data of type pt.
func (c *Client) Patch(ctx context.Context, res Resource, ns, name, sub string, pt types.PatchType, data []byte, out any) error {
	return c.do(ctx, http.MethodPatch, c.urlFor(res, ns, name, sub, nil), res, requestBody{string(pt), data}, out)
}

// Delete deletes an object; opts may be nil.
func (c *Client) Delete(ctx context.Context, res Resource, ns, name string, opts *metav1.DeleteOptions) error {
	var body requestBody
	if opts != nil {
		b, err := json.Marshal(opts)
		if err != nil {
			return err
		}
		body = requestBody{"application/json", b}
	}
	return c.do(ctx, http.MethodDelete, c.urlFor(res, ns, name, "", nil), Resource{}, body, nil)
}

// requestBody is an encoded request body; a zero one sends none.
type requestBody struct {
	contentType string
	data        []byte
}

func (c *Client) send(ctx context.Context, method, u string, res Resource, obj, out any) error {
	if m, ok := obj.(protoObject); ok && res.ProtobufKind != "" {
		b, err := encodeProtobuf(res, m)
		if err != nil {
			return fmt.Errorf("%s %s: encode: %w", method, u, err)
		}
		return c.do(ctx, method, u, res, requestBody{mediaProtobuf, b}, out)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("%s %s: encode: %w", method, u, err)
	}
	return c.do(ctx, method, u, res, requestBody{"application/json", b}, out)
}

func (c *Client) newRequest(ctx context.Context, method, u, accept string, body requestBody) (*http.Request, error) {
	var r io.Reader
	if body.data != nil {
		r = bytes.NewReader(body.data)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	if body.contentType != "" {
		req.Header.Set("Content-Type", body.contentType)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	if c.impersonate != "" {
		req.Header.Set("Impersonate-User", c.impersonate)
	}
	return req, nil
}

// do sends one request and decodes its answer into out (nil: discarded).
// The answer is asked as protobuf for res's objects (JSON still decoded
// if that is what comes back).
func (c *Client) do(ctx context.Context, method, u string, res Resource, body requestBody, out any) error {
	accept := "application/json"
	if _, ok := out.(protoObject); (ok || out == nil) && res.ProtobufKind != "" {
		accept = mediaProtobuf + ", application/json"
	}
	req, err := c.newRequest(ctx, method, u, accept, body)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return decodeError(resp)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if m, ok := out.(protoObject); ok && isProtobuf(resp.Header.Get("Content-Type")) {
		b, err := io.ReadAll(resp.Body)
		if err == nil {
			err = decodeProtobuf(b, m)
		}
		if err != nil {
			return fmt.Errorf("%s %s: decode answer: %w", method, req.URL.Path, err)
		}
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, req.URL.Path, err)
	}
	return nil
}

// decodeError turns an error answer into a *apierrors.StatusError, using
// the server's metav1.Status when it sent one.
func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var st metav1.Status
	decoded := json.Unmarshal(b, &st) == nil
	if isProtobuf(resp.Header.Get("Content-Type")) {
		decoded = decodeProtobuf(b, &st) == nil
	}
	if decoded && st.Kind == "Status" {
		if st.Code == 0 {
			st.Code = int32(resp.StatusCode)
		}
		return &apierrors.StatusError{ErrStatus: st}
	}
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return apierrors.NewGenericServerResponse(resp.StatusCode, resp.Request.Method, schema.GroupResource{}, "", msg, 0, false)
}

// WatchEvent is one event of a watch stream; Object is decoded by the
// caller into the resource's type (a metav1.Status for ERROR events).
type WatchEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// Watcher reads a watch stream. Close it when done.
type Watcher struct {
	body io.ReadCloser
	dec  *json.Decoder
}

// Watch starts a watch from opts.ResourceVersion.
func (c *Client) Watch(ctx context.Context, res Resource, ns string, opts ListOptions) (*Watcher, error) {
	u := c.urlFor(res, ns, "", "", opts.query(true))
	req, err := c.newRequest(ctx, http.MethodGet, u, "application/json", requestBody{})
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", req.URL.Path, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return &Watcher{body: resp.Body, dec: json.NewDecoder(bufio.NewReader(resp.Body))}, nil
}

// Next returns the next event. It returns io.EOF when the server ended the
// stream, and a *apierrors.StatusError for an ERROR event (410 Gone when
// the watch fell out of the server's history).
func (w *Watcher) Next() (WatchEvent, error) {
	var ev WatchEvent
	if err := w.dec.Decode(&ev); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		return WatchEvent{}, err
	}
	if ev.Type == "ERROR" {
		var st metav1.Status
		if err := json.Unmarshal(ev.Object, &st); err != nil {
			return WatchEvent{}, fmt.Errorf("watch: undecodable error event: %w", err)
		}
		return WatchEvent{}, &apierrors.StatusError{ErrStatus: st}
	}
	return ev, nil
}

// Close ends the watch.
func (w *Watcher) Close() error { return w.body.Close() }
