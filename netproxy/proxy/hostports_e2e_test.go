package proxy

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	v1 "k8s.io/api/core/v1"
)

// TestE2EHostPorts writes hostPort mappings through a Syncer into a node
// namespace and connects to them for real: on the node address and
// 127.0.0.1 from the node, from the pod to its own hostPort (hairpin),
// on one address only with hostIP, and not at all once the pod's
// mappings are gone.
func TestE2EHostPorts(t *testing.T) {
	tn := setupNet(t)
	tn.serve(t, 9000, "hp-any")
	tn.serve(t, 9001, "hp-one-address")
	// A second node address for the hostIP mapping.
	other := netip.MustParseAddr("198.18.1.50")
	nh, err := netlink.NewHandleAt(tn.node)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	lo, err := nh.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := nh.AddrAdd(lo, &netlink.Addr{IPNet: prefixIPNet(netip.PrefixFrom(other, 32))}); err != nil {
		t.Fatalf("address %s: %v", other, err)
	}

	w := &NFTables{NetNSFd: int(tn.node)}
	cfg := e2eConfig()
	cfg.NodeIPs = append(cfg.NodeIPs, other)
	s := NewSyncer(cfg, w, SyncerOptions{MinSyncInterval: 10 * time.Millisecond})
	results := s.Results()
	runSyncer(t, s)
	pod := hostPortPod("web", false,
		v1.ContainerPort{ContainerPort: 9000, HostPort: 8081},
		v1.ContainerPort{ContainerPort: 9001, HostPort: 8082, HostIP: other.String()})
	s.SetPodHostPorts("uid-web", PodHostPorts(pod, tn.podIP))
	s.Replace(nil, nil)
	waitResult(t, results)

	for _, c := range []struct {
		name, addr, want string
	}{
		{name: "node address from the node", addr: "198.18.1.1:8081", want: "hp-any"},
		{name: "127.0.0.1 from the node", addr: "127.0.0.1:8081", want: "hp-any"},
		{name: "the other node address", addr: "198.18.1.50:8081", want: "hp-any"},
		{name: "hostIP's address", addr: "198.18.1.50:8082", want: "hp-one-address"},
	} {
		if got, err := get(tn.node, c.addr, 2*time.Second); err != nil || got != c.want {
			t.Errorf("%s (%s): got %q, %v; want %q", c.name, c.addr, got, err, c.want)
		}
	}
	if got, err := get(tn.pod, "198.18.1.1:8081", 2*time.Second); err != nil || got != "hp-any" {
		t.Errorf("the pod's own hostPort from the pod (hairpin): got %q, %v", got, err)
	}
	// hostIP limits the mapping: the node itself has nothing on 8082.
	if _, err := get(tn.node, "198.18.1.1:8082", 2*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("hostPort 8082 on an address other than its hostIP: %v, want connection refused", err)
	}

	s.SetPodHostPorts("uid-web", nil)
	waitResult(t, results)
	if _, err := get(tn.node, "198.18.1.1:8081", 2*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("hostPort after the pod went: %v, want connection refused", err)
	}
}
