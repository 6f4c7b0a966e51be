// Command clusterbench measures a whole small cluster built from the real
// binary: `orch server` with its built-in node in one network namespace
// and one `orch agent --join` in another, on a switch of their own with
// 198.18.30.0/24 addresses. It prints Markdown tables for BENCHMARKS.md:
//
//   - footprint (issue 9): start to Ready, then RSS, CPU and disk writes
//     of each process idle with no workloads and with a Deployment of 30
//     busybox pods, and the binary sizes, beside k3s' published figures
//     and the targets;
//   - tunnel (issue 8): API request latency through the tunnel vs direct
//     HTTPS, `kubectl exec` round trips to a pod on either node,
//     port-forward throughput vs a direct TCP connection, idle bytes on the
//     tunnel, and the time from a restored link to the node Ready again.
//
// The program runs in three roles, all from this one executable. The
// parent (no -role) builds the namespaces, starts the driver and cleans up
// everything afterwards, even after a failed or killed earlier run. The
// driver (-role driver) runs inside the server's namespace, where the
// server's address is directly reachable: it starts both orch processes
// and measures. The API probe (-role probe-api) runs inside the agent's
// namespace and issues the API requests an agent would. Re-executing
// into a namespace keeps every socket where it belongs without switching
// threads' namespaces by hand. Traffic goes only to these namespaces.
//
// Needs root, iproute2, nftables, nsenter, kubectl and busybox-static.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/orch-dev/orch/internal/bench/measure"
)

// options are the flags; the parent passes them on to the driver.
type options struct {
	role      string
	orch      string
	orchArm64 string
	dir       string
	window    time.Duration
	settle    time.Duration
	pods      int
	execs     int
	requests  int
	download  int
	out       string
	idleOnly  bool          // measure the idle window only and print its short summary
	hold      time.Duration // keep the cluster up this long after measuring (profiling by hand)

	// probe-api only
	server, node, caFile, tokenFile string
}

const (
	roleDriver   = "driver"
	roleProbeAPI = "probe-api"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("clusterbench: ")
	var o options
	orchDefault := os.Getenv("ORCH_BIN")
	if orchDefault == "" {
		orchDefault = "bin/orch"
	}
	flag.StringVar(&o.role, "role", "", "internal: driver or probe-api (set by the program itself)")
	flag.StringVar(&o.orch, "orch", orchDefault, "orch binary to run (default $ORCH_BIN, else bin/orch)")
	flag.StringVar(&o.orchArm64, "orch-arm64", "bin/orch-arm64", "arm64 binary, only for its size")
	flag.StringVar(&o.dir, "dir", "/tmp/orch-clusterbench", "data dirs, logs and kubeconfig; removed at the start and the end")
	flag.DurationVar(&o.window, "window", 120*time.Second, "length of each idle measurement (issue 9 asks for 120s; shorten only to try things out)")
	flag.DurationVar(&o.settle, "settle", 15*time.Second, "wait before an idle measurement, for start-up work to finish")
	flag.IntVar(&o.pods, "pods", 30, "replicas of the busybox Deployment")
	flag.IntVar(&o.execs, "execs", 30, "kubectl exec round trips per node")
	flag.IntVar(&o.requests, "requests", 500, "API requests per client in the tunnel latency probe")
	flag.IntVar(&o.download, "download-mib", 64, "size of the port-forward download")
	flag.StringVar(&o.out, "out", "", "write the Markdown section to this file too")
	flag.BoolVar(&o.idleOnly, "idle-only", false, "measure only the idle window with no pods and print a short summary (for trying out footprint changes)")
	flag.DurationVar(&o.hold, "hold", 0, "keep the cluster running this long after the measurements, for profiling by hand (the PIDs are printed)")
	flag.StringVar(&o.server, "server", "", "internal (probe-api): server URL")
	flag.StringVar(&o.node, "node", "", "internal (probe-api): node whose Node object is read")
	flag.StringVar(&o.caFile, "ca", "", "internal (probe-api): cluster CA file")
	flag.StringVar(&o.tokenFile, "token-file", "", "internal (probe-api): join token file")
	flag.Parse()
	// The driver runs elsewhere; every role agrees on the paths.
	if err := measure.AbsPathFlags("orch", "orch-arm64", "dir", "out"); err != nil {
		log.Fatal(err)
	}

	var err error
	switch o.role {
	case "":
		err = runParent(o)
	case roleDriver:
		err = runDriver(o)
	case roleProbeAPI:
		err = runProbeAPI(o)
	default:
		err = fmt.Errorf("unknown -role %q", o.role)
	}
	if err != nil {
		log.Fatal(err)
	}
}
