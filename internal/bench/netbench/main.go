// Command netbench measures orch's service proxy on a real single-node
// cluster (issue 7's benchmarks): `orch server` with its built-in node in
// a network namespace of its own (198.18.40.1 on a switch of its own, no
// route anywhere else), two busybox pods on that node, and Go clients and
// servers that this program runs inside the pods' network namespaces. It
// prints Markdown tables:
//
//   - throughput of one TCP stream (a bounded transfer, 1 GiB by default)
//     from one pod to the other through the Service's cluster IP vs the
//     server pod's IP directly, and the proxy path's overhead in %;
//   - connection rate: new TCP connections per second (a bounded count,
//     one and several clients) through the cluster IP vs directly;
//   - rule sync: the wall time from an EndpointSlice update sent to the
//     API server until a connection to the Service reaches the new
//     endpoint, p50/p99 over many changes, with only the probe Service
//     and again with 1,000 more Services of 10 endpoints each (the
//     issue's target is ≤ 50 ms p99 at that size).
//
// The program runs in two roles from this one executable. The parent (no
// -role) builds the namespaces, runs the driver inside the node's
// namespace and removes everything afterwards; the driver (-role driver)
// starts orch and measures. Traffic goes only to these namespaces. It
// needs root, iproute2, nftables, nsenter (util-linux) and busybox-static.
// It never fails on timing.
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
	role        string
	orch        string
	dir         string
	transferMiB int
	rounds      int
	conns       int
	workers     int
	changes     int
	services    int
	endpoints   int
	timeout     time.Duration
	gap         time.Duration
}

const roleDriver = "driver"

func main() {
	log.SetFlags(0)
	log.SetPrefix("netbench: ")
	var o options
	orchDefault := os.Getenv("ORCH_BIN")
	if orchDefault == "" {
		orchDefault = "bin/orch"
	}
	flag.StringVar(&o.role, "role", "", "internal: driver (set by the program itself)")
	flag.StringVar(&o.orch, "orch", orchDefault, "orch binary to run (default $ORCH_BIN, else bin/orch)")
	flag.StringVar(&o.dir, "dir", "/tmp/orch-netbench", "data dir and logs; emptied at the start, removed at the end")
	flag.IntVar(&o.transferMiB, "transfer-mib", 1024, "size of each throughput transfer")
	flag.IntVar(&o.rounds, "rounds", 3, "throughput transfers per path (the median is reported)")
	flag.IntVar(&o.conns, "conns", 3000, "connections per path and client count in the connection-rate run")
	flag.IntVar(&o.workers, "workers", 4, "concurrent clients in the parallel connection-rate run")
	flag.IntVar(&o.changes, "changes", 40, "measured EndpointSlice changes per size (at least 20 for a p99)")
	flag.IntVar(&o.services, "services", 1000, "background Services for the rule-sync run at size (0 skips it)")
	flag.IntVar(&o.endpoints, "endpoints", 10, "endpoints of each background Service")
	flag.DurationVar(&o.timeout, "change-timeout", 10*time.Second, "give up on one change after this long")
	flag.DurationVar(&o.gap, "change-gap", 250*time.Millisecond, "pause after each change took effect (longer than the proxy's 100 ms batching interval)")
	flag.Parse()
	// The driver runs elsewhere; both roles agree on the paths.
	if err := measure.AbsPathFlags("orch", "dir"); err != nil {
		log.Fatal(err)
	}

	var err error
	switch o.role {
	case "":
		err = runParent(o)
	case roleDriver:
		err = runDriver(o)
	default:
		err = fmt.Errorf("unknown -role %q", o.role)
	}
	if err != nil {
		log.Fatal(err)
	}
}
