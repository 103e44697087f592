// Command benchclient is the benchmark's helper client, loopback only and
// bounded in time.
//
//	benchclient idle -url http://127.0.0.1:P/small -n 5000
//	    opens n keep-alive connections, sends one request on each and reads
//	    the answer, prints "ready OK FAILED", then holds them idle until its
//	    standard input closes or -hold passes, and closes them.
//	benchclient load -url http://127.0.0.1:P/ -c 8 -duration 15s
//	    keeps -c requests in flight (a closed loop over -c keep-alive
//	    connections) for -duration, waits for those still in flight (up to
//	    -timeout), and prints one line: requests, errors, req/s, the raw
//	    p50/p95/p99/max latency of every request in µs (no coordinated-
//	    omission correction, unlike wrk) and how many took over 1 s.
//	benchclient open -url http://127.0.0.1:P/burn?ms=5 -rate 400 -duration 30s
//	    an open loop: starts requests at a constant rate, whatever the
//	    server does, and prints goodput, 503 share and 2xx latencies (open.go).
//	benchclient block -url http://127.0.0.1:P/block?seconds=5 -duration 20s
//	    keeps -concurrency requests to url in flight, back to back, until
//	    -duration passes (it keeps one worker stuck), and prints how many
//	    finished.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchclient idle|block|load|open [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "idle":
		idle(os.Args[2:])
	case "block":
		block(os.Args[2:])
	case "load":
		load(os.Args[2:])
	case "open":
		open(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "benchclient: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func loopbackURL(raw string) *url.URL {
	u, err := url.Parse(raw)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchclient:", err)
		os.Exit(2)
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		fmt.Fprintf(os.Stderr, "benchclient: %s is not a loopback address\n", host)
		os.Exit(2)
	}
	return u
}

func idle(args []string) {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	rawURL := fs.String("url", "", "URL to GET once per connection (loopback only)")
	n := fs.Int("n", 5000, "connections")
	parallel := fs.Int("parallel", 32, "connections being opened at once")
	hold := fs.Duration("hold", 2*time.Minute, "longest time to hold the connections")
	fs.Parse(args)
	u := loopbackURL(*rawURL)
	req := []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: benchclient\r\n\r\n")

	conns := make([]net.Conn, *n)
	var failed atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range *parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *n {
					return
				}
				c, err := oneRequest(u.Host, req)
				if err != nil {
					failed.Add(1)
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	fmt.Printf("ready %d %d\n", int64(*n)-failed.Load(), failed.Load())
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(done) }()
	select {
	case <-done:
	case <-time.After(*hold):
	}
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

func oneRequest(addr string, req []byte) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	res, err := http.ReadResponse(bufio.NewReaderSize(c, 1024), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK || res.Close {
		c.Close()
		return nil, fmt.Errorf("status %d, close %v, err %v", res.StatusCode, res.Close, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func block(args []string) {
	fs := flag.NewFlagSet("block", flag.ExitOnError)
	rawURL := fs.String("url", "", "URL of a blocking endpoint (loopback only)")
	concurrency := fs.Int("concurrency", 2, "requests kept in flight")
	duration := fs.Duration("duration", 20*time.Second, "how long to keep sending")
	fs.Parse(args)
	u := loopbackURL(*rawURL)
	client := &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: *concurrency}}
	deadline := time.Now().Add(*duration)
	var finished, failed atomic.Int64
	var wg sync.WaitGroup
	for range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				res, err := client.Get(u.String())
				if err != nil {
					failed.Add(1)
					time.Sleep(100 * time.Millisecond)
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				finished.Add(1)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("blocked %d %d\n", finished.Load(), failed.Load())
}

func load(args []string) {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	rawURL := fs.String("url", "", "URL to GET (loopback only)")
	conns := fs.Int("c", 8, "requests in flight")
	duration := fs.Duration("duration", 15*time.Second, "how long to start new requests")
	timeout := fs.Duration("timeout", 30*time.Second, "per-request timeout")
	fs.Parse(args)
	u := loopbackURL(*rawURL)
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{
		Proxy: nil, MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns, DisableCompression: true,
	}}
	began := time.Now()
	deadline := began.Add(*duration)
	lat := make([][]time.Duration, *conns)
	var errs atomic.Int64
	var wg sync.WaitGroup
	for i := range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				t0 := time.Now()
				res, err := client.Get(u.String())
				if err == nil {
					_, err = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", res.StatusCode)
					}
				}
				if err != nil {
					errs.Add(1)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	pct := func(p float64) int64 {
		if len(all) == 0 {
			return 0
		}
		return all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()
	}
	slow := len(all) - sortSearch(all, time.Second)
	fmt.Printf("load requests=%d errors=%d rps=%.1f p50_us=%d p95_us=%d p99_us=%d max_us=%d slow=%d\n",
		len(all), errs.Load(), float64(len(all))/elapsed.Seconds(), pct(.50), pct(.95), pct(.99), pct(1), slow)
}

// sortSearch returns the index of the first latency above d in sorted all.
func sortSearch(all []time.Duration, d time.Duration) int {
	i, _ := slices.BinarySearchFunc(all, d, func(a, b time.Duration) int {
		if a <= b {
			return -1
		}
		return 1
	})
	return i
}
