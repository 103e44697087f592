package lifecycle_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/obsproxy/obsproxy/lifecycle"
)

// A pool of three workers under least_inflight: the busy worker is skipped
// while idle ones take turns.
func ExamplePool_Pick() {
	pool, err := lifecycle.NewPool(lifecycle.Config{
		Workers: []lifecycle.WorkerConfig{
			{Name: "w1", Network: "tcp", Address: "127.0.0.1:8001"},
			{Name: "w2", Network: "tcp", Address: "127.0.0.1:8002"},
			{Name: "w3", Network: "unix", Address: "/run/app/w3.sock"},
		},
		Policy:       lifecycle.LeastInFlight,
		InitialState: lifecycle.StateUp,
	})
	if err != nil {
		panic(err)
	}
	pool.Workers()[1].AddInFlight(1) // w2 is busy with a long request
	for i := 0; i < 4; i++ {
		fmt.Print(pool.Pick().Name, " ")
	}
	fmt.Println()
	// Output: w3 w1 w3 w1
}

// Probes drive a worker's traffic state and process lifecycle: here a
// worker comes up, then answers with a reset uptime_seconds, which counts
// as a restart although no probe saw it down.
func ExamplePool_ObserveProbe() {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	pool, err := lifecycle.NewPool(lifecycle.Config{
		Workers: []lifecycle.WorkerConfig{{Name: "w1", Network: "tcp", Address: "127.0.0.1:8001"}},
		Rise:    2,
		Now:     func() time.Time { return t0.Add(5 * time.Second) },
	})
	if err != nil {
		panic(err)
	}
	w := pool.Workers()[0]
	probe := func(after time.Duration, uptime float64) {
		pool.ObserveProbe(w, lifecycle.ProbeResult{
			At: t0.Add(after), Health: lifecycle.Healthy, Answered: true, Uptime: uptime, HasUptime: true,
		})
	}
	probe(0, 60)             // first answer: started, not up yet (Rise 2)
	probe(2*time.Second, 62) // second serving probe: up
	probe(4*time.Second, 1)  // uptime went backwards: restarted
	for _, e := range pool.Events() {
		fmt.Println(strings.TrimSpace(fmt.Sprintf("%d %s %s", e.Seq, e.Kind, e.Reason)))
	}
	st := pool.Status().Workers[0]
	fmt.Println(st.State, st.Started, st.Stopped, st.Uptime)
	// Output:
	// 1 started
	// 2 up healthy
	// 3 pool_up
	// 4 restarted uptime reset
	// up 2 1 2s
}
