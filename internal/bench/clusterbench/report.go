package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/orch-dev/orch/internal/bench/measure"
)

// Published k3s figures and the issues' targets (issue 9 "The whole-cluster
// footprint", issue 8 "Benchmarks"; k3s' own start-up as measured on this
// kind of machine, ../shared/FACTS.md). MB in the targets is 10^6 bytes.
const (
	targetRSSTotal  = 40e6
	targetRSSAgent  = 15e6
	targetCPU       = 0.5 // % of one core, whole cluster
	targetWrites    = 1000
	targetBinary    = 30e6
	targetReady     = time.Second
	targetTunnelBps = 200
)

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// markdown renders the section for BENCHMARKS.md.
func (r *results) markdown(o options) string {
	c := r.c
	var b strings.Builder
	commit := "unknown"
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
	}
	fmt.Fprintf(&b, "### Whole cluster: server + joined agent (issues 8, 9)\n\n")
	fmt.Fprintf(&b, "Machine: %s. Date: %s. Tree at %s; binary: %s.\n",
		measure.Machine(), time.Now().UTC().Format("2006-01-02 15:04 MST"), commit, orchVersion(o.orch))
	var defaults []string
	for _, name := range []string{"window", "pods", "execs", "requests", "download-mib"} {
		if f := flag.Lookup(name); f != nil {
			defaults = append(defaults, "-"+name+" "+f.DefValue)
		}
	}
	fmt.Fprintf(&b, "Command: `go run ./internal/bench/clusterbench -window %s -pods %d -execs %d -requests %d -download-mib %d` (`make bench` runs it without flags: %s). ",
		o.window, o.pods, o.execs, o.requests, o.download, strings.Join(defaults, " "))
	fmt.Fprintf(&b, "`orch server` (with its built-in node %s) in one network namespace, `orch agent --join` (node %s) in another, "+
		"on a bridge with 198.18.30.0/24 addresses; %d busybox pods as Deployment `sleep`, spread %s; they were all available %s after the create. ",
		serverNode, agentNode, o.pods, spreadText(r.spread), r.podsUp.Round(time.Millisecond))
	fmt.Fprintf(&b, "Load average (1/5/15 min) at the start/end of the idle windows: %s / %s (no pods), %s / %s (pods). "+
		"The machine is shared with other engineers' builds and tests: CPU and latency numbers are noisy.\n\n",
		r.idle.load[0], r.idle.load[1], r.pods.load[0], r.pods.load[1])

	fmt.Fprintf(&b, "#### Footprint (issue 9)\n\n")
	fmt.Fprintf(&b, "| measure | idle, no pods | %d pods | k3s (published) | issue 9 target |\n|---|---|---|---|---|\n", o.pods)
	row := func(cells ...string) { fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | ")) }
	row("server process start → /readyz", ms(c.readyz), "", "3.5–4.2 s (server alone, measured here)", "")
	row("server process start → both nodes Ready (agent started when the join token appeared)", ms(c.bothReady), "",
		"", "≤ 1 s: "+verdict(c.bothReady <= targetReady))
	row("agent process start → its node Ready", ms(c.agentReady), "", "", "")
	row("server start → its own node Ready", ms(c.serverNodeReady), "", "", "")

	rss := func(w window, node string) int64 { return w.groups[node][kindMain].rss }
	total := func(w window) int64 { return rss(w, serverNode) + rss(w, agentNode) }
	row("RSS `orch server` (control plane + its node)", mib(rss(r.idle, serverNode)), mib(rss(r.pods, serverNode)), "", "")
	row("RSS `orch agent`", mib(rss(r.idle, agentNode)), mib(rss(r.pods, agentNode)), "275 MB (agent alone)",
		"≤ 15 MB: "+verdict(float64(rss(r.idle, agentNode)) <= targetRSSAgent))
	row("RSS server + agent", mib(total(r.idle)), mib(total(r.pods)), "1,215–1,428 MB",
		"≤ 40 MB: "+verdict(float64(total(r.idle)) <= targetRSSTotal))
	for _, k := range []struct {
		kind procKind
		name string
	}{{kindShim, "container shims (`orch container-shim`, one per container)"}, {kindPause, "pause processes (`orch pause`, one per pod)"}, {kindApp, "the workload (`busybox sleep`)"}} {
		row(k.name+": count, RSS / PSS / anonymous sums per node", helpers(r.idle, k.kind), helpers(r.pods, k.kind), "", "")
	}
	row("PSS of the whole cluster (server, agent, shims, pause; shared binary pages counted once)", mib(clusterPSS(r.idle)), mib(clusterPSS(r.pods)), "", "")
	cpu := func(w window, node string) float64 { return w.groups[node][kindMain].cpu }
	allCPU := func(w window) float64 {
		var s float64
		for _, node := range []string{serverNode, agentNode} {
			for _, kind := range []procKind{kindMain, kindShim, kindPause} {
				s += w.groups[node][kind].cpu
			}
		}
		return s
	}
	row(fmt.Sprintf("CPU over %s, %% of one core: server / agent", r.idle.length.Round(time.Second)),
		fmt.Sprintf("%.2f / %.2f", cpu(r.idle, serverNode), cpu(r.idle, agentNode)),
		fmt.Sprintf("%.2f / %.2f", cpu(r.pods, serverNode), cpu(r.pods, agentNode)), "", "")
	row("CPU, whole cluster (server, agent, shims, pause)", fmt.Sprintf("%.2f %%", allCPU(r.idle)), fmt.Sprintf("%.2f %%", allCPU(r.pods)),
		"5 % (25 % on a Pi 4)", "≤ 0.5 %: "+verdict(allCPU(r.idle) <= targetCPU))
	written := func(w window) (server, agent, all int64) {
		for _, kind := range []procKind{kindMain, kindShim, kindPause} {
			server += w.groups[serverNode][kind].written
			agent += w.groups[agentNode][kind].written
		}
		return server, agent, server + agent
	}
	ws := func(w window) string {
		s, a, all := written(w)
		return fmt.Sprintf("%s (server %d B, agent %d B)", perSecond(all, w.length), s, a)
	}
	_, _, idleAll := written(r.idle)
	row(fmt.Sprintf("disk writes over %s: write_bytes of the processes (/proc/PID/io; orch's, shims', pause's)", r.idle.length.Round(time.Second)),
		ws(r.idle), ws(r.pods), "~15 KB/s (server alone, measured here)",
		"≤ 1 KB/s: "+verdict(float64(idleAll)/r.idle.length.Seconds() <= targetWrites))
	grow := func(w window) string {
		return fmt.Sprintf("server %+d B, agent %+d B", w.dirGrow[serverNode], w.dirGrow[agentNode])
	}
	row("change of the blocks allocated in the data dirs over the window (du-like, overlay mounts excluded)", grow(r.idle), grow(r.pods), "", "")
	for i, bin := range r.binaries {
		arch := []string{"amd64", "arm64"}[i%2]
		target := ""
		if fi, err := os.Stat(bin[0]); err == nil {
			target = "≤ 30 MB: " + verdict(float64(fi.Size()) <= targetBinary)
		}
		row("binary size "+arch+" (gzip -9)", fmt.Sprintf("%s (%s)", bin[1], bin[2]), "", "77.5 MiB compressed, 253 MiB unpacked", target)
	}

	fmt.Fprintf(&b, "\nWhere the memory is, idle with no pods (/proc/PID/smaps_rollup; Go runtime from /metrics):\n\n")
	fmt.Fprintf(&b, "| process | RSS | PSS | anonymous | file-backed (the binary, shared) | of which mapped as 2 MiB pages (FilePmdMapped) | Go runtime |\n|---|---|---|---|---|---|---|\n")
	for _, name := range []string{"server", "agent"} {
		m := r.rollup[name]
		heap := "not reachable (served only inside the tunnel)"
		if name == "server" {
			heap = r.heap + " (server and its node together)"
		}
		row(name, mib(m["Rss"]), mib(m["Pss"]), mib(m["Anonymous"]), mib(m["Rss"]-m["Anonymous"]), mib(m["FilePmdMapped"]), heap)
	}

	t := r.tunnel
	fmt.Fprintf(&b, "\n#### Tunnel (issue 8)\n\n")
	fmt.Fprintf(&b, "| measure | through the tunnel / agent's node | direct / server's node | issue 8 target |\n|---|---|---|---|\n")
	row(fmt.Sprintf("API GET of Node %s, %d sequential requests from the agent's namespace with a node certificate, p50 / p99", agentNode, len(t.api.Tunnel)),
		p5099(t.api.Tunnel), p5099(t.api.Direct)+" (plain HTTPS, own HTTP/2 connection)", "")
	row(fmt.Sprintf("`kubectl exec POD -- true`, %d each, p50 / p99", len(t.execAgent)), p5099(t.execAgent), p5099(t.execServer), "")
	row("`kubectl get --raw /readyz` (kubectl's start-up + one request: the floor under exec)", "", p5099(t.kubectlFloor), "")
	row(fmt.Sprintf("download of %d MiB from httpd in a pod on the agent, median of %d", o.download, len(t.forwardMBps)),
		fmt.Sprintf("%.0f MiB/s (`kubectl port-forward`)", median(t.forwardMBps)),
		fmt.Sprintf("%.0f MiB/s (TCP to the pod IP from the server's namespace)", median(t.directMBps)), "")
	row(fmt.Sprintf("idle traffic on the tunnel (agent eth0, TCP port %d, both ways, nft counters), no pods", apiPort),
		perSecond(r.idle.tunnel, r.idle.length), "", "")
	row(fmt.Sprintf("the same with %d pods", o.pods), perSecond(r.pods.tunnel, r.pods.length), "",
		"≤ 200 B/s: "+verdict(float64(r.pods.tunnel)/r.pods.length.Seconds() <= targetTunnelBps))
	row(fmt.Sprintf("all bytes on the agent's eth0 (/sys/class/net/eth0/statistics), no pods / %d pods", o.pods),
		perSecond(r.idle.eth0, r.idle.length)+" / "+perSecond(r.pods.eth0, r.pods.length), "", "")
	row("link cut (nft drop on the agent's eth0) → both ends noticed / node not Ready", ms(t.cutNoticed)+" / "+ms(t.cutNotReady), "", "dead link noticed within ~15 s")
	row("link restored → tunnel up / node Ready", ms(t.restoreTunnel)+" / "+ms(t.restoreRdy), "", "")
	return b.String()
}

