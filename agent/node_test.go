package agent

import (
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
)

// nodeAPI is the part of the API server a node's heartbeats use: its
// Node (create, get, status patch) and its Lease (get, create, update
// with resourceVersion preconditions). It answers JSON and takes JSON or
// protobuf bodies, and records every call as "VERB kind".
type nodeAPI struct {
	mu    sync.Mutex
	rv    int
	node  *v1.Node
	lease *coordinationv1.Lease
	down  bool // answer 503 to everything, as a cut link does
	calls []string
	// leaseTypes are the Content-Types of the lease writes.
	leaseTypes []string
	patched    chan v1.NodeStatus // each status patch, buffered
	codec      *protobuf.Serializer
}

func newNodeAPI(t *testing.T) (*nodeAPI, *httptest.Server) {
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := coordinationv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	f := &nodeAPI{patched: make(chan v1.NodeStatus, 100), codec: protobuf.NewSerializer(scheme, scheme)}
	ts := httptest.NewServer(f)
	t.Cleanup(ts.Close)
	return f, ts
}

const leasePath = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"

func (f *nodeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	kind := "node"
	if strings.HasPrefix(r.URL.Path, leasePath) {
		kind = "lease"
	}
	f.calls = append(f.calls, r.Method+" "+kind)
	fail := func(err *apierrors.StatusError) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(err.ErrStatus.Code))
		st := err.ErrStatus
		st.Kind, st.APIVersion = "Status", "v1"
		_ = json.NewEncoder(w).Encode(&st)
	}
	answer := func(code int, obj any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(obj)
	}
	body, _ := io.ReadAll(r.Body)
	decode := func(into runtime.Object) error {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "application/vnd.kubernetes.protobuf" {
			_, _, err := f.codec.Decode(body, nil, into)
			return err
		}
		return json.Unmarshal(body, into)
	}
	readLease := func() (*coordinationv1.Lease, bool) {
		f.leaseTypes = append(f.leaseTypes, r.Header.Get("Content-Type"))
		var l coordinationv1.Lease
		if err := decode(&l); err != nil {
			fail(apierrors.NewBadRequest(err.Error()))
			return nil, false
		}
		return &l, true
	}
	if f.down {
		fail(apierrors.NewServiceUnavailable("link down"))
		return
	}
	switch {
	case kind == "node" && r.Method == http.MethodPost:
		var n v1.Node
		if err := decode(&n); err != nil {
			fail(apierrors.NewBadRequest(err.Error()))
			return
		}
		if f.node != nil {
			fail(apierrors.NewAlreadyExists(v1.Resource("nodes"), n.Name))
			return
		}
		f.rv++
		n.UID, n.ResourceVersion = "uid-1", strconv.Itoa(f.rv)
		f.node = &n
		answer(http.StatusCreated, &n)
	case kind == "node" && f.node == nil:
		fail(apierrors.NewNotFound(v1.Resource("nodes"), "n1"))
	case kind == "node" && r.Method == http.MethodGet:
		answer(http.StatusOK, f.node)
	case kind == "node" && r.Method == http.MethodPatch && strings.HasSuffix(r.URL.Path, "/status"):
		var patch struct {
			Status v1.NodeStatus `json:"status"`
		}
		if err := json.Unmarshal(body, &patch); err != nil {
			fail(apierrors.NewBadRequest(err.Error()))
			return
		}
		f.rv++
		f.node.Status, f.node.ResourceVersion = patch.Status, strconv.Itoa(f.rv)
		f.patched <- patch.Status
		answer(http.StatusOK, f.node)
	case kind == "lease" && r.Method == http.MethodPost:
		l, ok := readLease()
		if !ok {
			return
		}
		f.rv++
		l.ResourceVersion = strconv.Itoa(f.rv)
		f.lease = l
		answer(http.StatusCreated, l)
	case kind == "lease" && f.lease == nil:
		fail(apierrors.NewNotFound(coordinationv1.Resource("leases"), "n1"))
	case kind == "lease" && r.Method == http.MethodGet:
		answer(http.StatusOK, f.lease)
	case kind == "lease" && r.Method == http.MethodPut:
		l, ok := readLease()
		if !ok {
			return
		}
		if l.ResourceVersion != f.lease.ResourceVersion {
			fail(apierrors.NewConflict(coordinationv1.Resource("leases"), "n1", nil))
			return
		}
		f.rv++
		l.ResourceVersion = strconv.Itoa(f.rv)
		f.lease = l
		answer(http.StatusOK, l)
	default:
		fail(apierrors.NewMethodNotSupported(v1.Resource(kind+"s"), r.Method))
	}
}

// takeCalls returns and forgets the calls so far.
func (f *nodeAPI) takeCalls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

