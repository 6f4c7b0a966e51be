package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/orch-dev/orch/agent/apiclient"
	"github.com/orch-dev/orch/internal/tunnel"
	"github.com/orch-dev/orch/internal/version"
	"github.com/orch-dev/orch/runtime/image"
)

const (
	leaseNamespace = "kube-node-lease"
	maxPods        = 110
	kubeletPort    = 10250
)

// registerNode creates the Node, or takes over an existing one of the same
// name (an agent restart), retrying until the server answers.
func (a *Agent) registerNode(ctx context.Context) (*v1.Node, error) {
	for delay := time.Second; ; {
		node, err := a.tryRegisterNode(ctx)
		if err == nil {
			return node, nil
		}
		if errors.Is(err, tunnel.ErrNotConnected) && a.cfg.tunnelUp != nil {
			// A joined agent's tunnel is still coming up: register the
			// moment it is, without a warning.
			a.log.Debug("waiting for the tunnel to register the node")
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("orch agent: register node: %w", ctx.Err())
			case <-a.cfg.tunnelUp():
			}
			continue
		}
		a.log.Warn("cannot register node; retrying", "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("orch agent: register node: %w", ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 15*time.Second)
	}
}

func (a *Agent) tryRegisterNode(ctx context.Context) (*v1.Node, error) {
	want := a.desiredNode()
	var got v1.Node
	err := a.api.Create(ctx, apiclient.Nodes, "", want, &got)
	if err == nil {
		return a.patchNodeStatus(ctx, &got)
	}
	if !apierrors.IsAlreadyExists(err) {
		return nil, err
	}
	if err := a.api.Get(ctx, apiclient.Nodes, "", a.nodeName, &got); err != nil {
		return nil, err
	}
	// Keep labels others set; ours win.
	changed := false
	if got.Labels == nil {
		got.Labels = map[string]string{}
	}
	for k, v := range want.Labels {
		if got.Labels[k] != v {
			got.Labels[k], changed = v, true
		}
	}
	if changed {
		if err := a.api.Update(ctx, apiclient.Nodes, "", a.nodeName, "", &got, &got); err != nil {
			return nil, err
		}
	}
	return a.patchNodeStatus(ctx, &got)
}

func (a *Agent) nodeLabels() map[string]string {
	l := map[string]string{
		"kubernetes.io/hostname":  a.nodeName,
		"kubernetes.io/os":        goruntime.GOOS,
		"kubernetes.io/arch":      goruntime.GOARCH,
		"beta.kubernetes.io/os":   goruntime.GOOS,
		"beta.kubernetes.io/arch": goruntime.GOARCH,
	}
	if a.cfg.ServerNode {
		l["node-role.kubernetes.io/control-plane"] = "true"
	}
	return l
}

func (a *Agent) desiredNode() *v1.Node {
	n := &v1.Node{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: a.nodeName, Labels: a.nodeLabels()},
	}
	n.Status = a.nodeStatus(nil)
	return n
}