// idleSummary is the short report of -idle-only: each orch process'
// memory and CPU over the idle window, for comparing one change.
func (r *results) idleSummary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "idle %s, load %s / %s\n", r.idle.length.Round(time.Second), r.idle.load[0], r.idle.load[1])
	var cpu float64
	for _, p := range []struct{ name, node string }{{"server", serverNode}, {"agent", agentNode}} {
		m, g := r.rollup[p.name], r.idle.groups[p.node][kindMain]
		cpu += g.cpu
		fmt.Fprintf(&b, "%-6s RSS %s  PSS %s  anonymous %s  file %s (FilePmdMapped %s)  CPU %.3f %%  %.1f context switches/s\n", p.name,
			mib(m["Rss"]), mib(m["Pss"]), mib(m["Anonymous"]), mib(m["Rss"]-m["Anonymous"]), mib(m["FilePmdMapped"]), g.cpu, g.switches)
	}
	fmt.Fprintf(&b, "server+agent RSS %s, CPU %.3f %%; idle tunnel traffic %s; server's Go runtime: %s\n",
		mib(r.rollup["server"]["Rss"]+r.rollup["agent"]["Rss"]), cpu, perSecond(r.idle.tunnel, r.idle.length), r.heap)
	return b.String()
}

func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func mib(n int64) string { return measure.MiB(n) }

