package main

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/orch-dev/orch/internal/bench/measure"
)

// procKind sorts the processes of a node.
type procKind int

const (
	kindMain  procKind = iota // orch server or orch agent itself
	kindShim                  // orch container-shim, one per container
	kindPause                 // orch pause, one per pod
	kindApp                   // the workload (busybox sleep)
)

// usage is one process' snapshot.
type usage struct {
	measure.Proc
	pss, anon int64
	switches  int64 // context switches of all its threads so far
}

// group sums the processes of one kind on one node.
type group struct {
	count          int
	rss, pss, anon int64
	cpu            float64 // % of one core over the window
	switches       float64 // context switches per second over the window: how often it woke up
	written        int64   // write_bytes over the window
}

// snapshot is what one moment of a window records.
type snapshot struct {
	at      time.Time
	procs   map[string]map[procKind]map[int]usage // node -> kind -> pid
	dirUse  map[string]int64                      // node -> bytes allocated in its data dir
	tunnel  [2]int64                              // bytes to, from the server's port 6443 on the agent's eth0
	eth0    [2]int64                              // tx, rx bytes of the agent's eth0
	loadavg string
}

// window is the difference of two snapshots.
type window struct {
	length  time.Duration
	groups  map[string]map[procKind]group
	dirGrow map[string]int64
	tunnel  int64 // both directions
	eth0    int64
	load    [2]string
	end     snapshot
}

// nodeOf classifies a process of either node (ok is false for any other).
func (c *cluster) nodeOf(pid int, serverUIDs map[string]bool) (node string, kind procKind, ok bool) {
	switch pid {
	case c.server.pid():
		return serverNode, kindMain, true
	case c.agent.pid():
		return agentNode, kindMain, true
	}
	cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	return classify(c.serverData(), c.agentData(), strings.Fields(cmdline(pid)), podCgroup(string(cg)), serverUIDs)
}

// classify sorts a helper or pod process by its arguments and cgroup.
// Shims live beside their agent, outside the pods' cgroups: their
// container dir (under the node's data dir) says whose they are. Pause
// and app processes are in CgroupRoot/pods/[<qos>/]<pod-uid>/<id>; the
// server's node uses the default root, which other clusters on this
// machine may share, so only the UIDs of its own pods count.
func classify(serverData, agentData string, args []string, cgroup string, serverUIDs map[string]bool) (node string, kind procKind, ok bool) {
	if len(args) >= 3 && args[1] == "container-shim" {
		switch {
		case strings.HasPrefix(args[2], serverData+"/"):
			return serverNode, kindShim, true
		case strings.HasPrefix(args[2], agentData+"/"):
			return agentNode, kindShim, true
		}
		return "", 0, false
	}
	if rest, found := strings.CutPrefix(cgroup, agentCgroupRoot+"/pods/"); found && rest != "" {
		node = agentNode
	} else if rest, found := strings.CutPrefix(cgroup, serverCgroupDef+"/pods/"); found {
		for _, part := range strings.Split(rest, "/") {
			if serverUIDs[part] {
				node = serverNode
			}
		}
	}
	if node == "" {
		return "", 0, false
	}
	if len(args) >= 2 && args[1] == "pause" {
		return node, kindPause, true
	}
	return node, kindApp, true
}

// podCgroup picks from the contents of /proc/PID/cgroup the memory
// controller's cgroup (v1), or else the unified one (v2).
func podCgroup(procCgroup string) string {
	var unified string
	for _, line := range strings.Split(procCgroup, "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[1] == "" {
			unified = f[2]
		}
		for _, ctl := range strings.Split(f[1], ",") {
			if ctl == "memory" {
				return f[2]
			}
		}
	}
	return unified
}

// smapsRollup returns the fields of /proc/PID/smaps_rollup in bytes. Pss
// is the fair share of pages shared with other processes: the orch
// binary is mapped by the server, the agent and every shim and pause
// process, and counts in full in each one's RSS.
func smapsRollup(pid int) map[string]int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(v)
		if !ok || len(fields) != 2 || fields[1] != "kB" {
			continue
		}
		if kb, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
			out[k] = kb << 10
		}
	}
	return out
}

// contextSwitches sums the voluntary and involuntary context switches of
// all of pid's threads (/proc/PID/status counts only the main thread's).
// An idle process' switches are its wake-ups: timers, network, GC.
func contextSwitches(pid int) int64 {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var n int64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread ended meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				c, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += c
			}
		}
	}
	return n
}