// nodeConditions are the conditions the agent owns, as it reports them
// (without times): a running agent is a healthy node.
func nodeConditions() []v1.NodeCondition {
	return []v1.NodeCondition{
		{Type: v1.NodeMemoryPressure, Status: v1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"},
		{Type: v1.NodeDiskPressure, Status: v1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure"},
		{Type: v1.NodePIDPressure, Status: v1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available"},
		{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status"},
	}
}

// nodeStatus is the node's status now; old (may be nil) keeps condition
// transition times.
func (a *Agent) nodeStatus(old *v1.NodeStatus) v1.NodeStatus {
	capacity := hostCapacity(a.dir)
	now := metav1.NewTime(a.now())
	conds := nodeConditions()
	for i := range conds {
		conds[i].LastHeartbeatTime = now
		conds[i].LastTransitionTime = now
		if old == nil {
			continue
		}
		for _, o := range old.Conditions {
			if o.Type == conds[i].Type && o.Status == conds[i].Status && !o.LastTransitionTime.IsZero() {
				conds[i].LastTransitionTime = o.LastTransitionTime
			}
		}
	}
	hostname, _ := os.Hostname()
	st := v1.NodeStatus{
		Capacity:        capacity,
		Allocatable:     capacity.DeepCopy(),
		Conditions:      conds,
		Addresses:       a.nodeAddresses(hostname),
		DaemonEndpoints: v1.NodeDaemonEndpoints{KubeletEndpoint: v1.DaemonEndpoint{Port: kubeletPort}},
		NodeInfo:        nodeInfo(),
		Images:          a.nodeImages(),
	}
	return st
}

// nodeAddresses are the node's status.addresses, in the kubelet's order.
func (a *Agent) nodeAddresses(hostname string) []v1.NodeAddress {
	addrs := []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: a.hostIP}}
	if a.cfg.NodeExternalIP != "" {
		addrs = append(addrs, v1.NodeAddress{Type: v1.NodeExternalIP, Address: a.cfg.NodeExternalIP})
	}
	return append(addrs, v1.NodeAddress{Type: v1.NodeHostName, Address: hostname})
}

func (a *Agent) nodeImages() []v1.ContainerImage {
	if a.images == nil {
		return nil
	}
	imgs, err := a.images.List()
	if err != nil {
		return nil
	}
	var out []v1.ContainerImage
	for _, img := range imgs {
		out = append(out, v1.ContainerImage{Names: nodeImageNames(img), SizeBytes: img.Size})
	}
	return out
}

// maxNamesPerImage is the kubelet's MaxNamesPerImageInNodeStatus.
const maxNamesPerImage = 5

// nodeImageNames are an image's names in the node status as the kubelet
// lists them: repo digests, then tags, at most five; the ID when it has
// neither.
func nodeImageNames(img image.Image) []string {
	names := append(append([]string{}, img.RepoDigests...), img.Names...)
	if len(names) == 0 {
		names = []string{img.ID}
	}
	return names[:min(len(names), maxNamesPerImage)]
}

// patchNodeStatus writes the node's current status, keeping the
// transition times of node's conditions, and returns the node as stored.
func (a *Agent) patchNodeStatus(ctx context.Context, node *v1.Node) (*v1.Node, error) {
	var got v1.Node
	if err := a.patchStatus(ctx, a.nodeStatus(&node.Status), &got); err != nil {
		return nil, err
	}
	return &got, nil
}

// patchStatus writes st as a merge patch of the whole status (the agent
// is the only writer of it besides taints' controllers, which write
// spec), decoding the stored node into out (nil: discarded).
func (a *Agent) patchStatus(ctx context.Context, st v1.NodeStatus, out *v1.Node) error {
	body, err := json.Marshal(map[string]any{"status": st})
	if err != nil {
		return err
	}
	var dst any // a typed nil *v1.Node would be decoded into
	if out != nil {
		dst = out
	}
	if err := a.api.Patch(ctx, apiclient.Nodes, "", a.nodeName, "status", types.MergePatchType, body, dst); err != nil {
		return fmt.Errorf("update node status: %w", err)
	}
	return nil
}

// Node status and lease timings, the kubelet's defaults: the status is
// computed every nodeStatusUpdateFrequency and posted when it changed, or
// every nodeStatusReportFrequency when it did not; liveness in between is
// the lease's job (renewed every leaseRenewInterval, agent.go). Both are
// 10 s in the kubelet; here one ticker paces both (renewLease), so the
// status period is the lease's.
const (
	nodeStatusUpdateFrequency = leaseRenewInterval
	nodeStatusReportFrequency = 5 * time.Minute
)

// syncNodeStatus keeps the node's status on the server current, starting
// from registered (the status registration posted). It posts when the
// status changed, every nodeStatusReportFrequency, and at once when asked
// (requestNodeStatus: new images, a reconnect after which the server may
// have marked the node Unknown, a view of the Node that is not ours).
// It does not read the Node first as the kubelet does: the patch carries
// the whole status, and the server's view reaches us through observeNode.
//
// Its period comes from renewLease's ticker (statusTick): both are the
// kubelet's 10 s, and one timer wakes an idle agent once per period
// instead of twice.
func (a *Agent) syncNodeStatus(ctx context.Context, registered *v1.Node) {
	posted := registered.Status
	lastReport := a.now()
	pending := false // the last post failed: post at the next tick
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.statusTick:
		case <-a.nodeChanged:
			pending = true
		}
		st := a.nodeStatus(&posted)
		if !pending && !nodeStatusChanged(&posted, &st) && a.now().Sub(lastReport) < nodeStatusReportFrequency {
			continue
		}
		if err := a.postNodeStatus(ctx, st); err != nil {
			if ctx.Err() == nil {
				a.log.Warn("cannot post node status", "err", err)
			}
			pending = true
			continue
		}
		posted, lastReport, pending = st, a.now(), false
	}
}

