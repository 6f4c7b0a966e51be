package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/orch-dev/orch/internal/bench/measure"
)

// dialTimeout bounds every connection attempt: a path that does not
// answer ends the measurement with an error instead of hanging it.
const dialTimeout = 5 * time.Second

// traffic measures throughput and connection rate through the Service
// and directly, and prints both tables.
func (c *cluster) traffic(ctx context.Context) error {
	if err := c.serve(); err != nil {
		return err
	}
	svc, err := c.cs.CoreV1().Services(namespace).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "nb-server", Namespace: namespace},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "nb-server"},
			Ports: []corev1.ServicePort{
				{Name: "sink", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(sinkPort)},
				{Name: "close", Protocol: corev1.ProtocolTCP, Port: 81, TargetPort: intstr.FromInt32(closePort)},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create service: %w", err)
	}
	clusterIP, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil {
		return fmt.Errorf("service cluster IP: %w", err)
	}
	paths := []struct {
		name        string
		sink, close netip.AddrPort
	}{
		{"pod IP (direct)", netip.AddrPortFrom(c.serverIP, sinkPort), netip.AddrPortFrom(c.serverIP, closePort)},
		{"Service cluster IP", netip.AddrPortFrom(clusterIP, 80), netip.AddrPortFrom(clusterIP, 81)},
	}
	// The endpoints controller and the node's proxy take a moment.
	if err := poll(60*time.Second, "the Service answering", func() bool {
		_, err := c.client.ask(paths[1].close)
		return err == nil
	}); err != nil {
		return err
	}

	size := int64(c.o.transferMiB) << 20
	times := make([]measure.Latencies, len(paths))
	for r := 0; r < c.o.rounds; r++ {
		// Alternate the paths so that both see the same machine load.
		for i, p := range paths {
			d, err := c.transfer(p.sink, size)
			if err != nil {
				return fmt.Errorf("transfer to %s: %w", p.name, err)
			}
			times[i] = append(times[i], d)
		}
	}
	rate := func(l measure.Latencies) float64 { return float64(size) / l.Percentile(50).Seconds() / 1e6 }
	fmt.Printf("| one TCP stream, %d MiB × %d (median) | MB/s |\n|---|---|\n", c.o.transferMiB, c.o.rounds)
	for i, p := range paths {
		fmt.Printf("| %s | %.0f |\n", p.name, rate(times[i]))
	}
	direct, proxied := rate(times[0]), rate(times[1])
	fmt.Printf("\nProxy path overhead (throughput): %.1f %% (cluster IP %.0f MB/s vs pod IP %.0f MB/s).\n\n",
		100*(direct-proxied)/direct, proxied, direct)

	// Connection rate: also alternating, the median of the rounds.
	clients := []int{1, c.o.workers}
	spent := make([][]measure.Latencies, len(paths))
	for i := range spent {
		spent[i] = make([]measure.Latencies, len(clients))
	}
	for r := 0; r < c.o.rounds; r++ {
		for j, workers := range clients {
			for i, p := range paths {
				d, err := c.connectionRate(p.close, workers)
				if err != nil {
					return fmt.Errorf("connection rate to %s: %w", p.name, err)
				}
				spent[i][j] = append(spent[i][j], d)
			}
		}
	}
	perSec := func(i, j int) float64 { return float64(c.o.conns) / spent[i][j].Percentile(50).Seconds() }
	fmt.Printf("| new TCP connections, %d per run × %d (median): connect, read 1 byte, close | 1 client | %d clients |\n|---|---|---|\n",
		c.o.conns, c.o.rounds, c.o.workers)
	for i, p := range paths {
		fmt.Printf("| %s | %.0f /s | %.0f /s |\n", p.name, perSec(i, 0), perSec(i, 1))
	}
	fmt.Printf("\nProxy path overhead (connection rate): %.1f %% with 1 client, %.1f %% with %d clients.\n\n",
		100*(perSec(0, 0)-perSec(1, 0))/perSec(0, 0), 100*(perSec(0, 1)-perSec(1, 1))/perSec(0, 1), c.o.workers)
	return nil
}

