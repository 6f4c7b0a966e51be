package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/orch-dev/orch/internal/bench/measure"
)

const (
	probeService = "nb-probe"
	// managedBy marks the benchmark's EndpointSlices as nobody else's:
	// the endpoint slice controller leaves them alone.
	managedBy = "netbench"
	// warmups are changes made, not measured, at each size: the first
	// write after a burst of creations may still carry their work.
	warmups = 3
)

// ruleSync measures the time from an EndpointSlice update to the new
// endpoint answering through the Service, with only the probe Service
// and then with more and more background Services, and prints a table.
func (c *cluster) ruleSync(ctx context.Context) error {
	svc, err := c.cs.CoreV1().Services(namespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: probeService, Namespace: namespace},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(probePort)}}},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create the probe service: %w", err)
	}
	probe := netip.AddrPortFrom(netip.MustParseAddr(svc.Spec.ClusterIP), 80)
	sl, err := c.cs.DiscoveryV1().EndpointSlices(namespace).Create(ctx,
		endpointSlice(probeService, probeService+"-1", probePort, []netip.Addr{c.serverIP}), metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create the probe's endpoint slice: %w", err)
	}
	if err := poll(60*time.Second, "the probe Service answering", func() bool {
		got, err := c.client.ask(probe)
		return err == nil && got == strconv.Itoa(probePort)
	}); err != nil {
		return err
	}
	baseline, err := programmedServicePorts()
	if err != nil {
		return err
	}

	fmt.Printf("| rule sync: EndpointSlice update sent → new endpoint answering through the cluster IP (%d changes each) | p50 | p99 | max | of which the API update (p50) | the node's rule build + nftables write (p50 / p99) |\n", c.o.changes)
	fmt.Println("|---|---|---|---|---|---|")
	created := 0
	var notes []string
	for _, size := range backgroundSizes(c.o.services) {
		if size > created {
			start := time.Now()
			if err := c.createBackground(ctx, created, size); err != nil {
				return err
			}
			made := time.Since(start)
			want := baseline + size
			var n int
			if err := poll(5*time.Minute, fmt.Sprintf("rules for %d services", want), func() bool {
				n, err = programmedServicePorts()
				return err == nil && n >= want
			}); err != nil {
				return fmt.Errorf("%w (%d programmed)", err, n)
			}
			notes = append(notes, fmt.Sprintf("%d Services (%d endpoints) created in %s, all in the node's rules %s after the last create",
				size-created, (size-created)*c.o.endpoints, measure.Ms(made), measure.Ms(time.Since(start)-made)))
			created = size
		}
		all, api, writes, err := c.changes(ctx, &sl, probe)
		if err != nil {
			return fmt.Errorf("with %d background services: %w", size, err)
		}
		fmt.Printf("| %d background Services, %d endpoints | %s | %s | %s | %s | %s / %s (%d writes) |\n", size, size*c.o.endpoints,
			measure.Ms(all.Percentile(50)), measure.Ms(all.Percentile(99)), measure.Ms(all.Percentile(100)), measure.Ms(api.Percentile(50)),
			measure.Ms(writes.Percentile(50)), measure.Ms(writes.Percentile(99)), len(writes))
	}
	fmt.Println()
	for _, n := range notes {
		fmt.Printf("- %s\n", n)
	}
	fmt.Printf("\nTarget (issue 7): endpoint change → rules in effect ≤ 50 ms p99 with 1,000 services / 10,000 endpoints. "+
		"Measured end to end: API write, watch to the node, nftables write, first connection to the new endpoint; changes %s apart "+
		"(the proxy writes at most every 100 ms and holds a change that follows its last write sooner, batching bursts).\n\n", c.o.gap)
	return nil
}

// backgroundSizes are the numbers of background Services to measure at:
// none, a tenth of n and n.
func backgroundSizes(n int) []int {
	sizes := []int{0}
	if n >= 10 {
		sizes = append(sizes, n/10)
	}
	if n > 0 {
		sizes = append(sizes, n)
	}
	return sizes
}