// take records a snapshot of both nodes.
func (c *cluster) take() (snapshot, error) {
	s := snapshot{at: time.Now(), procs: map[string]map[procKind]map[int]usage{}, dirUse: map[string]int64{}}
	s.loadavg = measure.LoadAvg()
	serverUIDs := map[string]bool{}
	entries, _ := os.ReadDir(filepath.Join(c.serverData(), "agent", "pods"))
	for _, e := range entries {
		serverUIDs[e.Name()] = true
	}
	for _, pid := range pids() {
		node, kind, ok := c.nodeOf(pid, serverUIDs)
		if !ok {
			continue
		}
		p, err := measure.ReadProc(pid)
		if err != nil {
			continue // gone meanwhile
		}
		if s.procs[node] == nil {
			s.procs[node] = map[procKind]map[int]usage{}
		}
		if s.procs[node][kind] == nil {
			s.procs[node][kind] = map[int]usage{}
		}
		m := smapsRollup(pid)
		s.procs[node][kind][pid] = usage{Proc: p, pss: m["Pss"], anon: m["Anonymous"], switches: contextSwitches(pid)}
	}
	for node, dir := range map[string]string{serverNode: c.serverData(), agentNode: c.agentData()} {
		s.dirUse[node] = allocated(dir)
	}
	var err error
	if s.tunnel, err = c.tunnelCounters(); err != nil {
		return s, err
	}
	for i, f := range []string{"tx_bytes", "rx_bytes"} {
		out, err := c.agentNS.Run("cat", "/sys/class/net/eth0/statistics/"+f)
		if err != nil {
			return s, err
		}
		s.eth0[i], _ = strconv.ParseInt(strings.TrimSpace(out), 10, 64)
	}
	return s, nil
}

// measureWindow takes a snapshot, waits d and takes another.
func (c *cluster) measureWindow(d time.Duration) (window, error) {
	a, err := c.take()
	if err != nil {
		return window{}, err
	}
	time.Sleep(d)
	if err := errAlive(c); err != nil {
		return window{}, err
	}
	b, err := c.take()
	if err != nil {
		return window{}, err
	}
	w := window{length: b.at.Sub(a.at), groups: map[string]map[procKind]group{}, dirGrow: map[string]int64{}, end: b,
		load: [2]string{a.loadavg, b.loadavg}}
	for node, kinds := range b.procs {
		w.groups[node] = map[procKind]group{}
		for kind, procs := range kinds {
			var g group
			for pid, pb := range procs {
				g.count++
				g.rss += pb.RSSBytes
				g.pss += pb.pss
				g.anon += pb.anon
				// CPU and writes only of processes that lived through the window.
				if pa, ok := a.procs[node][kind][pid]; ok {
					g.cpu += measure.CPUPercent(pa.Proc, pb.Proc)
					g.switches += float64(pb.switches-pa.switches) / pb.At.Sub(pa.At).Seconds()
					g.written += pb.WriteBytes - pa.WriteBytes
				}
			}
			w.groups[node][kind] = g
		}
		w.dirGrow[node] = b.dirUse[node] - a.dirUse[node]
	}
	w.tunnel = b.tunnel[0] + b.tunnel[1] - a.tunnel[0] - a.tunnel[1]
	w.eth0 = b.eth0[0] + b.eth0[1] - a.eth0[0] - a.eth0[1]
	return w, nil
}

func errAlive(c *cluster) error {
	if err := c.server.alive(); err != nil {
		return err
	}
	return c.agent.alive()
}

// allocated sums the blocks allocated to the files under dir, not
// descending into other file systems (the containers' overlay mounts).
func allocated(dir string) int64 {
	var root syscall.Stat_t
	if err := syscall.Stat(dir, &root); err != nil {
		return 0
	}
	var total int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		var st syscall.Stat_t
		if syscall.Lstat(p, &st) != nil {
			return nil
		}
		if st.Dev != root.Dev {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		total += st.Blocks * 512
		return nil
	})
	return total
}

// tunnelTable counts the agent's traffic to and from the server's API
// port on its eth0: the tunnel is the only connection to that port.
const tunnelTable = `table inet cb_tunnel {
	chain out { type filter hook output priority -20; policy accept; oifname "eth0" tcp dport 6443 counter; }
	chain in { type filter hook input priority -20; policy accept; iifname "eth0" tcp sport 6443 counter; }
}`

var counterRE = regexp.MustCompile(`counter packets \d+ bytes (\d+)`)

// tunnelCounters reads the out and in byte counters of tunnelTable.
func (c *cluster) tunnelCounters() ([2]int64, error) {
	out, err := c.agentNS.Run("nft", "list", "table", "inet", "cb_tunnel")
	if err != nil {
		return [2]int64{}, err
	}
	return parseCounters(out)
}

// parseCounters reads the byte counts of the two counters in an nft
// listing of tunnelTable.
func parseCounters(listing string) ([2]int64, error) {
	m := counterRE.FindAllStringSubmatch(listing, -1)
	if len(m) != 2 {
		return [2]int64{}, fmt.Errorf("nft counters of cb_tunnel: want 2, got:\n%s", listing)
	}
	var v [2]int64
	for i := range v {
		v[i], _ = strconv.ParseInt(m[i][1], 10, 64)
	}
	return v, nil
}