// postNodeStatus writes st, registering the node again if it was deleted
// under us, as the kubelet does.
func (a *Agent) postNodeStatus(ctx context.Context, st v1.NodeStatus) error {
	err := a.patchStatus(ctx, st, nil)
	if !apierrors.IsNotFound(err) {
		return err
	}
	_, err = a.tryRegisterNode(ctx)
	return err
}

// nodeStatusChanged reports whether st differs from old other than in
// the conditions' heartbeat times (the kubelet's nodeStatusHasChanged).
func nodeStatusChanged(old, st *v1.NodeStatus) bool {
	strip := func(s *v1.NodeStatus) *v1.NodeStatus {
		c := s.DeepCopy()
		for i := range c.Conditions {
			c.Conditions[i].LastHeartbeatTime = metav1.Time{}
		}
		return c
	}
	return !apiequality.Semantic.DeepEqual(strip(old), strip(st))
}

// observeNode looks at the agent's own Node as the server has it (from a
// watch or a list) and asks for a status post when a condition the agent
// owns is not what the agent reports: the node lifecycle controller set
// it Unknown while the node was cut off, and only a post ends that.
func (a *Agent) observeNode(n *v1.Node) {
	if n.Name != a.nodeName {
		return
	}
	a.ingressAdvert.observe(n)
	for _, want := range nodeConditions() {
		got := conditionOf(n.Status.Conditions, want.Type)
		if got == nil || got.Status != want.Status || got.Reason != want.Reason {
			a.requestNodeStatus()
			return
		}
	}
}

func conditionOf(conds []v1.NodeCondition, t v1.NodeConditionType) *v1.NodeCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// serverReconnected is called when the agent's link to the server came
// back: while it was down the lease lapsed and the server may have set
// the node's conditions to Unknown, so post the status now rather than at
// the next change or report, and renew the lease.
func (a *Agent) serverReconnected() {
	a.requestNodeStatus()
	select {
	case a.leaseNow <- struct{}{}:
	default:
	}
}

// renewLease keeps the node's Lease in kube-node-lease fresh every
// leaseRenewInterval, or sooner after a reconnect.
//
// Its ticker also paces syncNodeStatus (statusTick): the kubelet's
// nodeStatusUpdateFrequency is the same 10 s.
func (a *Agent) renewLease(ctx context.Context, node *v1.Node) {
	t := time.NewTicker(leaseRenewInterval)
	defer t.Stop()
	var latest *coordinationv1.Lease
	for {
		var err error
		if latest, err = a.renewLeaseOnce(ctx, node, latest); err != nil && ctx.Err() == nil {
			a.log.Warn("cannot renew node lease", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			select {
			case a.statusTick <- struct{}{}:
			default: // the status loop is still busy with the last one
			}
		case <-a.leaseNow:
		}
	}
}

// renewLeaseOnce renews the lease with one PUT of latest, the lease as
// the server last returned it, as the kubelet's lease controller does. It
// reads the lease (creating it if missing) only when there is no latest
// or the PUT found it changed or gone. It returns the new latest, nil
// when the server must be asked again next time.
func (a *Agent) renewLeaseOnce(ctx context.Context, node *v1.Node, latest *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	if latest != nil {
		got, err := a.updateLease(ctx, latest)
		switch {
		case err == nil:
			return got, nil
		case !apierrors.IsConflict(err) && !apierrors.IsNotFound(err):
			// Likely the link: the cached lease is still the best base.
			return latest, err
		}
	}
	base, created, err := a.ensureLease(ctx, node)
	if err != nil || created {
		return base, err
	}
	got, err := a.updateLease(ctx, base)
	if err != nil {
		return nil, err
	}
	return got, nil
}

// ensureLease reads the node's lease, creating a fresh one if there is
// none (created reports that: it needs no renewal).
func (a *Agent) ensureLease(ctx context.Context, node *v1.Node) (lease *coordinationv1.Lease, created bool, err error) {
	lease = &coordinationv1.Lease{}
	err = a.api.Get(ctx, apiclient.Leases, leaseNamespace, a.nodeName, lease)
	if err == nil {
		return lease, false, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, false, fmt.Errorf("read node lease: %w", err)
	}
	now := metav1.NewMicroTime(a.now())
	dur := int32(leaseDuration / time.Second)
	holder := a.nodeName
	want := &coordinationv1.Lease{
		TypeMeta: metav1.TypeMeta{APIVersion: "coordination.k8s.io/v1", Kind: "Lease"},
		ObjectMeta: metav1.ObjectMeta{
			Name: a.nodeName, Namespace: leaseNamespace,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}},
		},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, RenewTime: &now},
	}
	lease = &coordinationv1.Lease{}
	if err := a.api.Create(ctx, apiclient.Leases, leaseNamespace, want, lease); err != nil {
		return nil, false, fmt.Errorf("create node lease: %w", err)
	}
	return lease, true, nil
}