func (f *nodeAPI) with(fn func(f *nodeAPI)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// TestRenewLease follows the lease through the kubelet lease
// controller's cases: one PUT of the cached lease per renewal, a read
// only when there is nothing cached or the PUT found the lease changed or
// gone.
func TestRenewLease(t *testing.T) {
	f, ts := newNodeAPI(t)
	a := newStaticTestAgent(t, ts.URL, ts.Client())
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "uid-1"}}
	ctx := t.Context()

	var latest *coordinationv1.Lease
	steps := []struct {
		name      string
		before    func(f *nodeAPI)
		wantCalls []string
		wantErr   bool
	}{
		{name: "no lease yet: read, then create", wantCalls: []string{"GET lease", "POST lease"}},
		{name: "renewal: one PUT", wantCalls: []string{"PUT lease"}},
		{name: "again one PUT", wantCalls: []string{"PUT lease"}},
		{name: "changed by another writer: conflict, read, PUT",
			before:    func(f *nodeAPI) { f.rv++; f.lease.ResourceVersion = strconv.Itoa(f.rv) },
			wantCalls: []string{"PUT lease", "GET lease", "PUT lease"}},
		{name: "deleted: not found, read, create",
			before:    func(f *nodeAPI) { f.lease = nil },
			wantCalls: []string{"PUT lease", "GET lease", "POST lease"}},
		{name: "link down: the PUT fails, the cache stays",
			before:    func(f *nodeAPI) { f.down = true },
			wantCalls: []string{"PUT lease"}, wantErr: true},
		{name: "link back: one PUT of the cached lease",
			before:    func(f *nodeAPI) { f.down = false },
			wantCalls: []string{"PUT lease"}},
	}
	for _, st := range steps {
		if st.before != nil {
			f.with(st.before)
		}
		prev := latest
		got, err := a.renewLeaseOnce(ctx, node, latest)
		if (err != nil) != st.wantErr {
			t.Fatalf("%s: err = %v, want error %v", st.name, err, st.wantErr)
		}
		if calls := f.takeCalls(); !slices.Equal(calls, st.wantCalls) {
			t.Errorf("%s: calls %q, want %q", st.name, calls, st.wantCalls)
		}
		if st.wantErr {
			if got != prev {
				t.Errorf("%s: the cached lease was dropped", st.name)
			}
			continue
		}
		var stored *coordinationv1.Lease
		f.with(func(f *nodeAPI) { stored = f.lease.DeepCopy() })
		if got == nil || got.ResourceVersion != stored.ResourceVersion {
			t.Fatalf("%s: cached lease %+v, stored %+v", st.name, got, stored)
		}
		if h := stored.Spec.HolderIdentity; h == nil || *h != "n1" || stored.Spec.RenewTime == nil {
			t.Errorf("%s: stored lease %+v", st.name, stored.Spec)
		}
		if o := stored.OwnerReferences; len(o) != 1 || o[0].Kind != "Node" || o[0].UID != "uid-1" {
			t.Errorf("%s: owner references %+v", st.name, o)
		}
		latest = got
	}
	f.with(func(f *nodeAPI) {
		for _, ct := range f.leaseTypes {
			if ct != "application/vnd.kubernetes.protobuf" {
				t.Errorf("a lease write went as %q, not protobuf", ct)
			}
		}
	})
}

