package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// open is an open-loop load: requests start at a constant rate whatever
// the server does (the arrival process of real users, unlike load's closed
// loop, which slows down with the server). Each latency is measured from
// the request's scheduled start, so a generator that falls behind does not
// hide the wait (no coordinated omission). Requests in flight are bounded
// by -max-inflight; an arrival beyond it counts as dropped.
//
//	benchclient open -url http://127.0.0.1:P/burn?ms=5 -rate 400 -duration 30s
//
// prints one line: sent, 2xx, 503, other statuses, errors (timeouts
// included), dropped, goodput (2xx per second, from the first start to the
// last answer, so that work served after the offer ends counts), the share of
// 503s among the answered, and the p50/p90/p99/max latency of the 2xx
// answers in µs.
func open(args []string) {
	fs := flag.NewFlagSet("open", flag.ExitOnError)
	rawURL := fs.String("url", "", "URL to GET (loopback only)")
	rate := fs.Float64("rate", 100, "requests started per second")
	duration := fs.Duration("duration", 30*time.Second, "how long to start new requests")
	timeout := fs.Duration("timeout", 30*time.Second, "per-request timeout")
	maxInflight := fs.Int("max-inflight", 20000, "most requests in flight at once")
	fs.Parse(args)
	u := loopbackURL(*rawURL).String()
	if *rate <= 0 {
		fmt.Fprintln(fs.Output(), "benchclient open: -rate must be positive")
		return
	}
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{
		Proxy: nil, MaxIdleConnsPerHost: *maxInflight, DisableCompression: true, IdleConnTimeout: 30 * time.Second,
	}}
	var (
		mu                           sync.Mutex
		lat                          []time.Duration
		ok, s503, other, errs, drops atomic.Int64
		inflight                     atomic.Int64
		wg                           sync.WaitGroup
	)
	interval := time.Duration(float64(time.Second) / *rate)
	began := time.Now()
	n := int(duration.Seconds() * *rate)
	for i := range n {
		at := began.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		if inflight.Load() >= int64(*maxInflight) {
			drops.Add(1)
			continue
		}
		inflight.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer inflight.Add(-1)
			res, err := client.Get(u)
			if err == nil {
				_, err = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			switch {
			case err != nil:
				errs.Add(1)
			case res.StatusCode >= 200 && res.StatusCode < 300:
				d := time.Since(at)
				ok.Add(1)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			case res.StatusCode == http.StatusServiceUnavailable:
				s503.Add(1)
			default:
				other.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(began) // to the last answer: work served after the offer counts too
	slices.Sort(lat)
	pct := func(p float64) int64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()
	}
	answered := ok.Load() + s503.Load() + other.Load()
	share := 0.0
	if answered > 0 {
		share = float64(s503.Load()) / float64(answered)
	}
	fmt.Printf("open sent=%d ok=%d s503=%d other=%d errors=%d dropped=%d goodput=%.1f share503=%.4f p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
		n-int(drops.Load()), ok.Load(), s503.Load(), other.Load(), errs.Load(), drops.Load(),
		float64(ok.Load())/elapsed.Seconds(), share, pct(.50), pct(.90), pct(.99), pct(1))
}