// changes moves the probe's endpoint between the two probe ports
// c.o.changes times (after a few warm-ups) and returns, per change, the
// time from sending the update until a new connection reaches the new
// port and the time the update call took, and the durations of the
// node's rule writes meanwhile, from its log.
func (c *cluster) changes(ctx context.Context, sl **discoveryv1.EndpointSlice, probe netip.AddrPort) (all, api, writes measure.Latencies, err error) {
	var logFrom int64
	for i := 0; i < warmups+c.o.changes; i++ {
		if i == warmups {
			if logFrom, err = fileSize(c.log); err != nil {
				return nil, nil, nil, err
			}
		}
		next := *(*sl).Ports[0].Port ^ 1 // probePort ↔ probePort+1
		up := (*sl).DeepCopy()
		up.Ports[0].Port = ptr.To(next)
		want := strconv.Itoa(int(next))
		start := time.Now()
		if *sl, err = c.cs.DiscoveryV1().EndpointSlices(namespace).Update(ctx, up, metav1.UpdateOptions{}); err != nil {
			return nil, nil, nil, fmt.Errorf("update the probe's endpoint slice: %w", err)
		}
		updated := time.Since(start)
		for {
			got, err := c.client.ask(probe)
			if err == nil && got == want {
				break
			}
			if time.Since(start) > c.o.timeout {
				return nil, nil, nil, fmt.Errorf("change %d: port %s not answering after %s (last answer %q, %v)", i, want, c.o.timeout, got, err)
			}
			time.Sleep(200 * time.Microsecond)
		}
		if i >= warmups {
			all = append(all, time.Since(start))
			api = append(api, updated)
		}
		// Isolated changes: the node's proxy writes at most once per
		// 100 ms (proxy.SyncerOptions.MinSyncInterval) and holds a change
		// that comes sooner after its last write until then, by design.
		time.Sleep(c.o.gap)
	}
	writes, err = ruleWrites(c.log, logFrom)
	return all, api, writes, err
}

func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// ruleWrites returns the durations of the service-rule writes the node
// logged (at debug level) in the server's log after offset.
func ruleWrites(path string, offset int64) (measure.Latencies, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil, err
	}
	var out measure.Latencies
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if d, ok := ruleWriteDuration(sc.Text()); ok {
			out = append(out, d)
		}
	}
	return out, sc.Err()
}

// ruleWriteDuration parses the duration of a "service rules written"
// line of the agent's log (slog text: ... msg="service rules written"
// services=5 chains=20 took=1.5ms ...).
func ruleWriteDuration(line string) (time.Duration, bool) {
	if !strings.Contains(line, `msg="service rules written"`) {
		return 0, false
	}
	_, rest, ok := strings.Cut(line, " took=")
	if !ok {
		return 0, false
	}
	v, _, _ := strings.Cut(rest, " ")
	d, err := time.ParseDuration(v)
	return d, err == nil
}

// createBackground creates Services bg-from … bg-(to-1), each without a
// selector and with one EndpointSlice of c.o.endpoints endpoints that
// exist nowhere (no traffic goes to them), from a few clients at once.
func (c *cluster) createBackground(ctx context.Context, from, to int) error {
	const clients = 8
	idx := make(chan int)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range idx {
				name := "bg-" + strconv.Itoa(i)
				_, err := c.cs.CoreV1().Services(namespace).Create(ctx, &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
					Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
						{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}},
				}, metav1.CreateOptions{})
				if err == nil {
					addrs := make([]netip.Addr, c.o.endpoints)
					for k := range addrs {
						addrs[k] = backgroundAddr(i*c.o.endpoints + k)
					}
					_, err = c.cs.DiscoveryV1().EndpointSlices(namespace).Create(ctx, endpointSlice(name, name+"-1", 8080, addrs), metav1.CreateOptions{})
				}
				if err != nil {
					errs <- fmt.Errorf("create background service %s: %w", name, err)
					return
				}
			}
		}()
	}
	var err error
feed:
	for i := from; i < to; i++ {
		select {
		case idx <- i:
		case err = <-errs:
			break feed
		}
	}
	close(idx)
	wg.Wait()
	if err != nil {
		return err
	}
	select {
	case err = <-errs:
	default:
	}
	return err
}

// backgroundAddr is the i-th made-up endpoint address: in the cluster
// CIDR (10.42.0.0/16) above the node's podCIDR, so no pod has it.
func backgroundAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 42, byte(128 + i/250), byte(1 + i%250)})
}

// endpointSlice is a ready EndpointSlice of service with one TCP port
// "http" and addrs.
func endpointSlice(service, name string, port int32, addrs []netip.Addr) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{
			discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: managedBy}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(port)}},
	}
	for _, a := range addrs {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{Addresses: []string{a.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return sl
}

// programmedServicePorts counts the service ports (cluster IP, protocol,
// port) in the node's proxy table: its service-ips map has one element
// per port with endpoints.
func programmedServicePorts() (int, error) {
	out, err := exec.Command("nft", "list", "map", "ip", "orch", "service-ips").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("nft list map ip orch service-ips: %w: %s", err, out)
	}
	return strings.Count(string(out), "goto svc-"), nil
}
