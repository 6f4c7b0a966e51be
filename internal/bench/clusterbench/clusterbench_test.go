package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	const serverData, agentData = "/tmp/cb/server", "/tmp/cb/agent"
	uids := map[string]bool{"uid-1": true}
	for _, tc := range []struct {
		name   string
		args   string
		cgroup string
		node   string
		kind   procKind
		ok     bool
	}{
		{"server node's shim", "orch container-shim /tmp/cb/server/agent/containers/containers/abc", "/user.slice", serverNode, kindShim, true},
		{"agent's shim", "orch container-shim /tmp/cb/agent/agent/containers/containers/abc", "/", agentNode, kindShim, true},
		{"another cluster's shim", "orch container-shim /tmp/orch-net-e2e/server/agent/containers/containers/abc", "/", "", 0, false},
		{"a data dir that only starts alike", "orch container-shim /tmp/cb/agent2/x", "/", "", 0, false},
		{"agent's pause", "orch pause -hostname web", "/orch-clusterbench/pods/besteffort/uid-9/p1", agentNode, kindPause, true},
		{"agent's app", "sleep 1000000", "/orch-clusterbench/pods/besteffort/uid-9/c1", agentNode, kindApp, true},
		{"server node's app", "sleep 1000000", "/orch/pods/besteffort/uid-1/c1", serverNode, kindApp, true},
		{"server node's pause without a QoS level", "orch pause", "/orch/pods/uid-1/p1", serverNode, kindPause, true},
		{"another cluster's pod in the default root", "sleep 1", "/orch/pods/besteffort/uid-2/c1", "", 0, false},
		{"the agent root itself", "orch agent", "/orch-clusterbench/pods/", "", 0, false},
		{"anything else", "bash", "/user.slice/session-1.scope", "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node, kind, ok := classify(serverData, agentData, strings.Fields(tc.args), tc.cgroup, uids)
			if node != tc.node || kind != tc.kind || ok != tc.ok {
				t.Errorf("classify(%q, %q) = %q, %d, %v; want %q, %d, %v", tc.args, tc.cgroup, node, kind, ok, tc.node, tc.kind, tc.ok)
			}
		})
	}
}

func TestPodCgroup(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"cgroup v1 hybrid", "12:memory:/orch/pods/besteffort/u/c\n11:cpu,cpuacct:/orch/pods/besteffort/u/c\n0::/user.slice\n", "/orch/pods/besteffort/u/c"},
		{"memory joined with another controller", "5:memory,hugetlb:/a/b\n0::/x\n", "/a/b"},
		{"cgroup v2", "0::/orch/pods/u/c\n", "/orch/pods/u/c"},
		{"gone", "", ""},
	} {
		if got := podCgroup(tc.in); got != tc.want {
			t.Errorf("%s: podCgroup = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestParseCounters(t *testing.T) {
	listing := `table inet cb_tunnel {
	chain out {
		type filter hook output priority -20; policy accept;
		oifname "eth0" tcp dport 6443 counter packets 12 bytes 3400
	}

	chain in {
		type filter hook input priority -20; policy accept;
		iifname "eth0" tcp sport 6443 counter packets 10 bytes 5600
	}
}`
	got, err := parseCounters(listing)
	if err != nil || got != [2]int64{3400, 5600} {
		t.Errorf("parseCounters = %v, %v; want [3400 5600]", got, err)
	}
	if _, err := parseCounters("table inet cb_tunnel {}"); err == nil {
		t.Error("parseCounters of a listing without counters: no error")
	}
}

func TestCountLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.log")
	log := `time=1 level=INFO msg="tunnel: node connected" node=cb-agent remote=198.18.30.2:1
time=2 level=INFO msg="tunnel: node connected" node=cb-probe remote=198.18.30.2:2
time=3 level=INFO msg="tunnel: node disconnected" node=cb-agent err=EOF
time=4 level=INFO msg="tunnel: node connected" node=cb-agent remote=198.18.30.2:3
`
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	if n := countLines(path, `msg="tunnel: node connected"`, "node="+agentNode); n != 2 {
		t.Errorf("connects of %s = %d, want 2 (the probe's does not count)", agentNode, n)
	}
	if n := countLines(filepath.Join(t.TempDir(), "missing.log"), "x"); n != 0 {
		t.Errorf("lines of a missing file = %d, want 0", n)
	}
}

// TestLockRun: a second run waits until the first releases the lock.
func TestLockRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.lock")
	unlock, err := lockRun(path)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 1)
	go func() {
		second, err := lockRun(path)
		if err != nil {
			t.Error(err)
			second = func() {}
		}
		got <- second
	}()
	select {
	case second := <-got:
		second()
		t.Fatal("a second run took the lock while the first held it")
	case <-time.After(200 * time.Millisecond):
	}
	unlock()
	select {
	case second := <-got:
		second()
	case <-time.After(30 * time.Second):
		t.Fatal("the second run did not get the lock after the first released it")
	}
}