func TestNodeStatusChanged(t *testing.T) {
	a := newStaticTestAgent(t, "", nil)
	base := a.nodeStatus(nil)
	later := func(edit func(st *v1.NodeStatus)) v1.NodeStatus {
		st := *base.DeepCopy()
		edit(&st)
		return st
	}
	tests := []struct {
		name string
		st   v1.NodeStatus
		want bool
	}{
		{"the same", *base.DeepCopy(), false},
		{"only heartbeats", later(func(st *v1.NodeStatus) {
			for i := range st.Conditions {
				st.Conditions[i].LastHeartbeatTime = metav1.NewTime(time.Now().Add(time.Hour))
			}
		}), false},
		{"recomputed from the posted status", a.nodeStatus(&base), false},
		{"an image more", later(func(st *v1.NodeStatus) {
			st.Images = append(st.Images, v1.ContainerImage{Names: []string{"busybox:1.36"}, SizeBytes: 1})
		}), true},
		{"Ready changed", later(func(st *v1.NodeStatus) {
			st.Conditions[len(st.Conditions)-1].Status = v1.ConditionUnknown
		}), true},
		{"another address", later(func(st *v1.NodeStatus) {
			st.Addresses[0].Address = "198.18.0.9"
		}), true},
	}
	for _, tt := range tests {
		if got := nodeStatusChanged(&base, &tt.st); got != tt.want {
			t.Errorf("%s: changed = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestObserveNode(t *testing.T) {
	a := newStaticTestAgent(t, "", nil)
	ours := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: a.nodeStatus(nil)}
	unknown := ours.DeepCopy()
	for i := range unknown.Status.Conditions {
		unknown.Status.Conditions[i].Status = v1.ConditionUnknown
		unknown.Status.Conditions[i].Reason = "NodeStatusUnknown"
	}
	notReadyReason := ours.DeepCopy()
	notReadyReason.Status.Conditions[len(notReadyReason.Status.Conditions)-1].Reason = "SomethingElse"
	other := unknown.DeepCopy()
	other.Name = "n2"
	tests := []struct {
		name string
		node *v1.Node
		want bool
	}{
		{"as the agent posted it", ours, false},
		{"marked Unknown by the node lifecycle controller", unknown, true},
		{"Ready with another reason", notReadyReason, true},
		{"no conditions yet", &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, true},
		{"another node", other, false},
	}
	for _, tt := range tests {
		a.observeNode(tt.node)
		got := false
		select {
		case <-a.nodeChanged:
			got = true
		default:
		}
		if got != tt.want {
			t.Errorf("%s: status post requested = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestSyncNodeStatusPosts checks that the status is posted at once after a
// reconnect and when the server's view of the node says Unknown, not only
// at the periodic report.
func TestSyncNodeStatusPosts(t *testing.T) {
	f, ts := newNodeAPI(t)
	a := newStaticTestAgent(t, ts.URL, ts.Client())
	ctx, cancel := context.WithCancel(t.Context())
	registered, err := a.tryRegisterNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitPost := func(what string) v1.NodeStatus {
		t.Helper()
		select {
		case st := <-f.patched:
			return st
		case <-time.After(30 * time.Second):
			t.Fatalf("no node status posted %s", what)
			return v1.NodeStatus{}
		}
	}
	waitPost("at registration")
	done := make(chan struct{})
	go func() { a.syncNodeStatus(ctx, registered); close(done) }()
	defer func() { cancel(); <-done }()

	a.serverReconnected()
	waitPost("after a reconnect")
	select {
	case <-a.leaseNow:
	default:
		t.Error("no early lease renewal asked after a reconnect")
	}

	// What the node lifecycle controller does to a silent node.
	var seen *v1.Node
	f.with(func(f *nodeAPI) {
		for i := range f.node.Status.Conditions {
			c := &f.node.Status.Conditions[i]
			c.Status, c.Reason, c.Message = v1.ConditionUnknown, "NodeStatusUnknown", "Kubelet stopped posting node status."
		}
		seen = f.node.DeepCopy()
	})
	a.observeNode(seen)
	st := waitPost("after the agent saw its node Unknown")
	if c := conditionOf(st.Conditions, v1.NodeReady); c == nil || c.Status != v1.ConditionTrue || c.Reason != "KubeletReady" {
		t.Errorf("posted Ready condition %+v", c)
	}
	var stored *v1.Node
	f.with(func(f *nodeAPI) { stored = f.node.DeepCopy() })
	if c := conditionOf(stored.Status.Conditions, v1.NodeReady); c == nil || c.Status != v1.ConditionTrue {
		t.Errorf("stored Ready condition %+v", c)
	}
	a.observeNode(stored)
	select {
	case <-a.nodeChanged:
		t.Error("the agent's own status asked for another post")
	default:
	}
}

// TestStatusPostReregisters: a node deleted under the agent is created
// again by the next status post, as the kubelet does.
func TestStatusPostReregisters(t *testing.T) {
	f, ts := newNodeAPI(t)
	a := newStaticTestAgent(t, ts.URL, ts.Client())
	if err := a.postNodeStatus(t.Context(), a.nodeStatus(nil)); err != nil {
		t.Fatal(err)
	}
	if calls := f.takeCalls(); !slices.Equal(calls, []string{"PATCH node", "POST node", "PATCH node"}) {
		t.Errorf("calls %q", calls)
	}
	f.with(func(f *nodeAPI) {
		if f.node == nil || f.node.Labels["kubernetes.io/hostname"] != "n1" {
			t.Errorf("node not registered again: %+v", f.node)
		}
	})
}

// TestReconnectAsksForNodeStatus: when the tunnel comes back after a
// drop, the node posts its status and renews its lease at once; the first
// connect asks nothing (registration posts the status).
func TestReconnectAsksForNodeStatus(t *testing.T) {
	s := newFakeJoinServer(t, "the-secret")
	ctx, cancel := context.WithCancel(t.Context())
	cfg := testJoinConfig(t, s.ts.URL, s.token(), "n1")
	if err := cfg.complete(); err != nil {
		t.Fatal(err)
	}
	link, err := dialServer(ctx, &cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{nodeChanged: make(chan struct{}, 1), leaseNow: make(chan struct{}, 1)}
	var wg sync.WaitGroup
	wg.Go(func() { _ = link.tunnel.Run(ctx) })
	wg.Go(func() { link.reportReconnects(ctx, a) })
	defer func() { cancel(); wg.Wait() }()

	select {
	case <-link.tunnel.Connected():
	case <-time.After(30 * time.Second):
		t.Fatal("tunnel did not connect")
	}
	select {
	case <-a.nodeChanged:
		t.Fatal("the first connect asked for a status post")
	case <-time.After(200 * time.Millisecond):
	}
	down := link.tunnel.Disconnected()
	s.ts.CloseClientConnections()
	select {
	case <-down:
	case <-time.After(30 * time.Second):
		t.Fatal("the tunnel did not notice its connection closed")
	}
	select {
	case <-a.nodeChanged:
	case <-time.After(60 * time.Second):
		t.Fatal("no status post asked after the reconnect")
	}
	select {
	case <-a.leaseNow:
	default:
		t.Error("no lease renewal asked after the reconnect")
	}
}