// serve starts the Go servers in the server pod: a sink on sinkPort,
// one-byte answers on closePort, and the probe servers for rule sync.
func (c *cluster) serve() error {
	handlers := map[int]func(net.Conn){
		sinkPort: func(conn net.Conn) {
			n, _ := io.Copy(io.Discard, conn)
			_ = binary.Write(conn, binary.BigEndian, n)
		},
		closePort:     func(conn net.Conn) { _, _ = conn.Write([]byte{1}) },
		probePort:     func(conn net.Conn) { fmt.Fprint(conn, probePort) },
		probePort + 1: func(conn net.Conn) { fmt.Fprint(conn, probePort+1) },
	}
	for port, handle := range handlers {
		var ln net.Listener
		if err := c.server.run(func() (err error) {
			ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
			return err
		}); err != nil {
			return fmt.Errorf("listen in the server pod: %w", err)
		}
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer conn.Close()
					handle(conn)
				}()
			}
		}()
	}
	return nil
}

// dial opens a TCP connection from r's namespace.
func dial(r *nsRunner, addr netip.AddrPort) (net.Conn, error) {
	var conn net.Conn
	err := r.run(func() (err error) {
		conn, err = net.DialTimeout("tcp4", addr.String(), dialTimeout)
		return err
	})
	return conn, err
}

// ask opens a connection from r's namespace to addr and returns what
// the server wrote before closing.
func (r *nsRunner) ask(addr netip.AddrPort) (string, error) {
	conn, err := dial(r, addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(dialTimeout))
	b, err := io.ReadAll(conn)
	return string(b), err
}

// transfer sends size bytes to the sink at addr and returns the time
// until the sink confirmed it read them all.
func (c *cluster) transfer(addr netip.AddrPort, size int64) (time.Duration, error) {
	buf := make([]byte, 256<<10)
	start := time.Now()
	conn, err := dial(c.client, addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(start.Add(5 * time.Minute))
	if _, err := io.CopyN(conn, repeatReader(buf), size); err != nil {
		return 0, err
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		return 0, err
	}
	var got int64
	if err := binary.Read(conn, binary.BigEndian, &got); err != nil {
		return 0, fmt.Errorf("read the sink's count: %w", err)
	}
	d := time.Since(start)
	if got != size {
		return 0, fmt.Errorf("the sink read %d bytes of %d", got, size)
	}
	return d, nil
}

// repeatReader is an endless reader of its contents.
type repeatReader []byte

func (r repeatReader) Read(p []byte) (int, error) { return copy(p, r), nil }

// connectionRate opens c.o.conns connections to addr (connect, read the
// server's byte, close) from workers clients at once and returns the
// time they took.
func (c *cluster) connectionRate(addr netip.AddrPort, workers int) (time.Duration, error) {
	runners := []*nsRunner{c.client}
	for len(runners) < workers {
		r, err := c.client.clone()
		if err != nil {
			return 0, err
		}
		defer r.close()
		runners = append(runners, r)
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	start := time.Now()
	for w, r := range runners {
		n := c.o.conns / workers
		if w < c.o.conns%workers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The whole loop runs on the runner's thread: no hand-over per
			// connection.
			errs[w] = r.run(func() error {
				var one [1]byte
				for range n {
					conn, err := net.DialTimeout("tcp4", addr.String(), dialTimeout)
					if err != nil {
						return err
					}
					_ = conn.SetDeadline(time.Now().Add(dialTimeout))
					_, err = io.ReadFull(conn, one[:])
					conn.Close()
					if err != nil {
						return err
					}
				}
				return nil
			})
		}()
	}
	wg.Wait()
	d := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return d, nil
}