// updateLease PUTs base renewed now, held by this node.
func (a *Agent) updateLease(ctx context.Context, base *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	lease := base.DeepCopy()
	now := metav1.NewMicroTime(a.now())
	lease.Spec.RenewTime = &now
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != a.nodeName {
		holder := a.nodeName
		lease.Spec.HolderIdentity = &holder
	}
	got := &coordinationv1.Lease{}
	if err := a.api.Update(ctx, apiclient.Leases, leaseNamespace, a.nodeName, "", lease, got); err != nil {
		return nil, fmt.Errorf("renew node lease: %w", err)
	}
	return got, nil
}

// hostCapacity measures the machine.
func hostCapacity(dataDir string) v1.ResourceList {
	rl := v1.ResourceList{
		v1.ResourceCPU:  *resource.NewQuantity(int64(goruntime.NumCPU()), resource.DecimalSI),
		v1.ResourcePods: *resource.NewQuantity(maxPods, resource.DecimalSI),
	}
	if kb, err := meminfoTotalKB(); err == nil {
		rl[v1.ResourceMemory] = *resource.NewQuantity(kb*1024, resource.BinarySI)
	}
	var fs unix.Statfs_t
	if unix.Statfs(dataDir, &fs) == nil {
		rl[v1.ResourceEphemeralStorage] = *resource.NewQuantity(int64(fs.Blocks)*fs.Bsize, resource.BinarySI)
	}
	return rl
}

func meminfoTotalKB() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			return strconv.ParseInt(fields[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no MemTotal in /proc/meminfo")
}

func nodeInfo() v1.NodeSystemInfo {
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	read := func(p string) string {
		b, _ := os.ReadFile(p)
		return strings.TrimSpace(string(b))
	}
	return v1.NodeSystemInfo{
		MachineID:               read("/etc/machine-id"),
		SystemUUID:              read("/sys/class/dmi/id/product_uuid"),
		BootID:                  read("/proc/sys/kernel/random/boot_id"),
		KernelVersion:           unix.ByteSliceToString(uts.Release[:]),
		OSImage:                 osImage(),
		ContainerRuntimeVersion: "orch://" + version.Get().Version,
		KubeletVersion:          kubeletVersion,
		OperatingSystem:         goruntime.GOOS,
		Architecture:            goruntime.GOARCH,
	}
}

// osImage is PRETTY_NAME from /etc/os-release, as the kubelet reports it.
func osImage() string {
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				if u, err := strconv.Unquote(v); err == nil {
					return u
				}
				return strings.Trim(v, `"'`)
			}
		}
	}
	return "Linux"
}

// detectNodeIP picks the IPv4 address of the default route's interface,
// else the first global unicast address, else loopback.
func detectNodeIP() string {
	if ifname := defaultRouteInterface(); ifname != "" {
		if ifc, err := net.InterfaceByName(ifname); err == nil {
			if ip := firstIPv4(ifc); ip != "" {
				return ip
			}
		}
	}
	ifcs, _ := net.Interfaces()
	for i := range ifcs {
		if ifcs[i].Flags&net.FlagUp == 0 || ifcs[i].Flags&net.FlagLoopback != 0 {
			continue
		}
		if ip := firstIPv4(&ifcs[i]); ip != "" {
			return ip
		}
	}
	return "127.0.0.1"
}

func firstIPv4(ifc *net.Interface) string {
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}

func defaultRouteInterface() string {
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 7 && f[1] == "00000000" && f[7] == "00000000" {
			return f[0]
		}
	}
	return ""
}