func perSecond(n int64, d time.Duration) string {
	if d <= 0 {
		return "?"
	}
	return fmt.Sprintf("%.0f B/s", float64(n)/d.Seconds())
}

func p5099(l []time.Duration) string {
	if len(l) == 0 {
		return ""
	}
	ls := measure.Latencies(l)
	return measure.Ms(ls.Percentile(50)) + " / " + measure.Ms(ls.Percentile(99))
}

// helpers describes one kind of helper process on both nodes.
func helpers(w window, kind procKind) string {
	var parts []string
	for _, node := range []string{serverNode, agentNode} {
		g := w.groups[node][kind]
		parts = append(parts, fmt.Sprintf("%s: %d, %s / %s / %s", node, g.count, mib(g.rss), mib(g.pss), mib(g.anon)))
	}
	return strings.Join(parts, "; ")
}

// clusterPSS sums the proportional set sizes of all orch processes.
func clusterPSS(w window) int64 {
	var sum int64
	for _, node := range []string{serverNode, agentNode} {
		for _, kind := range []procKind{kindMain, kindShim, kindPause} {
			sum += w.groups[node][kind].pss
		}
	}
	return sum
}

func spreadText(m map[string]int) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%d on %s", m[k], k))
	}
	return strings.Join(parts, ", ")
}
